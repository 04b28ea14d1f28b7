"""Nodes (enrolled sensing-unit agents, their tokens and ingest statistics) and the named credentials
(integrations, operators, viewers, scrapers)."""

from __future__ import annotations

from collections.abc import Sequence

from central.auth import CREDENTIAL_TABLES, hash_token, new_token
from central.live import NodeHealth
from central.store.base import StoreBase, StoreError, now_ns
from central.store.records import NodeRecord


class NodeQueries(StoreBase):
    # ------------------------------------------------------------------------------------- nodes
    def add_node(self, node_id: str, position_m: Sequence[float], *, su_id: str | None = None,
                 token: str | None = None) -> str:  # fmt: skip
        """Enrol a node; returns its token (only its hash is stored). A node id is never reused, even
        after revocation: its (node_id, seq) keys are taken, and a new board starts again at seq 0."""
        token = token or new_token("node")
        x, y, z = (float(v) for v in position_m)
        with self._write() as c:
            row = c.execute("SELECT revoked FROM nodes WHERE id = ?", [node_id]).fetchone()
            if row is not None:
                why = " (revoked; ids are never reused: enrol the new board under a new id)" if row[0] else ""
                raise StoreError(f"node {node_id!r} is already enrolled{why}")
            if su_id is not None:
                other = c.execute("SELECT id FROM nodes WHERE su_id = ? AND revoked = 0", [su_id]).fetchone()
                if other is not None:
                    raise StoreError(f"sensing unit {su_id!r} is already served by node {other[0]!r}; revoke it first")
            c.execute("INSERT INTO nodes (id, x, y, z, token_sha256, enrolled_ns, revoked, su_id) "
                      "VALUES (?, ?, ?, ?, ?, ?, 0, ?)", [node_id, x, y, z, hash_token(token), now_ns(), su_id])  # fmt: skip
        return token

    def set_node_su(self, node_id: str, su_id: str | None) -> None:
        with self._write() as c:
            c.execute("UPDATE nodes SET su_id = ? WHERE id = ?", [su_id, node_id])

    def revoke_node(self, node_id: str) -> bool:
        """Revoke a node's token at once; False if there is no such node or it was already revoked."""
        with self._write() as c:
            return c.execute("UPDATE nodes SET revoked = 1 WHERE id = ? AND revoked = 0", [node_id]).rowcount == 1

    def rotate_node_token(self, node_id: str, token: str | None = None) -> str:
        """A new token for an active node; the old one is refused from this commit on. The node keeps
        spooling (401s are retried) until its token file holds the new token, so nothing is lost."""
        token = token or new_token("node")
        with self._write() as c:
            row = c.execute("SELECT revoked FROM nodes WHERE id = ?", [node_id]).fetchone()
            if row is None:
                raise StoreError(f"no node {node_id!r} is enrolled")
            if row[0]:
                raise StoreError(f"node {node_id!r} is revoked; enrol the board under a new id")
            c.execute("UPDATE nodes SET token_sha256 = ? WHERE id = ?", [hash_token(token), node_id])
        return token

    def nodes(self) -> list[NodeRecord]:
        rows = self._r().execute("SELECT id, x, y, z, su_id, token_sha256, enrolled_ns, revoked FROM nodes ORDER BY id")
        return [NodeRecord(r[0], (r[1], r[2], r[3]), r[4], r[5], r[6], bool(r[7])) for r in rows.fetchall()]

    def node_su_map(self) -> dict[str, str]:
        """{node_id: su_id} of the active (not revoked) nodes that serve a sensing unit."""
        rows = self._r().execute("SELECT id, su_id FROM nodes WHERE revoked = 0 AND su_id IS NOT NULL").fetchall()
        return dict(rows)

    def node_credentials(self) -> list[tuple[str, tuple[str, bool]]]:
        """(token_sha256, (node_id, revoked)) for every node, for :func:`central.auth.match_token`."""
        rows = self._r().execute("SELECT token_sha256, id, revoked FROM nodes").fetchall()
        return [(h, (n, bool(rev))) for h, n, rev in rows]

    def node_health(self, stale_s: float, now: int | None = None, band_plan: str | None = None) -> list[NodeHealth]:
        """Every node's health. With ``band_plan`` (the site's fingerprint), a node whose latest reading
        was measured against another plan is unhealthy: its sub-band powers are stored, not used."""
        now = now_ns() if now is None else now
        rows = self._r().execute(
            "SELECT id, x, y, z, su_id, revoked, enrolled_ns, records, last_seen_ns, last_t_ns, last_seq, "
            "last_power_dbm, last_saturated, last_band_plan FROM nodes ORDER BY id"
        ).fetchall()
        out = []
        for (nid, x, y, z, su, revoked, enrolled, records, seen, last_t, last_seq, power, sat, plan) in rows:
            saturated = bool(sat)
            if revoked:
                healthy, detail = False, "revoked"
            elif seen is None:
                healthy, detail = False, "never seen"
            elif (now - seen) > stale_s * 1e9:
                healthy, detail = False, f"stale: last seen {(now - seen) / 1e9:.1f} s ago"
            elif saturated:
                healthy, detail = False, "saturated"
            elif band_plan and plan and plan != band_plan:
                healthy, detail = False, (f"band plan mismatch: measures against plan {plan}, the site's is {band_plan} "
                                          "(rftwin-node check says what differs); its readings are stored, not used")  # fmt: skip
            else:
                healthy, detail = True, ""
            extra = {"su_id": su, "revoked": bool(revoked), "enrolled_ns": enrolled, "last_seq": last_seq,
                     "band_plan": plan or ""}  # fmt: skip
            out.append(NodeHealth(nid, (x, y, z), seen, last_t, power, records, saturated, healthy, detail, extra))
        return out

    # ------------------------------------------------ integrations, operators, viewers, scrapers
    def add_credential(self, kind: str, name: str, token: str | None = None) -> str:
        """Enrol a named token of ``kind`` (:data:`central.auth.CREDENTIAL_TABLES`); returns the token."""
        table = self._credential_table(kind)
        token = token or new_token(kind)
        with self._write() as c:
            if c.execute(f"SELECT 1 FROM {table} WHERE name = ?", [name]).fetchone():
                raise StoreError(f"{kind} {name!r} already exists")
            c.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", [name, hash_token(token), now_ns()])
        return token

    def add_integration(self, name: str, token: str | None = None) -> str:
        return self.add_credential("integration", name, token)

    def add_operator(self, name: str, token: str | None = None) -> str:
        return self.add_credential("operator", name, token)

    def rotate_credential(self, table: str, name: str, token: str | None = None) -> str:
        """A new token for a named credential; the old one is refused at once."""
        kind = self._credential_kind(table)
        token = token or new_token(kind)
        with self._write() as c:
            if c.execute(f"UPDATE {table} SET token_sha256 = ? WHERE name = ?", [hash_token(token), name]).rowcount != 1:
                raise StoreError(f"no {kind} {name!r} is enrolled")
        return token

    def remove_credential(self, table: str, name: str) -> None:
        """Remove a named credential: its token is refused at once."""
        kind = self._credential_kind(table)
        with self._write() as c:
            if c.execute(f"DELETE FROM {table} WHERE name = ?", [name]).rowcount != 1:
                raise StoreError(f"no {kind} {name!r} is enrolled")

    @staticmethod
    def _credential_kind(table: str) -> str:
        kinds = {t: k for k, t in CREDENTIAL_TABLES.items()}
        if table not in kinds:
            raise StoreError(f"no credential table {table!r}")
        return kinds[table]

    @staticmethod
    def _credential_table(kind: str) -> str:
        if kind not in CREDENTIAL_TABLES:
            raise StoreError(f"no credential kind {kind!r}")
        return CREDENTIAL_TABLES[kind]

    def credentials(self, kind: str) -> list[tuple[str, str]]:
        """(token_sha256, name) of every enrolled credential of ``kind``."""
        table = self._credential_table(kind)
        return [(h, n) for n, h in self._r().execute(f"SELECT name, token_sha256 FROM {table}").fetchall()]

    def credential_names(self, table: str) -> list[str]:
        self._credential_kind(table)
        return [n for (n,) in self._r().execute(f"SELECT name FROM {table} ORDER BY name").fetchall()]
