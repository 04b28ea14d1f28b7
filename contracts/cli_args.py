"""What several command lines share (``rftwin-central``, ``rftwin-calibrate``, ``rftwin-evaluate``,
``rftwin-sim``): argparse types and the one way a command reports an expected failure."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence


def run_command(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                expected: tuple[type[BaseException], ...]) -> int:  # fmt: skip
    """Parse ``argv``, run the subcommand's ``func(args)`` and return its exit status; an ``expected``
    failure (bad input, a file that cannot be read) is one line ``PROG: error: …`` and exit status 2,
    not a traceback; an exception with an ``exit_code`` attribute exits with that status instead
    (sysexits.h: ``rftwin-central run`` tells a corrupt database from a busy port that way)."""
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except expected as e:
        print(f"{prog}: error: " + " ".join(str(e).splitlines()), file=sys.stderr)  # one line, always
        code = getattr(e, "exit_code", 2)
        return code if isinstance(code, int) else 2


def position_arg(text: str) -> tuple[float, float, float]:
    """argparse type: ``x,y,z`` in metres, three finite numbers."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,z in metres, got {text!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected three finite numbers x,y,z (m), got {text!r}")
    return values  # type: ignore[return-value]
