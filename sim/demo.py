"""``make demo``: a complete monitoring station for the paper's factory hall, simulated end to end.

1. The digital twin (ITU concrete) and the "physical" world (concrete ε_r 7.0, σ 0.3 S/m, per-SU
   model error) are ray-traced, or loaded from the cache.
2. The central unit and twelve node agents start as separate processes on loopback; three AGVs
   carry the legitimate transmitters along the aisles and a context feed reports their positions
   with 0.37 m localisation error.
3. Offline phase: the station runs normally while the residuals are collected, then learns their
   normal statistics over the API (the detector is saved as a model and activated live).
   The nodes measure the site's band plan (a 100 MHz NR carrier as 16 sub-bands) and the simulated
   scheduler reallocates the AGVs' sub-bands every second; the context feed reports the allocations,
   so both the wideband detector and the spectral test (residual matrix SU × sub-band) are learned.
4. Online phase: a 10 dBm narrowband noise jammer in one sub-band, which the band total hides: the
   console shows, for it and for the normal periods around it, how often each detector's score crossed
   its threshold, how often its own verdict was anomalous and how long it alone would have taken to
   raise an alarm; the alarm says what it is (narrowband, the sub-bands to exclude from scheduling). It switches off, the alarm
   clears; then a 20 dBm wideband noise jammer switches on; its alarm is raised, located and shown
   on the dashboard (a screenshot is saved when headless chromium is available).

``python -m sim.demo [--keep-running]``; the console says where the dashboard is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from central.detection.alarms import AlarmTracker
from central.config import DetectionConfig
from central.twin import Twin
from central.twin.solvers import TWIN_FIDELITY
from central.twin.progress import tracing_progress_bar
from central.twin.site import DEFAULT_SITE, builtin_site_path, resolve_site
from sim.station import VIEWER_TOKEN, SimulatedStation, SnapshotRecorder, StationSettings, summary
from sim.world_builder import TRUTH_SITE, SpectralDemo, demo_scenario_toml, make_world

OUT = Path("out")
NORMAL_S = 75.0  # offline phase: normal operation before learning
NARROW_AT_S = NORMAL_S + 20.0  # scenario time the narrowband jammer switches on ...
NARROW_END_S = NARROW_AT_S + 40.0  # ... and off
JAMMER_AT_S = NARROW_END_S + 20.0  # the wideband jammer
JAMMER_POSITION_M = (36.0, 8.0)
SPECTRAL = SpectralDemo(NARROW_AT_S, NARROW_END_S, JAMMER_AT_S)
# one 100 MHz plan in one tuning: 122.88 MS/s with 5 % cropped at each edge (110 MHz usable)
SAMPLE_RATE_HZ, EDGE_CROP = 122.88e6, 0.05
SETTLE_S = 3.0  # an alarm's description is read this long after it is raised
HOLD_S = 30.0  # keep the station up after the alarm, for the operator to look


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def screenshot(url: str, token: str, path: Path) -> Path | None:
    """The dashboard at ``url`` once it shows the alarm, as an operator sees it: logged in through the
    login page with ``token``."""
    chromium = os.environ.get("RFTWIN_CHROMIUM", "/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not os.access(chromium, os.X_OK):
        return None
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url)  # no session yet: the login page
        page.fill("#token", token)
        page.click("#login-button")
        page.wait_for_url(url)
        page.wait_for_selector('#alarm-banner[data-state="active"]', timeout=20_000)
        page.wait_for_timeout(1500)  # a few live updates: history plot and node table filled
        page.screenshot(path=str(path), full_page=True)
        browser.close()
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.demo", description=__doc__.splitlines()[0])
    p.add_argument("--keep-running", action="store_true", help="stay up after the alarm until Ctrl-C")
    p.add_argument("--workdir", type=Path, default=OUT / "demo")
    args = p.parse_args(argv)

    update, close = tracing_progress_bar()
    try:
        say("digital twin of the hall (ITU concrete, depth 5): loading or ray-tracing the per-SU gain maps")
        twin = Twin.load(DEFAULT_SITE, TWIN_FIDELITY, progress=update)  # the twin the central unit's config loads
        say(f"twin ready ({'cache' if twin.from_cache else f'traced in {twin.maps.build_s:.0f} s'})")
        say("simulated world (concrete eps_r 7.0, sigma 0.3 S/m, unmodelled clutter, depth 5 + diffraction, "
            "per-SU model error, reading noise, drift, dropouts): loading or ray-tracing")
        scenario = demo_scenario_toml(resolve_site(TRUTH_SITE), JAMMER_AT_S, JAMMER_POSITION_M, spectral=SPECTRAL)
        files = make_world(args.workdir / "world", TRUTH_SITE, jammer_start_s=JAMMER_AT_S,
                           jammer_position_m=JAMMER_POSITION_M, progress=update, scenario_toml=scenario)  # fmt: skip
    finally:
        close()
    site = resolve_site(DEFAULT_SITE)
    shutil.rmtree(args.workdir / "station", ignore_errors=True)  # a fresh station: no alarms from a past run
    station = SimulatedStation(args.workdir / "station", builtin_site_path(DEFAULT_SITE), site, files.maps_path,
                               files.scenario_path, StationSettings(band_plan=site.band_plan, sample_rate_hz=SAMPLE_RATE_HZ,
                                                                    edge_crop=EDGE_CROP))  # fmt: skip
    station.prepare()
    try:
        station.start()
        dash = f"{station.url}/"
        say(f"central unit up: dashboard at {dash}  (API docs at {station.url}/docs)")
        say(f"log in to the dashboard with the simulation's viewer token {VIEWER_TOKEN}")
        say(f"{len(site.sensing_units)} node agents started; AGVs moving; context feed with 0.37 m error")
        say(f"offline phase: {NORMAL_S:.0f} s of normal operation to learn the residual statistics")
        _wait(station, NORMAL_S)
        learned = station.learn(duration_s=NORMAL_S - 10.0, target_far=0.001)
        spectral = ("no spectral test (no sub-band readings)" if learned.get("spectral_threshold") is None else
                    f"spectral test threshold {learned['spectral_threshold']:.1f} on {learned['spectral_snapshots']} snapshots")  # fmt: skip
        say(f"learned {learned['detector']} on {learned['n_snapshots']} snapshots, threshold "
            f"{learned['threshold']:.2f} dB, and the {spectral} (model {learned['model_id']}); online phase")  # fmt: skip
        early = station.alarms()
        recorder = SnapshotRecorder(station.url).start()  # every snapshot from here, for what each detector saw
        _wait(station, NARROW_AT_S)
        false_alarms = [a for a in station.alarms() if a not in early]
        say(f"normal period: {len(false_alarms)} alarm(s) before the jammer")
        outcome = {"false_alarms": len(false_alarms), "normal_s": NARROW_AT_S - NORMAL_S, "detector": learned["detector"],
                   "alarm_delay_s": None, "localisation_error_m": None}  # fmt: skip
        outcome.update(_narrowband_phase(station, site))
        _wait(station, JAMMER_AT_S)
        outcome.update(_what_each_detector_saw(station, recorder))
        recorder.stop()
        say(f"JAMMER ON at ({JAMMER_POSITION_M[0]}, {JAMMER_POSITION_M[1]}) m, {SPECTRAL.wide_power_dbm:g} dBm wideband noise")
        alarm = _wait_alarm(station, JAMMER_AT_S, 60.0)
        if alarm is None:
            _write_outcome(args.workdir, outcome)
            say(f"no alarm within 60 s of the jammer: see {args.workdir / 'station' / 'central.log'}")
            return 1
        delay = alarm["start_ns"] / 1e9 - (station.start_time_s + JAMMER_AT_S)
        alarm = _settled(station, alarm)
        say(f"ALARM raised {delay:.2f} s after the jammer switched on: {summary(alarm)}")
        if alarm.get("interference"):
            say(f"  it is {alarm['interference']['interference_class']}; countermeasure: {alarm['interference']['countermeasure']}")
        outcome["alarm_delay_s"] = round(delay, 2)
        outcome["wideband_class"] = (alarm.get("interference") or {}).get("interference_class")
        pos = alarm.get("suspected_position_m")
        if pos:
            err = ((pos[0] - JAMMER_POSITION_M[0]) ** 2 + (pos[1] - JAMMER_POSITION_M[1]) ** 2) ** 0.5
            say(f"localisation error {err:.1f} m")
            outcome["localisation_error_m"] = round(err, 2)
        _write_outcome(args.workdir, outcome)
        try:
            shot = screenshot(dash, VIEWER_TOKEN, OUT / "demo-dashboard.png")
            say(f"dashboard with the alarm saved to {shot}" if shot else "no headless chromium: no screenshot")
        except Exception as e:  # noqa: BLE001 - the screenshot is a bonus, the station is the demo
            say(f"screenshot failed: {e}")
        if args.keep_running:
            say(f"station running; open {dash} ; Ctrl-C to stop")
            while True:
                station.check_processes()
                time.sleep(1)
        say(f"keeping the station up {HOLD_S:.0f} s more: open {dash} (or run with --keep-running)")
        _wait(station, station.scenario_time_s() + HOLD_S)
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping the station")
        station.stop()
    return 0


def _wait_alarm(station: SimulatedStation, on_at_s: float, within_s: float, characterised: bool = True) -> dict | None:
    """The first active alarm raised since ``on_at_s`` (scenario time), once it says what the
    interference is (when ``characterised`` and the spectral test runs); None after ``within_s``."""
    _wait(station, on_at_s)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        station.check_processes()
        active = [a for a in station.alarms("active") if a["start_ns"] >= (station.start_time_s + on_at_s - 1) * 1e9]
        if active and (not characterised or active[0].get("interference") is not None or time.monotonic() > deadline - 5):
            return active[0]
        time.sleep(0.1)
    return None


def _settled(station: SimulatedStation, alarm: dict, wait_s: float = SETTLE_S) -> dict:
    """The alarm again after ``wait_s``: what the interference is comes from its history (a weak
    wideband emitter shows first only in the sub-bands nobody uses; the scheduler moves those each second)."""
    time.sleep(wait_s)
    return next((a for a in station.alarms() if a["id"] == alarm["id"]), alarm)


def _narrowband_phase(station: SimulatedStation, site) -> dict:
    """The 10 dBm narrowband jammer: what each detector saw of it, and the alarm it raised."""
    plan = site.band_plan
    what = plan.describe([SPECTRAL.narrow_subband])
    _wait(station, NARROW_AT_S)
    nx, ny = SPECTRAL.narrow_position_m
    say(f"JAMMER ON at ({nx}, {ny}) m, {SPECTRAL.narrow_power_dbm:g} dBm narrowband noise in {what}")
    alarm = _wait_alarm(station, NARROW_AT_S, 30.0)
    out: dict = {"narrowband_alarm_delay_s": None, "narrowband_class": None, "narrowband_avoid_subbands": None}
    if alarm is None:
        say("no alarm within 30 s of the narrowband jammer")
    else:
        delay = alarm["start_ns"] / 1e9 - (station.start_time_s + NARROW_AT_S)
        alarm = _settled(station, alarm)
        inter = alarm.get("interference") or {}
        out.update(narrowband_alarm_delay_s=round(delay, 2), narrowband_class=inter.get("interference_class"),
                   narrowband_avoid_subbands=alarm.get("avoid_subbands"))  # fmt: skip
        say(f"ALARM raised {delay:.2f} s after the narrowband jammer switched on: {summary(alarm)}")
        if alarm.get("suspected_position_m"):
            px, py = alarm["suspected_position_m"][:2]
            out["narrowband_localisation_error_m"] = round(((px - nx) ** 2 + (py - ny) ** 2) ** 0.5, 2)
            say(f"  localisation error {out['narrowband_localisation_error_m']:.1f} m")
        if inter:
            say(f"  it is {inter['interference_class']} in {inter['subbands_text']}, EIRP "
                f"{inter['eirp_dbm'] if inter['eirp_dbm'] is None else round(inter['eirp_dbm'], 1)} dBm, "
                f"{inter['time_pattern']}; the scheduler should avoid sub-bands {alarm['avoid_subbands']}")  # fmt: skip
            say(f"  countermeasure: {inter['countermeasure']}")
    _wait(station, NARROW_END_S)
    say("narrowband jammer off")
    return out


PERIODS = (("normal", NORMAL_S, NARROW_AT_S, "in the normal period before it"),
           ("narrowband", NARROW_AT_S, NARROW_END_S, "while it was on"),
           ("after", NARROW_END_S, JAMMER_AT_S, "in the normal period after it"))  # fmt: skip


def _what_each_detector_saw(station: SimulatedStation, recorder: SnapshotRecorder) -> dict:
    """Per period around the narrowband jammer, over every snapshot the central unit evaluated: how often
    each detector's score crossed its per-snapshot threshold and how often its own verdict (the CUSUM's)
    was anomalous; before and while it was on, how long that verdict alone would have taken to raise an
    alarm (the engine's k-of-n rule; None: it would not have). Which detector saw it is what the
    narrowband phase is there to show; the period after it shows the CUSUMs coming back down (they are
    capped, and decay by their drift per snapshot)."""
    cfg = DetectionConfig()  # the hysteresis the station runs with (sim.station sets only the window and staleness)
    out: dict = {}
    for key, lo_s, hi_s, when in PERIODS:
        lo_ns, hi_ns = (station.start_time_s + lo_s) * 1e9, (station.start_time_s + hi_s) * 1e9
        snaps = recorder.between(lo_ns, hi_ns)
        parts = []
        for name, score, threshold, verdict in (("wideband", "score", "threshold", "wideband_anomalous"),
                                                ("spectral", "spectral_score", "spectral_threshold", "spectral_anomalous")):  # fmt: skip
            over = out[f"{key}_{name}_over_threshold"] = round(_share(snaps, lambda s: s[score] > s[threshold], score, threshold), 3)
            anomalous = out[f"{key}_{name}_anomalous"] = round(_share(snaps, lambda s: s[verdict], verdict), 3)
            text = f"the {name} detector's score crossed its threshold in {over:.1%}, its verdict was anomalous in {anomalous:.1%}"
            if key != "after":
                after = out[f"{key}_{name}_alone_raises_after_s"] = _raised_after_s(snaps, verdict, cfg, lo_ns)
                text += (" and alone would not have raised an alarm" if after is None else
                         f" and alone would have raised an alarm {after:.1f} s in")  # fmt: skip
            parts.append(text)
        say(f"{when}, of {len(snaps)} snapshots: " + "; ".join(parts))
    return out


def _share(snaps: list[dict], test, *keys: str) -> float:
    """The fraction of ``snaps`` with every one of ``keys`` set that pass ``test`` (NaN without any)."""
    scored = [s for s in snaps if all(s.get(k) is not None for k in keys)]
    return sum(bool(test(s)) for s in scored) / len(scored) if scored else float("nan")


def _raised_after_s(snaps: list[dict], verdict: str, cfg: DetectionConfig, from_ns: float) -> float | None:
    """Seconds from ``from_ns`` to the snapshot at which one detector's verdicts alone raise a residual
    alarm (the engine's hysteresis); None if they never do."""
    tracker = AlarmTracker("residual", cfg.raise_after, cfg.of_last, cfg.clear_after)
    for s in snaps:
        if any(tr.event == "raised" for tr in tracker.update(s["t_ns"], s.get(verdict))):
            return round((s["t_ns"] - from_ns) / 1e9, 2)
    return None


def _write_outcome(workdir: Path, outcome: dict) -> None:
    """``outcome.json`` in the work dir: what this run showed, for bench/demo_runs.py."""
    (workdir / "outcome.json").write_text(json.dumps(outcome) + "\n")


def _wait(station: SimulatedStation, until_scenario_s: float) -> None:
    while station.scenario_time_s() < until_scenario_s:
        station.check_processes()
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
