"""``rftwin-sim make-world``: the physical twin the simulated nodes sense, and its scenario."""

from __future__ import annotations

import pytest

from contracts.gain_maps import GainMapFile
from sim.cli import main
from sim.world import World
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
    # the demo scenario (AGVs in the paper's 40 m hall) does not fit the tiny hall: said at once
    assert main(["make-world", "--site", site, "--out", str(tmp_path / "w2")]) == 2
    assert "emitter 'agv-1'" in capsys.readouterr().err
