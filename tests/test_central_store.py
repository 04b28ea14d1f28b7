"""The central store: idempotent durable ingest, one writer and concurrent readers, migrations,
context, snapshots, alarms, models, retention."""

from __future__ import annotations

import dataclasses

import sqlite3
import threading

import pytest

from central.auth import hash_token
from central.live import Snapshot, SuState, TxContext
from central.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError
from node.protocol import IngestAck, IngestBatch, Measurement
from tests.central_helpers import records


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "central.db")
    s.add_node("su01", (6.5, 29.5, 1.5), su_id="su01", token="tok1")
    yield s
    s.close()


T0 = 1_764_000_000_000_000_000


def batch(n: int, first: int = 0, node: str = "su01") -> IngestBatch:
    return IngestBatch(node, tuple(records(n, node, first, t0_ns=T0)))


def test_wal_and_full_sync_because_an_ack_promises_durability(store):
    assert store._w.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._w.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_ingest_is_idempotent_and_acks_every_seq_of_the_batch(store):
    assert store.ingest(batch(5)) == IngestAck((0, 1, 2, 3, 4), 0)
    assert store.ingest(batch(5)) == IngestAck((0, 1, 2, 3, 4), 5)
    assert store.ingest(batch(4, first=3)) == IngestAck((3, 4, 5, 6), 2)  # overlap: 2 old, 2 new
    assert store.seqs("su01") == list(range(7))
    back = store.measurements("su01")
    assert back == records(7, t0_ns=T0)  # every field round-trips, sub-bands included


def test_node_statistics_follow_the_newest_record_not_the_latest_batch(store):
    store.ingest(batch(5, first=10), received_ns=1000)
    store.ingest(batch(2, first=0), received_ns=2000)  # a late replay of older records
    (h,) = store.node_health(stale_s=1.0, now=2000)
    assert h.records == 7 and h.last_seen_ns == 2000 and h.extra["last_seq"] == 14
    assert h.last_power_dbm == pytest.approx(-70.0 + 1.4) and h.healthy
    (h,) = store.node_health(stale_s=1.0, now=2000 + 2 * 10**9)
    assert not h.healthy and h.detail.startswith("stale: last seen 2.0 s ago")


def test_health_says_never_seen_revoked_and_saturated(store):
    store.add_node("su02", (12.5, 29.5, 1.5), su_id="su02", token="tok2")
    store.add_node("su03", (17.5, 29.5, 1.5), su_id="su03", token="tok3")
    store.ingest(IngestBatch("su02", tuple(records(1, "su02", saturated=True))))
    assert store.revoke_node("su03") and not store.revoke_node("su03") and not store.revoke_node("nope")
    details = {h.node_id: (h.healthy, h.detail, h.saturated) for h in store.node_health(1.0)}
    assert details == {"su01": (False, "never seen", False), "su02": (False, "saturated", True),
                       "su03": (False, "revoked", False)}  # fmt: skip


def test_node_ids_and_sus_are_never_taken_twice(store):
    with pytest.raises(StoreError, match="already enrolled"):
        store.add_node("su01", (6.5, 29.5, 1.5))
    with pytest.raises(StoreError, match="already served by node 'su01'"):
        store.add_node("board-7", (6.5, 29.5, 1.5), su_id="su01")
    store.revoke_node("su01")
    with pytest.raises(StoreError, match="ids are never reused"):
        store.add_node("su01", (6.5, 29.5, 1.5))
    store.add_node("board-7", (6.6, 29.5, 1.5), su_id="su01")  # the SU is free again after revocation


def test_only_token_hashes_are_stored(store):
    token = store.add_integration("feed")
    assert token.startswith("rti_") and len(token) > 40
    assert store.credentials("integration") == [(hash_token(token), "feed")]
    assert [(h, n) for h, (n, _) in store.node_credentials()] == [(hash_token("tok1"), "su01")]
    raw = (store.path.read_bytes() + store.path.with_name("central.db-wal").read_bytes())
    assert token.encode() not in raw and b"tok1" not in raw
    with pytest.raises(StoreError, match="already exists"):
        store.add_integration("feed")
    assert store.add_operator("alice").startswith("rto_") and store.credential_names("operators") == ["alice"]


def test_concurrent_writers_and_readers_lose_nothing(store):
    """Eight threads ingest overlapping batches while others read: one writer, per-thread readers."""
    errors = []

    def writer(k: int) -> None:
        try:
            for i in range(20):
                store.ingest(batch(50, first=(k % 4) * 500 + i * 25))  # overlaps its neighbour and itself
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(50):
                store.node_health(1.0)
                store.measurements("su01", limit=10)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = sorted({(k % 4) * 500 + i * 25 + j for k in range(8) for i in range(20) for j in range(50)})
    assert store.seqs("su01") == expected
    (h,) = store.node_health(1.0)
    assert h.records == len(expected)  # counted once however often it was sent


