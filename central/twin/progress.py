"""A progress bar over gain-map tracing, for the command lines that may trace (central, calibration, sim)."""

from __future__ import annotations

import sys


def tracing_progress_bar():
    """A tqdm bar over one build's SU × cell work; returns (callback, close).

    The callback takes :func:`central.twin.gain_maps.build_gain_maps`'s ``progress(su_id, done, total)``,
    whose total covers the whole build from its first call, so the bar's percentage only moves forward.
    A second build through the same callback (the demo traces the twin, then the world) starts a new bar.
    """
    from tqdm import tqdm

    bar = None

    def update(su_id: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is not None and (total != bar.total or done < bar.n):  # another build
            bar.close()
            bar = None
        if bar is None:  # created on first work, so a cache hit prints nothing
            bar = tqdm(unit="cell", desc="tracing gain maps", file=sys.stderr, dynamic_ncols=True, total=total)
        bar.set_postfix_str(su_id, refresh=False)
        bar.update(done - bar.n)

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close
