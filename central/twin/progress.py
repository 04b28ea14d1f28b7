"""Progress over gain-map tracing: a bar for the command lines that may trace (central, calibration,
sim), log lines for the service (the journal)."""

from __future__ import annotations

import logging
import sys
import time


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


def tracing_progress_log(logger: logging.Logger, every_fraction: float = 0.1, every_s: float = 30.0,
                         level: int = logging.INFO):  # fmt: skip
    """A progress reporter for services (the journal has no terminal for a bar): a callback taking
    :func:`central.twin.gain_maps.build_gain_maps`'s ``progress(su_id, done, total)`` that logs one
    line when tracing starts, then one each time another ``every_fraction`` of the cells is done or
    ``every_s`` has passed since the last line, and one at the end with the elapsed seconds. A cache
    hit never calls it, so it logs nothing. A second build through it (done going back, another
    total) starts over with a new start line.
    """
    state: dict = {}

    def update(su_id: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not state or total != state["total"] or done < state["done"]:  # first call, or another build
            state.update(total=total, done=done, t0=now, last_t=now, last_frac=0.0, ended=False)
            logger.log(level, "tracing gain maps: %d cells to trace (%s first); this takes a while", total, su_id)
        state["done"] = done
        if state["ended"] or total <= 0:
            return
        frac = done / total
        if done >= total:
            state["ended"] = True
            logger.log(level, "tracing gain maps: done, %d cells in %.1f s", total, now - state["t0"])
        elif frac - state["last_frac"] >= every_fraction or now - state["last_t"] >= every_s:
            state.update(last_frac=frac, last_t=now)
            elapsed = now - state["t0"]
            eta = elapsed * (1.0 - frac) / frac if frac > 0 else float("nan")
            logger.log(level, "tracing gain maps: %3.0f %% (%d/%d cells, at %s), %.0f s so far, ~%.0f s left",
                       100.0 * frac, done, total, su_id, elapsed, eta)  # fmt: skip

    return update
