"""Calibration campaigns (:mod:`central.campaign`): campaigns, their points and per-SU readings."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from central.campaign import Campaign, CampaignConflict, CampaignNotFound, CampaignPoint, NewPoint, SuReading
from central.store.base import StoreBase, now_ns


class CampaignQueries(StoreBase):
    # --------------------------------------------------------------------------------- campaigns
    def window_readings(self, since_ns: int, until_ns: int, max_skew_ns: int) -> list[tuple[str, float, bool]]:
        """(node_id, power_dbm, saturated) of every record measured in [since_ns, until_ns).

        Found through the ``received_ns`` index: a record cannot have been received before it was
        measured, less the node's clock lead, which ingest bounds by ``max_skew_ns``
        (``limits.max_future_skew_s``); so no index on ``t_ns`` is needed on the ingest path."""
        rows = self._r().execute(
            "SELECT node_id, power_dbm, saturated FROM measurements "
            "WHERE received_ns >= ? AND t_ns >= ? AND t_ns < ?",
            [since_ns - max_skew_ns, since_ns, until_ns],
        ).fetchall()
        return [(n, p, bool(sat)) for n, p, sat in rows]

    def nodes_last_t_ns(self) -> dict[str, int | None]:
        """{node_id: measurement time of its newest record} of the active nodes."""
        return dict(self._r().execute("SELECT id, last_t_ns FROM nodes WHERE revoked = 0").fetchall())

    _CAMPAIGN_SELECT = (
        "SELECT c.id, c.name, c.state, c.description, c.created_ns, c.created_by, c.closed_ns, c.su_ids, "
        "(SELECT count(*) FROM campaign_points p WHERE p.campaign_id = c.id), "
        "(SELECT count(*) FROM campaign_points p WHERE p.campaign_id = c.id AND p.rejected = '') FROM campaigns c"
    )

    @staticmethod
    def _campaign(r) -> Campaign:
        return Campaign(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7])), r[8], r[9])

    def _campaign_in(self, c: sqlite3.Connection, name: str) -> Campaign:
        r = c.execute(self._CAMPAIGN_SELECT + " WHERE c.name = ?", [name]).fetchone()
        if r is None:
            raise CampaignNotFound(f"no campaign {name!r}")
        return self._campaign(r)

    def create_campaign(self, name: str, su_ids: Sequence[str], created_by: str, description: str = "",
                        created_ns: int | None = None) -> Campaign:  # fmt: skip
        """Start a campaign. Refused (:class:`CampaignConflict`) when the name was ever used or another
        campaign is still open: one reference transmitter, one campaign at a time."""
        with self._write() as c:
            row = c.execute("SELECT state FROM campaigns WHERE name = ?", [name]).fetchone()
            if row is not None:
                raise CampaignConflict(f"a campaign named {name!r} already exists ({row[0]}): campaign names "
                                       "are never reused, choose another")  # fmt: skip
            row = c.execute("SELECT name FROM campaigns WHERE state = 'open'").fetchone()
            if row is not None:
                raise CampaignConflict(f"campaign {row[0]!r} is still open: close it first")
            c.execute("INSERT INTO campaigns (name, state, description, created_ns, created_by, su_ids) "
                      "VALUES (?, 'open', ?, ?, ?, ?)",
                      [name, description, now_ns() if created_ns is None else created_ns, created_by,
                       json.dumps(list(su_ids))])  # fmt: skip
            return self._campaign_in(c, name)

    def campaign(self, name: str) -> Campaign:
        """The campaign called ``name``; :class:`CampaignNotFound` if there is none."""
        return self._campaign_in(self._r(), name)

    def campaigns(self, state: str | None = None) -> list[Campaign]:
        """Every campaign (or those in ``state``), oldest first."""
        where, args = (" WHERE c.state = ?", [state]) if state else ("", [])
        rows = self._r().execute(self._CAMPAIGN_SELECT + where + " ORDER BY c.id", args).fetchall()
        return [self._campaign(r) for r in rows]

    def close_campaign(self, name: str, closed_ns: int | None = None) -> Campaign:
        with self._write() as c:
            if self._campaign_in(c, name).state != "open":
                raise CampaignConflict(f"campaign {name!r} is already closed")
            c.execute("UPDATE campaigns SET state = 'closed', closed_ns = ? WHERE name = ?",
                      [now_ns() if closed_ns is None else closed_ns, name])  # fmt: skip
            return self._campaign_in(c, name)

    def add_campaign_points(self, name: str, points: Sequence[NewPoint],
                            created_ns: int | None = None) -> list[CampaignPoint]:  # fmt: skip
        """Append points to an open campaign, all in one transaction (an import is all or nothing);
        they get the next indices. :class:`CampaignConflict` if the campaign is closed."""
        created = now_ns() if created_ns is None else created_ns
        with self._write() as c:
            camp = self._campaign_in(c, name)
            if camp.state != "open":
                raise CampaignConflict(f"campaign {name!r} is closed: no more points (start a new campaign)")
            first = c.execute("SELECT coalesce(max(idx) + 1, 0) FROM campaign_points WHERE campaign_id = ?",
                              [camp.id]).fetchone()[0]  # fmt: skip
            for i, p in enumerate(points, start=first):
                c.execute("INSERT INTO campaign_points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          [camp.id, i, *map(float, p.position_m), p.power_dbm, p.since_ns, p.until_ns, p.source,
                           p.rejected, created])  # fmt: skip
                c.executemany("INSERT INTO campaign_readings VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [(camp.id, i, r.su_id, r.mean_dbm, r.std_db, r.count, r.saturated)
                               for r in p.readings])  # fmt: skip
            return self._campaign_points_in(c, camp, first)

    def campaign_points(self, name: str) -> list[CampaignPoint]:
        """The campaign's points in index order, each with its per-SU readings."""
        c = self._r()
        return self._campaign_points_in(c, self._campaign_in(c, name))

    def _campaign_points_in(self, c: sqlite3.Connection, camp: Campaign, first: int = 0) -> list[CampaignPoint]:
        readings: dict[int, list[SuReading]] = {}
        sql = ("SELECT idx, su_id, mean_dbm, std_db, count, saturated FROM campaign_readings "
               "WHERE campaign_id = ? AND idx >= ? ORDER BY idx, rowid")  # fmt: skip
        for idx, *r in c.execute(sql, [camp.id, first]):
            readings.setdefault(idx, []).append(SuReading(*r))
        rows = c.execute("SELECT idx, x, y, z, power_dbm, rejected, since_ns, until_ns, source, created_ns "
                         "FROM campaign_points WHERE campaign_id = ? AND idx >= ? ORDER BY idx",
                         [camp.id, first]).fetchall()  # fmt: skip
        return [CampaignPoint(camp.name, r[0], (r[1], r[2], r[3]), r[4], tuple(readings.get(r[0], ())), r[5], r[6],
                              r[7], r[8], r[9]) for r in rows]  # fmt: skip
