"""Is one gain map per SU enough across the band plan? The twin's maps traced at both band edges.

Usage: python bench/band_edges.py [--site factory-hall-a] [--sus 3] [--out docs/results]

The spectral twin (``central.twin.predictor.Predictor.predict_subbands``) uses one gain map per SU,
traced at the site's carrier, for every sub-band. Path gain depends on frequency: free-space loss by
20·log10(f), the ITU materials' permittivity and conductivity, and (coherently) the phase of every
path; the twin sums paths incoherently, so only the first two remain. This traces the first ``--sus``
SUs of the site's twin at the product's fidelity (``TWIN_FIDELITY``) at the lowest and the highest
frequency of the band plan's PRB grid, per valid cell, and reports how far the two maps are apart
(signed median, |Δ| median and p95, dB) beside the free-space share, 20·log10(f_high / f_low).

Last line: one JSON object with ``f_low_hz``, ``f_high_hz``, ``free_space_db``, per SU ``delta_db_signed_median``,
``delta_db_median``, ``delta_db_p95``, and over all of them ``delta_db_median_all``, ``delta_db_p95_all``; with
``--out DIR`` also ``DIR/band_edges.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses as dc
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.twin.gain_maps import su_gain_map  # noqa: E402
from central.twin.grid import PlaneGrid  # noqa: E402
from central.twin.rt_runtime import load_rt_scene  # noqa: E402
from central.twin.site import resolve_site  # noqa: E402
from central.twin.solvers import TWIN_FIDELITY  # noqa: E402
from run_info import generated_line, run_info, say, write_results  # noqa: E402


def edge_maps_db(site, f_hz: float, n_sus: int) -> tuple[np.ndarray, list[str]]:
    """(gain dB (n_sus, valid cells), methods) of the first SUs, the site traced at ``f_hz``."""
    at = dc.replace(site, frequency_hz=f_hz)
    scene = load_rt_scene(at)
    grid = PlaneGrid.for_site(at)
    out, methods = [], []
    for su in at.sensing_units[:n_sus]:
        method = TWIN_FIDELITY.method_for(su.position_m[2], grid.height_m)
        lin = su_gain_map(scene, su.position_m, grid, TWIN_FIDELITY, method)[grid.valid]
        with np.errstate(divide="ignore"):
            out.append(10 * np.log10(lin))
        methods.append(method)
    return np.array(out), methods


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--site", default="factory-hall-a")
    ap.add_argument("--sus", type=int, default=3, help="the first N SUs (default: %(default)s)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    site = resolve_site(args.site)
    plan = site.band_plan
    f_low, f_high = plan.grid[0].low_hz, plan.grid[-1].high_hz
    low, methods = edge_maps_db(site, f_low, args.sus)
    say(f"traced {args.sus} SUs at {f_low / 1e6:.2f} MHz")
    high, _ = edge_maps_db(site, f_high, args.sus)
    say(f"traced {args.sus} SUs at {f_high / 1e6:.2f} MHz")
    both = np.isfinite(low) & np.isfinite(high) & (low > -200) & (high > -200)
    fig: dict = {"site": site.name, "f_low_hz": f_low, "f_high_hz": f_high, "fidelity": TWIN_FIDELITY.to_dict(),
                 "free_space_db": round(20 * np.log10(f_high / f_low), 3), "sus": []}  # fmt: skip
    for j, su in enumerate(site.sensing_units[: args.sus]):
        d = (high[j] - low[j])[both[j]]
        fig["sus"].append({"su": su.id, "method": methods[j], "cells": int(both[j].sum()),
                           "delta_db_signed_median": round(float(np.median(d)), 3),
                           "delta_db_median": round(float(np.median(np.abs(d))), 3),
                           "delta_db_p95": round(float(np.percentile(np.abs(d), 95)), 3)})  # fmt: skip
    all_d = np.abs(high - low)[both]
    fig["delta_db_median_all"] = round(float(np.median(all_d)), 3)
    fig["delta_db_p95_all"] = round(float(np.percentile(all_d, 95)), 3)
    fig["run"] = run_info()
    if args.out:
        rows = [f"| {r['su']} ({r['method']}) | {r['cells']} | {r['delta_db_signed_median']:+.2f} | {r['delta_db_median']:.2f} | "
                f"{r['delta_db_p95']:.2f} |" for r in fig["sus"]]  # fmt: skip
        lines = ["# One gain map per SU across the band plan", "", generated_line(fig["run"]), "",
                 f"The twin of `{site.name}` at the product's fidelity, traced at the lowest ({f_low / 1e6:.2f} MHz) and "
                 f"the highest ({f_high / 1e6:.2f} MHz) frequency of its band plan's PRB grid; Δ = gain at the top − "
                 f"gain at the bottom, per valid cell. Free space alone: −{fig['free_space_db']:.2f} dB.", "",
                 "| SU (solver) | cells | Δ median (dB) | abs Δ median (dB) | abs Δ p95 (dB) |", "|---|---|---|---|---|", *rows, "",
                 f"Over every SU: |Δ| median {fig['delta_db_median_all']:.2f} dB, p95 {fig['delta_db_p95_all']:.2f} dB.", "",
                 "Figures: `" + json.dumps(fig) + "`", ""]  # fmt: skip
        say(f"wrote {', '.join(map(str, write_results(Path(args.out), 'band_edges', lines, fig)))}")
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
