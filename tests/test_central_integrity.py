"""The database's integrity: ``PRAGMA quick_check`` at start-up (bounded) and periodically, writes
refused (503 ``database_corrupt``) while the last check failed, ``/health`` saying so (and ``degraded``
for a full disk), ``rftwin-central status`` and the journal too, and ``rftwin-central backup`` while the
service writes. Real SQLite files, damaged the way a bad disk or a stray write does it: one page in the
middle of the file overwritten. The service tests start ``rftwin-central run`` on the tiny hall.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from central.service import CentralService
from central.store import Store, StoreCorrupt
from central.twin.site import resolve_site
from node.protocol import IngestBatch
from tests.central_helpers import batch_dict, bearer, central_config, records
from tests.polling import wait_for

SCRIPT = str(Path(sys.executable).with_name("rftwin-central"))
TINY_3SU = Path(__file__).parent / "data" / "tiny_hall_3su.toml"
HEALTH = "/api/v1/health"
INGEST = "/api/v1/ingest"


# ---------------------------------------------------------------------------------------- files


def build_db(path: Path, batches: int = 40, per_batch: int = 500) -> dict[str, str]:
    """A real database: the tiny hall's three nodes enrolled, ``batches * per_batch`` records of su01,
    closed cleanly (everything in the main file). Returns the node tokens."""
    site = resolve_site(str(TINY_3SU))
    with Store(path) as s:
        tokens = {u.id: s.add_node(u.id, u.position_m, su_id=u.id) for u in site.sensing_units}
        for i in range(batches):
            s.ingest(IngestBatch("su01", tuple(records(per_batch, "su01", i * per_batch))))
    assert not Path(f"{path}-wal").exists()
    return tokens


def corrupt_middle_page(path: Path, seed: int = 1) -> tuple[int, bytes]:
    """Overwrite a page in the middle of the file with random bytes: the leaf of su01's old records
    nearest the middle (a leaf, so that a later write of another node, to the right edge of the
    b-tree, does not bring a good copy of it into the WAL); returns (offset, what was there).
    Checked: SQLite's own quick_check on a fresh connection reports problems (rows, or SQLITE_CORRUPT)."""
    data = path.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    pages = len(data) // page_size
    assert pages > 100, pages
    page = pages // 2 + 1  # 1-based
    with sqlite3.connect(path) as c:
        try:
            leaves = [p for (p,) in c.execute("SELECT pageno FROM dbstat WHERE name = 'measurements' AND "
                                               "pagetype = 'leaf'")]  # fmt: skip
        except sqlite3.OperationalError:  # no dbstat in this SQLite: the middle page it is
            leaves = [page]
    c.close()
    page = min(leaves, key=lambda p: abs(p - page))
    offset = (page - 1) * page_size
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(random.Random(seed).randbytes(page_size))
    with sqlite3.connect(path) as c:
        try:
            problems = c.execute("PRAGMA quick_check").fetchall() != [("ok",)]
        except sqlite3.DatabaseError as e:
            problems = "malformed" in str(e)
    c.close()
    assert problems, "quick_check finds nothing wrong"
    return offset, data[offset:offset + page_size]


# ---------------------------------------------------------------------------------------- store


def test_quick_check_finds_an_overwritten_page_and_every_write_is_refused(tmp_path):
    db = tmp_path / "central.db"
    build_db(db)
    corrupt_middle_page(db)
    with Store(db, migrate=False) as s:
        assert s.health_problems() == {}  # not checked yet: nothing known
        result = s.check_integrity()
        assert result.status == "failed" and result.errors, result
        assert s.corrupt and s.last_integrity_check is result
        problems = s.health_problems()
        assert problems["database"]["status"] == "failing" and problems["database"]["reason"] == "database_corrupt"
        assert [n.id for n in s.nodes()] == ["su01", "su02", "su03"]  # reads go on
        with pytest.raises(StoreCorrupt, match="writes are refused"):
            s.ingest(IngestBatch("su02", tuple(records(3, "su02"))))
        with pytest.raises(StoreCorrupt):
            s.add_node("su09", (1.0, 1.0, 1.0))
        with pytest.raises(StoreCorrupt):
            s.revoke_node("su02")
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM measurements WHERE node_id = 'su02'").fetchone() == (0,)
        assert c.execute("SELECT revoked FROM nodes WHERE id = 'su02'").fetchone() == (0,)
    c.close()