def test_a_failed_batch_leaves_nothing_behind(store):
    store.ingest(batch(2))
    broken = Measurement("su01", 9, 1, 3.7e9, 2e7, None)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.ingest(IngestBatch("su01", (*records(2, first_seq=2), broken)))  # NOT NULL: all rolled back
    assert store.seqs("su01") == [0, 1]
    assert store.ingest(batch(3, first=2)).duplicates == 0  # and the writer is usable again


# ------------------------------------------------------------------------------------ migrations


def test_upgrading_a_v1_database_keeps_its_data_and_backfills_node_statistics(tmp_path):
    path = tmp_path / "old.db"
    with Store(path, migrate=False) as old:
        assert old.migrate(target=1) == 1
        c = old._w
        c.execute("INSERT INTO nodes VALUES ('su01', 6.5, 29.5, 1.5, ?, 1, 0)", [hash_token("t")])
        rows = [("su01", s, 1000 + s, 3.7e9, 2e7, -60.0 - s, "[]", 0, 0.0, 0.0, 5000 + s) for s in range(3)]
        c.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        c.execute("INSERT INTO alarms (kind, state, start_ns, affected_sus) VALUES ('residual', 'active', 7, '[]')")
        assert "operators" not in old.db.table_names()
    with Store(path) as new:
        assert new.schema_version == SCHEMA_VERSION == len(MIGRATIONS) >= 2
        assert [v for (v,) in new._w.execute("SELECT version FROM schema_version ORDER BY version")] == list(
            range(1, SCHEMA_VERSION + 1)
        )
        (h,) = new.node_health(1.0, now=5002)
        assert (h.records, h.last_seen_ns, h.last_t_ns, h.last_power_dbm, h.extra["last_seq"]) == (3, 5002, 1002, -62.0, 2)
        assert h.extra["su_id"] is None  # filled in by the service from the site (assign_missing_sus)
        assert new.alarms()[0].start_ns == 7
        assert "operators" in new.db.table_names()
        assert "idx_measurements_received" in {i.name for i in new.db["measurements"].indexes}
        new.ingest(batch(2, first=3))
        assert new.seqs("su01") == [0, 1, 2, 3, 4]
    with Store(path) as again:  # reopening applies nothing twice
        assert again.schema_version == SCHEMA_VERSION


def test_a_database_from_newer_software_is_refused(tmp_path):
    path = tmp_path / "new.db"
    Store(path).close()
    with sqlite3.connect(path) as c:
        c.execute("INSERT INTO schema_version VALUES (?, 0)", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match="newer than this software"):
        Store(path)


def test_assign_missing_sus_maps_old_nodes_onto_the_site(tmp_path):
    from central.enrolment import assign_missing_sus
    from central.twin.site import resolve_site

    with Store(tmp_path / "c.db") as s:
        s.add_node("board-a", (12.4, 29.6, 1.5))
        s.add_node("board-b", (20.0, 20.0, 1.5))
        warnings = assign_missing_sus(s, resolve_site("factory-hall-a"))
        assert {n.id: n.su_id for n in s.nodes()} == {"board-a": "su02", "board-b": None}
        assert len(warnings) == 1 and "board-b" in warnings[0] and "nearest sensing unit" in warnings[0]


# ------------------------------------------------------------------- context, snapshots, alarms


def test_context_latest_per_transmitter_at_a_time(store):
    store.add_context([TxContext("ue1", 100, (1.0, 2.0, 1.5), 20.0), TxContext("ue1", 200, (2.0, 2.0, 1.5), 20.0),
                       TxContext("ue2", 150, (5.0, 5.0, 1.5), 18.0, 3.7e9, 2e7)], received_ns=1000)  # fmt: skip
    latest = store.latest_context()
    assert [(t.tx_id, t.t_ns, t.position_m) for t in latest] == [("ue1", 200, (2.0, 2.0, 1.5)), ("ue2", 150, (5.0, 5.0, 1.5))]
    assert latest[1] == TxContext("ue2", 150, (5.0, 5.0, 1.5), 18.0, 3.7e9, 2e7)
    assert [t.t_ns for t in store.latest_context(at_ns=160)] == [100, 150]
    assert [t.tx_id for t in store.latest_context(at_ns=200, max_age_s=40e-9)] == ["ue1"]
    store.add_context([TxContext("ue1", 200, (3.0, 3.0, 1.5), 21.0)])  # same (tx, t): replaces
    assert store.latest_context()[0].position_m == (3.0, 3.0, 1.5) and store.count("context") == 3


