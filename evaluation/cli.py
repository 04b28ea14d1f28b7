"""``rftwin-evaluate``: the offline evaluation's command line.

- ``dataset``: a seeded detection dataset from the twin (issue 5, :mod:`evaluation.dataset`): the
  paper's reference scenario, physical twin vs digital twin, Δ stored per model-error σ.

Exit status: 0 done; 2 bad arguments, a bad site, or a file that cannot be written.
"""

from __future__ import annotations

import argparse
import sys

from contracts.cli_args import run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rftwin-evaluate", description="rftwin offline evaluation")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dataset", help="generate a seeded detection dataset from the twin (issue 5)")
    d.add_argument(
        "--site", default="factory-hall-a", help="built-in site name or site file (default: %(default)s)"
    )
    d.add_argument("--n", type=int, default=5000, help="realisations (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", required=True, help="output .npz")
    d.add_argument(
        "--pt-site",
        default=None,
        help="site whose twin plays the physical world (e.g. factory-hall-a-truth); default: --site",
    )
    d.add_argument(
        "--sigmas", default="0,3,6", help="model-error σ values in dB stored as Δ (default: %(default)s)"
    )
    d.add_argument("--loc-error-std", type=float, default=0.37, help="TX localisation error std, m")
    d.add_argument(
        "--jammer-power", type=float, default=None, help="jammer power in dBm (default: 20, as the TXs)"
    )
    d.set_defaults(func=_dataset)
    return p


def _dataset(args) -> int:
    from central.twin import Twin
    from evaluation.dataset import generate_dataset

    twin = Twin.load(args.site)
    pt_twin = Twin.load(args.pt_site) if args.pt_site else None
    ds = generate_dataset(twin, args.n, args.seed, sigmas_db=[float(s) for s in args.sigmas.split(",")],
                          loc_error_std_m=args.loc_error_std, jammer_power_dbm=args.jammer_power,
                          pt_twin=pt_twin)  # fmt: skip
    path = ds.save(args.out)
    print(f"{path}: {ds.n} realisations ({int(ds.jammer.sum())} jammed), site {ds.site}, "
          f"PT from {ds.meta['pt_site']}, seed {ds.seed}, sigmas {list(ds.sigmas_db)} dB")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    from central.twin.site import SiteError

    return run_command("rftwin-evaluate", build_parser(), argv, (SiteError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
