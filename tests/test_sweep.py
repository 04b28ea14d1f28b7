"""A radio narrower than the band plan sweeps it: step planning, settling after every retune, step
readings (one per step, stamped with its own buffer), the protocol field that says which sub-bands a
reading covers, and the central unit assembling full snapshots from step readings, per sub-band."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from central.detection.assembly import SnapshotAssembler
from central.detection.spectral import SpectralAssembler
from contracts.band_plan import BandPlan
from node.config import ConfigError, load_config
from node.measure import Measurer
from node.protocol import IngestBatch, Measurement, ProtocolError
from node.sdr.base import DiscardAfterRetune
from node.sdr.open import calibration_for, open_backend
from node.sdr.pluto import PlutoSdr
from node.sdr.simulated import Emitter, SimulatedSdr
from node.sweep import SweepError, plan_sweep, usable_span_hz
from tests.fakes.fake_adi import Hardware
from tests.node_configs import simulated_node_toml, write_config
from tests.test_predictor import make_predictor, plane_db

NR100 = BandPlan(3.7e9)  # 273 PRBs at 30 kHz in 16 sub-bands of 17-18 PRBs (6.1-6.5 MHz)
T = 1_700_000_000_000_000_000


# -- planning -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("plan", "rate_hz", "crop", "steps"), [
    (NR100, 25e6, 0.1, 6),  # a stock Pluto's ~20 MHz: six tunings
    (NR100, 30.72e6, 0.1, 5),
    (NR100, 20e6, 0.1, 8),
    (NR100, 61.44e6, 0.2, 3),
    (BandPlan(3.5e9, 40e6, subbands=10), 10e6, 0.05, 5),
    (BandPlan(100e6, 200e3, scs_hz=1e3, prbs=16, subbands=16), 48e3, 0.1, 6),  # the audio bench's plan
])  # fmt: skip
def test_steps_cover_every_sub_band_once_each_wholly_inside_its_usable_span(plan, rate_hz, crop, steps):
    sw = plan_sweep(plan, rate_hz, edge_crop=crop, nperseg=256)
    assert len(sw.steps) == steps and sw.sweeps
    assert [i for s in sw.steps for i in s.subband_ids] == list(range(plan.subbands))  # once each, in order
    half = usable_span_hz(rate_hz, crop) / 2
    for s in sw.steps:
        assert list(s.subband_ids) == list(range(s.subband_ids[0], s.subband_ids[-1] + 1))
        for i, sub in zip(s.subband_ids, s.band.subbands):
            b = plan.grid[i]
            assert s.center_hz - half <= b.low_hz and b.high_hz <= s.center_hz + half  # edge crop respected
            assert s.center_hz + sub.offset_hz == pytest.approx(b.center_hz) and sub.bandwidth_hz == b.width_hz
        assert s.low_hz == pytest.approx(plan.grid[s.subband_ids[0]].low_hz)
        assert s.band.band_plan == plan.fingerprint and s.band.sample_rate_hz == rate_hz
    # the fewest steps: no two neighbouring steps would fit in one tuning
    for a, b in zip(sw.steps, sw.steps[1:]):
        assert b.high_hz - a.low_hz > 2 * half
    sizes = [len(s.subband_ids) for s in sw.steps]
    assert max(sizes) - min(sizes) <= 1  # shared out evenly when they fit


def test_a_plan_inside_one_usable_span_is_one_step_and_a_sub_band_wider_than_it_is_refused():
    one = plan_sweep(BandPlan(3.7e9, 20e6, subbands=8), 30.72e6)
    assert len(one.steps) == 1 and not one.sweeps and one.steps[0].center_hz == pytest.approx(3.7e9)
    with pytest.raises(SweepError, match=r"sub-band 0 \(PRBs 0–16\) is 6\.12 MHz wide, wider than the radio's usable "
                                         r"4\.8 MHz .* raise radio.sample_rate_hz"):  # fmt: skip
        plan_sweep(NR100, 6e6)


def sweeping_toml(rate_hz: float = 25e6, extra_radio: str = "", emitter: str = "", samples: int = 8192) -> str:
    """A simulated node with the 100 MHz plan at 25 MS/s (6 steps); emitters in RF, relative to 3.7 GHz."""
    text = simulated_node_toml(samples=samples).replace("sample_rate_hz = 30.72e6", f"sample_rate_hz = {rate_hz:g}{extra_radio}")
    head, tail = text[: text.index("[radio.args]")], text[text.index("[central]"):]
    return (head + "[radio.args]\nseed = 3\nemitters_center_hz = 3.7e9\n" + emitter
            + "\n[band]\n[band.plan]\ncenter_hz = 3.7e9\nsubbands = 16\n\n" + tail)  # fmt: skip


def test_the_node_config_sweeps_a_plan_wider_than_the_radio(tmp_path):
    cfg = load_config(write_config(tmp_path, sweeping_toml()))
    assert cfg.sweep is not None and len(cfg.sweep.steps) == 6 and cfg.band == cfg.sweep.steps[0].band
    with pytest.raises(ConfigError, match="cannot be swept: sub-band 0"):
        load_config(write_config(tmp_path, sweeping_toml(6e6)))


# -- settling after every retune --------------------------------------------------------------------


def test_a_pluto_sweep_discards_the_settling_buffers_after_every_retune():
    """On a fake shaped like adi.Pluto: every step retunes the LO and reads 1 + discard buffers."""
    hw = Hardware()
    sdr = PlutoSdr("usb:1.2.5", factory=hw.factory, sleep=lambda s: None, discard_buffers_after_retune=3)
    sw = plan_sweep(NR100, 25e6)
    sdr.tune(sw.steps[0].center_hz, 25e6)
    dev = hw.instances[-1]
    m = Measurer("su01", sdr, sw.steps[0].band, SimulatedSdr().receiver.nominal_calibration(), 4096, sw)
    for sweep in range(2):
        before, los = dev.rx_calls, []
        for r in m.sweep():
            los.append(dev.rx_lo)
            assert r.measurement.subband_ids == sw.steps[len(los) - 1].subband_ids
        assert dev.rx_calls - before == 6 * (1 + 3)  # every step: three settling buffers, then the one measured
        assert los == [round(s.center_hz) for s in sw.steps]
    assert m.retunes == 11  # the first step was where the radio was opened


def test_every_backend_discards_a_configurable_count_after_a_retune(tmp_path):
    """The simulated radios get the same rule through DiscardAfterRetune ([radio] discard_buffers_after_retune)."""
    cfg = load_config(write_config(tmp_path, sweeping_toml(extra_radio="\ndiscard_buffers_after_retune = 2")))
    radio = open_backend(cfg)
    assert isinstance(radio, DiscardAfterRetune) and radio.count == 2
    reads = []
    real = radio.backend.read
    radio.backend.read = lambda n: reads.append(n) or real(n)
    m = Measurer.for_config(cfg, radio, calibration_for(cfg))
    assert len(list(m.sweep())) == 6
    assert len(reads) == 6 * 3 and radio.discarded == 12
    radio.close()
    plain = open_backend(load_config(write_config(tmp_path, sweeping_toml())))
    assert isinstance(plain, SimulatedSdr)  # simulated: no LO to settle, no discards unless configured


def test_soapy_sweeps_discard_mtus_after_every_retune():
    from node.sdr.soapy import SoapySdr
    from tests.fakes.fake_soapy import Radio

    radio = Radio(chunk=1000)
    sdr = SoapySdr("driver=fake", soapy=radio.module(), clock_ns=lambda: T, discard_buffers_after_retune=2)
    plan = BandPlan(100e6, 200e3, scs_hz=1e3, prbs=16, subbands=16)
    sw = plan_sweep(plan, 48e3, nperseg=256)
    sdr.tune(sw.steps[0].center_hz, 48e3)
    m = Measurer("su01", sdr, sw.steps[0].band, SimulatedSdr().receiver.nominal_calibration(), 1000, sw)
    firsts = [r.buffer.samples[0].real for r in m.sweep()]
    # the fake counts samples: every buffer starts 2 MTUs (2000 samples) after the previous one ended
    assert np.diff(firsts).tolist() == [3000.0] * 5 and firsts[0] == 2000.0
    sdr.close()


# -- step readings ------------------------------------------------------------------------------------


def test_a_sweeping_node_emits_one_reading_per_step_stamped_with_its_own_buffer(tmp_path):
    jam = NR100.grid[7]  # noise filling sub-band 7 only, -50 dBm
    emitter = (f"[[radio.args.emitters]]\npower_dbm = -50.0\noffset_hz = {jam.center_hz - 3.7e9}\n"
               f"bandwidth_hz = {jam.width_hz * 0.9}\nwaveform = \"noise\"\n")  # fmt: skip
    cfg = load_config(write_config(tmp_path, sweeping_toml(emitter=emitter)))
    radio = open_backend(cfg)
    try:
        readings = [r.measurement for r in Measurer.for_config(cfg, radio, calibration_for(cfg)).sweep()]
    finally:
        radio.close()
    assert [m.subband_ids for m in readings] == [s.subband_ids for s in cfg.sweep.steps]
    assert all(a.t_ns < b.t_ns for a, b in zip(readings, readings[1:]))  # each its own buffer's time
    for m, s in zip(readings, cfg.sweep.steps):
        assert m.f_center_hz == pytest.approx(s.center_hz) and m.bandwidth_hz == pytest.approx(s.span_hz)
        assert m.band_plan == NR100.fingerprint and len(m.subband_powers_dbm) == len(m.subband_ids)
        total = 10 * np.log10(np.sum(10 ** (np.array(m.subband_powers_dbm) / 10)))
        assert m.power_dbm == pytest.approx(total, abs=0.05)  # the power in the sub-bands it covers
        Measurement.from_dict(json.loads(json.dumps(m.to_dict())))  # what the spool and the uplink carry
    powers = {i: p for m in readings for i, p in zip(m.subband_ids, m.subband_powers_dbm)}
    assert sorted(powers) == list(range(16))
    assert powers[7] == pytest.approx(-50.0 - 10 * np.log10(1.0), abs=1.0)  # the jammer, in its own step only
    assert max(p for i, p in powers.items() if i != 7) < -80.0  # thermal noise elsewhere


def test_the_agent_spools_and_uploads_a_reading_per_step(tmp_path):
    from node.agent import Agent
    from tests.ingest_server import IngestServer

    srv = IngestServer(tmp_path / "central.db", {"su01": "secret-su01"}).start()
    try:
        text = sweeping_toml(samples=4096).replace('url = "http://127.0.0.1:9"', f'url = "{srv.url}"')
        cfg = load_config(write_config(tmp_path, text.replace("interval_s = 0.05", "interval_s = 0.2")))
        agent = Agent(cfg, watchdog_s=60)
        agent.run(duration_s=1.0)
        seqs = srv.store.seqs("su01")
        recs = [Measurement.from_dict(srv.store.record("su01", s)) for s in seqs]
    finally:
        srv.stop()
    assert len(recs) >= 6 and len(recs) == agent.status.readings
    ids = [m.subband_ids for m in recs]
    steps = [s.subband_ids for s in cfg.sweep.steps]
    assert ids[:6] == steps and all(i == steps[k % 6] for k, i in enumerate(ids))  # whole sweeps, in order


def test_check_says_how_the_node_will_sweep(tmp_path, capsys):
    from node.cli import main
    from tests.ingest_server import IngestServer

    srv = IngestServer(tmp_path / "c.db", {"su01": "secret-su01"}).start()
    try:
        text = sweeping_toml(extra_radio="\ndiscard_buffers_after_retune = 1").replace('url = "http://127.0.0.1:9"',
                                                                                      f'url = "{srv.url}"')  # fmt: skip
        assert main(["check", "--config", str(write_config(tmp_path, text))]) == 0
    finally:
        srv.stop()
    out = capsys.readouterr().out
    assert ("[ok] sweep: the band plan's 98.28 MHz (16 sub-bands) are wider than the radio's usable 20 MHz at 25 MS/s "
            "around radio.center_hz: swept in 6 steps of at most 18.36 MHz, each retune followed by 1 discarded buffers") in out
    assert "step 0: LO 3660.040 MHz, 3650.860–3669.220 MHz, sub-bands 0–2 (PRBs 0–50)" in out
    assert "step 5: LO 3742.840 MHz, 3736.540–3749.140 MHz, sub-bands 14–15 (PRBs 238–272)" in out
    assert out.count("[ok] radio:") == 6 and "(step: sub-bands 3–5 (PRBs 51–101))" in out
    assert f"[ok] band plan: measures the site's plan {srv.band_plan.fingerprint}" in out


# -- the protocol field -------------------------------------------------------------------------------


def step(node="su0", ids=(3, 4, 5), powers=None, seq=0, t_ns=T, plan=NR100.fingerprint, saturated=False) -> Measurement:
    powers = [-90.0] * len(ids) if powers is None else powers
    total = float(10 * np.log10(np.sum(10 ** (np.asarray(powers) / 10))))
    lo, hi = NR100.grid[ids[0]].low_hz, NR100.grid[ids[-1]].high_hz
    return Measurement(node, seq, t_ns, (lo + hi) / 2, hi - lo, total, tuple(map(float, powers)), saturated=saturated,
                       band_plan=plan, subband_ids=tuple(ids))  # fmt: skip


def test_subband_ids_round_trip_and_are_absent_for_a_full_band_reading():
    m = step()
    d = m.to_dict()
    assert d["subband_ids"] == [3, 4, 5] and Measurement.from_dict(d) == m and m.partial
    full = Measurement("su0", 0, T, 3.7e9, 98.28e6, -70.0, (-80.0,) * 16, band_plan=NR100.fingerprint)
    assert "subband_ids" not in full.to_dict() and Measurement.from_dict(full.to_dict()).subband_ids == ()


BAD_IDS = [
    ([5, 3, 4], "unique and ascending"),
    ([3, 3, 4], "unique and ascending"),
    ([3, 4, 64], r"in \[0, 64\)"),
    ([-1, 3, 4], r"in \[0, 64\)"),
    ([3, 4], "names 2 sub-bands but subband_powers_dbm has 3"),
    ([3, True, 5], "integers"),
    ([3.0, 4.0, 5.0], "integers"),
    ("3,4,5", "must be a list"),
]


@pytest.mark.parametrize(("ids", "why"), BAD_IDS, ids=[w for _, w in BAD_IDS])
def test_bad_subband_ids_are_refused_with_the_reason(ids, why):
    d = step().to_dict()
    d["subband_ids"] = ids
    with pytest.raises(ProtocolError, match=why):
        Measurement.from_dict(d)


def test_subband_ids_need_a_band_plan():
    d = step().to_dict()
    d["band_plan"] = ""
    with pytest.raises(ProtocolError, match="subband_ids needs band_plan"):
        Measurement.from_dict(d)


@pytest.mark.parametrize(("ids", "why"), BAD_IDS[:5], ids=[w for _, w in BAD_IDS[:5]])
def test_the_ingest_api_answers_422_with_the_reason(tmp_path, ids, why):
    from tests.test_central_api import Central, refused

    central = Central(tmp_path)
    try:
        rec = step("su01", t_ns=time.time_ns()).to_dict()
        rec["subband_ids"] = ids
        detail = refused(central.ingest({"protocol": 1, "node_id": "su01", "records": [rec]}), 422)
        assert "records[0]: subband_ids" in detail and central.store.count("measurements") == 0
        good = step("su01", t_ns=time.time_ns(), plan=central.state.site.band_plan.fingerprint).to_dict()
        assert central.ingest({"protocol": 1, "node_id": "su01", "records": [good]}).status_code == 200
        assert central.store.measurements("su01")[0].subband_ids == (3, 4, 5)  # stored with its ids
    finally:
        central.close()


def test_the_spool_keeps_the_ids(tmp_path):
    from node.spool import Spool

    sp = Spool(tmp_path / "spool.db", 100, "drop_oldest")
    try:
        sp.append(step())
        assert sp.pending(10)[0].subband_ids == (3, 4, 5)
        assert IngestBatch.from_dict(IngestBatch("su0", tuple(sp.pending(10))).to_dict()).records[0].subband_ids == (3, 4, 5)
    finally:
        sp.close()


# -- the central unit: full snapshots from step readings, staleness per sub-band ------------------------


@pytest.fixture
def assemblers():
    p = make_predictor([plane_db(), plane_db(-70, 1.0, 0.5)], noise_dbm=-95.0)
    wide = SnapshotAssembler(p, stale_s=1.0)
    return wide, SpectralAssembler(wide, NR100)


SIX = plan_sweep(NR100, 25e6).steps


def sweep_readings(node: str, powers: np.ndarray, t0_ns: int = T, dt_ns: int = 10**7, seq0: int = 0) -> list[Measurement]:
    return [step(node, s.subband_ids, powers[list(s.subband_ids)], seq=seq0 + i, t_ns=t0_ns + i * dt_ns)
            for i, s in enumerate(SIX)]  # fmt: skip


def test_a_sweep_of_step_readings_assembles_into_a_full_snapshot(assemblers):
    wide, spectral = assemblers
    powers = np.linspace(-95.0, -80.0, 16)
    readings = sweep_readings("su0", powers)
    for m in readings[:-1]:
        assert wide.update(m) and spectral.update(m)
    half = wide.assemble(T + 10**8)
    assert half.stale[0]  # no total until every sub-band has been seen: a partial power is never the band's
    for m in readings[-1:]:
        assert wide.update(m) and spectral.update(m)
    t_eval = T + 10**8
    r = spectral.assemble(t_eval, [])
    assert r.usable.tolist() == [True, False] and r.fresh[0].all() and not r.fresh[1].any()
    assert r.measured_dbm[0] == pytest.approx(powers)
    w = wide.assemble(t_eval)
    total = 10 * np.log10(np.sum(10 ** (powers / 10)))
    assert not w.stale[0] and w.measured_dbm[0] == pytest.approx(total)  # synthesised from the sub-bands
    assert w.age_s[0] == pytest.approx((t_eval - T) * 1e-9)  # the oldest sub-band's age
    assert wide.stats["steps"] == 6 and wide.stats["measurements"] == 0


def test_staleness_is_per_sub_band(assemblers):
    wide, spectral = assemblers
    powers = np.full(16, -90.0)
    for m in sweep_readings("su0", powers):
        wide.update(m)
        spectral.update(m)
    later = T + 2 * 10**9  # the first sweep is stale by now; steps 0-1 measured again
    for m in sweep_readings("su0", powers + 5.0, t0_ns=later, seq0=6)[:2]:
        wide.update(m)
        spectral.update(m)
    r = spectral.assemble(later + 10**8, [])
    fresh_ids = [i for s in SIX[:2] for i in s.subband_ids]
    assert r.fresh[0].tolist() == [i in fresh_ids for i in range(16)]
    assert r.usable[0]  # some of it fresh: usable, stale sub-bands NaN
    assert r.measured_dbm[0, fresh_ids] == pytest.approx(-85.0) and np.isnan(np.delete(r.measured_dbm[0], fresh_ids)).all()
    assert np.isnan(np.delete(r.residual_db[0], fresh_ids)).all() and np.isfinite(r.residual_db[0, fresh_ids]).all()
    assert wide.assemble(later + 10**8).stale[0]  # its total has stale parts: not used as the band's power
    # an older step replayed changes nothing; a saturated fresh step makes the SU unusable while fresh
    assert not spectral.update(step("su0", SIX[0].subband_ids, [-10.0] * len(SIX[0].subband_ids), seq=1, t_ns=T + 1))
    spectral.update(step("su0", SIX[2].subband_ids, [-40.0] * len(SIX[2].subband_ids), seq=20, t_ns=later + 2 * 10**7,
                         saturated=True))  # fmt: skip
    r = spectral.assemble(later + 10**8, [])
    assert not r.usable[0] and r.fresh[0, list(SIX[2].subband_ids)].all()
    assert spectral.stats["out_of_order"] == 1


def test_step_readings_of_another_plan_or_without_a_plan_at_the_wideband_assembler_are_skipped(assemblers):
    wide, spectral = assemblers
    other = step(plan="0123456789ab")
    assert not wide.update(other) and not spectral.update(other)
    beyond = Measurement("su0", 0, T, 3.7e9, 1e6, -90.0, (-90.0,), band_plan=BandPlan(3.7e9, subbands=8).fingerprint,
                         subband_ids=(20,))  # fmt: skip
    sixteen = Measurement("su0", 0, T, 3.7e9, 1e6, -90.0, (-90.0,), band_plan=NR100.fingerprint, subband_ids=(16,))
    assert not spectral.update(beyond) and not spectral.update(sixteen) and not wide.update(sixteen)  # no such sub-band
    bare = SnapshotAssembler(make_predictor([plane_db(), plane_db(-70, 1.0, 0.5)], noise_dbm=-95.0))
    assert not bare.update(step()) and bare.stats["steps_skipped"] == 1  # no band plan: no total to build
    full = Measurement("su1", 0, T, 3.7e9, NR100.occupied_hz, -70.0, (-82.0,) * 16, band_plan=NR100.fingerprint)
    assert wide.update(full) and spectral.update(full)  # a full-band reading fills every sub-band at once
    assert spectral.assemble(T, []).fresh[1].all() and wide.assemble(T).measured_dbm[1] == -70.0


def test_the_engine_assembles_a_sweeping_su(tmp_path):
    from central.detection.engine import DetectionEngine, EngineConfig

    p = make_predictor([plane_db(), plane_db(-70, 1.0, 0.5)], noise_dbm=-95.0)
    engine = DetectionEngine(p, EngineConfig(localise=False), band_plan=NR100)
    powers = np.linspace(-95.0, -85.0, 16)
    engine.on_measurements(sweep_readings("su0", powers))
    snap, _ = engine.evaluate(T + 10**8)
    su0 = snap.sus[0]
    assert su0.subband_measured_dbm == pytest.approx(tuple(powers)) and not su0.stale
    assert su0.measured_dbm == pytest.approx(10 * np.log10(np.sum(10 ** (powers / 10))))


# -- a real SoapySDR device: the audio driver on a PulseAudio null sink ---------------------------------


def test_sweeping_a_real_soapy_audio_device(tmp_path):
    from tests.test_node_soapy import _soapy_or_skip

    _soapy_or_skip()
    from node.sdr.soapy import SoapySdr
    from tests.pulse_sink import LABEL, RATE_HZ, PulseNullSink

    import SoapySDR

    plan = BandPlan(100e6, 200e3, scs_hz=1e3, prbs=16, subbands=16)  # 192 kHz of 12 kHz sub-bands
    sw = plan_sweep(plan, RATE_HZ, nperseg=256)
    tone_hz = 3000.0
    with PulseNullSink(tmp_path / "pulse") as pa, pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULSE_SERVER", pa.server)
        mp.setenv("PULSE_COOKIE", str(pa.cookie))
        dev = next(dict(d) for d in SoapySDR.Device.enumerate("driver=audio") if LABEL in dict(d).get("label", ""))
        t = np.arange(RATE_HZ) / RATE_HZ
        with pa.play(np.stack([0.5 * np.cos(2 * np.pi * tone_hz * t), 0.5 * np.sin(2 * np.pi * tone_hz * t)], 1)):
            sdr = SoapySdr(dev, stream_args="chan=stereo_iq", read_timeout_s=1.0, discard_buffers_after_retune=2)
            try:
                sdr.tune(sw.steps[0].center_hz, RATE_HZ)
                sdr.read(int(0.3 * RATE_HZ))  # the feed reaches the monitor after ~100 ms
                m = Measurer("audio01", sdr, sw.steps[0].band, SimulatedSdr().receiver.nominal_calibration(), 4096, sw)
                readings = [r.measurement for r in m.sweep()]
            finally:
                sdr.close()
    assert [r.subband_ids for r in readings] == [s.subband_ids for s in sw.steps]
    assert all(a.t_ns < b.t_ns for a, b in zip(readings, readings[1:]))
    for r, s in zip(readings, sw.steps):
        # the audio device has no LO: the tone stays at +3 kHz of every tuning, in the sub-band there
        at = [k for k, b in enumerate(s.band.subbands) if b.edges_hz[0] <= tone_hz < b.edges_hz[1]][0]
        assert int(np.argmax(r.subband_powers_dbm)) == at
        assert r.subband_powers_dbm[at] > max(p for k, p in enumerate(r.subband_powers_dbm) if k != at) + 25


def test_emitters_in_rf_move_with_the_tuning():
    sdr = SimulatedSdr([Emitter(-50.0, 10e6, 2e6, "noise")], seed=1, emitters_center_hz=3.7e9)
    sdr.tune(3.7e9, 30.72e6)
    assert [e.offset_hz for e in sdr._in_baseband()] == [10e6]
    sdr.tune(3.71e9, 30.72e6)
    assert [e.offset_hz for e in sdr._in_baseband()] == [0.0]
    sdr.tune(3.8e9, 30.72e6)
    assert sdr._in_baseband() == []  # outside the sampled span: filtered away
