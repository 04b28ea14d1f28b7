"""`make demo`, several times over: how many false alarms its normal periods raise, how soon the
jammer's alarm comes (issue 15), and what each detector made of the narrowband jammer (issue 16).

Usage: python bench/demo_runs.py [--runs 5] [--out docs/results]

Each run is ``python -m sim.demo`` in a fresh work dir of its own (the whole station: central unit,
twelve node processes synthesising IQ, the context feed, learning over the API, the jammer), read
back from the ``outcome.json`` the demo writes. Twin and world come from the cache after the first
trace. Last line: one JSON object with ``runs``, ``false_alarms_total``, ``runs_with_false_alarms``,
``normal_s_total`` (seconds of normal operation after learning, summed), ``alarm_delay_s`` (per run; None:
no alarm within 60 s), ``alarm_delay_s_median``, ``localisation_error_m`` (per run); for the 10 dBm
narrowband jammer ``narrowband_class`` and ``narrowband_avoid_subbands`` (per run),
``narrowband_{wideband,spectral}_over_threshold`` and ``…_alone_raises_after_s`` (per run: the share of
its snapshots whose score crossed that detector's threshold, and the seconds after switch-on at which
that detector's verdict alone would have raised the alarm; None: it would not have), and ``run``. Writes
``demo_runs.md`` and ``demo_runs.json`` under ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from run_info import generated_line, run_info  # noqa: E402


NARROWBAND_KEYS = ("narrowband_class", "narrowband_avoid_subbands", "narrowband_alarm_delay_s",
                   "narrowband_wideband_over_threshold", "narrowband_spectral_over_threshold",
                   "narrowband_wideband_alone_raises_after_s", "narrowband_spectral_alone_raises_after_s",
                   "normal_wideband_alone_raises_after_s", "normal_spectral_alone_raises_after_s")  # fmt: skip


def one_run(workdir: Path, log_path: Path) -> dict:
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.run([sys.executable, "-m", "sim.demo", "--workdir", str(workdir)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, timeout=1800).returncode  # fmt: skip
    outcome_path = workdir / "outcome.json"
    if not outcome_path.exists():
        raise RuntimeError(f"the demo exited {rc} without an outcome: see {log_path}")
    return {**json.loads(outcome_path.read_text()), "rc": rc, "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None, help="write demo_runs.md / .json here (e.g. docs/results)")
    args = ap.parse_args(argv)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="rftwin-demo-runs-") as tmp:
        for i in range(args.runs):
            o = one_run(Path(tmp) / f"run{i}", Path(tmp) / f"run{i}.log")
            outcomes.append(o)
            print(f"run {i + 1}/{args.runs}: {o['false_alarms']} false alarm(s) in {o['normal_s']:.0f} s of normal "
                  f"operation, alarm {o['alarm_delay_s']} s after the jammer, localisation error "
                  f"{o['localisation_error_m']} m ({o['wall_s']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    delays = [o["alarm_delay_s"] for o in outcomes]
    found = [d for d in delays if d is not None]
    out = {
        "runs": args.runs, "false_alarms_total": sum(o["false_alarms"] for o in outcomes),
        "runs_with_false_alarms": sum(o["false_alarms"] > 0 for o in outcomes),
        "normal_s_total": sum(o["normal_s"] for o in outcomes), "alarm_delay_s": delays,
        "alarm_delay_s_median": statistics.median(found) if found else None, "alarms_found": len(found),
        "localisation_error_m": [o["localisation_error_m"] for o in outcomes],
        "detector": outcomes[0]["detector"] if outcomes else None,
        **{k: [o.get(k) for o in outcomes] for k in NARROWBAND_KEYS}, "run": run_info(),
    }  # fmt: skip
    if args.out:
        write_markdown(out, Path(args.out))
    print(json.dumps(out))
    return 0


def write_markdown(figures: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    goal = "met" if figures["false_alarms_total"] == 0 else "not met"
    lines = [
        "# `make demo`, run again and again (issue 15)", "",
        generated_line(figures["run"]), "",
        f"{figures['runs']} runs of the demo (the whole station as processes; detector `{figures['detector']}`): "
        f"{figures['false_alarms_total']} false alarm(s) in {figures['normal_s_total']:.0f} s of normal operation "
        f"after learning, in {figures['runs_with_false_alarms']} run(s) (goal: none: {goal}). The jammer's "
        f"alarm was raised in {figures['alarms_found']} of {figures['runs']} runs, after "
        f"{', '.join('none' if d is None else f'{d:.1f} s' for d in figures['alarm_delay_s'])} "
        f"(median {figures['alarm_delay_s_median']} s); localisation error "
        f"{', '.join('—' if e is None else f'{e:.1f} m' for e in figures['localisation_error_m'])}.", "",
        "The 10 dBm narrowband jammer before it, per run: class "
        f"{figures['narrowband_class']}, sub-bands to avoid {figures['narrowband_avoid_subbands']}; the share of "
        f"its snapshots whose score crossed the wideband detector's threshold {figures['narrowband_wideband_over_threshold']} "
        f"and the spectral test's {figures['narrowband_spectral_over_threshold']}; seconds after switch-on at which "
        f"the wideband detector's verdict alone would have raised the alarm {figures['narrowband_wideband_alone_raises_after_s']}, "
        f"the spectral test's {figures['narrowband_spectral_alone_raises_after_s']} (None: not within the 40 s it was on).", "",
        "Figures: `" + json.dumps(figures) + "`", "",
    ]  # fmt: skip
    (out_dir / "demo_runs.md").write_text("\n".join(lines))
    (out_dir / "demo_runs.json").write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
