"""The band plan: the sub-band grid the site file declares, the nodes measure and the central unit
serves; readings name it, and a node measuring another plan is flagged instead of mixed in."""

from __future__ import annotations

import dataclasses
import tomllib

import numpy as np
import pytest

from contracts.band_plan import SUBBAND_LEAKAGE_DB, BandPlan, BandPlanError, neighbour_sum, own_power, own_power_scatter
from central.twin.site import SiteError, resolve_site, site_from_dict, site_to_toml
from node.protocol import Measurement, ProtocolError


def test_a_100_mhz_carrier_is_16_groups_of_17_or_18_prbs_that_tile_its_prb_grid():
    plan = BandPlan(3.7e9)
    grid = plan.grid
    assert plan.prbs == 273 and len(grid) == 16  # 3GPP: 273 PRBs of 360 kHz in 100 MHz at 30 kHz spacing
    assert [b.first_prb for b in grid] == [0] + [b.last_prb + 1 for b in grid[:-1]] and grid[-1].last_prb == 272
    assert {b.last_prb - b.first_prb + 1 for b in grid} == {17, 18}
    assert all(a.high_hz == pytest.approx(b.low_hz) for a, b in zip(grid, grid[1:]))
    assert grid[0].low_hz == pytest.approx(3.7e9 - 273 * 360e3 / 2) and grid[-1].high_hz == pytest.approx(3.7e9 + 273 * 360e3 / 2)
    assert plan.describe([6, 5]) == "sub-bands 5–6 (PRBs 85–118)"
    assert plan.describe([0, 1, 15]) == "sub-bands 0–1 (PRBs 0–33), 15 (PRBs 255–272)"


def test_equal_plans_share_a_fingerprint_and_differences_are_named():
    a, b = BandPlan(3.7e9), BandPlan(3.7e9, subbands=8)
    assert a.fingerprint == BandPlan.from_dict({"center_hz": 3.7e9}).fingerprint != b.fingerprint
    assert a.differences(b) == ["subbands: 16 here, 8 there"] and a.differences(a) == []


@pytest.mark.parametrize("table, why", [
    ({"center_hz": 3.7e9, "bandwidth_hz": 35e6}, "no standard PRB count for 35 MHz"),
    ({"center_hz": 3.7e9, "prbs": 300}, "do not fit in 100 MHz"),
    ({"center_hz": 3.7e9, "subbands": 65}, "band.subbands must be a whole number in 1..64"),
    ({"center_hz": 3.7e9, "subbands": 2.5}, "band.subbands"),
    ({"center_hz": -1.0}, "band.center_hz must be a number > 0"),
    ({"center_hz": 3.7e9, "width": 1}, "unknown keys ['width']"),
    ({}, "band.center_hz is required"),
])  # fmt: skip
def test_a_plan_that_cannot_be_is_refused_with_the_field(table, why):
    with pytest.raises(BandPlanError, match=why.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        BandPlan.from_dict(table)


def test_the_site_file_declares_the_plan_and_round_trips_it_without_changing_the_maps_key():
    site = resolve_site("factory-hall-a")
    assert site.band_plan == BandPlan(3.7e9, 100e6, 30e3, 273, 16)
    again = site_from_dict(tomllib.loads(site_to_toml(site)))
    assert again == site
    narrower = dataclasses.replace(site, band_plan=BandPlan(3.7e9, 40e6))
    assert narrower.content_hash() == site.content_hash()  # the traced gains do not depend on the grid
    doc = tomllib.loads(site_to_toml(site))
    doc["band"]["subbands"] = 0
    with pytest.raises(SiteError, match="band.subbands"):
        site_from_dict(doc)


def test_a_reading_names_its_plan_and_a_malformed_name_is_refused():
    m = Measurement("su01", 0, 1_700_000_000_000_000_000, 3.7e9, 98.28e6, -60.0, (-70.0,) * 16, band_plan="a3b08f6922d8")
    assert Measurement.from_dict(m.to_dict()) == m
    assert Measurement.from_dict({k: v for k, v in m.to_dict().items() if k != "band_plan"}).band_plan == ""
    with pytest.raises(ProtocolError, match="band_plan must be"):
        Measurement.from_dict({**m.to_dict(), "band_plan": "not hex!"})


def test_own_power_undoes_the_estimators_leakage_exactly_even_next_to_a_link_60_db_up():
    own = np.full(8, 1.0)
    own[4] = 1e6
    read = own + 10 ** (SUBBAND_LEAKAGE_DB / 10) * neighbour_sum(own)
    assert own_power(read, SUBBAND_LEAKAGE_DB) == pytest.approx(own, rel=1e-9)


def test_the_scatter_left_in_own_power_is_the_readings_own_far_from_a_strong_link_and_its_leakages_next_to_it():
    lam = 10 ** (SUBBAND_LEAKAGE_DB / 10)
    x = np.full(8, 1.0)
    x[4] = 1e6  # readings (mW): one sub-band 60 dB up
    s = own_power_scatter(x, SUBBAND_LEAKAGE_DB)
    assert s[0] == pytest.approx(1.0, rel=0.01)  # nothing strong within two sub-bands
    assert s[3] == pytest.approx(lam * 1e6, rel=0.05)  # first order: the neighbour's leakage taken out
    assert s[2] == pytest.approx(np.hypot(1.0, lam**2 * 1e6), rel=0.05)  # second order: put back two away

