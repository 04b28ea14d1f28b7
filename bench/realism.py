"""Twin ↔ world agreement (issue 15): how far the twin's path gains are from a mismatched world's, for
three twin fidelities, before and after a calibration campaign, and what each twin costs to build.

Usage: python bench/realism.py [--positions 400] [--seed 0] [--calibrate [FIDELITY ...]] [--points 40] [--out docs/results]

World: :func:`sim.world_builder.world_twin` of ``factory-hall-a-truth`` with the default
:class:`~sim.world_builder.WorldRecipe` (true concrete ε_r 7.0 / σ 0.3 S/m, 20 unmodelled clutter
objects, traced at depth 5 with edge diffraction). Twins: ``factory-hall-a`` (ITU concrete, no clutter)
at depth 3 (the default), depth 5, and depth 3 with diffraction. Held-out positions: uniform over the
world's free floor (outside the clutter too), drawn from ``--seed``; agreement = |twin − world| path
gain (dB) over every (position, SU) pair where both have a path (above the maps' floor): median and
95th percentile. Positions and SUs are the same for every twin.

``--calibrate [FIDELITY ...]``: each named twin's (none named: every twin's) materials are fitted (:mod:`calibration.material_fit`, the fit traced at the
twin's depth; the differentiable fit itself runs without diffraction) to a ``--points`` campaign in the
world (readings: world + per-SU offsets uniform in ±3 dB + the mean of 100 readings with 2 dB noise, as
bench/calibration.py), the calibrated twin is traced anew at its fidelity, and its agreement measured on
the same held-out positions (none of them campaign points). Offsets are the nodes' calibration tables'
business and are not in the agreement figures, before or after.

Last line: one JSON object with ``agreement_{median,p95}_db_{depth3,depth5,diffraction}``,
``build_s_{…}`` (how long the twin's trace took when it was built, read from its cache entry;
``build_s_cached_{…}`` says whether this run found it cached), with ``--calibrate`` ``agreement_{median,p95}_db_{…}_calibrated`` and
``fit_s_{…}``, ``pairs`` and ``world_clutter``. Writes ``realism.md`` and ``realism.json`` under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.twin import SolverSettings, Twin, resolve_site  # noqa: E402
from central.twin.positions import sample_positions  # noqa: E402
from central.twin.solvers import fidelity_settings  # noqa: E402
from contracts.gain_maps import GAIN_FLOOR_DB  # noqa: E402
from run_info import generated_line, run_info  # noqa: E402
from sim.world_builder import WorldRecipe, world_twin  # noqa: E402

FIDELITIES = {  # tag → the twin's solver settings (a path buffer sized for each: central.twin.solvers)
    "depth3": SolverSettings(),
    "depth5": fidelity_settings(max_depth=5),
    "diffraction": fidelity_settings(diffraction=True),
}


def agreement_db(twin: Twin, world: Twin, positions_m: np.ndarray) -> np.ndarray:
    """|twin − world| path gain (dB) at every (position, SU) pair where both have a path."""
    t, w = twin.predictor.lookup(positions_m).gain_db, world.predictor.lookup(positions_m).gain_db
    both = (t > GAIN_FLOOR_DB + 1e-6) & (w > GAIN_FLOOR_DB + 1e-6) & np.isfinite(t) & np.isfinite(w)
    return np.abs(t - w)[both]


def timed_twin(site, settings: SolverSettings) -> tuple[Twin, float, bool]:
    t0 = time.perf_counter()
    twin = Twin.load(site, settings)
    return twin, time.perf_counter() - t0, twin.from_cache


def calibrated_twin(site, settings: SolverSettings, world: Twin, args, rng) -> tuple[Twin, float]:
    """The twin after a simulated campaign in the world: fitted materials, traced anew."""
    from calibration.material_fit import FitSettings, fit_materials

    cell = site.tx_plane.cell_size_m
    pts = sample_positions(world.site, args.points, rng)
    pts[:, :2] = (np.floor(pts[:, :2] / cell) + 0.5) * cell  # on the floor grid, as bench/calibration.py
    power = np.full(args.points, 20.0)
    offsets = rng.uniform(-3.0, 3.0, len(site.sensing_units))
    noise = rng.normal(0.0, 2.0, (100, args.points, len(site.sensing_units))).mean(axis=0)
    measured = world.predictor.predict(pts[:, None, :], power[:, None]) + offsets + noise
    t0 = time.perf_counter()
    res = fit_materials(site, pts, power, measured, FitSettings(max_depth=settings.max_depth, seed=args.seed),
                        progress=lambda s: print(f"    fit step {s.iteration}: validation loss "
                                                 f"{s.validation_loss_db2:.3f} dB²", file=sys.stderr, flush=True))  # fmt: skip
    fit_s = time.perf_counter() - t0
    cal = res.calibrated_site(site, "bench-realism")
    print(f"  fitted: {res.materials} ({res.stopped}, {fit_s:.0f} s); tracing the calibrated twin", file=sys.stderr)
    return Twin.load(cal, settings), fit_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=400, help="held-out positions (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibrate", nargs="*", choices=list(FIDELITIES), default=None, metavar="FIDELITY",
                    help="also fit these twins (none named: every one) to a campaign in the world")  # fmt: skip
    ap.add_argument("--points", type=int, default=40, help="campaign points with --calibrate")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = ap.parse_args(argv)

    recipe = WorldRecipe()
    t0 = time.perf_counter()
    world, clutter = world_twin(resolve_site("factory-hall-a-truth"), recipe)
    print(f"world {world.site.name}: {len(clutter)} clutter objects, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    held_out = sample_positions(world.site, args.positions, rng)
    site = resolve_site("factory-hall-a")
    out: dict = {"positions": args.positions, "seed": args.seed, "world_clutter": len(clutter),
                 "world_fidelity": recipe.fidelity.to_dict()}  # fmt: skip
    for tag, settings in FIDELITIES.items():
        twin, build_s, cached = timed_twin(site, settings)
        e = agreement_db(twin, world, held_out)
        out[f"agreement_median_db_{tag}"] = round(float(np.median(e)), 2)
        out[f"agreement_p95_db_{tag}"] = round(float(np.percentile(e, 95)), 2)
        out[f"build_s_{tag}"] = round(twin.maps.build_s, 1)
        out[f"build_s_cached_{tag}"] = cached
        out["pairs"] = int(e.size)
        print(f"{tag}: median {np.median(e):.2f} dB, p95 {np.percentile(e, 95):.2f} dB over {e.size} pairs "
              f"(built in {twin.maps.build_s:.0f} s{', from the cache now' if cached else ''}; {build_s:.0f} s here)",
              file=sys.stderr)  # fmt: skip
        if args.calibrate is not None and (not args.calibrate or tag in args.calibrate):
            cal, fit_s = calibrated_twin(site, settings, world, args, np.random.default_rng(args.seed + 1))
            e = agreement_db(cal, world, held_out)
            out[f"agreement_median_db_{tag}_calibrated"] = round(float(np.median(e)), 2)
            out[f"agreement_p95_db_{tag}_calibrated"] = round(float(np.percentile(e, 95)), 2)
            out[f"fit_s_{tag}"] = round(fit_s, 1)
            print(f"{tag} calibrated: median {np.median(e):.2f} dB, p95 {np.percentile(e, 95):.2f} dB", file=sys.stderr)
    out["run"] = run_info()
    write_markdown(out, Path(args.out))
    print(json.dumps(out))
    return 0


def write_markdown(figures: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for tag in FIDELITIES:
        cal = (f"{figures[f'agreement_median_db_{tag}_calibrated']:.2f} / {figures[f'agreement_p95_db_{tag}_calibrated']:.2f}"
               if f"agreement_median_db_{tag}_calibrated" in figures else "not run")  # fmt: skip
        rows.append(f"| {tag} | {figures[f'agreement_median_db_{tag}']:.2f} / {figures[f'agreement_p95_db_{tag}']:.2f} "
                    f"| {cal} | {figures[f'build_s_{tag}']:.0f} |")  # fmt: skip
    lines = [
        "# Twin ↔ world agreement (issue 15)", "",
        f"{generated_line(figures['run'])}", "",
        f"World: factory-hall-a-truth with {figures['world_clutter']} unmodelled clutter objects, traced at depth "
        f"{figures['world_fidelity']['max_depth']} with diffraction = {figures['world_fidelity']['diffraction']}. "
        f"Twin: factory-hall-a (ITU concrete, no clutter). |twin − world| path gain over {figures['pairs']} "
        f"(position, SU) pairs at {figures['positions']} held-out positions on the world's free floor.", "",
        "| twin fidelity | median / p95 (dB), as built | median / p95 (dB), calibrated | build (s) |",
        "|---|---|---|---|", *rows, "",
        "Figures: `" + json.dumps(figures) + "`", "",
    ]  # fmt: skip
    (out_dir / "realism.md").write_text("\n".join(lines))
    (out_dir / "realism.json").write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
