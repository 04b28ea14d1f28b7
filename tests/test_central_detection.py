"""Live detection: snapshot assembly, hysteresis, saturation rule, localiser, engine end to end.

Synthetic measurements throughout. Ray tracing only through the tiny hall (tests/conftest.py): the
2-SU ``tiny_twin`` for residual arithmetic, and a 6-SU variant of the same hall for localisation
(two SUs cannot pin down a point source of unknown power).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from central.detection import (
    INSUFFICIENT,
    NO_DETECTOR,
    AlarmTracker,
    EngineConfig,
    DetectionEngine,
    PointSourceLocaliser,
    SnapshotAssembler,
)
from central.live import TxContext
from central.twin.gain_maps import GainMaps
from central.twin.grid import PlaneGrid
from central.twin.predictor import Predictor, dbm_to_mw
from models.detectors import EnergyDetector, LofDetector
from node.protocol import Measurement

S = 1_000_000_000  # ns per second
T0 = 1_700_000_000 * S


# ---------------------------------------------------------------------------------------- helpers


def free_space_predictor(n_su=6, nx=12, ny=10, noise_dbm=-100.0):
    """A hand-made twin: 1 m cells, gain = −40 dB − 20·log10(distance) to SUs round the hall."""
    rng = np.random.default_rng(0)
    su_xy = np.c_[rng.uniform(0.5, nx - 0.5, n_su), rng.uniform(0.5, ny - 0.5, n_su)]
    X, Y = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5)
    d = np.hypot(X[None] - su_xy[:, 0, None, None], Y[None] - su_xy[:, 1, None, None])
    gain = (-40.0 - 20.0 * np.log10(np.maximum(d, 0.3))).astype(np.float32)
    grid = PlaneGrid(1.0, nx, ny, 1.5, np.ones((ny, nx), bool))
    su_pos = np.c_[su_xy, np.full(n_su, 1.5)]
    maps = GainMaps("k", "synthetic", [f"su{j}" for j in range(n_su)], su_pos, grid, gain, ["paths"] * n_su)
    return Predictor(maps, noise_dbm, (float(nx), float(ny), 4.0))


def meas(node, seq, t_ns, power, saturated=False):
    return Measurement(node, seq, t_ns, 3.7e9, 20e6, float(power), saturated=saturated)


def feed(engine, t_ns, powers_dbm, saturated=(), seq=[0]):
    seq[0] += 1
    engine.on_measurements(
        meas(su, seq[0], t_ns, p, su in saturated) for su, p in zip(engine.su_ids, powers_dbm)
    )


def true_power(predictor, tx_xy, tx_dbm, jammer_xy=None, jammer_dbm=20.0):
    """Physical-world power at the SUs: legitimate TXs (+ jammer) summed in mW, plus noise."""
    p = predictor.predict(np.asarray(tx_xy, float), np.asarray(tx_dbm, float))
    if jammer_xy is None:
        return p
    g = predictor.lookup(np.asarray(jammer_xy, float)[None]).gain_db[0]
    return 10 * np.log10(dbm_to_mw(p) + dbm_to_mw(jammer_dbm + g))


@pytest.fixture(scope="module")
def tiny_twin6(tiny_site, tiny_settings, tmp_path_factory):
    """The tiny hall with six SUs around the cabinet (real Sionna RT maps, a few seconds)."""
    from central.twin import Twin
    from central.twin.site import SensingUnit

    sus = [("a", (0.7, 0.7, 1.0)), ("b", (7.3, 0.6, 2.5)), ("c", (0.6, 5.3, 2.5)),
           ("d", (7.4, 5.4, 1.0)), ("e", (4.1, 5.5, 2.9)), ("f", (4.2, 0.4, 2.9))]  # fmt: skip
    site = dataclasses.replace(tiny_site, name="tiny-hall-6", sensing_units=tuple(SensingUnit(i, p) for i, p in sus))
    return Twin.load(site, tiny_settings, cache_dir=tmp_path_factory.mktemp("maps6"))


# ---------------------------------------------------------------------------------------- assembly


def test_stale_and_saturated_sus_are_marked_not_used():
    pred = free_space_predictor()
    asm = SnapshotAssembler(pred, stale_s=1.0)
    t = T0 + 10 * S
    asm.update(meas("su0", 1, t - S // 10, -60.0))
    asm.update(meas("su1", 1, t - 3 * S, -61.0))  # stale
    asm.update(meas("su2", 1, t, -20.0, saturated=True))
    asm.update(meas("su3", 1, t + 5 * S, -62.0))  # node clock far ahead: stale too
    for j in (4, 5):
        asm.update(meas(f"su{j}", 1, t, -70.0))
    r = asm.assemble(t)
    assert r.stale.tolist() == [False, True, False, True, False, False]
    assert r.saturated.tolist() == [False, False, True, False, False, False]
    assert r.usable.tolist() == [True, False, False, False, True, True]
    assert np.isnan(r.residual_db[[1, 2, 3]]).all() and np.isfinite(r.residual_db[[0, 4, 5]]).all()
    states = r.su_states()
    assert states[1].measured_dbm is None and states[1].residual_db is None and states[1].stale
    assert states[2].measured_dbm == -20.0 and states[2].residual_db is None and states[2].saturated
    assert states[0].residual_db == pytest.approx(-60.0 - (-100.0))  # no context: the noise floor
    # a never-seen SU is stale
    assert SnapshotAssembler(pred).assemble(t).stale.all()


def test_assembler_ordering_unknown_nodes_and_context_rules():
    pred = free_space_predictor()
    asm = SnapshotAssembler(pred, stale_s=1.0, context_max_age_s=2.0, node_to_su={"node-a": "su0"})
    assert asm.update(meas("node-a", 5, T0, -50.0))
    assert not asm.update(meas("node-a", 3, T0 - S, -40.0))  # replayed old record
    assert asm.update(meas("node-a", 1, T0 + S, -45.0))  # spool wiped, seq restarted: time wins
    assert not asm.update(meas("su0", 9, T0, -1.0))  # not in the mapping
    assert asm.stats["unknown_node"] == 1 and asm.stats["out_of_order"] == 1
    assert asm.assemble(T0 + S).measured_dbm[0] == -45.0

    asm.update_context(TxContext("ue1", T0, (3.0, 4.0, 1.5), 20.0))
    asm.update_context(TxContext("ue2", T0 - 10 * S, (6.0, 4.0, 1.5), 20.0))  # too old
    asm.update_context(TxContext("ue3", T0, (12.4, -0.3, 1.5), 10.0))  # just outside the hall: clipped
    assert not asm.update_context(TxContext("ue4", T0, (float("nan"), 1.0, 1.5), 20.0))
    r = asm.assemble(T0)
    assert [c.tx_id for c in r.txs] == ["ue1", "ue3"]
    np.testing.assert_allclose(r.predicted_dbm, pred.predict([[3.0, 4.0], [12.0, 0.0]], [20.0, 10.0]))
    assert asm.stats["contexts_clipped"] >= 1
    assert asm.remove_context("ue1") and [c.tx_id for c in asm.assemble(T0).txs] == ["ue3"]


def test_residuals_for_a_known_context_on_the_tiny_twin(tiny_twin):
    pred = tiny_twin.predictor
    cg = pred.cell_gains()
    c = 9  # a valid cell: the TX stands on its centre, so the gain is the map value, no interpolation
    tx = cg.positions_m[c]
    asm = SnapshotAssembler(pred)
    asm.update_context(TxContext("ue", T0, tuple(tx), 17.0))
    expected = 10 * np.log10(10 ** ((17.0 + cg.gain_db[c]) / 10) + 10 ** (tiny_twin.site.noise_floor_dbm / 10))
    offsets = np.array([2.5, -4.0])
    for j, su in enumerate(asm.su_ids):
        asm.update(meas(su, 1, T0, expected[j] + offsets[j]))
    r = asm.assemble(T0)
    assert r.su_ids == tuple(tiny_twin.site.su_ids)
    np.testing.assert_allclose(r.predicted_dbm, expected, atol=1e-3)
    np.testing.assert_allclose(r.residual_db, offsets, atol=1e-3)
    snap_sus = r.su_states()
    assert [s.position_m for s in snap_sus] == [tuple(p) for p in tiny_twin.site.su_positions_m]


# ---------------------------------------------------------------------------------------- hysteresis


def test_one_anomalous_snapshot_does_not_raise_k_of_n_does_m_normal_clear():
    ids = iter([41, 42])
    seen = []
    tr = AlarmTracker("residual", raise_k=3, raise_n=5, clear_m=4, new_id=lambda a: seen.append(a) or next(ids),
                      update_interval_s=0)  # fmt: skip
    t = [T0 + i * S // 10 for i in range(40)]
    assert tr.update(t[0], True, 5.0, ("su1",), (1.0, 2.0)) == []  # one noisy window
    for i in range(1, 5):
        assert tr.update(t[i], False) == []
    assert tr.active is None
    assert tr.update(t[5], True, 4.0) == []
    assert tr.update(t[6], False) == []
    assert tr.update(t[7], None) == []  # unknown counts neither way
    assert tr.update(t[8], True, 6.0) == []  # 2 of the last 5
    (raised,) = tr.update(t[9], True, 7.0, ("su2", "su3"), (3.0, 4.0))  # 3 of the last 5
    assert raised.event == "raised"
    a = raised.alarm
    assert (a.id, a.kind, a.state, a.start_ns, a.end_ns) == (41, "residual", "active", t[5], None)
    assert a.peak_score == 7.0 and a.affected_sus == ("su2", "su3") and a.suspected_position_m == (3.0, 4.0)
    assert seen[0].id == 0 and seen[0].start_ns == t[5] and seen[0].kind == "residual"  # the store can insert it
    (upd,) = tr.update(t[10], True, 9.0, ("su2",), (3.5, 4.0))
    assert upd.event == "updated" and upd.alarm.peak_score == 9.0 and upd.alarm.suspected_position_m == (3.5, 4.0)
    assert tr.update(t[11], True, 8.0, ("su2",), (3.5, 4.0)) == []  # nothing changed (peak stays 9)
    for i in (12, 13, 14):
        assert tr.update(t[i], False) == []
    assert tr.update(t[15], True, 8.0, ("su2",), (3.5, 4.0)) == []  # streak broken: still active
    for i in (16, 17, 18):
        assert tr.update(t[i], False) == []
    (cleared,) = tr.update(t[19], False)
    assert cleared.event == "cleared" and cleared.alarm.state == "cleared"
    assert cleared.alarm.id == 41 and cleared.alarm.end_ns == t[16] and cleared.alarm.peak_score == 9.0
    assert tr.active is None
    # a fresh alarm needs k fresh hits and gets a new id
    assert tr.update(t[20], True, 5.0) == [] and tr.update(t[21], True, 5.0) == []
    assert tr.update(t[22], True, 5.0)[0].alarm.id == 42


def test_updates_are_rate_limited():
    tr = AlarmTracker("residual", 1, 1, 3, update_interval_s=1.0)
    assert tr.update(T0, True, 1.0)[0].event == "raised"
    assert tr.update(T0 + S // 10, True, 2.0) == []  # changed, but within the interval
    (u,) = tr.update(T0 + S, True, 2.0)
    assert u.event == "updated" and u.alarm.peak_score == 2.0


# ---------------------------------------------------------------------------------------- saturation


def test_saturation_alarm_without_any_detector():
    pred = free_space_predictor()
    eng = DetectionEngine(pred, EngineConfig(saturation_k=2, saturation_clear_m=3))
    powers = np.full(6, -70.0)
    t = T0
    feed(eng, t, powers)
    snap, tr = eng.evaluate(t)
    assert tr == [] and snap.score is None and snap.reason == NO_DETECTOR and not snap.anomalous
    t += S // 10
    feed(eng, t, powers, saturated={"su4"})
    snap, tr = eng.evaluate(t)
    assert tr == [] and snap.anomalous and snap.reason == "saturation"  # one saturated window: no alarm yet
    t += S // 10
    feed(eng, t, powers, saturated={"su4"})
    snap, tr = eng.evaluate(t)
    (raised,) = tr
    a = raised.alarm
    assert raised.event == "raised" and a.kind == "saturation" and a.affected_sus == ("su4",)
    su_xy = pred.maps.su_positions_m[4, :2]
    assert np.hypot(*(np.array(a.suspected_position_m) - su_xy)) < 1.0  # the cell next to the SU
    assert eng.active_alarms() == [a]
    for _ in range(3):
        t += S // 10
        feed(eng, t, powers)
        snap, tr = eng.evaluate(t)
    assert [x.event for x in tr] == ["cleared"] and tr[0].alarm.id == a.id


# ---------------------------------------------------------------------------------------- localiser


def test_localiser_finds_a_point_source_on_the_tiny_twin_cells(tiny_twin6):
    pred = tiny_twin6.predictor
    loc = PointSourceLocaliser.from_predictor(pred)
    cells = loc.positions_m
    legit = np.array([[1.5, 1.5], [6.5, 4.5]])
    base = pred.predict(legit, [15.0, 15.0])
    rng = np.random.default_rng(1)
    errs = []
    for c in range(loc.num_cells):
        meas_db = true_power(pred, legit, [15.0, 15.0], cells[c, :2], 10.0)
        exact = loc.locate(meas_db, base)
        assert exact.cell == c and exact.power_dbm == pytest.approx(10.0, abs=0.01)
        noisy = loc.locate(meas_db + rng.normal(0, 0.3, pred.num_su), base)
        errs.append(np.hypot(*(np.array(noisy.position_m[:2]) - cells[c, :2])))
    errs = np.array(errs)
    cell = tiny_twin6.site.tx_plane.cell_size_m
    # with 0.3 dB of noise: mostly the right cell or a neighbour
    assert np.median(errs) <= cell and np.quantile(errs, 0.8) <= 2 * cell + 1e-9, np.sort(errs)


def test_localiser_ignores_unusable_sus_and_needs_excess():
    pred = free_space_predictor(n_su=8)
    loc = PointSourceLocaliser.from_predictor(pred)
    base = pred.predict([[2.0, 2.0]], [20.0])
    src = loc.positions_m[37, :2]
    m = true_power(pred, [[2.0, 2.0]], [20.0], src, 5.0)
    bad = m.copy()
    bad[[1, 6]] = [30.0, np.nan]  # a saturated reading and a stale SU
    usable = np.ones(8, bool)
    usable[[1, 6]] = False
    assert loc.locate(bad, base, usable).cell == 37
    assert loc.locate(base, base) is None  # no excess anywhere
    assert loc.locate(m, base, np.eye(8, dtype=bool)[0]) is None  # a single SU cannot locate


# ---------------------------------------------------------------------------------------- engine


def test_maybe_evaluate_is_rate_limited_to_one_per_window():
    eng = DetectionEngine(free_space_predictor(), EngineConfig(window_s=0.1))
    assert eng.maybe_evaluate(T0) is not None
    assert eng.maybe_evaluate(T0 + S // 20) is None
    assert eng.next_due_ns == T0 + S // 10
    assert eng.maybe_evaluate(T0 + S // 10) is not None
    assert eng.stats["evaluations"] == 2


def test_lof_falls_back_to_ed_explicitly_when_an_su_is_missing(tmp_path):
    pred = free_space_predictor()
    rng = np.random.default_rng(2)
    eng = DetectionEngine(pred, EngineConfig(detector="lof", detector_params={"n_neighbors": 30}))
    det = eng.learn(rng.normal(0, 1, (300, 6)))
    assert isinstance(det, LofDetector) and isinstance(eng.fallback, EnergyDetector)
    t = T0
    eng.on_context([TxContext("ue", t, (3.0, 3.0, 1.5), 20.0)])
    expected = pred.predict([[3.0, 3.0]], [20.0])
    feed(eng, t, expected + rng.normal(0, 1, 6))
    snap, _ = eng.evaluate(t)
    assert snap.detector == "lof" and snap.threshold == det.threshold and snap.score is not None
    t += 2 * S  # su2 stays silent: its reading goes stale
    eng.on_measurements(meas(su, 2, t, p) for su, p in zip(eng.su_ids, expected) if su != "su2")
    snap, _ = eng.evaluate(t)
    assert snap.detector.startswith("ed (fallback: lof") and snap.threshold == eng.fallback.threshold
    assert snap.sus[2].stale and snap.score is not None
    assert eng.stats["fallback"] == 1
    # too few usable SUs (3 of 6 needed): no score, said so
    t += 2 * S
    eng.on_measurements(meas(su, 3, t, p) for su, p in zip(eng.su_ids[:2], expected))
    snap, _ = eng.evaluate(t)
    assert snap.score is None and snap.reason == INSUFFICIENT and snap.detector == ""
    # detectors persist with the engine's SU order and come back
    eng.save_detectors(tmp_path)
    other = DetectionEngine(pred)
    back = other.load_detectors(tmp_path)
    assert back.kind == "lof" and back.su_ids == list(eng.su_ids) and other.fallback.kind == "ed"


def test_engine_end_to_end_on_the_tiny_twin(tiny_twin6):
    """Normal period → no alarm; a jammer → alarm near it within a few windows; jammer off → cleared."""
    pred = tiny_twin6.predictor
    rng = np.random.default_rng(3)
    valid_xy = pred.cell_gains().positions_m[:, :2]
    model_error = rng.normal(0, 1.0, pred.num_su)  # the twin's fixed per-SU error
    cfg = EngineConfig(window_s=0.1, raise_k=2, raise_n=3, clear_m=5, target_far=0.01)
    ids = iter(range(100, 200))
    eng = DetectionEngine.from_twin(tiny_twin6, cfg, new_alarm_id=lambda alarm: next(ids))
    jammer_xy = np.array([6.5, 1.5])
    state = {"t": T0, "seq": 0}

    def step(jammer=False):
        state["t"] += S // 10
        t = state["t"]
        tx = valid_xy[rng.choice(len(valid_xy), 2, replace=False)] + rng.uniform(-0.3, 0.3, (2, 2))
        tx = np.clip(tx, 0.1, [7.9, 5.9])
        err = rng.normal(0, 0.2, (2, 2))  # the context feed's localisation error
        eng.on_context([TxContext(f"ue{i}", t, (*np.clip(tx[i] + err[i], 0, [8, 6]), 1.5), 14.0) for i in range(2)])
        p = true_power(pred, tx, [14.0, 14.0], jammer_xy if jammer else None, 14.0)
        feed(eng, t - S // 50, p + model_error + rng.normal(0, 0.3, pred.num_su))
        return eng.evaluate(t)

    # offline phase: learn normal statistics from snapshots taken without a detector
    learn = [step()[0] for _ in range(600)]
    assert all(s.reason == NO_DETECTOR for s in learn)
    det = eng.learn(learn, provenance={"phase": "test"})
    assert det.kind == "ed" and det.provenance["phase"] == "test" and det.provenance["site"] == "tiny-hall-6"

    # normal period: no alarm
    for _ in range(100):
        snap, tr = step()
        assert tr == [], tr
    # jammer on
    events = []
    for i in range(30):
        snap, tr = step(jammer=True)
        events += [(i, x) for x in tr]
    assert events and events[0][1].event == "raised" and events[0][0] <= 3
    alarm = events[-1][1].alarm
    assert alarm.kind == "residual" and alarm.id == 100 and alarm.state == "active"
    assert np.hypot(*(np.array(alarm.suspected_position_m) - jammer_xy)) <= 1.5
    assert alarm.affected_sus and alarm.peak_score > det.threshold
    assert snap.reason == "residual" and snap.anomalous
    # jammer off
    cleared = []
    for i in range(10):
        snap, tr = step()
        cleared += [(i, x) for x in tr if x.event == "cleared"]
    assert len(cleared) == 1 and cleared[0][0] == cfg.clear_m - 1
    assert cleared[0][1].alarm.id == 100 and cleared[0][1].alarm.end_ns > alarm.start_ns
    assert eng.active_alarms() == []
    assert snap.to_dict()["sus"][0]["su_id"] == "a"


def test_point_source_detectors_get_the_twins_gains_without_configuration():
    """``detector = "bayes"`` (or "glrt") in the config is enough: the engine hands the detector the twin's
    cell gains, and the live snapshot is scored with the twin's prediction."""
    pred = free_space_predictor()
    rng = np.random.default_rng(5)
    eng = DetectionEngine(pred, EngineConfig(detector="bayes"))
    cg = pred.cell_gains()
    tx = cg.positions_m[rng.integers(0, len(cg.positions_m), 400), :2]
    p_norm = pred.predict(tx[:, None, :], np.full((400, 1), 14.0))
    det = eng.learn(rng.normal(0, 1, (400, 6)), predicted_dbm=p_norm)
    assert det.kind == "bayes" and det.gain_lin.shape == (len(cg.positions_m), 6)
    eng.on_context([TxContext("ue", T0, (3.0, 3.0, 1.5), 14.0)])
    expected = pred.predict([[3.0, 3.0]], [14.0])
    feed(eng, T0, expected + rng.normal(0, 1, 6))
    quiet, _ = eng.evaluate(T0)
    jam = pred.predict([[3.0, 3.0], [9.0, 7.0]], [14.0, 20.0])
    feed(eng, T0 + S // 10, jam + rng.normal(0, 1, 6))
    loud, _ = eng.evaluate(T0 + S // 10)
    assert quiet.detector == loud.detector == "bayes"
    assert loud.score > det.threshold > quiet.score


# ---------------------------------------------------------------------------------------- temporal integration


def test_cusum_gathers_a_persistent_shift_ignores_a_lone_spike_and_recovers_under_its_ceiling():
    from central.detection.sequential import Cusum, CusumSettings

    rng = np.random.default_rng(4)
    c = Cusum(CusumSettings(drift=1.0, threshold=8.0))
    normal = [c.update(T0 + i, float(z)) for i, z in enumerate(rng.normal(0, 1, 20_000))]
    assert not any(s.anomalous for s in normal)  # ARL under H0 ≈ 10⁷ snapshots at these settings
    c.reset()
    assert not c.update(T0, 7.0).anomalous and c.statistic == pytest.approx(6.0)  # one spike: 6 < 8
    assert c.update(T0 + 1, None).statistic == pytest.approx(6.0)  # no score: unchanged
    c.reset()
    for i in range(5):
        c.update(T0 + i, 0.0)  # S stays 0
    states = [c.update(T0 + 100 + i, 2.5) for i in range(10)]  # a shift of 2.5 σ from snapshot 100
    first = next(i for i, s in enumerate(states) if s.anomalous)
    assert first == 5  # 1.5 per step: 7.5 after five, 9 after six
    assert states[first].onset_ns == T0 + 100  # the change point, not the crossing
    for i in range(40):
        c.update(T0 + 200 + i, 10.0)
    assert c.statistic == pytest.approx(16.0)  # the ceiling (2 × threshold)
    back = [c.update(T0 + 300 + i, 0.0).anomalous for i in range(10)]
    assert back.index(False) == 7  # 16 − 8 × 1 = 8 after eight steps: no longer above the threshold


def test_cusum_engine_raises_on_a_jammer_too_weak_for_any_single_snapshot_and_starts_the_alarm_at_its_onset():
    from central.detection.sequential import CusumSettings

    pred = free_space_predictor()
    rng = np.random.default_rng(5)
    normal = rng.normal(0, 1, (3000, 6))  # ED score = mean of 6: N(0, 1/6) when normal
    weak = 0.75 * np.std(normal.mean(axis=1)) * 2.0  # a shift of 1.5 σ of the score, every snapshot

    def run(integration):
        cfg = EngineConfig(target_far=0.01, integration=integration, cusum=CusumSettings(0.5, 5.0), localise=False)
        eng = DetectionEngine(pred, cfg)
        eng.learn(normal)
        t, out = T0, []
        for i in range(60):
            t += S // 10
            residual = np.full(6, weak if i >= 20 else 0.0)
            if i == 10:
                residual = np.full(6, 5 * np.std(normal.mean(axis=1)))  # one spike of 5 σ
            feed(eng, t, -100.0 + residual)  # no context: predicted = the −100 dBm floor
            snap, tr = eng.evaluate(t)
            out += [(i, x) for x in tr]
        return eng, out

    eng, per_snapshot = run("none")
    assert [(i, x.event) for i, x in per_snapshot] == [], "per snapshot: the spike is one window, the jammer under the threshold"
    assert eng.detector.threshold > weak
    eng, integrated = run("cusum")
    assert [x.event for _, x in integrated] == ["raised"], integrated  # the spike: S ≈ 5 − 0.5 = 4.5 < 5
    i, raised = integrated[0]
    assert 20 < i <= 26  # 1.0 per snapshot above the drift: over 5 after five, raised on the second of them
    assert raised.alarm.start_ns == T0 + 21 * (S // 10)  # the first snapshot of the weak jammer
    assert eng.stats["cusum"] > 5.0


def test_the_operating_point_benchmark_replays_the_engines_alarm_rule_exactly():
    """bench/operating_point.py chooses the CUSUM on recorded z, offline: it must raise where the engine does."""
    import importlib.util
    import sys
    from pathlib import Path

    from central.detection.sequential import CusumSettings

    bench = Path(__file__).resolve().parents[1] / "bench"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("operating_point", bench / "operating_point.py")
        op = sys.modules["operating_point"] = importlib.util.module_from_spec(spec)  # its dataclass needs it
        spec.loader.exec_module(op)
    finally:
        sys.path.remove(str(bench))
        sys.modules.pop("operating_point", None)
    rng = np.random.default_rng(6)
    settings = CusumSettings(1.0, 6.0)
    cfg = EngineConfig(integration="cusum", cusum=settings, localise=False)
    eng = DetectionEngine(free_space_predictor(), cfg)
    eng.learn(rng.normal(0, 1, (2000, 6)))
    level = np.repeat(rng.choice([0.0, 0.0, 0.3, 1.0], 40), 25)  # stretches of normal and of weak jammers
    t, ts, zs, raised = T0, [], [], []
    for shift in level:
        t += S // 10
        feed(eng, t, -100.0 + shift + rng.normal(0, 1, 6))
        snap, tr = eng.evaluate(t)
        ts.append(t)
        zs.append(eng.normal_score(snap))
        raised += [t for x in tr if x.event == "raised"]
    assert len(raised) >= 3
    assert op.raises(np.array(ts), np.array(zs, dtype=float), settings, cfg) == raised
