"""Spectral snapshots: per SU and sub-band, measured against what the scheduler's allocations predict;
a narrowband jammer in an idle sub-band stands out there while it hides in the band total."""

from __future__ import annotations

import numpy as np
import pytest

from central.detection.assembly import SnapshotAssembler
from central.detection.spectral import SpectralAssembler
from central.live import TxContext
from contracts.band_plan import BandPlan
from node.protocol import Measurement
from tests.test_predictor import make_predictor, plane_db

PLAN = BandPlan(3.7e9, 20e6, subbands=8)
T = 1_700_000_000_000_000_000


def reading(node: str, powers, seq=0, t_ns=T, plan=PLAN.fingerprint, saturated=False) -> Measurement:
    total = 10 * np.log10(np.sum(10 ** (np.asarray(powers) / 10)))
    return Measurement(node, seq, t_ns, 3.7e9, PLAN.occupied_hz, float(total), tuple(map(float, powers)),
                       saturated=saturated, band_plan=plan)  # fmt: skip


@pytest.fixture
def spectral():
    p = make_predictor([plane_db(), plane_db(-70, 1.0, 0.5)], noise_dbm=-95.0)
    return SpectralAssembler(SnapshotAssembler(p), PLAN)


def test_a_jammer_in_an_idle_sub_band_shows_as_excess_power_there_and_only_there(spectral):
    agv = TxContext("agv-1", T, (1.2, 2.1, 1.5), 17.0, allocation=((2, 14.0), (3, 14.0)))
    expected = spectral.predict([agv])
    jammed = expected.copy()
    jammed[:, 6] = 10 * np.log10(10 ** (expected[:, 6] / 10) + 10 ** (-90 / 10))  # 10 pW more in sub-band 6
    for j, su in enumerate(("su0", "su1")):
        assert spectral.update(reading(su, jammed[j]))
    r = spectral.assemble(T + 10**8, [agv])
    assert r.usable.all() and r.busy.tolist() == [False, False, True, True, False, False, False, False]
    assert np.allclose(np.delete(r.residual_db, 6, axis=1), 0.0, atol=1e-9)
    assert (r.residual_db[:, 6] > 1.0).all()  # far above noise-on-noise in the idle sub-band
    assert r.excess_mw[:, 6] == pytest.approx([1e-9, 1e-9], rel=1e-6) and np.allclose(np.delete(r.excess_mw, 6, axis=1), 0, atol=1e-18)
    wide_residual = 10 * np.log10(np.sum(10 ** (jammed / 10), axis=1)) - 10 * np.log10(np.sum(10 ** (expected / 10), axis=1))
    assert (wide_residual < r.residual_db[:, 6]).all()  # the band total dilutes it


def test_readings_of_another_plan_stale_or_saturated_ones_are_not_used(spectral):
    k = PLAN.subbands
    assert not spectral.update(reading("su0", [-100.0] * k, plan="0123456789ab"))
    assert not spectral.update(reading("su0", [-100.0] * k, plan=""))  # sub-bands that follow no plan
    assert not spectral.update(Measurement("su0", 0, T, 3.7e9, 2e7, -90.0, (-95.0,) * 3, band_plan=PLAN.fingerprint))
    assert spectral.update(reading("su0", [-100.0] * k, seq=5))
    assert not spectral.update(reading("su0", [-90.0] * k, seq=4, t_ns=T - 1))  # an older replayed reading
    assert spectral.update(reading("su1", [-100.0] * k, saturated=True))
    r = spectral.assemble(T + 5 * 10**8, [])
    assert r.usable.tolist() == [True, False] and np.isnan(r.residual_db[1]).all()
    assert np.isnan(spectral.assemble(T + 2 * 10**9, []).residual_db).all()  # stale after stale_s = 1 s
    assert spectral.stats == {"readings": 2, "other_plan": 3, "out_of_order": 1}


def test_the_engines_snapshots_carry_each_sus_spectrum_and_the_busy_sub_bands(tmp_path):
    import json

    from central.detection.engine import DetectionEngine, EngineConfig
    from central.store import Store

    p = make_predictor([plane_db(), plane_db(-70, 1.0, 0.5)], noise_dbm=-95.0)
    engine = DetectionEngine(p, EngineConfig(localise=False), band_plan=PLAN)
    agv = TxContext("agv-1", T, (1.2, 2.1, 1.5), 17.0, allocation=((2, 14.0), (3, 14.0)))
    engine.on_context([agv])
    expected = engine.spectral.predict([agv])
    engine.on_measurements([reading("su0", expected[0])])  # su1 never reports: stale
    snap, _ = engine.evaluate(T + 10**8)
    su0, su1 = snap.sus
    assert su0.subband_measured_dbm == pytest.approx(tuple(expected[0])) and su0.subband_predicted_dbm == pytest.approx(tuple(expected[0]))
    assert su1.subband_measured_dbm == () and len(su1.subband_predicted_dbm) == PLAN.subbands
    assert snap.busy_subbands == (2, 3)
    json.dumps(snap.to_dict(), allow_nan=False)  # what the API and the event stream send
    with Store(tmp_path / "c.db") as store:
        store.add_snapshot(snap)
        assert store.snapshots(limit=1) == [snap]
