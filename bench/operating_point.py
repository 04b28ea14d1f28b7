"""Choosing the CUSUM's operating point (drift, threshold) on a replayed validation day.

Usage: python bench/operating_point.py [--seed 100] [--hours 6] [--trials 40] [--learn-s 600]
       [--target-per-24h 0.1] [--out docs/results]

Why a separate run: the product's alarm rule must be chosen on data it is not then reported on. This
replays simulated operation as ``bench/replay.py`` does (same world, twin and engine defaults) with a
*validation* seed (noise, the AGVs' phases, the SUs' reading phases and the jammers differ from the
report's seeds 0 and 1; the world file is the same), and records every snapshot's score on the normal
scale z (:meth:`central.detection.DetectionEngine.normal_score`). The engine's real
:class:`~central.detection.sequential.Cusum` and :class:`~central.detection.alarms.AlarmTracker` are
then run offline over the recorded z for every pair of a grid:

- **threshold** for each drift: a day holds far more snapshots than a validation run can show crossing a
  threshold set for one false alarm a day, so it is extrapolated. The CUSUM's maxima over 10-minute
  blocks of normal operation are fitted by a Gumbel distribution G; the expected number of blocks a day
  whose maximum crosses h is 144·(1 − G(h)); the threshold is the h where that is ``--target-per-24h``
  (default 0.1, a tenth of the goal, for the fit's uncertainty), rounded up to 0.1. The alarms the rule
  raises in the validation hours are counted beside it (they should be none).
- **drift** is then chosen for the validation jammers (:func:`choose`): the highest Pd of the 10 dBm
  jammer among the drifts that keep the 20 dBm jammer's Pd ≥ 0.95 and its time to detect p95 ≤ 5 s;
  when none does, the lowest 20 dBm TTD p95.

The chosen pair is what ``central.config.DEFAULT_CUSUM_DRIFT`` / ``DEFAULT_CUSUM_THRESHOLD`` must hold
(a test compares them with ``docs/results/operating_point.json``); ``bench/replay.py`` then reports the
product on seeds 0 and 1.

Last line: one JSON object (``drift``, ``threshold``, ``grid`` (per drift: threshold,
``expected_per_24h``, validation ``false_alarms``, ``pd_{20,10}dbm``, ``ttd_p{50,95}_s_{20,10}dbm``),
``validation``, ``run``). With ``--out DIR`` also ``DIR/operating_point.md`` and ``.json``. Cost:
one replay of ``--learn-s`` + ``--hours`` + the trials (~6 h + 80 trials: ~10 min on the 2-core
machine with ``fusion``), then ~1 s per grid point.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.config import TwinConfig  # noqa: E402
from central.detection.alarms import RAISED, AlarmTracker  # noqa: E402
from central.detection.sequential import Cusum, CusumSettings  # noqa: E402
from central.twin import Twin  # noqa: E402
from replay import (  # noqa: E402
    GOAL_PD_20,
    GOAL_TTD_P95_20_S,
    POWERS_DBM,
    load_world,
    product_engine_config,
    trace_progress,
)
from run_info import generated_line, run_info, say, write_results  # noqa: E402
from sim.replay import Replay, ReplaySettings, ttd_figures  # noqa: E402

DRIFTS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 3.0)
BLOCK_S = 600.0
S = 1_000_000_000


@dataclasses.dataclass
class Recording:
    """Every snapshot's time (ns) and z (NaN: no score) of one phase of the validation replay."""

    t_ns: list[int] = dataclasses.field(default_factory=list)
    z: list[float] = dataclasses.field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.t_ns, dtype=np.int64), np.asarray(self.z, dtype=np.float64)


def record(rep: Replay, into: Recording) -> None:
    def on_snapshot(snap):
        z = rep.engine.normal_score(snap)
        into.t_ns.append(snap.t_ns)
        into.z.append(math.nan if z is None else z)

    rep.on_snapshot = on_snapshot


