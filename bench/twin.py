"""Twin benchmark: build time of the default twin, lookup accuracy vs direct ray tracing, prediction speed.

Usage: python bench/twin.py [--positions 100] [--reference-samples 100000]
Last line: one JSON object with map_build_s (both scenarios), predict_us_per_snapshot_{single,batch},
lookup_vs_pathsolver_{median,p95}_db (abs. error over TX-SU pairs whose reference gain is >= -150 dB;
shadow_pairs_frac_* counts the rest), and per-scenario figures. Anchors (paper): one ray-traced map
per TX position at 1.95 s each; random-forest surrogate 20 ms for 12 SUs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from central.twin import SolverSettings, Twin, resolve_site
from central.twin.verify import agreement, direct_gain_db, sample_tx_positions

PAPER_RF_MS_PER_SNAPSHOT = 20.0


def time_predict(twin: Twin, rng: np.random.Generator) -> tuple[float, float]:
    """Median µs per snapshot (3 TXs, 12 SUs) for single calls and for a batch of 10 000."""
    site = twin.site
    single_pos = sample_tx_positions(site, 3, rng)
    powers = np.full(3, 20.0)
    runs = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(2000):
            twin.predictor.predict(single_pos, powers)
        runs.append((time.perf_counter() - t) / 2000 * 1e6)
    batch_pos = sample_tx_positions(site, 30_000, rng).reshape(10_000, 3, 3)
    batch_p = np.full((10_000, 3), 20.0)
    bruns = []
    for _ in range(7):
        t = time.perf_counter()
        twin.predictor.predict(batch_pos, batch_p)
        bruns.append((time.perf_counter() - t) / 10_000 * 1e6)
    return float(np.median(runs)), float(np.median(bruns))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=100, help="random TX positions for the accuracy check")
    ap.add_argument("--reference-samples", type=int, default=100_000, help="PathSolver rays per TX for the reference")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    settings = SolverSettings()
    out: dict[str, float] = {}
    errs_lookup, errs_ref = [], []
    with tempfile.TemporaryDirectory() as cache:
        for tag, name in (("a", "factory-hall-a"), ("b", "factory-hall-b")):
            site = resolve_site(name)
            t = time.perf_counter()
            twin = Twin.load(site, settings, cache_dir=Path(cache), rebuild=True)
            out[f"map_build_s_{tag}"] = round(time.perf_counter() - t, 2)
            pos = sample_tx_positions(site, args.positions, rng)
            t = time.perf_counter()
            ref = direct_gain_db(site, pos, replace(settings, path_samples_per_src=args.reference_samples))
            out[f"reference_s_{tag}"] = round(time.perf_counter() - t, 2)
            look = twin.predictor.lookup(pos).gain_db
            ag = agreement(look, ref)
            out[f"lookup_vs_pathsolver_median_db_{tag}"] = round(ag.median_abs_db, 3)
            out[f"lookup_vs_pathsolver_p95_db_{tag}"] = round(ag.p95_abs_db, 3)
            out[f"lookup_vs_pathsolver_bias_db_{tag}"] = round(ag.bias_db, 3)
            out[f"shadow_pairs_frac_{tag}"] = round(ag.n_shadow / (ag.n + ag.n_shadow), 4)
            errs_lookup.append(look)
            errs_ref.append(ref)
            print(f"scenario {tag}: methods {sorted(set(twin.maps.methods))}, build {out[f'map_build_s_{tag}']} s, "
                  f"lookup vs PathSolver median {ag.median_abs_db:.3f} dB p95 {ag.p95_abs_db:.3f} dB", file=sys.stderr)
            if tag == "a":
                single, batch = time_predict(twin, rng)
    ag = agreement(np.concatenate(errs_lookup), np.concatenate(errs_ref))
    out["map_build_s"] = round(out["map_build_s_a"] + out["map_build_s_b"], 2)
    out["lookup_vs_pathsolver_median_db"] = round(ag.median_abs_db, 3)
    out["lookup_vs_pathsolver_p95_db"] = round(ag.p95_abs_db, 3)
    out["predict_us_per_snapshot"] = round(single, 2)  # the conservative figure: one call per snapshot
    out["predict_us_per_snapshot_single"] = round(single, 2)
    out["predict_us_per_snapshot_batch"] = round(batch, 3)
    out["speedup_vs_paper_rf_single"] = round(PAPER_RF_MS_PER_SNAPSHOT * 1e3 / single, 1)
    out["positions"] = args.positions
    print(json.dumps(out))


if __name__ == "__main__":
    main()
