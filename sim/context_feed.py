"""A simulated context feed: where the legitimate transmitters are, as a plant's systems would report it.

In a plant the positions come from the RAN or the AGV fleet manager, with their own localisation
error; here they come from the simulated world's scenario (true positions at scenario time) plus a
radial error ~ N(0, 0.37 m) in a uniform direction (the paper's DT inaccuracy), clipped to the hall.
The feed posts them to the central unit's context API with its integration token, like any other
integration. When the scenario has a scheduler (``[scheduler]``: :mod:`sim.scheduler`), it also
reports each transmitter's allocation over the band plan, as a RAN's scheduler would (its power then
the allocation's total), the same allocation the world's radios transmit. Jammers are, of course,
never reported.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import httpx
import numpy as np

from central.live import TxContext
from sim.world import World

log = logging.getLogger(__name__)
CONTEXT_PATH = "/api/v1/context"


class ContextFeed:
    def __init__(self, world: World, start_time_s: float, hall_xy_m: tuple[float, float],
                 localisation_error_m: float = 0.37, seed: int = 11,
                 clock: Callable[[], float] = time.time):  # fmt: skip
        self.world = world
        self.scheduler = world.scheduler  # the scenario's: the world's radios transmit what it allocates
        self.start_time_s = start_time_s
        self.hall_xy_m = hall_xy_m
        self.error_m = localisation_error_m
        self._rng = np.random.default_rng(seed)
        self._clock = clock

    def reports(self) -> list[TxContext]:
        """The legitimate transmitters on air now, at their reported (erroneous) positions."""
        now_s = self._clock()
        t_ns = round(now_s * 1e9)
        out = []
        for s in self.world.legitimate_at(now_s - self.start_time_s):
            r = self._rng.normal(0.0, self.error_m)
            a = self._rng.uniform(0.0, 2 * math.pi)
            x = min(max(s.position_m[0] + r * math.cos(a), 0.0), self.hall_xy_m[0])
            y = min(max(s.position_m[1] + r * math.sin(a), 0.0), self.hall_xy_m[1])
            power, allocation = s.tx_power_dbm, None
            if self.scheduler is not None:
                allocation = self.scheduler.allocation_dbm(s.id, now_s - self.start_time_s, s.tx_power_dbm)
                power = self.scheduler.total_dbm(allocation) if allocation else s.tx_power_dbm
            out.append(TxContext(s.id, t_ns, (x, y, s.position_m[2]), power, 0.0, s.bandwidth_hz, allocation))
        return out


    def next_reallocation_s(self, now_s: float) -> float | None:
        """Wall time of the scheduler's next reallocation after ``now_s`` (None without a scheduler): a
        RAN reports allocations when they change, and the central unit judges no snapshot whose readings
        straddle a change it has not been told of."""
        if self.scheduler is None:
            return None
        period = self.scheduler.settings.period_s
        return self.start_time_s + (math.floor((now_s - self.start_time_s) / period) + 1) * period


def context_payload(reports: list[TxContext]) -> dict:
    return {"transmitters": [{"tx_id": r.tx_id, "t_ns": r.t_ns, "position_m": list(r.position_m),
                              "power_dbm": r.power_dbm, "f_center_hz": r.f_center_hz, "bandwidth_hz": r.bandwidth_hz,
                              **({} if r.allocation is None else
                                 {"allocation": [{"subband": b, "power_dbm": p} for b, p in r.allocation]})}
                             for r in reports]}  # fmt: skip


def run_feed(feed: ContextFeed, central_url: str, token: str, period_s: float = 0.5,
             stop: Callable[[], bool] = lambda: False) -> None:  # fmt: skip
    """Post the context every ``period_s``, and just after every reallocation of the scenario's scheduler,
    until ``stop()``; failures are logged and retried."""
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=5.0) as client:
        next_t = time.time()
        while not stop():
            now = time.time()
            realloc = feed.next_reallocation_s(now)
            reports = feed.reports()
            try:  # nothing on air (e.g. between a campaign's slots): nothing to report, the API takes no empty list
                r = client.post(central_url.rstrip("/") + CONTEXT_PATH, json=context_payload(reports)) if reports else None
                if r is not None and r.status_code != 200:
                    log.warning("context rejected: %s %s", r.status_code, r.text[:200])
            except httpx.HTTPError as e:
                log.warning("context feed: %s", e)
            next_t = max(next_t + period_s, now)
            if realloc is not None and realloc + 0.005 < next_t:  # the new allocation, 5 ms after it takes effect
                next_t = realloc + 0.005
            time.sleep(max(0.0, next_t - time.time()))