def snapshot(t_ns: int, score: float | None = 1.5, anomalous: bool = False) -> Snapshot:
    sus = (SuState("su01", (6.5, 29.5, 1.5), -60.0, -61.0, 1.0, False, False),
           SuState("su02", (12.5, 29.5, 1.5), None, -62.0, None, True, False))  # fmt: skip
    return Snapshot(t_ns, sus, (TxContext("ue1", t_ns, (1.0, 2.0, 1.5), 20.0),), score, 3.0, anomalous, "energy",
                    "residual" if anomalous else "", (20.0, 10.0) if anomalous else None)  # fmt: skip


def test_snapshots_round_trip_and_page_by_time(store):
    for t in range(1, 6):
        store.add_snapshot(snapshot(t * 100, anomalous=t == 5))
    store.add_snapshot(snapshot(600, score=float("nan")))  # a NaN score is stored as None, not as invalid JSON
    got = store.snapshots(limit=3)
    assert [s.t_ns for s in got] == [400, 500, 600]
    assert got[1] == snapshot(500, anomalous=True) and got[2].score is None
    assert [s.t_ns for s in store.snapshots(limit=10, since_ns=300)] == [400, 500, 600]


def test_a_snapshots_transmitters_keep_their_allocation(store):
    snap = dataclasses.replace(snapshot(700), txs=(TxContext("agv-1", 700, (1.0, 2.0, 1.5), 20.0, allocation=((5, 17.0), (6, 17.0))),
                                                   TxContext("agv-2", 700, (3.0, 2.0, 1.5), 20.0, allocation=())))  # fmt: skip
    store.add_snapshot(snap)
    assert store.snapshots(limit=1) == [snap]


def test_alarm_lifecycle(store):
    a = store.open_alarm("residual", 1000, 4.0, ["su01"], (20.0, 10.0))
    assert (a.state, a.peak_score, a.affected_sus, a.suspected_position_m, a.end_ns) == ("active", 4.0, ("su01",), (20.0, 10.0), None)
    a = store.update_alarm(a.id, peak_score=3.0, affected_sus=["su01", "su02"])
    assert a.peak_score == 4.0 and a.affected_sus == ("su01", "su02")  # the peak only grows
    a = store.update_alarm(a.id, peak_score=9.0, suspected_position_m=(21.0, 11.0))
    assert a.peak_score == 9.0 and a.suspected_position_m == (21.0, 11.0)
    sat = store.open_alarm("saturation", 1500, None, ["su02"])
    assert [x.id for x in store.alarms("active")] == [sat.id, a.id] and store.count_active_alarms() == 2
    a = store.clear_alarm(a.id, 2000)
    assert (a.state, a.end_ns) == ("cleared", 2000) and store.clear_alarm(a.id, 3000).end_ns == 2000
    assert [x.id for x in store.alarms("cleared")] == [a.id]
    acked = store.acknowledge_alarm(a.id, "alice", 2500)
    assert (acked.acknowledged_by, acked.acknowledged_ns) == ("alice", 2500)
    assert store.acknowledge_alarm(a.id, "bob").acknowledged_by == "alice"  # the first one is kept
    assert store.acknowledge_alarm(999, "alice") is None and store.alarm(999) is None
    with pytest.raises(StoreError, match="no alarm 999"):
        store.update_alarm(999, peak_score=1.0)
    with pytest.raises(StoreError, match="alarm state must be"):
        store.alarms("open")


def test_put_alarm_writes_the_engines_record_and_keeps_the_acknowledgement(store):
    from central.live import Alarm

    raised = store.put_alarm(Alarm(0, "residual", "active", 1000, None, 4.0, ("su01",), (20.0, 10.0)))
    assert raised.id >= 1 and store.alarm(raised.id) == raised
    store.acknowledge_alarm(raised.id, "alice", 1500)
    cleared = store.put_alarm(Alarm(raised.id, "residual", "cleared", 1000, 2000, 7.5, ("su01", "su02"), None))
    assert (cleared.state, cleared.end_ns, cleared.peak_score, cleared.affected_sus) == ("cleared", 2000, 7.5, ("su01", "su02"))
    assert cleared.suspected_position_m is None and cleared.acknowledged_by == "alice"
    assert store.put_alarm(Alarm(42, "saturation", "active", 3000, None, None, ("su03",), None)).id == 42
    with pytest.raises(StoreError, match="alarm state"):
        store.put_alarm(Alarm(0, "residual", "open", 1, None, None, (), None))


def test_node_su_map_for_the_engine(store):
    store.add_node("board-2", (12.5, 29.5, 1.5), su_id="su02")
    store.add_node("board-x", (20.0, 20.0, 1.5))
    store.add_node("board-3", (17.5, 29.5, 1.5), su_id="su03")
    store.revoke_node("board-3")
    assert store.node_su_map() == {"su01": "su01", "board-2": "su02"}


