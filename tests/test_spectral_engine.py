"""The detection engine with the spectral test: sub-band readings and scheduler allocations in,
characterised alarms out (class, sub-bands to avoid, EIRP, region, countermeasure), stored and served."""

from __future__ import annotations

import json

import numpy as np
import pytest

from central.detection.engine import DetectionEngine, EngineConfig
from central.live import TxContext
from central.twin.gain_maps import GainMaps
from central.twin.grid import PlaneGrid
from central.twin.predictor import Predictor
from models.detectors.spectral import FORMAT
from node.protocol import Measurement
from tests.test_spectral_detection import HALL, PLAN, SHARES, SUS, gain_db

K = PLAN.subbands
S = 1_000_000_000
T0 = 1_700_000_000 * S
NX, NY = int(HALL[0]), int(HALL[1])
TXS = {"tx-1": (4.0, 3.0, 1.5), "tx-2": (16.0, 7.0, 1.5)}


def predictor() -> Predictor:
    xs, ys = np.meshgrid(np.arange(NX) + 0.5, np.arange(NY) + 0.5)
    g = gain_db(np.column_stack([xs.ravel(), ys.ravel()])).T.reshape(len(SUS), NY, NX)
    maps = GainMaps("k", "t", [f"su{j}" for j in range(len(SUS))], np.column_stack([SUS, np.full(len(SUS), 1.5)]),
                    PlaneGrid(1.0, NX, NY, 1.5, np.ones((NY, NX), bool)), g.astype(np.float32), ["paths"] * len(SUS))  # fmt: skip
    return Predictor(maps, -95.0, (HALL[0], HALL[1], 5.0))


def allocations(slot: int) -> dict[str, tuple[int, ...]]:
    rng = np.random.default_rng(slot)
    start, a, b = int(rng.integers(K)), int(rng.integers(2, 6)), int(rng.integers(2, 6))
    return {"tx-1": tuple(sorted((start + i) % K for i in range(a))),
            "tx-2": tuple(sorted((start + a + i) % K for i in range(b)))}  # fmt: skip