def raises(t_ns: np.ndarray, z: np.ndarray, settings: CusumSettings, cfg) -> list[int]:
    """Times (ns) at which the engine's residual rule (the CUSUM → k-of-n hysteresis, the CUSUM reset when
    an alarm clears, as :class:`central.detection.DetectionEngine` does) raises an alarm over this stream."""
    cusum = Cusum(settings)
    tracker = AlarmTracker("residual", cfg.raise_k, cfg.raise_n, cfg.clear_m)
    out = []
    for t, zi in zip(t_ns.tolist(), z.tolist()):
        if math.isnan(zi):
            cusum.update(t, None)
            continue
        state = cusum.update(t, zi)
        for tr in tracker.update(t, state.anomalous, zi, onset_ns=state.onset_ns):
            if tr.event == RAISED:
                out.append(t)
            elif tr.event == "cleared":
                cusum.reset()
    return out


def block_maxima(z: np.ndarray, drift: float, per_block: int) -> np.ndarray:
    """The CUSUM's maximum per block of snapshots (no ceiling, no resets: normal operation only)."""
    cusum = Cusum(CusumSettings(drift, 1e12, ceiling=math.inf))
    s = np.empty(z.size)
    for i, zi in enumerate(z.tolist()):
        s[i] = cusum.update(0, None if math.isnan(zi) else zi).statistic
    n = s.size // per_block
    return s[: n * per_block].reshape(n, per_block).max(axis=1)


def autocorrelation(z: np.ndarray, lags=(1, 10, 50, 100, 600)) -> dict[str, float]:
    """Of the normal z at these lags (snapshots): why the CUSUM cannot use the textbook threshold."""
    zc = np.nan_to_num(z - np.nanmean(z))
    return {str(lag): round(float(np.corrcoef(zc[:-lag], zc[lag:])[0, 1]), 3) for lag in lags if lag < z.size}


def threshold_for(maxima: np.ndarray, blocks_per_day: float, target_per_day: float) -> tuple[float, dict]:
    loc, scale = stats.gumbel_r.fit(maxima)
    h = float(stats.gumbel_r.isf(target_per_day / blocks_per_day, loc, scale))
    h = math.ceil(h * 10 - 1e-9) / 10
    expected = blocks_per_day * float(stats.gumbel_r.sf(h, loc, scale))
    return h, {"gumbel_loc": round(float(loc), 3), "gumbel_scale": round(float(scale), 3), "block_max_p50": round(float(np.median(maxima)), 2),
               "block_max_max": round(float(maxima.max()), 2), "expected_per_24h": round(expected, 4)}  # fmt: skip


def trial_figures(trials: list[dict], t_ns: np.ndarray, z: np.ndarray, settings: CusumSettings, cfg) -> dict:
    raised = np.asarray(raises(t_ns, z, settings, cfg), dtype=np.int64)
    out = {}
    for p in POWERS_DBM:
        ttds = []
        for tr in (t for t in trials if t["power_dbm"] == p):
            on, off = tr["t_on_ns"], tr["t_on_ns"] + round(tr["on_s"] * S)
            hit = raised[(raised > on) & (raised <= off)]
            ttds.append(None if hit.size == 0 else (int(hit[0]) - on) / S)
        f = ttd_figures(ttds)
        tag = f"{p:g}dbm"
        out.update(
            {f"pd_{tag}": f["pd"], f"ttd_p50_s_{tag}": f["ttd_p50_s"], f"ttd_p95_s_{tag}": f["ttd_p95_s"]}
        )
    return out


def meets_20dbm_goals(g: dict) -> bool:
    p95 = g["ttd_p95_s_20dbm"]
    return (g["pd_20dbm"] or 0) >= GOAL_PD_20 and p95 is not None and p95 <= GOAL_TTD_P95_20_S


