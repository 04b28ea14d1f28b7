"""Alarms (raised, updated, cleared, acknowledged) and fitted models with their provenance."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from central.live import Alarm, Interference
from central.store.base import ALARM_STATES, StoreError, now_ns
from central.store.records import ModelRecord, _finite
from central.store.webhooks import WebhookQueries


def _json(interference: Interference | None) -> str | None:
    return None if interference is None else json.dumps(interference.to_dict(), allow_nan=False)


def _interference_changed(before: Alarm | None, after: Alarm | None) -> bool:
    a = None if before is None or before.interference is None else before.interference
    b = None if after is None or after.interference is None else after.interference
    key = lambda i: None if i is None else (i.interference_class, i.avoid_subbands, i.mimics_tx)  # noqa: E731
    return key(a) != key(b)


class AlarmQueries(WebhookQueries):
    # ------------------------------------------------------------------------------------ alarms
    _ALARM_COLS = ("id, kind, state, start_ns, end_ns, peak_score, affected_sus, suspected_x, suspected_y, "
                   "acknowledged_by, acknowledged_ns, interference")  # fmt: skip

    @staticmethod
    def _alarm(r) -> Alarm:
        pos = None if r[7] is None else (r[7], r[8])
        interference = None if r[11] is None else Interference.from_dict(json.loads(r[11]))
        return Alarm(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), pos, r[9], r[10], interference)

    def _alarm_in(self, c: sqlite3.Connection, alarm_id: int) -> Alarm | None:
        r = c.execute(f"SELECT {self._ALARM_COLS} FROM alarms WHERE id = ?", [alarm_id]).fetchone()
        return None if r is None else self._alarm(r)

    def open_alarm(self, kind: str, start_ns: int, peak_score: float | None = None,
                   affected_sus: Sequence[str] = (), suspected_position_m: Sequence[float] | None = None,
                   interference: Interference | None = None) -> Alarm:  # fmt: skip
        pos = (None, None) if suspected_position_m is None else tuple(float(v) for v in suspected_position_m[:2])
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO alarms (kind, state, start_ns, peak_score, affected_sus, suspected_x, suspected_y, "
                "interference) VALUES (?, 'active', ?, ?, ?, ?, ?, ?)",
                [kind, start_ns, _finite(peak_score), json.dumps(list(affected_sus)), *pos, _json(interference)],
            )
            alarm = self._alarm_in(c, cur.lastrowid)
            self._enqueue_event(c, "raised", {"alarm": alarm.to_dict()})  # type: ignore[union-attr]
            return alarm  # type: ignore[return-value]

    def update_alarm(self, alarm_id: int, *, peak_score: float | None = None, affected_sus: Sequence[str] | None = None,
                     suspected_position_m: Sequence[float] | None = None) -> Alarm:  # fmt: skip
        """Update an alarm while it lasts: the peak score only grows; SUs and position are replaced."""
        with self._write() as c:
            if self._alarm_in(c, alarm_id) is None:
                raise StoreError(f"no alarm {alarm_id}")
            if _finite(peak_score) is not None:
                c.execute("UPDATE alarms SET peak_score = max(coalesce(peak_score, ?), ?) WHERE id = ?",
                          [peak_score, peak_score, alarm_id])  # fmt: skip
            if affected_sus is not None:
                c.execute("UPDATE alarms SET affected_sus = ? WHERE id = ?", [json.dumps(list(affected_sus)), alarm_id])
            if suspected_position_m is not None:
                c.execute("UPDATE alarms SET suspected_x = ?, suspected_y = ? WHERE id = ?",
                          [float(suspected_position_m[0]), float(suspected_position_m[1]), alarm_id])  # fmt: skip
            return self._alarm_in(c, alarm_id)  # type: ignore[return-value]

    def clear_alarm(self, alarm_id: int, end_ns: int) -> Alarm:
        with self._write() as c:
            changed = c.execute("UPDATE alarms SET state = 'cleared', end_ns = ? WHERE id = ? AND state = 'active'",
                                [end_ns, alarm_id]).rowcount  # fmt: skip
            alarm = self._alarm_in(c, alarm_id)
            if alarm is None:
                raise StoreError(f"no alarm {alarm_id}")
            if changed:
                self._enqueue_event(c, "cleared", {"alarm": alarm.to_dict()})
            return alarm

    def put_alarm(self, alarm: Alarm) -> Alarm:
        """Write an alarm record as the live engine has it (raised, updated or cleared), by its id:
        inserted when new (id 0 or unknown: a new id is assigned), otherwise everything but the
        acknowledgement is replaced. Returns the stored record (with any acknowledgement)."""
        pos = (None, None) if alarm.suspected_position_m is None else tuple(float(v) for v in alarm.suspected_position_m[:2])
        values = [alarm.kind, alarm.state, alarm.start_ns, alarm.end_ns, _finite(alarm.peak_score),
                  json.dumps(list(alarm.affected_sus)), *pos, _json(alarm.interference)]  # fmt: skip
        if alarm.state not in ALARM_STATES:
            raise StoreError(f"alarm state must be one of {', '.join(ALARM_STATES)}, got {alarm.state!r}")
        with self._write() as c:
            before = self._alarm_in(c, alarm.id) if alarm.id > 0 else None
            exists = before is not None
            if exists:
                c.execute("UPDATE alarms SET kind = ?, state = ?, start_ns = ?, end_ns = ?, peak_score = ?, "
                          "affected_sus = ?, suspected_x = ?, suspected_y = ?, interference = ? WHERE id = ?",
                          [*values, alarm.id])  # fmt: skip
                alarm_id = alarm.id
            else:
                cur = c.execute("INSERT INTO alarms (id, kind, state, start_ns, end_ns, peak_score, affected_sus, "
                                "suspected_x, suspected_y, interference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [alarm.id if alarm.id > 0 else None, *values])  # fmt: skip
                alarm_id = cur.lastrowid
            stored = self._alarm_in(c, alarm_id)
            event = ("raised" if before is None and alarm.state == "active" else
                     "cleared" if alarm.state == "cleared" and (before is None or before.state == "active") else
                     # what a scheduler acts on changed: the sub-bands to avoid, or what the interference is
                     "updated" if alarm.state == "active" and _interference_changed(before, stored) else None)  # fmt: skip
            if event:
                self._enqueue_event(c, event, {"alarm": stored.to_dict()})  # type: ignore[union-attr]
            return stored  # type: ignore[return-value]

    def acknowledge_alarm(self, alarm_id: int, by: str, t_ns: int | None = None) -> Alarm | None:
        """Record who acknowledged the alarm (the first acknowledgement is kept); None if there is none."""
        with self._write() as c:
            changed = c.execute("UPDATE alarms SET acknowledged_by = ?, acknowledged_ns = ? WHERE id = ? AND acknowledged_by IS NULL",
                                [by, now_ns() if t_ns is None else t_ns, alarm_id]).rowcount  # fmt: skip
            alarm = self._alarm_in(c, alarm_id)
            if changed and alarm is not None:
                self._enqueue_event(c, "acknowledged", {"alarm": alarm.to_dict()})
            return alarm

    def alarm(self, alarm_id: int) -> Alarm | None:
        return self._alarm_in(self._r(), alarm_id)

    def alarms(self, state: str | None = None, limit: int = 100) -> list[Alarm]:
        """Newest first."""
        if state is not None and state not in ALARM_STATES:
            raise StoreError(f"alarm state must be one of {', '.join(ALARM_STATES)}, got {state!r}")
        where, args = ("WHERE state = ?", [state]) if state else ("", [])
        rows = self._r().execute(f"SELECT {self._ALARM_COLS} FROM alarms {where} ORDER BY id DESC LIMIT ?",
                                 [*args, limit]).fetchall()  # fmt: skip
        return [self._alarm(r) for r in rows]

    def count_active_alarms(self) -> int:
        return self._r().execute("SELECT count(*) FROM alarms WHERE state = 'active'").fetchone()[0]

    # ------------------------------------------------------------------------------------ models
    def add_model(self, kind: str, path: str | Path, provenance: dict, *, activate: bool = True,
                  created_ns: int | None = None) -> ModelRecord:  # fmt: skip
        blob = json.dumps(provenance, sort_keys=True, default=str)
        with self._write() as c:
            if activate:
                c.execute("UPDATE models SET active = 0 WHERE kind = ?", [kind])
            cur = c.execute("INSERT INTO models (kind, path, created_ns, provenance, active) VALUES (?, ?, ?, ?, ?)",
                            [kind, str(path), now_ns() if created_ns is None else created_ns, blob, int(activate)])  # fmt: skip
            model_id = cur.lastrowid
        return self.model(model_id)  # type: ignore[return-value]

    def activate_model(self, model_id: int) -> ModelRecord:
        with self._write() as c:
            row = c.execute("SELECT kind FROM models WHERE id = ?", [model_id]).fetchone()
            if row is None:
                raise StoreError(f"no model {model_id}")
            c.execute("UPDATE models SET active = (id = ?) WHERE kind = ?", [model_id, row[0]])
        return self.model(model_id)  # type: ignore[return-value]

    @staticmethod
    def _model(r) -> ModelRecord:
        return ModelRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), bool(r[5]))

    def model(self, model_id: int) -> ModelRecord | None:
        r = self._r().execute("SELECT id, kind, path, created_ns, provenance, active FROM models WHERE id = ?",
                              [model_id]).fetchone()  # fmt: skip
        return None if r is None else self._model(r)

    def models(self, kind: str | None = None) -> list[ModelRecord]:
        where, args = ("WHERE kind = ?", [kind]) if kind else ("", [])
        rows = self._r().execute(f"SELECT id, kind, path, created_ns, provenance, active FROM models {where} "
                                 "ORDER BY id", args).fetchall()  # fmt: skip
        return [self._model(r) for r in rows]

    def active_model(self, kind: str) -> ModelRecord | None:
        r = self._r().execute("SELECT id, kind, path, created_ns, provenance, active FROM models "
                              "WHERE kind = ? AND active = 1 ORDER BY id DESC LIMIT 1", [kind]).fetchone()  # fmt: skip
        return None if r is None else self._model(r)
