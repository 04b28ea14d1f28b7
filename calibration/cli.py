"""``rftwin-calibrate``: the calibration command line (campaigns arrive with issue #6)."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rftwin-calibrate", description="rftwin calibration campaigns")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("version", help="print the installed rftwin version")
    v.set_defaults(func=lambda args: print(f"rftwin {version('rftwin')}") or 0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