def choose(grid: list[dict]) -> dict:
    """The highest 10 dBm Pd among the pairs that meet the 20 dBm goals (ties: the lower 10 dBm TTD p95,
    then the smaller drift); when none does, the lowest 20 dBm TTD p95 among those with Pd ≥ 0.95 (the
    goal that binds), then the highest 10 dBm Pd."""
    inf = math.inf
    ok = [g for g in grid if meets_20dbm_goals(g)]
    if ok:
        return max(ok, key=lambda g: (g["pd_10dbm"] or 0, -(g["ttd_p95_s_10dbm"] or inf), -g["drift"]))
    pool = [g for g in grid if (g["pd_20dbm"] or 0) >= GOAL_PD_20] or grid
    return min(pool, key=lambda g: (g["ttd_p95_s_20dbm"] or inf, -(g["pd_10dbm"] or 0), g["drift"]))


def write_markdown(fig: dict, out_dir: Path) -> list[Path]:
    v = fig["validation"]

    def f(x, fmt="{:.2f}"):
        return "—" if x is None else fmt.format(x)

    rows = [f"| {g['drift']:g} | {g['threshold']:.1f} | {g['expected_per_24h']:.3f} | {g['block_max_max']:.1f} | "
            f"{g['false_alarms']} | {f(g['pd_20dbm'], '{:.3f}')} | {f(g['ttd_p95_s_20dbm'])} | "
            f"{f(g['pd_10dbm'], '{:.3f}')} | {f(g['ttd_p50_s_10dbm'])} | {f(g['ttd_p95_s_10dbm'])} |"
            for g in fig["grid"]]  # fmt: skip
    lines = [
        "# The CUSUM's operating point, chosen on a validation replay", "",
        generated_line(fig["run"]), "",
        f"Validation replay: seed {v['seed']} (the report, `docs/results/replay.md`, uses other seeds), "
        f"{v['learn_s']:g} s learned, {v['hours']:g} h of normal operation, {v['trials_per_power']} trials per power "
        f"(a jammer on for {v['on_s']:g} s at a random position), the product's engine (`{v['detector']}`, "
        f"raise after {v['raise_k']} of {v['raise_n']}, clear after {v['clear_m']}); {v['ticks']} snapshots in "
        f"{v['wall_s']:.0f} s. The world and the twin are those of `bench/replay.py`.", "",
        f"Per drift the threshold is where a Gumbel fit of the CUSUM's 10-minute maxima expects "
        f"{fig['target_per_24h']:g} crossings per 24 h; `validation FAs` counts the alarms the whole rule "
        "(CUSUM, hysteresis, reset on clear) raised in the validation hours at that threshold.", "",
        "| drift | threshold | expected FAs / 24 h | largest 10-min max | validation FAs | Pd 20 dBm | "
        "TTD p95 20 dBm (s) | Pd 10 dBm | TTD p50 10 dBm (s) | TTD p95 10 dBm (s) |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
        f"**Chosen: drift {fig['drift']:g}, threshold {fig['threshold']:.1f}** (highest 10 dBm Pd among the drifts "
        f"that keep the 20 dBm jammer's Pd ≥ {GOAL_PD_20} and TTD p95 ≤ {GOAL_TTD_P95_20_S:g} s"
        + ("" if fig["constraint_met"] else "; no drift met that here, so the lowest 20 dBm TTD p95 among those "
           f"with Pd ≥ {GOAL_PD_20}") + "). "
        "These are `central.config.DEFAULT_CUSUM_DRIFT` / `DEFAULT_CUSUM_THRESHOLD`.", "",
        "TTD percentiles count misses as infinitely late (— when the percentile falls on a miss).", "",
        f"Why the threshold is so far above what independent normal scores would need: the normal z "
        f"(mean {fig['normal_z_mean']:.2f}, standard deviation {fig['normal_z_std']:.2f} after learning) are correlated in "
        "time, autocorrelation by lag in snapshots (0.1 s): "
        + ", ".join(f"{k}: {v:.2f}" for k, v in fig["normal_z_autocorrelation"].items())
        + ". The twin's error moves with the AGVs, so a stretch of normal snapshots scores high together.", "",
        "Figures: `" + json.dumps(fig) + "`", "",
    ]  # fmt: skip
    return write_results(out_dir, "operating_point", lines, fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--seed", type=int, default=100, help="validation seed (default: %(default)s)")
    ap.add_argument(
        "--hours", type=float, default=6.0, help="simulated normal operation (default: %(default)s)"
    )
    ap.add_argument("--trials", type=int, default=40, help="jammer trials per power (default: %(default)s)")
    ap.add_argument("--learn-s", type=float, default=600.0)
    ap.add_argument("--on-s", type=float, default=30.0)
    ap.add_argument("--gap-s", type=float, default=30.0)
    ap.add_argument("--target-per-24h", type=float, default=0.1, help="expected false alarms per 24 h the "
                    "threshold is set for (default: %(default)s)")  # fmt: skip
    ap.add_argument("--out", default=None, help="write operating_point.md and .json into this folder")
    args = ap.parse_args(argv)
    if args.hours * 3600 < 3 * BLOCK_S:
        raise SystemExit(f"--hours: need at least {3 * BLOCK_S / 3600:g} h for the block maxima")
    t_start = time.perf_counter()
    cfg = dataclasses.replace(product_engine_config(), integration="none")  # the scores do not depend on it
    with tempfile.TemporaryDirectory(prefix="rftwin-oppoint-") as tmp:
        world = load_world(Path(tmp))
    twin = Twin.load(
        "factory-hall-a", TwinConfig().solver_settings(), progress=trace_progress("the twin's maps")
    )
    rep = Replay(world, twin.predictor, cfg, ReplaySettings(), seed=args.seed)
    learned = rep.learn(args.learn_s)
    say(f"learned {learned['detector']} on {learned['n_snapshots']} snapshots")
    normal, trial_rec = Recording(), Recording()
    record(rep, normal)
    for hour in range(math.ceil(args.hours)):
        rep.run(rep.t_s + min(3600.0, args.hours * 3600 - hour * 3600))
        say(f"normal: {rep.t_s / 3600:.2f} h of scenario time, {len(normal.z)} snapshots")
    record(rep, trial_rec)
    trials = []
    for i in range(args.trials):
        for p in POWERS_DBM:
            r = rep.trial(p, args.on_s, args.gap_s)
            trials.append({"power_dbm": p, "t_on_ns": r["t_on_ns"], "on_s": args.on_s})
        if (i + 1) % 10 == 0:
            say(f"trials: {i + 1}/{args.trials} per power")
    wall = time.perf_counter() - t_start
    nt, nz = normal.arrays()
    tt, tz = trial_rec.arrays()
    per_block = round(BLOCK_S / rep.settings.tick_s)
    blocks_per_day = 86400.0 / BLOCK_S
    grid = []
    for drift in DRIFTS:
        h, tail = threshold_for(block_maxima(nz, drift, per_block), blocks_per_day, args.target_per_24h)
        st = CusumSettings(drift, h)
        g = {"drift": drift, "threshold": h, **tail, "false_alarms": len(raises(nt, nz, st, cfg)),
             **trial_figures(trials, tt, tz, st, cfg)}  # fmt: skip
        say(f"drift {drift:g}: threshold {h:.1f}, {g}")
        grid.append(g)
    best = choose(grid)
    constraint = meets_20dbm_goals(best)
    fig = {
        "drift": best["drift"], "threshold": best["threshold"], "constraint_met": constraint,
        "target_per_24h": args.target_per_24h, "grid": grid, "normal_z_autocorrelation": autocorrelation(nz),
        "normal_z_mean": round(float(np.nanmean(nz)), 3), "normal_z_std": round(float(np.nanstd(nz)), 3),
        "validation": {"seed": args.seed, "hours": args.hours, "learn_s": args.learn_s, "trials_per_power": args.trials,
                       "on_s": args.on_s, "gap_s": args.gap_s, "detector": cfg.detector, "raise_k": cfg.raise_k,
                       "raise_n": cfg.raise_n, "clear_m": cfg.clear_m, "ticks": int(nz.size + tz.size),
                       "wall_s": round(wall, 1), "learned": learned},
        "run": run_info(),
    }  # fmt: skip
    if args.out:
        say(f"wrote {', '.join(map(str, write_markdown(fig, Path(args.out))))}")
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
