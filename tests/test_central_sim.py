"""``rftwin-sim make-world``: the physical twin the simulated nodes sense, and its scenario."""

from __future__ import annotations

import dataclasses

import pytest

from contracts.gain_maps import GainMapFile
from sim.cli import main
from sim.world import World
from sim.world_builder import WorldRecipe
from tests.conftest import DATA

SCENARIO = """
[[emitters]]
id = "gnb"
role = "legitimate"
tx_power_dbm = 20.0
position_m = [1.5, 1.5, 1.5]
"""


@pytest.mark.raytracing
def test_make_world_writes_true_maps_with_model_error_and_a_checked_scenario(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RFTWIN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "s.toml").write_text(SCENARIO)
    site = str(DATA / "tiny_hall.toml")
    assert main(["make-world", "--site", site, "--out", str(tmp_path / "w"), "--scenario",
                 str(tmp_path / "s.toml"), "--model-error-db", "2.0"]) == 0  # fmt: skip
    maps = GainMapFile.load(tmp_path / "w" / "world.npz")
    offsets = maps.meta["su_gain_offsets_db"]
    assert sorted(offsets) == ["high", "low"] and len(set(offsets.values())) == 2
    world = World.load(tmp_path / "w" / "world.npz", tmp_path / "w" / "scenario.toml")
    assert world.gain_offset_db("low") == offsets["low"]
    # the world as it is: traced deeper, with diffraction and diffuse reflection, with clutter the site
    # file lacks, and the impairments of real readings; all in the file, so a test loads it without tracing
    fidelity = maps.meta["fidelity"]
    assert (fidelity["max_depth"], fidelity["diffraction"], fidelity["scattering_coefficient"]) == (5, True, 0.3)
    assert len(maps.meta["clutter"]) == 1  # 1.25 per 100 m² of the 8 m × 6 m hall
    assert world.impairments == dataclasses.replace(WorldRecipe().impairments, seed=7)
    assert main(["make-world", "--site", site, "--out", str(tmp_path / "ref"), "--scenario", str(tmp_path / "s.toml"),
                 "--in-model"]) == 0  # fmt: skip
    ref = GainMapFile.load(tmp_path / "ref" / "world.npz").meta
    assert ref["clutter"] == [] and ref["fidelity"]["max_depth"] == 3 and ref["impairments"]["reading_noise_db"] == 0
    assert ref["fidelity"]["scattering_coefficient"] == 0.0  # the first round's world: specular only, as the twin
    # the demo scenario (AGVs in the paper's 40 m hall) does not fit the tiny hall: said at once
    assert main(["make-world", "--site", site, "--out", str(tmp_path / "w2")]) == 2
    assert "emitter 'agv-1'" in capsys.readouterr().err
