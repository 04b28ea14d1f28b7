"""``rftwin-sim``: the simulated plant's command line (nothing here runs on a production node or central unit).

- ``make-world``: trace the world as it is (true materials, clutter, higher fidelity; offsets and
  impairments in its file) and write it with the demo scenario
  (:func:`sim.world_builder.make_world`); simulated nodes read it with ``[radio.args] world = ...,
  scenario = ..., su_id = ...``.

Exit status: 0 done; 2 bad arguments, a bad site or scenario, or a file that cannot be written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from contracts.cli_args import run_command
from sim.world_builder import WorldRecipe


def cmd_make_world(args) -> int:
    from central.twin.progress import tracing_progress_bar
    from sim.world_builder import IN_MODEL, make_world

    update, close = tracing_progress_bar()
    try:
        recipe = IN_MODEL if args.in_model else WorldRecipe()
        density = recipe.clutter_per_100m2 if args.clutter_per_100m2 is None else args.clutter_per_100m2
        recipe = dataclasses.replace(recipe, seed=args.seed, model_error_db=args.model_error_db,
                                     clutter_per_100m2=density)  # fmt: skip
        files = make_world(args.out, args.site, recipe, jammer_start_s=args.jammer_at_s,
                           jammer_position_m=tuple(args.jammer_at_m),
                           scenario_toml=args.scenario.read_text() if args.scenario else None,
                           progress=update)  # fmt: skip
    finally:
        close()
    print(f"true gain maps (+ per-SU model error) in {files.maps_path}; scenario in {files.scenario_path}")
    print("a simulated node reads them with [radio.args] world = ..., scenario = ..., su_id = ...")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rftwin-sim", description="rftwin simulated plant: a physical twin for simulated nodes")
    sub = p.add_subparsers(dest="command", required=True)
    mw = sub.add_parser("make-world", help="trace the world as it is (true materials, clutter, higher "
                        "fidelity) and write it with the demo scenario")
    mw.add_argument("--site", default="factory-hall-a-truth", help="site with the *true* materials "
                    "(default: factory-hall-a-truth, concrete eps_r 7.0, sigma 0.3 S/m)")  # fmt: skip
    mw.add_argument("--out", type=Path, default=Path("world"), help="folder for world.npz and scenario.toml")
    mw.add_argument("--model-error-db", type=float, default=1.0, help="per-SU gain offset std (dB)")
    mw.add_argument("--seed", type=int, default=7, help="draws the clutter, offsets and impairments")
    mw.add_argument("--clutter-per-100m2", type=float, help="unmodelled clutter objects per 100 m² of floor "
                    f"(default: {WorldRecipe.clutter_per_100m2:g}; 0 with --in-model)")  # fmt: skip
    mw.add_argument("--in-model", action="store_true", help="the reference world: the twin's geometry and fidelity, "
                    "only materials and per-SU offsets differ (figures on it are not a headline)")  # fmt: skip
    mw.add_argument("--jammer-at-s", type=float, default=60.0, help="scenario time the jammer switches on")
    mw.add_argument("--jammer-at-m", type=float, nargs=2, default=(36.0, 8.0), metavar=("X", "Y"))
    mw.add_argument("--scenario", type=Path, help="scenario file to use instead of the demo's (AGVs + jammer)")
    mw.set_defaults(func=cmd_make_world)
    return p


def main(argv: list[str] | None = None) -> int:
    from central.twin.site import SiteError

    # ScenarioError and ConfigError are ValueErrors
    return run_command("rftwin-sim", build_parser(), argv, (SiteError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