def test_a_check_out_of_time_is_not_finished_and_refuses_nothing(tmp_path):
    db = tmp_path / "central.db"
    build_db(db)
    corrupt_middle_page(db)
    with Store(db, migrate=False) as s:
        result = s.check_integrity(budget_s=0.0)
        assert result.status == "not_finished" and not result.errors
        assert s.corrupt is None and s.health_problems() == {}
        s.ingest(IngestBatch("su02", tuple(records(3, "su02"))))  # not known to be corrupt: accepted
        assert s.check_integrity().status == "failed"  # to the end: it is


def test_a_check_that_passes_again_lifts_the_refusal(tmp_path):
    db = tmp_path / "central.db"
    build_db(db)
    offset, original = corrupt_middle_page(db)
    with Store(db, migrate=False) as s:
        assert s.check_integrity().failed
        with open(db, "r+b") as f:  # the page as it was (a repair while running: not advised)
            f.seek(offset)
            f.write(original)
        assert s.check_integrity().status == "ok"
        assert s.corrupt is None and s.health_problems() == {}
        s.ingest(IngestBatch("su02", tuple(records(3, "su02"))))
        assert s.seqs("su02") == [0, 1, 2]


def test_a_backup_of_a_corrupt_database_is_refused_and_leaves_nothing(tmp_path):
    data = tmp_path / "data"
    build_db(data / "central.db")
    corrupt_middle_page(data / "central.db")
    config = write_config(tmp_path, free_port())
    out = tmp_path / "backups" / "central.db"
    out.parent.mkdir()
    r = subprocess.run([SCRIPT, "backup", "--config", str(config), "--out", str(out)], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 65, r.stderr
    err = [line for line in r.stderr.splitlines() if not line.startswith(("backup:", "\r"))]
    assert len(err) == 1 and "the copy fails its integrity check" in err[0] and err[0].startswith(
        f"rftwin-central: error: {out}: "), r.stderr  # fmt: skip
    assert list(out.parent.iterdir()) == []  # neither the copy nor its temporary file


# ------------------------------------------------------------------------- full disk (in process)


def test_a_full_disk_makes_health_degraded_until_a_write_succeeds(tmp_path):
    svc = CentralService(central_config(tmp_path), use_default_plugins=False).start()
    try:
        token = svc.store.add_node("su01", (6.5, 29.5, 1.5), su_id="su01")
        headers = {**bearer(token), "Content-Type": "application/json"}
        with httpx.Client(base_url=svc.url, timeout=30) as client:
            assert client.post(INGEST, content=json.dumps(batch_dict(10)), headers=headers).status_code == 200
            assert client.get(HEALTH).json() == {"status": "ok"}
            # SQLite's own SQLITE_FULL: the database may not grow past the pages it has
            pages = svc.store._w.execute("PRAGMA page_count").fetchone()[0]
            svc.store._w.execute(f"PRAGMA max_page_count = {pages}")
            full = client.post(INGEST, content=json.dumps(batch_dict(900, first_seq=10)), headers=headers)
            assert full.status_code == 503, full.text
            h = client.get(HEALTH)
            assert h.status_code == 200, h.text
            body = h.json()
            assert body["status"] == "degraded" and list(body["checks"]) == ["store_write"], body
            check = body["checks"]["store_write"]
            assert check["status"] == "degraded" and check["reason"] == "disk_full" and "full" in check["detail"]
            svc.store._w.execute("PRAGMA max_page_count = 1073741823")  # space again
            ok = client.post(INGEST, content=json.dumps(batch_dict(900, first_seq=10)), headers=headers)
            assert ok.status_code == 200 and ok.json()["duplicates"] == 0, ok.text
            assert client.get(HEALTH).json() == {"status": "ok"}
        assert len(svc.store.seqs("su01")) == 910
    finally:
        svc.stop()


# ---------------------------------------------------------------------------- real processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(workdir: Path, port: int, store: str = "") -> Path:
    config = workdir / "central.toml"
    config.write_text(f'site = "{TINY_3SU}"\ndata_dir = "data"\nadvertise = false\n'
                      f'[listen]\nhost = "127.0.0.1"\nport = {port}\n{store}')  # fmt: skip
    return config


class Central:
    """``rftwin-central run`` on a loopback port, its log (stdout and stderr) in a file."""

    def __init__(self, workdir: Path, store: str = ""):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = write_config(workdir, self.port, store)
        self.db = workdir / "data" / "central.db"
        self.log_path = workdir / "central.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> httpx.Response:
        """Start it; returns the first answer of /health (whatever its status)."""
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([SCRIPT, "run", "--config", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.workdir)  # fmt: skip
        def answer() -> httpx.Response | None:
            try:
                return httpx.get(self.url + HEALTH, timeout=2)
            except httpx.HTTPError:
                return None

        return wait_for(answer, timeout_s, "the central unit's first answer", step_s=0.1, alive=self.assert_alive,
                        explain=self.log)  # fmt: skip

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, self.log()

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc is not None else 0

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def ingest(self, token: str, n: int, node: str, first_seq: int = 0) -> httpx.Response:
        return httpx.post(self.url + INGEST, content=json.dumps(batch_dict(n, node, first_seq)), timeout=30,
                          headers={**bearer(token), "Content-Type": "application/json"})  # fmt: skip


def assert_failing(r: httpx.Response) -> dict:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["health"] == "failing" and body["reason"] == "database_corrupt", body
    assert body["checks"]["database"]["status"] == "failing", body
    assert body["checks"]["database"]["reason"] == "database_corrupt", body
    return body


def assert_refused_as_corrupt(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["reason"] == "database_corrupt" and "writes are refused" in body["detail"], body
    assert r.headers.get("retry-after")


@pytest.fixture
def central(tmp_path):
    c = Central(tmp_path)
    yield c
    c.stop()


def test_a_corrupt_database_starts_degraded_refuses_ingest_and_says_so(central):
    tokens = build_db(central.db)
    corrupt_middle_page(central.db)
    with sqlite3.connect(central.db) as c:
        before = c.execute("SELECT count(*) FROM nodes").fetchone()
    c.close()

    assert_failing(central.start())  # up (reads and /health), failing
    assert_refused_as_corrupt(central.ingest(tokens["su02"], 5, "su02"))  # a valid token, a valid batch
    assert_refused_as_corrupt(central.ingest(tokens["su03"], 1, "su03"))

    st = subprocess.run([SCRIPT, "status", "--config", str(central.config)], capture_output=True, text=True,
                        timeout=60)  # fmt: skip
    assert st.returncode == 0, st.stderr  # it answers
    assert "health failing" in st.stdout and "FAILING database: database_corrupt" in st.stdout, st.stdout
    js = json.loads(subprocess.run([SCRIPT, "status", "--json", "--config", str(central.config)],
                                   capture_output=True, text=True, timeout=60).stdout)  # fmt: skip
    assert js["service"]["health"] == "failing" and js["service"]["checks"]["database"]["reason"] == "database_corrupt"

    assert central.stop() == 0
    log = central.log()
    critical = [line for line in log.splitlines() if "CRITICAL" in line]
    assert len(critical) == 1 and "DATABASE CORRUPT" in critical[0], log  # once
    assert "Traceback" not in log, log

    # stopped: status checks the file itself (read-only, bounded) and says the same
    st = subprocess.run([SCRIPT, "status", "--config", str(central.config), "--timeout", "30"], capture_output=True,
                        text=True, timeout=120)  # fmt: skip
    assert st.returncode == 1 and "integrity [from the database]: CORRUPT" in st.stdout, st.stdout
    with sqlite3.connect(central.db) as c:  # nothing was written into it
        assert c.execute("SELECT count(*) FROM nodes").fetchone() == before
        assert c.execute("SELECT records FROM nodes WHERE id = 'su02'").fetchone() == (0,)
    c.close()


def test_damage_while_running_is_found_by_the_periodic_check(tmp_path):
    central = Central(tmp_path, store="[store]\nintegrity_check_period_s = 1\n")
    tokens = build_db(central.db)
    try:
        r = central.start()
        assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
        assert central.ingest(tokens["su02"], 5, "su02").status_code == 200
        corrupt_middle_page(central.db)  # a page of su01's old records, in the main file (not in the WAL)
        def failing() -> httpx.Response | None:
            r = httpx.get(central.url + HEALTH, timeout=5)
            return r if r.status_code != 200 else None

        h = wait_for(failing, 120, "the periodic check to find the corrupt page", step_s=0.2, alive=central.assert_alive,
                     explain=central.log)  # fmt: skip
        assert_failing(h)
        assert_refused_as_corrupt(central.ingest(tokens["su02"], 5, "su02", first_seq=5))
        assert_refused_as_corrupt(central.ingest(tokens["su03"], 1, "su03"))
    finally:
        rc = central.stop()
    assert rc == 0
    log = central.log()
    assert sum("CRITICAL" in line for line in log.splitlines()) == 1, log
    assert "Traceback" not in log, log


class Sender(threading.Thread):
    """Batches of one node, each sent until acknowledged; the acknowledged seqs, in order."""

    def __init__(self, url: str, node: str, token: str, batch: int = 20):
        super().__init__(daemon=True)
        self.url, self.node, self.token, self.batch = url, node, token, batch
        self.acked: list[int] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        seq = 0
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                body = json.dumps(batch_dict(self.batch, self.node, seq))
                try:
                    r = client.post(self.url + INGEST, content=body, headers={**bearer(self.token),
                                    "Content-Type": "application/json"})  # fmt: skip
                except httpx.HTTPError as e:
                    self.errors.append(str(e))
                    continue
                if r.status_code != 200:
                    self.errors.append(r.text)
                    continue
                with self.lock:
                    self.acked.extend(r.json()["acked"])
                seq += self.batch

    def snapshot(self) -> set[int]:
        with self.lock:
            return set(self.acked)

    def assert_alive(self) -> None:
        assert self.is_alive(), self.errors[-3:]


def test_backup_while_the_service_writes(central):
    tokens = build_db(central.db, batches=20)
    assert central.start().status_code == 200
    sender = Sender(central.url, "su02", tokens["su02"])
    sender.start()
    try:
        wait_for(lambda: len(sender.snapshot()) >= 200, 60, "200 acknowledged records", step_s=0.05,
                 alive=sender.assert_alive, explain=lambda: str(sender.errors[-3:]))  # fmt: skip
        acked_before = sender.snapshot()  # acknowledged before the backup begins
        out = central.workdir / "backups" / "central-copy.db"
        out.parent.mkdir()
        r = subprocess.run([SCRIPT, "backup", "--config", str(central.config), "--out", str(out), "--pages", "8"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        acked_during = sender.snapshot()
    finally:
        sender.stop.set()
        sender.join(30)
    assert r.stdout.startswith(f"backed up {central.db} to {out}: ") and "quick_check ok" in r.stdout, r.stdout
    progress = [line for line in r.stderr.splitlines() if line.startswith("backup: ")]
    assert len(progress) > 1 and progress[-1].endswith("(100 %)"), r.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file, no -wal
    with sqlite3.connect(out) as c:
        assert c.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        assert c.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # self-contained
        copied = {s for (s,) in c.execute("SELECT seq FROM measurements WHERE node_id = 'su02'")}
        assert c.execute("SELECT count(*) FROM measurements WHERE node_id = 'su01'").fetchone() == (20 * 500,)
        stats = c.execute("SELECT records FROM nodes WHERE id = 'su02'").fetchone()[0]
    c.close()
    assert acked_before <= copied  # every record acknowledged before the backup began
    assert copied <= sender.snapshot()  # and nothing that was not (the sender stopped between batches)
    assert stats == len(copied)  # one consistent snapshot: the node's counter matches its rows
    assert central.stop() == 0

    first = out.read_bytes()
    again = subprocess.run([SCRIPT, "backup", "--config", str(central.config), "--out", str(out)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.returncode == 73 and again.stderr.strip() == f"rftwin-central: error: {out}: exists; --force replaces it"
    assert out.read_bytes() == first
    forced = subprocess.run([SCRIPT, "backup", "--config", str(central.config), "--out", str(out), "--force"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    with sqlite3.connect(out) as c:
        assert {s for (s,) in c.execute("SELECT seq FROM measurements WHERE node_id = 'su02'")} >= acked_during
    c.close()
