"""The simulated scheduler: every second a new load, disjoint contiguous blocks of sub-bands, idle gaps;
the same allocation in every process; and the context feed that reports it passes the real API's checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from central.api.context import checked_allocation
from central.schemas import ContextUpdate
from contracts.band_plan import BandPlan
from sim.context_feed import ContextFeed, context_payload
from sim.scheduler import Scheduler, SchedulerSettings
from sim.world import World
from tests.test_node_simworld import LEGIT_AND_JAMMER, LOOP, scenario, synthetic_maps
from tests.test_sim_spectral_world import MIMIC

PLAN = BandPlan(3.7e9)
TXS = ["agv-1", "agv-2", "agv-3"]


def test_each_slot_shares_a_load_of_20_to_90_percent_as_disjoint_contiguous_blocks():
    sched = Scheduler(PLAN, TXS, SchedulerSettings(seed=4))
    loads, idle = [], 0
    for slot in range(400):
        alloc = sched.subbands_at(slot + 0.5)
        used = [b for blocks in alloc.values() for b in blocks]
        assert len(used) == len(set(used))  # one sub-band, one transmitter
        for blocks in alloc.values():  # contiguous, allowing a wrap around the band's top edge
            steps = {(b - a) % PLAN.subbands for a, b in zip(blocks, blocks[1:])}
            assert len(blocks) < 2 or steps <= {1, PLAN.subbands - len(blocks) + 1}
        idle += sum(1 for blocks in alloc.values() if not blocks)
        if any(alloc.values()):
            loads.append(len(used) / PLAN.subbands)
    assert 0.2 - 1 / 32 <= min(loads) and max(loads) <= 0.9 + 1 / 32
    assert np.mean(loads) == pytest.approx(0.55, abs=0.05)
    assert idle / (400 * len(TXS)) == pytest.approx(0.15, abs=0.04)  # idle gaps


def test_an_allocation_is_the_same_in_every_process_and_holds_for_its_second():
    a = Scheduler(PLAN, TXS, SchedulerSettings(seed=4))
    b = Scheduler(PLAN, list(reversed(TXS)), SchedulerSettings(seed=4))
    assert a.subbands_at(17.1) == b.subbands_at(17.9) == a.subbands_at(17.0)
    assert a.subbands_at(17.1) != a.subbands_at(18.1) or a.subbands_at(18.1) != a.subbands_at(19.1)
    assert Scheduler(PLAN, TXS, SchedulerSettings(seed=5)).subbands_at(17.1) != a.subbands_at(17.1) or \
        Scheduler(PLAN, TXS, SchedulerSettings(seed=5)).subbands_at(3.1) != a.subbands_at(3.1)  # fmt: skip


def test_a_transmitter_keeps_its_spectral_density_so_its_total_follows_its_share():
    sched = Scheduler(PLAN, TXS, SchedulerSettings(seed=1))
    t = next(t + 0.5 for t in range(100) if len(sched.subbands_at(t + 0.5)["agv-1"]) >= 2)
    alloc = sched.allocation_dbm("agv-1", t, 20.0)
    share = sum(PLAN.grid[b].width_hz for b, _ in alloc) / PLAN.occupied_hz
    assert Scheduler.total_dbm(alloc) == pytest.approx(20.0 + 10 * math.log10(share))
    assert Scheduler.total_dbm(()) == -math.inf


def test_bad_settings_are_refused():
    for kw in ({"load_min": 0.0}, {"load_min": 0.9, "load_max": 0.5}, {"idle_probability": 1.0}, {"period_s": 0}):
        with pytest.raises(ValueError):
            SchedulerSettings(**kw)


def test_the_feed_reports_allocations_the_central_unit_accepts(tmp_path):
    from tests.test_sim_spectral_world import PLAN as PLAN_20MHZ, SCHEDULED

    world = World(synthetic_maps(tmp_path), scenario(SCHEDULED + MIMIC))
    t0 = 1.8e9  # the wall clock of the feed: scenario time 40 s is t0 + 40
    clock = iter([t0 + 40.0 + k for k in range(30)])
    feed = ContextFeed(world, t0, (10.0, 8.0), clock=lambda: next(clock))
    seen_idle = seen_busy = False
    for _ in range(30):
        reports = feed.reports()
        assert [r.tx_id for r in reports] == ["gnb", "agv"]  # the jammer is never reported
        update = ContextUpdate.model_validate(context_payload(reports))
        for r, t in zip(reports, update.transmitters):
            got = checked_allocation(t, PLAN_20MHZ, r.tx_id)  # the API's own checks: ids, sum of powers
            assert got == r.allocation
            seen_idle |= got == ()
            seen_busy |= bool(got)
    assert seen_idle and seen_busy
    plain = ContextFeed(World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER + LOOP)), t0, (10.0, 8.0),
                        clock=lambda: t0 + 40.0)  # fmt: skip
    assert all(r.allocation is None for r in plain.reports())  # no scheduler in the scenario: none reported
    assert "allocation" not in context_payload(plain.reports())["transmitters"][0]
    assert dataclasses.replace(plain.reports()[0], allocation=()).transmitting is False
