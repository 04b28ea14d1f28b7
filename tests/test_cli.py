"""The console scripts, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.gain_maps import GainMapFile

DATA = Path(__file__).parent / "data"


def run(*args, env=None):
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def script(name):
    return str(Path(sys.executable).with_name(name))


@pytest.mark.parametrize("name", ["rftwin-node", "rftwin-central", "rftwin-calibrate"])
def test_console_scripts_are_installed_and_answer(name):
    r = run(script(name), "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_node_and_calibrate_print_the_version():
    for name in ("rftwin-node", "rftwin-calibrate"):
        r = run(script(name), "version")
        assert r.returncode == 0 and r.stdout.startswith("rftwin 0.")


def test_twin_build_rejects_a_bad_site_with_a_reason(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((DATA / "tiny_hall.toml").read_text().replace('material = "metal"', 'material = "cheese"'))
    r = run(script("rftwin-central"), "twin", "build", "--site", str(bad), "--cache-dir", str(tmp_path))
    assert r.returncode == 2
    assert "unknown material 'cheese'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.raytracing
def test_twin_build_then_show_renders_a_png_from_the_cache(tmp_path):
    site = str(DATA / "tiny_hall.toml")
    built = run(script("rftwin-central"), "twin", "build", "--site", site, "--cache-dir", str(tmp_path))
    assert built.returncode == 0, built.stderr
    assert "2 SU maps" in built.stdout and "built in" in built.stdout
    assert "tracing gain maps" in built.stderr  # progress shown while tracing

    png = tmp_path / "tiny.png"
    shown = run(script("rftwin-central"), "twin", "show", "--site", site, "--cache-dir", str(tmp_path),
                "--su", "high", "--out", str(png))  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "tracing gain maps" not in shown.stderr  # served from the cache
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000

    world = tmp_path / "out" / "world.npz"
    again = run(script("rftwin-central"), "twin", "build", "--site", site, "--cache-dir", str(tmp_path),
                "--out", str(world))  # fmt: skip
    assert "cached" in again.stdout and f"wrote {world}" in again.stdout
    assert GainMapFile.load(world).su_ids == ["low", "high"]  # what the simulated world reads


def test_twin_show_rejects_an_unknown_su(tmp_path, tiny_twin):
    r = run(script("rftwin-central"), "twin", "show", "--site", str(DATA / "tiny_hall.toml"),
            "--cache-dir", str(tiny_twin.cache_path.parent), "--su", "nope", "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert r.returncode == 2 and "unknown sensing unit 'nope'" in r.stderr
