"""What diffuse reflection costs the realistic world, and what it changes.

Usage: python bench/diffuse.py [--scattering 0.3,0.5] [--sus 2] [--out docs/results]

Rough surfaces (stacked goods, racks, corrugated walls) scatter part of a reflection diffusely. Sionna
RT models that with a scattering coefficient S per material: a reflection keeps sqrt(1 − S²) of its
field specular and scatters the rest. The world (``sim.world_builder.WORLD_FIDELITY``: depth 5, edge
diffraction, S = 0.3 on every material) traces its 1.5 m SUs with the PathSolver, which cannot follow
diffuse bounces within its path buffer, so their diffuse part comes from two radio maps
(``central.twin.solvers.diffuse_part_gain``). This traces the first ``--sus`` SUs of the replay's world
hall exactly as ``build_gain_maps`` does (``central.twin.gain_maps.su_gain_map``), specular only (S = 0)
and at each S, and reports the trace times and how far the gains move over the valid cells (signed
median, |Δ| median and p95, dB). ``noise_db_{median,p95}``: the same |Δ| between two seeds of the
diffuse trace, the Monte-Carlo part of the figures (the specular-only trace is deterministic).

Last line: one JSON object: per S and SU ``trace_s_specular``, ``trace_s_diffuse``, ``time_ratio``,
``delta_db_signed_median``, ``delta_db_median``, ``delta_db_p95``, ``noise_db_median``, ``noise_db_p95``,
``method``; ``time_ratio_median``, ``run``. With ``--out DIR`` also ``DIR/diffuse.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.twin.grid import PlaneGrid  # noqa: E402
from central.twin.rt_runtime import load_rt_scene  # noqa: E402
from central.twin.site import resolve_site  # noqa: E402
from central.twin.gain_maps import su_gain_map  # noqa: E402
from central.twin.solvers import SolverSettings, set_scattering  # noqa: E402
from run_info import generated_line, run_info, say, write_results  # noqa: E402
from sim.world_builder import TRUTH_SITE, WorldRecipe, demo_scenario_toml, scenario_routes, world_site  # noqa: E402


def trace(scene, su, grid: PlaneGrid, settings: SolverSettings) -> tuple[np.ndarray, float, str]:
    """(gain dB over the valid cells, seconds, method) of one SU's map, as the world's maps are traced."""
    method = settings.method_for(su.position_m[2], grid.height_m)
    set_scattering(scene, settings.scattering_coefficient)
    t0 = time.perf_counter()
    lin = su_gain_map(scene, su.position_m, grid, settings, method)[grid.valid]
    with np.errstate(divide="ignore"):
        return 10 * np.log10(np.maximum(lin, 1e-30)), time.perf_counter() - t0, method


def write_markdown(fig: dict, out: Path) -> list[Path]:
    rows = [f"| {r['scattering']:g} | {r['su']} ({r['method']}) | {r['trace_s_specular']:.1f} | {r['trace_s_diffuse']:.1f} | "
            f"{r['time_ratio']:.2f} | {r['delta_db_signed_median']:+.2f} | {r['delta_db_median']:.2f} | {r['delta_db_p95']:.2f} | "
            f"{r['noise_db_median']:.2f} / {r['noise_db_p95']:.2f} |" for r in fig["rows"]]  # fmt: skip
    lines = [
        "# Diffuse reflection in the realistic world: cost and effect", "",
        generated_line(fig["run"]), "",
        f"The world's hall (`{fig['site']}` with its {fig['clutter']} clutter objects, depth "
        f"{fig['max_depth']}, diffraction on) traced per SU as the world's maps are "
        f"(`central.twin.gain_maps.su_gain_map`), specular only and with every material given scattering "
        f"coefficient S. The world uses S = {fig['world_scattering']:g}. PathSolver SUs get their diffuse "
        "part from two radio maps (with and without diffuse reflection; the bench's docstring says why).", "",
        "| S | SU (solver) | specular (s) | + diffuse (s) | time ratio | Δ gain median (dB) | abs Δ median (dB) | abs Δ p95 (dB) | seed noise median / p95 (dB) |",
        "|---|---|---|---|---|---|---|---|---|", *rows, "",
        "Δ gain = with diffuse − specular only, per valid cell. Seed noise = |Δ| between two seeds of the "
        "diffuse trace. The first trace of a run includes Dr.Jit's kernel compilation.", "",
        "Figures: `" + json.dumps(fig) + "`", "",
    ]  # fmt: skip
    return write_results(out, "diffuse", lines, fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--scattering", default="0.3,0.5", help="scattering coefficients S to try (default: %(default)s)")
    ap.add_argument("--sus", type=int, default=2, help="the first N SUs of the hall (default: %(default)s)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    recipe = WorldRecipe()
    truth = resolve_site(TRUTH_SITE)
    # the clutter of the replay's world (make_world's defaults: the demo scenario's routes kept clear)
    site, clutter = world_site(truth, recipe, scenario_routes(demo_scenario_toml(truth, 60.0, (36.0, 8.0))))
    scene = load_rt_scene(site)
    grid = PlaneGrid.for_site(site)
    specular_only = replace(recipe.fidelity, scattering_coefficient=0.0)
    rows = []
    for s in [float(x) for x in args.scattering.split(",")]:
        for su in site.sensing_units[: args.sus]:
            spec, t_spec, method = trace(scene, su, grid, specular_only)
            diff, t_diff, _ = trace(scene, su, grid, replace(recipe.fidelity, scattering_coefficient=s))
            again, _, _ = trace(scene, su, grid, replace(recipe.fidelity, scattering_coefficient=s, seed=recipe.fidelity.seed + 1))
            signed, noise = diff - spec, np.abs(again - diff)
            d = np.abs(signed)
            row = {"scattering": s, "su": su.id, "method": method, "trace_s_specular": round(t_spec, 2),
                   "trace_s_diffuse": round(t_diff, 2), "time_ratio": round(t_diff / t_spec, 3),
                   "delta_db_signed_median": round(float(np.median(signed)), 3), "delta_db_median": round(float(np.median(d)), 3),
                   "delta_db_p95": round(float(np.quantile(d, 0.95)), 3), "noise_db_median": round(float(np.median(noise)), 3),
                   "noise_db_p95": round(float(np.quantile(noise, 0.95)), 3)}  # fmt: skip
            say(str(row))
            rows.append(row)
    fig = {"site": site.name, "clutter": len(clutter), "max_depth": recipe.fidelity.max_depth,
           "world_scattering": recipe.fidelity.scattering_coefficient, "rows": rows,
           "time_ratio_median": round(float(np.median([r["time_ratio"] for r in rows])), 3), "run": run_info()}  # fmt: skip
    if args.out:
        say(f"wrote {', '.join(map(str, write_markdown(fig, Path(args.out))))}")
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
