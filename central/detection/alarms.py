"""Alarm hysteresis: one noisy window must not page anyone, and an alarm must not flap.

:class:`AlarmTracker` turns a stream of per-snapshot verdicts into alarm records (``central.live.Alarm``)
for one alarm kind ("residual" or "saturation"):

- **raise** when the current snapshot is anomalous and at least ``raise_k`` of the last ``raise_n``
  verdicts were (``raise_k == raise_n`` means k consecutive). ``start_ns`` = time of the earliest
  anomalous snapshot in that window.
- while active, anomalous snapshots raise ``peak_score`` (max of the scores) and refresh
  ``affected_sus`` and ``suspected_position_m`` (latest anomalous snapshot: a jammer can move, and the
  operator wants to know where it is now), and so does ``interference`` (what it is: class, sub-bands,
  EIRP, region, countermeasure; kept when a snapshot brings none). An "updated" transition is emitted when one of those
  changed, at most once per ``update_interval_s``, so a store is not written at the snapshot rate.
- **clear** after ``clear_m`` consecutive normal verdicts; ``end_ns`` = time of the first of them
  (when the emission was first seen gone). The window is then reset: a new alarm needs k fresh hits.
- a verdict of ``None`` (unknown: the detector could not run) counts neither way: it neither raises
  nor clears. An alarm stays active while the data cannot tell (e.g. nodes down), by design.

Alarm ids come from ``new_id(alarm)``, called once per raised alarm with the record about to be raised
(``id`` 0) and returning its id (updates and clears reuse it). The default is a process-local counter
from 1; a service that persists alarms passes a callback that inserts the alarm in its store and
returns the store's id (e.g. ``lambda a: store.open_alarm(a.kind, a.start_ns, a.peak_score,
a.affected_sus, a.suspected_position_m).id``), so ids stay unique across restarts. Acknowledgement fields are always None
here: acknowledging is the store's business and must survive updates from this tracker.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from central.live import Alarm, Interference

RAISED, UPDATED, CLEARED = "raised", "updated", "cleared"


@dataclass(frozen=True)
class AlarmTransition:
    event: str  # "raised", "updated" or "cleared"
    alarm: Alarm  # the full record after the transition (state "active" or "cleared")


def counter_ids(start: int = 1) -> Callable[[Alarm], int]:
    """A process-local id source: 1, 2, 3, … (ignores the alarm)."""
    it = itertools.count(start)
    return lambda alarm=None: next(it)


class AlarmTracker:
    def __init__(
        self,
        kind: str,
        raise_k: int = 2,
        raise_n: int = 3,
        clear_m: int = 5,
        new_id: Callable[[Alarm], int] | None = None,
        update_interval_s: float = 1.0,
    ):
        if not 1 <= raise_k <= raise_n or clear_m < 1:
            raise ValueError(f"need 1 <= raise_k <= raise_n and clear_m >= 1, got {raise_k}, {raise_n}, {clear_m}")
        self.kind = kind
        self.raise_k, self.raise_n, self.clear_m = raise_k, raise_n, clear_m
        self.new_id = new_id or counter_ids()
        self.update_interval_ns = int(update_interval_s * 1e9)
        self._window: deque[tuple[int, bool]] = deque(maxlen=raise_n)  # (t_ns, anomalous)
        self._normal_streak = 0
        self._first_normal_ns: int | None = None
        self.active: Alarm | None = None
        self._last_emitted: Alarm | None = None
        self._last_emit_ns = 0

    def reset(self) -> None:
        """Forget the window and any active alarm (without emitting a clear)."""
        self._window.clear()
        self._normal_streak = 0
        self._first_normal_ns = None
        self.active = None
        self._last_emitted = None

    def update(
        self,
        t_ns: int,
        anomalous: bool | None,
        score: float | None = None,
        affected_sus: Sequence[str] = (),
        position_m: tuple[float, float] | None = None,
        onset_ns: int | None = None,
        interference: Interference | None = None,
    ) -> list[AlarmTransition]:
        """Advance by one verdict. ``onset_ns``: when the caller knows the anomaly began before the
        window's first anomalous snapshot (a CUSUM's change-point estimate), the raised alarm starts there."""
        if anomalous is None:
            return []
        self._window.append((t_ns, bool(anomalous)))
        if self.active is None:
            if not anomalous:
                return []
            hits = [t for t, a in self._window if a]
            if len(hits) >= self.raise_k:
                start_ns = hits[0] if onset_ns is None else min(hits[0], onset_ns)
                pending = Alarm(
                    id=0, kind=self.kind, state="active", start_ns=start_ns, end_ns=None,
                    peak_score=score, affected_sus=tuple(affected_sus), suspected_position_m=position_m,
                    interference=interference,
                )  # fmt: skip
                self.active = replace(pending, id=int(self.new_id(pending)))
                self._normal_streak = 0
                return [self._emit(RAISED, t_ns)]
            return []
        if anomalous:
            self._normal_streak = 0
            a = self.active
            peak = a.peak_score if score is None or (a.peak_score is not None and a.peak_score >= score) else score
            self.active = replace(a, peak_score=peak, affected_sus=tuple(affected_sus) or a.affected_sus,
                                  suspected_position_m=position_m or a.suspected_position_m,
                                  interference=interference or a.interference)  # fmt: skip
            changed = self.active != self._last_emitted
            if changed and t_ns - self._last_emit_ns >= self.update_interval_ns:
                return [self._emit(UPDATED, t_ns)]
            return []
        if self._normal_streak == 0:
            self._first_normal_ns = t_ns
        self._normal_streak += 1
        if self._normal_streak >= self.clear_m:
            cleared = replace(self.active, state="cleared", end_ns=self._first_normal_ns)
            self.active = cleared
            out = self._emit(CLEARED, t_ns)
            self.reset()
            return [out]
        return []

    def adopt(self, alarm: Alarm) -> None:
        """Continue an alarm that is still active in the store (e.g. after a restart): it clears
        after ``clear_m`` normal verdicts like one raised here."""
        if alarm.kind != self.kind or alarm.state != "active":
            raise ValueError(f"cannot adopt a {alarm.state} {alarm.kind!r} alarm into the {self.kind!r} tracker")
        self.reset()
        self.active = self._last_emitted = alarm

    def pending_update(self, t_ns: int) -> list[AlarmTransition]:
        """An "updated" transition for changes held back by the rate limit, if any (call it when
        a caller wants the latest state flushed, e.g. on shutdown)."""
        if self.active is not None and self.active != self._last_emitted:
            return [self._emit(UPDATED, t_ns)]
        return []

    def _emit(self, event: str, t_ns: int) -> AlarmTransition:
        self._last_emitted = self.active
        self._last_emit_ns = t_ns
        return AlarmTransition(event, self.active)
