"""``rftwin-node`` as an installer or operator uses it: measure once, check a setup, read the status."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli import main
from tests.ingest_server import IngestServer
from tests.node_configs import simulated_node_toml, write_config
from contracts.band_plan import BandPlan
from tests.sigmf_check import assert_valid_sigmf

ROOT = Path(__file__).resolve().parents[1]


def test_measure_once_prints_one_calibrated_reading_as_json():
    out = subprocess.run([sys.executable, "-m", "node.cli", "measure", "--once", "--arg", "seed=1",
                          "--arg", "noise_figure_db=7", "--bandwidth-hz", "10e6"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout  # fmt: skip
    m = json.loads(out)
    assert m["node_id"] == "adhoc" and m["bandwidth_hz"] == 10e6 and not m["saturated"]
    assert m["power_dbm"] == pytest.approx(-174 + 7 + 10 * math.log10(10e6), abs=0.2)  # thermal noise at NF


def test_measure_can_write_the_buffer_as_valid_sigmf_one_recording_per_reading(tmp_path, capsys):
    cfg = write_config(tmp_path, simulated_node_toml())
    assert main(["measure", "--config", str(cfg), "--count", "2", "--sigmf", str(tmp_path / "iq")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and lines[1]["power_dbm"] == pytest.approx(-60.0, abs=0.3)
    assert [m["seq"] for m in lines] == [0, 1]  # each reading is its own
    metas = sorted((tmp_path / "iq").glob("*.sigmf-meta"))
    assert len(metas) == 2
    recordings = [assert_valid_sigmf(meta) for meta in metas]
    assert [r.get_annotations()[0]["rftwin:measurement"]["seq"] for r in recordings] == [0, 1]
    assert recordings[0].get_global_field("core:extensions") == [{"name": "rftwin", "version": "1.0.0", "optional": True}]


def test_measure_rejects_a_bad_backend_argument(capsys):
    assert main(["measure", "--once", "--arg", "seed=minus-one"]) == 2
    assert "radio.args.seed: expected an integer" in capsys.readouterr().err


def test_check_reports_each_step_and_succeeds_on_a_good_setup(tmp_path, capsys):
    srv = IngestServer(tmp_path / "c.db", {"su01": "secret-su01"}).start()
    try:
        cfg = write_config(tmp_path, simulated_node_toml(url=srv.url))
        assert main(["check", "--config", str(cfg)]) == 0
    finally:
        srv.stop()
    out = capsys.readouterr().out
    assert "[ok] config" in out and "[ok] radio: -60." in out and f"[ok] central: {srv.url}: health 200" in out


PLAN_BAND = """[band]
nperseg = 1024
[band.plan]
center_hz = 3.7e9
bandwidth_hz = 100e6
subbands = 16
"""


def test_check_compares_the_nodes_band_plan_with_the_central_units(tmp_path, capsys):
    srv = IngestServer(tmp_path / "c.db", {"su01": "secret-su01"}).start()
    wide = simulated_node_toml(url=srv.url).replace("sample_rate_hz = 30.72e6", "sample_rate_hz = 122.88e6")
    wide = wide[: wide.index("[band]")] + PLAN_BAND + wide[wide.index("[central]"):]
    try:
        cfg = write_config(tmp_path, wide)
        assert main(["check", "--config", str(cfg)]) == 0
        assert f"[ok] band plan: measures the site's plan {srv.band_plan.fingerprint}: 16 sub-bands" in capsys.readouterr().out
        srv.band_plan = BandPlan(3.7e9, subbands=8)
        assert main(["check", "--config", str(cfg)]) == 1
        assert "[FAIL] band plan: [band.plan] a3b08f6922d8 is not the site's" in (out := capsys.readouterr().out)
        assert "subbands: 16 here, 8 there" in out
        legacy = write_config(tmp_path, simulated_node_toml(url=srv.url), "legacy.toml")  # explicit sub-bands
        assert main(["check", "--config", str(legacy)]) == 0
        assert "[ok] band plan: [band] follows no band plan" in (out := capsys.readouterr().out)
        assert "set [band.plan] center_hz = 3.7e+09, bandwidth_hz = 1e+08, scs_hz = 30000, prbs = 273, subbands = 8" in out
    finally:
        srv.stop()


def test_check_fails_when_the_central_unit_is_unreachable_or_the_radio_saturates(tmp_path, capsys):
    cfg = write_config(tmp_path, simulated_node_toml(url="http://127.0.0.1:9", emitter_dbm=-5.0))
    assert main(["check", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] radio:" in out and "SATURATED" in out and "[FAIL] central: ConnectError" in out


def test_check_of_a_bad_config_exits_2_naming_the_key(tmp_path, capsys):
    cfg = write_config(tmp_path, simulated_node_toml().replace("gain_db = 30.0", "gain_db = 300.0"))
    assert main(["check", "--config", str(cfg)]) == 2
    assert "radio.gain_db: 300 is outside" in capsys.readouterr().out


def test_status_shows_what_the_agent_last_reported(tmp_path, capsys):
    srv = IngestServer(tmp_path / "c.db", {"su01": "secret-su01"}).start()
    try:
        cfg = write_config(tmp_path, simulated_node_toml(url=srv.url))
        assert main(["status", "--config", str(cfg)]) == 1  # never ran
        assert main(["run", "--config", str(cfg), "--duration", "0.5"]) == 0
    finally:
        srv.stop()
    capsys.readouterr()
    assert main(["status", "--config", str(cfg), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["node_id"] == "su01" and st["readings"] >= 5 and st["uploaded"] == st["readings"]
    assert main(["status", "--config", str(cfg)]) == 0
    assert "readings" in capsys.readouterr().out


def test_a_world_backed_simulated_node_senses_the_scenarios_jammer(tmp_path, capsys):
    """``[radio.args] world, scenario``: the node's radio senses the true maps and the scenario's clock."""
    import textwrap
    import time

    from tests.test_node_simworld import LEGIT_AND_JAMMER, synthetic_maps

    synthetic_maps(tmp_path)
    (tmp_path / "scenario.toml").write_text(textwrap.dedent(LEGIT_AND_JAMMER))
    readings = {}
    for label, started_s_ago in (("before", 10.0), ("during", 100.0)):  # the jammer starts at t = 30 s
        world_args = (f'world = "world.npz"\nscenario = "scenario.toml"\nsu_id = "near"\n'
                      f"start_time_s = {time.time() - started_s_ago}\n")  # fmt: skip
        text = simulated_node_toml().replace("seed = 3\n", "seed = 3\n" + world_args)
        text = text.replace("[[radio.args.emitters]]\npower_dbm = -60.0\nbandwidth_hz = 18e6\nwaveform = \"ofdm\"\n", "")
        assert main(["measure", "--once", "--config", str(write_config(tmp_path, text))]) == 0
        readings[label] = json.loads(capsys.readouterr().out)["power_dbm"]
    # near SU: the legitimate gNB at (8.5, 6.5) arrives at 20 - 60 - 17 - 6.5 = -63.5 dBm; the jammer
    # at (1.5, 1.5) at 20 - 60 - 3 - 1.5 = -44.5 dBm once it is on.
    assert readings["before"] == pytest.approx(-63.5, abs=0.3)
    assert readings["during"] == pytest.approx(10 * math.log10(10 ** -6.35 + 10 ** -4.45), abs=0.3)
