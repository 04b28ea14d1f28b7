"""A small but real ingest endpoint for the node's tests: HTTP on loopback, SQLite, the node protocol.

It speaks exactly what :mod:`node.protocol` defines (IngestBatch in, IngestAck out, bearer token per
node, idempotent on (node_id, seq)), so the node's uplink, spool and replay are tested over a real
socket. The central unit's own service (issue #4) implements the same contract with more around it.

Knobs a test turns: ``fail_with`` (answer every POST with that status), ``delay_s`` (hold each
response, so a node can be killed mid-upload). Run as a process with
``python -m tests.ingest_server --db F --port P --token node=secret`` for kill tests.
"""

from __future__ import annotations

import argparse
import hmac
import json
import sqlite3
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from contracts.band_plan import BandPlan
from node.protocol import BAND_PLAN_PATH, HEALTH_PATH, INGEST_PATH, IngestAck, IngestBatch, ProtocolError

MAX_BODY_BYTES = 4 << 20


class IngestStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS records (node_id TEXT, seq INTEGER, payload TEXT, "
                         "PRIMARY KEY (node_id, seq))")  # fmt: skip
        self._db.execute("CREATE TABLE IF NOT EXISTS posts (n INTEGER, duplicates INTEGER)")

    def store(self, batch: IngestBatch) -> IngestAck:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO records VALUES (?, ?, ?)",
                [(m.node_id, m.seq, json.dumps(m.to_dict())) for m in batch.records],
            )
            duplicates = len(batch.records) - (self._db.total_changes - before)
            self._db.execute("INSERT INTO posts VALUES (?, ?)", [len(batch.records), duplicates])
            self._db.execute("COMMIT")
        return IngestAck(tuple(m.seq for m in batch.records), duplicates)

    def seqs(self, node_id: str) -> list[int]:
        with self._lock:
            return [s for (s,) in self._db.execute("SELECT seq FROM records WHERE node_id = ? ORDER BY seq", [node_id])]

    def record(self, node_id: str, seq: int) -> dict:
        with self._lock:
            row = self._db.execute("SELECT payload FROM records WHERE node_id = ? AND seq = ?", [node_id, seq]).fetchone()
        return json.loads(row[0])

    def duplicates(self) -> int:
        """Records received again after they were stored (resends after a lost acknowledgement)."""
        with self._lock:
            return self._db.execute("SELECT coalesce(sum(duplicates), 0) FROM posts").fetchone()[0]


class IngestServer:
    def __init__(self, db_path: Path, tokens: dict[str, str], port: int = 0, tls: ssl.SSLContext | None = None):
        self.store = IngestStore(db_path)
        self.tokens = tokens
        self.fail_with: int | None = None
        self.delay_s = 0.0
        self.band_plan = BandPlan(3.7e9)  # what GET BAND_PLAN_PATH serves
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> "IngestServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                if self.path == HEALTH_PATH:
                    self._reply(200, {"status": "ok"})
                elif self.path == BAND_PLAN_PATH:  # the fields of GET /api/v1/band-plan a node reads
                    plan = server.band_plan
                    if self.headers.get("Authorization", "") not in {f"Bearer {t}" for t in server.tokens.values()}:
                        return self._reply(401, {"detail": "unknown or wrong node token"})
                    self._reply(200, {**plan.to_dict(), "fingerprint": plan.fingerprint})
                else:
                    self._reply(404, {"detail": "not found"})

            def do_POST(self):
                if self.path != INGEST_PATH:
                    return self._reply(404, {"detail": "not found"})
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    return self._reply(413, {"detail": "batch too large"})
                raw = self.rfile.read(length)
                if server.fail_with:
                    return self._reply(server.fail_with, {"detail": "told to fail"})
                try:
                    batch = IngestBatch.from_dict(json.loads(raw))
                except (ValueError, ProtocolError) as e:
                    return self._reply(422, {"detail": str(e)})
                expected = server.tokens.get(batch.node_id)
                auth = self.headers.get("Authorization", "")
                if expected is None or not hmac.compare_digest(auth, f"Bearer {expected}"):
                    return self._reply(401, {"detail": "unknown node or wrong token"})
                ack = server.store.store(batch)  # durably stored before the ack goes out
                if server.delay_s:
                    time.sleep(server.delay_s)
                self._reply(200, ack.to_dict())

        return Handler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", action="append", default=[], metavar="NODE=TOKEN")
    p.add_argument("--delay-s", type=float, default=0.0)
    args = p.parse_args()
    srv = IngestServer(args.db, dict(t.split("=", 1) for t in args.token), args.port)
    srv.delay_s = args.delay_s
    print(srv.port, flush=True)
    srv._httpd.serve_forever()


if __name__ == "__main__":
    main()