def test_models_one_active_per_kind(store, tmp_path):
    m1 = store.add_model("energy", tmp_path / "ed1.json", {"fitted_on": "campaign-1", "n": 4000})
    m2 = store.add_model("energy", tmp_path / "ed2.json", {"fitted_on": "campaign-2"})
    lof = store.add_model("lof", tmp_path / "lof.onnx", {"n_neighbors": 100})
    assert store.active_model("energy") == m2 and store.active_model("lof") == lof
    assert store.activate_model(m1.id).active and store.active_model("energy").provenance == {"fitted_on": "campaign-1", "n": 4000}
    assert [m.active for m in store.models("energy")] == [True, False]
    assert store.active_model("nope") is None


def test_retention_purges_old_measurements_context_and_snapshots_but_keeps_alarms(store):
    day = 86_400 * 10**9
    now = 100 * day
    store.ingest(batch(3, first=0), received_ns=now - 8 * day)
    store.ingest(batch(2, first=3), received_ns=now - 1 * day)
    store.add_context([TxContext("ue1", 1, (1.0, 1.0, 1.5), 20.0)], received_ns=now - 8 * day)
    store.add_context([TxContext("ue1", 2, (1.0, 1.0, 1.5), 20.0)], received_ns=now)
    store.add_snapshot(snapshot(now - 31 * day))
    store.add_snapshot(snapshot(now - 29 * day))
    store.open_alarm("residual", now - 365 * day)
    assert store.purge(7, 30, now=now, chunk=2) == {"measurements": 3, "context": 1, "snapshots": 1, "webhook_outbox": 0}
    assert store.seqs("su01") == [3, 4] and store.count("context") == 1 and store.count("snapshots") == 1
    assert len(store.alarms()) == 1 and store.node_health(1.0)[0].records == 5  # lifetime count


def test_reads_do_not_wait_for_a_long_write(store):
    """Order of events, not a stopwatch: the read returns while the writer is still inside its
    transaction (which ends only after the read, when released), and it sees the last commit, not
    the write in progress. A reader that waited for the writer would finish after the commit."""
    store.ingest(batch(1))
    entered, release = threading.Event(), threading.Event()
    events: list[str] = []

    def long_write() -> None:
        with store._write() as c:
            c.execute("INSERT INTO measurements SELECT node_id, seq + 1, t_ns, f_center_hz, bandwidth_hz, power_dbm, "
                      "subband_powers_dbm, saturated, clip_fraction, gain_db, received_ns, band_plan, subband_ids "
                      "FROM measurements")  # fmt: skip
            events.append("write open")
            entered.set()
            release.wait(30)  # only a failure waits this long: the read below releases it
            events.append("write committing")
        events.append("write committed")

    t = threading.Thread(target=long_write)
    t.start()
    assert entered.wait(30)
    seqs = store.seqs("su01")  # WAL: a reader sees the last commit while the writer works
    events.append("read done")
    in_transaction = store._w.in_transaction
    release.set()
    t.join()
    assert seqs == [0] and in_transaction
    assert events == ["write open", "read done", "write committing", "write committed"]
    assert store.seqs("su01") == [0, 1]  # the write itself went through once released


# ------------------------------------------------------------------------ integrity, modes, a full disk


def test_the_database_and_its_directory_are_private(tmp_path):
    """Token hashes and node positions: central.db (and so -wal and -shm) 0600, a new data dir 0700,
    whatever the umask (here a login shell's 022)."""
    import os

    old = os.umask(0o022)
    try:
        s = Store(tmp_path / "data" / "central.db")
        s.add_node("su01", (6.5, 29.5, 1.5), su_id="su01")
    finally:
        os.umask(old)
    try:
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "data").iterdir()}
        assert modes == {"central.db": 0o600, "central.db-wal": 0o600, "central.db-shm": 0o600}
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    finally:
        s.close()


def test_a_full_disk_is_reported_until_a_write_succeeds(store):
    """SQLite's own SQLITE_FULL (the database may not grow): the write fails and health_problems says
    disk_full (GET /health: degraded); the next write that succeeds clears it."""
    assert store.health_problems() == {}
    pages = store._w.execute("PRAGMA page_count").fetchone()[0]
    store._w.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.ingest(batch(900))
    problems = store.health_problems()
    assert list(problems) == ["store_write"] and problems["store_write"]["reason"] == "disk_full"
    assert problems["store_write"]["status"] == "degraded" and store.corrupt is None
    store._w.execute("PRAGMA max_page_count = 1073741823")
    assert store.ingest(batch(900)).duplicates == 0
    assert store.health_problems() == {} and len(store.seqs("su01")) == 900