class Hall:
    """Two scheduled transmitters (allocations change every 10 snapshots), 1 dB model error per link, a
    jammer when asked; readings per SU and sub-band as the nodes send them."""

    def __init__(self, engine: DetectionEngine, seed: int = 0):
        self.engine, self.rng, self.i = engine, np.random.default_rng(seed), 0

    def step(self, jammer=None):
        """One snapshot 0.1 s later; ``jammer``: (xy, EIRP dBm per sub-band) or None."""
        t = T0 + self.i * S // 10
        alloc = allocations(self.i // 10)
        ctx = [TxContext(tx, t, pos, 20.0, allocation=tuple((b, 20.0 + SHARES[b]) for b in alloc[tx])) for tx, pos in TXS.items()]
        p = np.full((2, K), -np.inf)
        for k, c in enumerate(ctx):
            for b, dbm in c.allocation:
                p[k, b] = dbm
        err = self.rng.normal(0, 1.0, (2, len(SUS)))
        mw = (10 ** ((p[:, None, :] + gain_db(np.array(list(TXS.values()))[:, :2])[..., None] + err[..., None]) / 10)).sum(axis=0)
        widths = np.array([b.width_hz for b in PLAN.grid])
        mw = mw + 10 ** (-95.0 / 10) * widths / PLAN.occupied_hz * 10 ** (self.rng.normal(0, 0.1, (len(SUS), K)) / 10)
        if jammer is not None:
            xy, eirp = jammer
            mw = mw + 10 ** ((eirp[None, :] + gain_db(np.array([xy]))[0][:, None]) / 10)
        dbm = 10 * np.log10(mw)
        self.engine.on_context(ctx)
        self.engine.on_measurements(
            Measurement(f"su{j}", self.i + 1, t - 5 * 10**7, PLAN.center_hz, PLAN.occupied_hz, float(10 * np.log10(mw[j].sum())),
                        tuple(map(float, dbm[j])), band_plan=PLAN.fingerprint)
            for j in range(len(SUS)))  # fmt: skip
        self.i += 1
        return self.engine.evaluate(t)


def narrowband(subbands, dbm) -> np.ndarray:
    return np.where(np.isin(np.arange(K), subbands), dbm, -np.inf)


@pytest.fixture
def engine():
    eng = DetectionEngine(predictor(), EngineConfig(localise=False, raise_k=2, raise_n=3, clear_m=5), band_plan=PLAN)
    hall = Hall(eng, seed=1)
    normal = [hall.step() for _ in range(400)]
    assert all(s.spectral_score is None for s, _ in normal)  # nothing learned yet
    meas = np.array([[su.subband_measured_dbm for su in s.sus] for s, _ in normal], dtype=float)
    pred = np.array([[su.subband_predicted_dbm for su in s.sus] for s, _ in normal], dtype=float)
    eng.learn_spectral(meas, pred)
    return eng, hall


def test_a_narrowband_jammer_raises_an_alarm_that_names_the_sub_bands_to_avoid(engine):
    eng, hall = engine
    quiet = [hall.step() for _ in range(100)]
    assert not any(tr for _, tr in quiet), "false alarm in normal operation"
    raised = []
    for _ in range(30):
        snap, trs = hall.step(jammer=((12.0, 6.0), narrowband([5, 6], 7.0)))
        raised += [tr for tr in trs if tr.event == "raised"]
    assert snap.score is None and snap.spectral_score > snap.spectral_threshold  # no wideband detector at all
    assert snap.spectral_anomalous is True and snap.wideband_anomalous is None  # which detector saw it
    assert sum(bool(s.spectral_anomalous) for s, _ in quiet) < 10  # single crossings, no alarm (None: reallocating)
    assert snap.affected_subbands == (5, 6)
    assert len(raised) == 1
    alarm = eng.residual_alarms.active
    inter = alarm.interference
    assert inter.interference_class == "narrowband" and inter.subbands == (5, 6)
    assert alarm.avoid_subbands == (5, 6)
    assert inter.countermeasure.startswith("narrowband: exclude sub-bands 5–6 (PRBs 85–")
    assert abs(inter.eirp_dbm - 10.0) < 2.0
    assert np.hypot(alarm.suspected_position_m[0] - 12.0, alarm.suspected_position_m[1] - 6.0) <= 2.0
    assert max(inter.likelihood.values) == 1.0 and inter.likelihood.shape == (NY, NX)
    d = alarm.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["avoid_subbands"] == [5, 6] and d["interference"]["interference_class"] == "narrowband"

    cleared = []
    for _ in range(60):
        _, trs = hall.step()
        cleared += [tr for tr in trs if tr.event == "cleared"]
    assert len(cleared) == 1 and cleared[0].alarm.avoid_subbands == ()  # nothing to avoid once cleared
    assert len(eng.interference.findings) == 0  # the next alarm starts a fresh history


def test_an_emitter_following_a_transmitters_allocation_is_called_deceptive(engine):
    eng, hall = engine
    for _ in range(40):
        alloc = allocations(hall.i // 10)
        hall.step(jammer=((12.0, 6.0), narrowband(alloc["tx-2"], 15.0 + SHARES)))
    inter = eng.residual_alarms.active.interference
    assert inter.interference_class == "deceptive" and inter.mimics_tx == "tx-2"
    assert "mimicking TX tx-2" in inter.countermeasure


def test_the_spectral_test_is_saved_with_the_detectors_and_loaded_again(engine, tmp_path):
    eng, hall = engine
    from models.detectors import make_detector

    rows = np.array([[su.residual_db for su in hall.step()[0].sus] for _ in range(60)], dtype=float)
    eng.set_detector(make_detector("ed", target_far=0.01).fit(rows))
    eng.save_detectors(tmp_path)
    again = DetectionEngine(predictor(), eng.config, band_plan=PLAN)
    again.load_detectors(tmp_path)
    assert again.spectral_detector.threshold == eng.spectral_detector.threshold
    np.testing.assert_array_equal(again.spectral_detector.contrast_stats.sigma_db, eng.spectral_detector.contrast_stats.sigma_db)


def test_a_spectral_test_of_an_earlier_release_is_dropped_and_the_wideband_detector_still_loads(engine, tmp_path, caplog):
    eng, hall = engine
    from models.detectors import make_detector

    rows = np.array([[su.residual_db for su in hall.step()[0].sus] for _ in range(60)], dtype=float)
    eng.set_detector(make_detector("ed", target_far=0.01).fit(rows))
    eng.save_detectors(tmp_path)
    meta = tmp_path / "spectral.json"
    meta.write_text(meta.read_text().replace(FORMAT, "rftwin-spectral-detector/1"))
    again = DetectionEngine(predictor(), eng.config, band_plan=PLAN)
    with caplog.at_level("ERROR"):
        det = again.load_detectors(tmp_path)
    assert det.threshold == eng.detector.threshold and again.spectral_detector is None
    assert "learn it again" in caplog.text and "wideband detector runs alone" in caplog.text


def test_the_store_keeps_what_the_interference_is_and_tells_the_scheduler_when_it_changes(engine, tmp_path):
    """Raised with what the interference is; "updated" for a receiver when the sub-bands to avoid change."""
    import dataclasses

    from central.store import Store

    eng, hall = engine
    for _ in range(30):
        hall.step(jammer=((12.0, 6.0), narrowband([9], 10.0)))
    alarm = eng.residual_alarms.active
    with Store(tmp_path / "c.db") as store:
        store.set_webhook_urls(["http://127.0.0.1:9/hook"])
        stored = store.put_alarm(alarm)
        assert store.alarm(stored.id).interference == alarm.interference and store.alarm(stored.id).avoid_subbands == (9,)
        store.put_alarm(stored)  # nothing a scheduler acts on changed: no event
        moved = dataclasses.replace(stored.interference, subbands=(9, 10), avoid_subbands=(9, 10))
        store.put_alarm(dataclasses.replace(stored, interference=moved))
        events = [json.loads(r[0]) for r in store._r().execute("SELECT body FROM webhook_outbox ORDER BY id")]
    assert [e["event"] for e in events] == ["raised", "updated"]
    assert events[0]["alarm"]["avoid_subbands"] == [9] and events[1]["alarm"]["avoid_subbands"] == [9, 10]
