"""Replay benchmark: false alarms per 24 h and time to detect, replaying simulated operation through the
real DetectionEngine faster than real time.

Usage: python bench/replay.py [--hours 24] [--seeds 0,1] [--trials 100] [--learn-s 600] [--on-s 30]
       [--gap-s 30] [--detector KIND] [--raise-k K] [--raise-n N] [--target-far F] [--integration cusum|none]
       [--jobs 2] [--out docs/results]
       (detector and hysteresis default to the product's [detection] defaults: central.config)

World: :func:`sim.world_builder.make_world` of ``factory-hall-a-truth`` with the default
:class:`~sim.world_builder.WorldRecipe` (true materials, 20 unmodelled clutter objects, traced at
depth 5 with diffraction and diffuse reflection, per-SU gain offsets ~ N(0, 1 dB), per-reading noise 1 dB, a 0.5 dB gain
drift over 30 min, one 20 s dropout per SU and hour) and the demo scenario (three AGVs at 20 dBm on
closed loops in the aisles at 1 m/s; the scenario's own scripted jammer is dropped, the trials place
theirs). The maps are cached under ~/.cache/rftwin; a cold machine traces them first (~10 min, progress
on stderr). Twin: ``factory-hall-a`` as the product's engine factory loads it with a default config
(``[twin]`` defaults: ITU concrete, no clutter, ``central.twin.solvers.TWIN_FIDELITY``, depth 5 at the
time of writing; cached, or traced once).
Readings are generated in the power domain (no IQ; :mod:`sim.replay` says how and why), 10 Hz per SU,
the context (AGV positions + N(0, 0.37 m) radial error) every 0.5 s; the engine is
:class:`central.detection.DetectionEngine` with the product's ``[detection]`` defaults
(:func:`central.detection.live.engine_config` of a default config), evaluated every 0.1 s of simulated
time.

Per seed: ``--learn-s`` of normal operation, normal statistics learned as the service's ``learn`` does
(residuals and predictions: :meth:`sim.replay.Replay.learn`);
then ``--hours`` of normal operation: every residual alarm raised is a false alarm (saturation alarms
counted apart); then ``--trials`` jammer trials per power (20 and 10 dBm, shared out over the seeds,
interleaved): a fixed 18 MHz noise jammer at a uniform position on the world's free floor, switched on
after a random lead-in (1-30 s), on for ``--on-s``, off, then ``--gap-s`` and until the alarm cleared.
Time to detect = the first residual "raised" after switch-on − switch-on; no alarm within the
on-period = a miss. An alarm still active at a planned switch-on postpones the trial (counted as
``invalidated_starts``). Seeds change the noise, the AGVs' phases on their loops, the SUs' reading
phases and the jammers; the world is one file.

Last line: one JSON object (``false_alarms_per_24h``, ``pd_{20,10}dbm``, ``ttd_p{50,95}_s_{20,10}dbm``
over all trials with misses as +inf (null when the percentile falls on a miss) and ``…_detected`` over
the detected ones, ``simulated_hours``, ``seeds``, ``trials_per_power``, ``detector``, ``engine``,
``ticks_per_s``, ``wall_s``, ``saturation_alarms``, ``goals``, ``diagnostics``, ``run``). With ``--out DIR``
also ``DIR/replay.md`` and ``DIR/replay.json``.

Cost: one evaluation per 0.1 s of simulated time. On the 2-core development machine with ED ~2500-3000
evaluations per second of wall time (the engine's own ``evaluate`` is ~300 µs of the ~400 µs per tick,
the context feed ~70 µs), so a simulated day per seed takes ~5-6 min. The product's ``fusion`` costs more
per evaluation (~600-700 per second: ~22 min per simulated day); ``--jobs 2`` replays two seeds at once
in processes of their own, so the defaults (two seeds, 2 × 24 h + 200 trials) take ~30 min on two
cores. For a look within ~10 min use e.g. ``--seeds 0 --hours 4 --trials 40``. The progress lines say
the speed and the time left.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.config import DetectionConfig, TwinConfig  # noqa: E402
from central.detection.engine import EngineConfig  # noqa: E402
from central.detection.live import engine_config  # noqa: E402
from central.twin import Twin  # noqa: E402
from run_info import generated_line, run_info, say, write_results  # noqa: E402
from sim.replay import Replay, ReplaySettings, ttd_figures  # noqa: E402
from sim.world import World  # noqa: E402
from sim.world_builder import TRUTH_SITE, WorldRecipe, make_world  # noqa: E402

POWERS_DBM = (20.0, 10.0)
GOAL_FA_PER_24H = 1.0
GOAL_PD_20 = 0.95
GOAL_TTD_P95_20_S = 5.0



def product_engine_config(detector: str | None = None, raise_k: int | None = None, raise_n: int | None = None,
                          target_far: float | None = None, integration: str | None = None) -> EngineConfig:  # fmt: skip
    """The engine settings the product ships (a default ``[detection]`` section through the service's own
    :func:`engine_config`), with the given knobs overridden."""
    cfg = engine_config(SimpleNamespace(detection=DetectionConfig()))
    over = {k: v for k, v in (("detector", detector), ("raise_k", raise_k), ("raise_n", raise_n),
                              ("target_far", target_far), ("integration", integration)) if v is not None}  # fmt: skip
    cfg = dataclasses.replace(cfg, **over)
    if not 1 <= cfg.raise_k <= cfg.raise_n:
        raise SystemExit(f"need 1 <= --raise-k <= --raise-n, got {cfg.raise_k}, {cfg.raise_n}")
    return cfg


def trace_progress(what: str):
    """A tracing progress callback: a line on stderr every 10 s (nothing when the maps are cached)."""
    last = [0.0]

    def progress(su_id: str, done: int, total: int) -> None:
        if time.monotonic() - last[0] > 10 or done == total:
            last[0] = time.monotonic()
            say(f"  tracing {what}: {done}/{total} ({su_id})")

    return progress


def load_world(workdir: Path) -> World:
    t0 = time.perf_counter()
    files = make_world(workdir, TRUTH_SITE, WorldRecipe(), progress=trace_progress("the world's maps"), jammer_start_s=1e9,
                       jammer_position_m=(36.0, 8.0))  # fmt: skip
    world = World.load(files.maps_path, files.scenario_path)
    say(f"world {world.maps.meta['site_name']}: {len(world.maps.meta.get('clutter', []))} clutter objects, "
        f"impairments {world.impairments}, {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return world


def run_seed(world: World, predictor, cfg: EngineConfig, seed: int, args, trials: int, settings: ReplaySettings) -> dict:
    """Learn, ``args.hours`` of normal operation, ``trials`` trials per power; the raw results."""
    rep = Replay(world, predictor, cfg, settings, seed=seed)
    t = time.perf_counter()
    learned = rep.learn(args.learn_s)
    rate = rep.stats["ticks"] / (time.perf_counter() - t)  # without a detector yet: an upper bound
    todo = (args.hours * 3600 + 2 * trials * (15.5 + args.on_s + args.gap_s + 1)) / settings.tick_s
    say(f"seed {seed}: learned {learned['detector']} on {learned['n_snapshots']} snapshots, threshold "
        f"{learned['threshold']:.3f} ({rate:.0f} ticks/s while learning, without a detector; {todo:.3g} ticks "
        f"more for this seed)")  # fmt: skip
    false_alarms, saturation, per_hour = [], [], []
    remaining = args.hours * 3600.0
    t0 = time.perf_counter()
    ticks0 = rep.stats["ticks"]
    while remaining > 1e-9:
        seg = min(3600.0, remaining)
        fa, sat = rep.run_normal(seg)
        false_alarms += fa
        saturation += sat
        per_hour.append(len(fa))
        remaining -= seg
        rate = (rep.stats["ticks"] - ticks0) / (time.perf_counter() - t0)
        left = (remaining + 2 * trials * (15.5 + args.on_s + args.gap_s + 1)) / settings.tick_s / rate / 60
        say(f"seed {seed}: {(args.hours * 3600 - remaining) / 3600:.2f} h normal, {len(false_alarms)} false alarms "
            f"(last hour {len(fa)}), {len(saturation)} saturation alarms, {rate:.0f} ticks/s, "
            f"~{left:.0f} min more for this seed")  # fmt: skip
    results: dict[float, list] = {p: [] for p in POWERS_DBM}
    for i in range(trials):
        for p in POWERS_DBM:
            r = rep.trial(p, args.on_s, args.gap_s)
            results[p].append(r)
        if (i + 1) % 10 == 0 or i + 1 == trials:
            say(f"seed {seed}: {i + 1}/{trials} trials per power; detected "
                + ", ".join(f"{p:g} dBm {sum(r['ttd_s'] is not None for r in results[p])}" for p in POWERS_DBM))
    imp = rep.world.impairments
    drift_at_fa = [float(np.mean([imp.gain_drift_db(su, e.t_s) for su in rep.world.su_ids])) for e in false_alarms]
    return {"seed": seed, "learned": learned, "false_alarms": false_alarms, "saturation": saturation,
            "per_hour": per_hour, "trials": results, "stats": dict(rep.stats), "sim_wall_s": rep.sim_wall_s,
            "drift_at_false_alarms_db": drift_at_fa}  # fmt: skip


def seed_worker(seed: int, args, trials: int, cfg: EngineConfig) -> dict:
    """:func:`run_seed` in a process of its own (``--jobs``): world and twin from their caches."""
    with tempfile.TemporaryDirectory(prefix="rftwin-replay-") as tmp:
        world = load_world(Path(tmp))
    twin = Twin.load("factory-hall-a", TwinConfig().solver_settings(), progress=trace_progress("the twin's maps"))
    return run_seed(world, twin.predictor, cfg, seed, args, trials, ReplaySettings())


def summarise(runs: list[dict], args, cfg: EngineConfig, wall_s: float) -> dict:
    hours = args.hours * len(runs)
    n_fa = sum(len(r["false_alarms"]) for r in runs)
    fa_24h = n_fa / hours * 24 if hours > 0 else None
    out: dict = {
        "false_alarms_per_24h": None if fa_24h is None else round(fa_24h, 2),
        "false_alarms": n_fa,
        "saturation_alarms": sum(len(r["saturation"]) for r in runs),
        "simulated_hours": hours,
    }
    for p in POWERS_DBM:
        trials = [t for r in runs for t in r["trials"][p]]
        f = ttd_figures([t["ttd_s"] for t in trials])
        tag = f"{p:g}dbm"
        out[f"pd_{tag}"] = f["pd"]
        for key in ("ttd_p50_s", "ttd_p95_s", "ttd_p50_s_detected", "ttd_p95_s_detected"):
            out[f"{key.replace('_detected', '')}_{tag}{'_detected' if key.endswith('_detected') else ''}"] = f[key]
        out[f"detected_{tag}"] = f["detected"]
        out[f"invalidated_starts_{tag}"] = sum(t["invalidated"] for t in trials)
        out[f"false_alarms_outside_on_{tag}"] = sum(t["raised_outside"] for t in trials)
        out[f"saturation_alarms_trials_{tag}"] = sum(t["saturation"] for t in trials)
        out[f"stuck_alarms_{tag}"] = sum(t["stuck"] for t in trials)
        loc = [t["located_error_m"] for t in trials if t.get("located_error_m") is not None]
        out[f"located_error_m_p50_{tag}"] = round(float(np.median(loc)), 2) if loc else None
    ticks = sum(r["stats"]["ticks"] for r in runs)
    sim_wall = sum(r["sim_wall_s"] for r in runs)
    out.update({
        "seeds": [r["seed"] for r in runs],
        "trials_per_power": sum(len(r["trials"][POWERS_DBM[0]]) for r in runs),
        "on_s": args.on_s, "gap_s": args.gap_s, "learn_s": args.learn_s,
        "detector": cfg.detector,
        "engine": {k: (dict(v) if isinstance(v, dict) else v) for k, v in dataclasses.asdict(cfg).items()},
        "ticks": ticks,
        "simulated_hours_total": round(ticks * 0.1 / 3600, 3),
        "ticks_per_s": round(ticks / sim_wall, 1) if sim_wall else None,
        "wall_s": round(wall_s, 1),
    })  # fmt: skip
    # A residual alarm raised in an on-period counts as a detection whatever raised it: the chance that an
    # unrelated (false) alarm falls in one on-period at the measured false-alarm rate.
    rate_per_s = n_fa / (hours * 3600) if hours else 0.0
    out["chance_raise_per_on_period"] = round(1 - math.exp(-rate_per_s * args.on_s), 4)
    out["goals"] = {
        "false_alarms_per_24h <= 1": fa_24h is not None and fa_24h <= GOAL_FA_PER_24H,
        "pd_20dbm >= 0.95": out["pd_20dbm"] is not None and out["pd_20dbm"] >= GOAL_PD_20,
        "ttd_p95_s_20dbm <= 5": out["ttd_p95_s_20dbm"] is not None and out["ttd_p95_s_20dbm"] <= GOAL_TTD_P95_20_S,
    }
    out["diagnostics"] = diagnostics(runs)
    return out


def diagnostics(runs: list[dict]) -> dict:
    """Where the false alarms come from: which SUs the engine called affected, whether an SU was stale
    (a dropout), the drift at the time, per seed and per hour."""
    fas = [(r, e) for r in runs for e in r["false_alarms"]]
    by_su = collections.Counter(su for _, e in fas for su in e.affected_sus)
    with_stale = sum(bool(e.stale_sus) for _, e in fas)
    ticks = sum(r["stats"]["normal_ticks"] for r in runs)
    stale_snaps = sum(r["stats"]["stale_su_snapshots"] for r in runs)

    drift_at_fa = [d for r in runs for d in r["drift_at_false_alarms_db"]]
    margin = [e.score - e.threshold for _, e in fas if e.score is not None and e.threshold is not None]
    return {
        "false_alarms_by_affected_su": dict(sorted(by_su.items(), key=lambda kv: -kv[1])),
        "false_alarms_with_a_stale_su": with_stale,
        "snapshots_with_a_stale_su_fraction": round(stale_snaps / ticks, 4) if ticks else None,
        "false_alarms_per_seed": {str(r["seed"]): len(r["false_alarms"]) for r in runs},
        "false_alarms_per_hour": {str(r["seed"]): r["per_hour"] for r in runs},
        "mean_su_drift_db_at_false_alarms": round(float(np.mean(drift_at_fa)), 3) if drift_at_fa else None,
        "score_over_threshold_at_raise_p50": round(float(np.median(margin)), 3) if margin else None,
        "learned": {str(r["seed"]): r["learned"] for r in runs},
        "readings": {k: sum(r["stats"][k] for r in runs) for k in ("readings", "dropped_readings", "saturated_readings")},
    }


def write_markdown(fig: dict, out_dir: Path) -> list[Path]:

    def v(x, fmt="{:.2f}", none="— (falls on misses)"):
        return none if x is None else fmt.format(x)

    g = fig["goals"]
    product = dataclasses.asdict(product_engine_config())
    diff = [k for k, x in fig["engine"].items() if product.get(k) != x]
    changed = "the product's defaults" + (f" except {', '.join(diff)}" if diff else "")
    met = lambda ok: "**met**" if ok else "**not met**"  # noqa: E731
    e = fig["engine"]
    d = fig["diagnostics"]
    w = fig["world"]
    imp = w["impairments"]
    rows = []
    for p in POWERS_DBM:
        tag = f"{p:g}dbm"
        rows.append(f"| {p:g} dBm | {fig['trials_per_power']} | {v(fig[f'pd_{tag}'], '{:.3f}')} | "
                    f"{v(fig[f'ttd_p50_s_{tag}'])} | {v(fig[f'ttd_p95_s_{tag}'])} | "
                    f"{v(fig[f'ttd_p50_s_{tag}_detected'], none='—')} | {v(fig[f'ttd_p95_s_{tag}_detected'], none='—')} | "
                    f"{fig[f'invalidated_starts_{tag}']} |")  # fmt: skip
    lines = [
        "# Replay: false alarms per 24 h and time to detect", "",
        generated_line(fig["run"]), "",
        "Simulated operation replayed through the real `DetectionEngine` on a simulated clock "
        f"({fig['ticks_per_s']:.0f} evaluations per second of wall time, {fig['wall_s']:.0f} s for "
        f"{fig['simulated_hours_total']:.1f} simulated hours).", "",
        f"**World** (what the SUs measure): `make_world` of `{w['site']}` with the default recipe — true "
        f"materials, {w['clutter_objects']} unmodelled clutter objects, traced at depth {w['fidelity']['max_depth']} "
        f"with diffraction {w['fidelity']['diffraction']} and diffuse reflection at scattering coefficient "
        f"{w['fidelity'].get('scattering_coefficient', 0.0):g}, per-SU gain offsets ~ N(0, {w['model_error_db']:g} dB), "
        f"per-reading noise {imp['reading_noise_db']:g} dB per emitter, a {imp['drift_db']:g} dB gain drift over "
        f"{imp['drift_period_s'] / 60:g} min, {imp['dropout_per_h']:g} dropout(s) of {imp['dropout_s']:g} s per SU "
        f"and hour — and the demo scenario: AGVs {', '.join(w['emitters'])} at 20 dBm on closed loops in the aisles "
        "at 1 m/s (a per-seed phase on their loops). **Twin** (what the engine predicts from): `factory-hall-a` as the "
        f"product's engine loads it (depth {fig['twin']['max_depth']}, diffraction {fig['twin']['diffraction']}). "
        "Readings at 10 Hz per SU in the power domain (no IQ: `sim/replay.py`), receiver "
        "noise (thermal at NF 5 dB and the 12-bit ADC's quantisation at 0 dB gain) and the estimator's "
        "1/sqrt(16384) scatter; the context (AGV positions + N(0, 0.37 m) radial error) every 0.5 s.", "",
        f"**Engine**: {changed} — detector `{e['detector']}`, window {e['window_s']} s, stale after "
        f"{e['stale_s']} s, " + (
            f"a snapshot anomalous while the CUSUM of its scores (normal scale, drift {e['cusum']['drift']:g}, "
            f"threshold {e['cusum']['threshold']:g}: `central.detection.sequential`, chosen in "
            "`docs/results/operating_point.md`) is above its threshold, "
            if e["integration"] == "cusum" else "a snapshot anomalous when its score is above the threshold, ") +
        f"raise after {e['raise_k']} of {e['raise_n']} anomalous snapshots, clear after "
        f"{e['clear_m']} normal; per-snapshot threshold at a false-alarm rate of {e['target_far']}, learned from "
        f"{fig['learn_s']:g} s of normal operation per seed.", "",
        f"Seeds {', '.join(map(str, fig['seeds']))}: {fig['simulated_hours']:g} h of normal operation in all.", "",
        "## Figures", "",
        f"- **False alarms per 24 h: {v(fig['false_alarms_per_24h'])}** ({fig['false_alarms']} residual alarms "
        f"raised in {fig['simulated_hours']:g} h of normal operation; every one is false: no jammer is on). "
        f"Saturation alarms in that time: {fig['saturation_alarms']}.",
        "- Jammer trials: a fixed 18 MHz noise jammer at a uniform position on the world's free floor, "
        f"on for {fig['on_s']:g} s after a random lead-in, then off for at least {fig['gap_s']:g} s and until the "
        "alarm cleared. Time to detect (TTD) = first residual alarm raised after switch-on − switch-on. "
        "Percentiles over *all* trials count a miss as infinitely late (— when the percentile falls on "
        "misses); the `detected` columns are over the detected trials only. Invalidated: planned "
        "switch-ons postponed because an alarm was still active.", "",
        "| jammer | trials | Pd | TTD p50 (s) | TTD p95 (s) | p50 detected | p95 detected | invalidated |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        f"Any residual alarm raised during an on-period counts as a detection, including a false one: at the "
        f"measured false-alarm rate an unrelated alarm falls in a {fig['on_s']:g} s on-period with probability "
        f"{fig['chance_raise_per_on_period']:.3f}, so Pd is only as good as the false-alarm rate allows.", "",
        "## Goals", "",
        f"- ≤ {GOAL_FA_PER_24H:g} false alarm per 24 h: {met(g['false_alarms_per_24h <= 1'])} "
        f"({v(fig['false_alarms_per_24h'])}).",
        f"- Pd ≥ {GOAL_PD_20} for a 20 dBm jammer: {met(g['pd_20dbm >= 0.95'])} ({v(fig['pd_20dbm'], '{:.3f}')}).",
        f"- TTD p95 ≤ {GOAL_TTD_P95_20_S:g} s for a 20 dBm jammer: {met(g['ttd_p95_s_20dbm <= 5'])} "
        f"({v(fig['ttd_p95_s_20dbm'])} s).", "",
        "## Where the false alarms come from", "",
        f"- Affected SUs named by the raised alarms: {d['false_alarms_by_affected_su']}.",
        f"- Raised with an SU stale (dropout): {d['false_alarms_with_a_stale_su']} of {fig['false_alarms']} "
        f"(snapshots with a stale SU: {v(d['snapshots_with_a_stale_su_fraction'], '{:.2%}')} of the normal period).",
        f"- Per seed: {d['false_alarms_per_seed']}; median score − threshold at a raise: "
        f"{v(d['score_over_threshold_at_raise_p50'], none='—')} dB; SU-mean drift at the raises: "
        f"{v(d['mean_su_drift_db_at_false_alarms'], none='—')} dB.", "",
        "Figures: `" + json.dumps(fig) + "`", "",
    ]  # fmt: skip
    return write_results(out_dir, "replay", lines, fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--hours", type=float, default=24.0, help="simulated normal operation per seed (default: %(default)s)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (default: %(default)s)")
    ap.add_argument("--trials", type=int, default=100, help="jammer trials per power, over all seeds (default: %(default)s)")
    ap.add_argument("--learn-s", type=float, default=600.0, help="normal period learned from, per seed")
    ap.add_argument("--on-s", type=float, default=30.0, help="how long each jammer is on")
    ap.add_argument("--gap-s", type=float, default=30.0, help="at least this long off after each jammer")
    d = product_engine_config()
    ap.add_argument("--detector", default=d.detector, help="detector kind (default: the product's, %(default)s)")
    ap.add_argument("--raise-k", type=int, default=d.raise_k, help="raise after k anomalous ... (default: %(default)s)")
    ap.add_argument("--raise-n", type=int, default=d.raise_n, help="... of the last n snapshots (default: %(default)s)")
    ap.add_argument("--target-far", type=float, default=d.target_far,
                    help="per-snapshot false-alarm rate the threshold is learned at (default: %(default)s)")  # fmt: skip
    ap.add_argument("--integration", default=d.integration, choices=("none", "cusum"),
                    help="alarms from the CUSUM of the scores or per snapshot (default: %(default)s)")  # fmt: skip
    ap.add_argument("--jobs", type=int, default=1, help="seeds replayed at once, one process each (default: %(default)s)")
    ap.add_argument("--out", default=None, help="write replay.md and replay.json into this folder")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        raise SystemExit("--seeds: give at least one seed")
    cfg = product_engine_config(args.detector, args.raise_k, args.raise_n, args.target_far, args.integration)

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rftwin-replay-") as tmp:
        world = load_world(Path(tmp))
    twin_settings = TwinConfig().solver_settings()  # what create_engine loads with a default [twin]
    twin = Twin.load("factory-hall-a", twin_settings, progress=trace_progress("the twin's maps"))
    say(f"twin {twin.site.name} at depth {twin_settings.max_depth}, diffraction {twin_settings.diffraction} "
        f"({'cached' if twin.from_cache else 'traced'}); engine {cfg}")  # fmt: skip
    ticks = len(seeds) * (args.learn_s + args.hours * 3600) / 0.1 + 2 * args.trials * (15.5 + args.on_s + args.gap_s + 1) / 0.1
    say(f"about {ticks:.3g} evaluations in all")
    shares = [args.trials // len(seeds) + (i < args.trials % len(seeds)) for i in range(len(seeds))]
    if args.jobs > 1 and len(seeds) > 1:
        with concurrent.futures.ProcessPoolExecutor(min(args.jobs, len(seeds))) as pool:
            runs = list(pool.map(seed_worker, seeds, [args] * len(seeds), shares, [cfg] * len(seeds)))
    else:
        runs = [run_seed(world, twin.predictor, cfg, seed, args, share, ReplaySettings())
                for seed, share in zip(seeds, shares)]  # fmt: skip
    out = summarise(runs, args, cfg, time.perf_counter() - t_start)
    meta = world.maps.meta
    out["world"] = {"site": meta.get("site_name"), "clutter_objects": len(meta.get("clutter", [])),
                    "fidelity": meta.get("fidelity"), "model_error_db": meta.get("model_error_db"),
                    "impairments": world.impairments.to_dict(), "emitters": [e.id for e in world.scenario.emitters
                                                                             if e.role == "legitimate"]}  # fmt: skip
    out["twin"] = {"site": twin.site.name, "max_depth": twin_settings.max_depth,
                   "diffraction": twin_settings.diffraction, "from_cache": twin.from_cache}  # fmt: skip
    out["run"] = run_info()
    if args.out:
        paths = write_markdown(out, Path(args.out))
        say(f"wrote {', '.join(map(str, paths))}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
