"""``rftwin-central run`` that cannot start: each kind of failure is one line on stderr, ``rftwin-central:
error: FILE: reason``, and an exit status of its own (the table in central/cli.py and docs/operations.md),
never a traceback. Real processes on real files; they fail before the site is traced (no ray tracing).

As root, file modes do not stop a process (CAP_DAC_OVERRIDE): the permission cases then run the service
under ``setpriv`` without that capability (and CAP_DAC_READ_SEARCH), as a non-root service user would.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from central.store import Store
from node.protocol import IngestBatch
from tests.central_helpers import records as measurements

SCRIPT = str(Path(sys.executable).with_name("rftwin-central"))
TINY_3SU = Path(__file__).parent / "data" / "tiny_hall_3su.toml"
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def write_config(tmp_path: Path, *, site: str = str(TINY_3SU), port: int = 0, data_dir: str = "data") -> Path:
    path = tmp_path / "central.toml"
    path.write_text(f'site = "{site}"\ndata_dir = "{data_dir}"\nadvertise = false\n'
                    f'[listen]\nhost = "127.0.0.1"\nport = {port}\n')  # fmt: skip
    return path


def run(config: Path, *, unprivileged: bool = False) -> subprocess.CompletedProcess:
    prefix = []
    if unprivileged and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: file modes cannot be made to matter")
        prefix = NO_DAC
    return subprocess.run([*prefix, SCRIPT, "run", "--config", str(config)], capture_output=True, text=True,
                          timeout=120, cwd=config.parent)  # fmt: skip


def one_line(r: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The failure was the single stderr line ``rftwin-central: error: …`` with these fragments, and ``code``."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("rftwin-central: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], (f, r.stderr)
    assert r.returncode == code, (r.returncode, r.stderr)
    return lines[0]


def real_db(path: Path, nodes: int = 1, records: int = 0) -> None:
    """A database the way the service leaves it (closed cleanly: everything in the main file)."""
    with Store(path) as s:
        for i in range(nodes):
            s.add_node(f"su0{i + 1}", (1.0, 1.0, 1.0), su_id=f"su0{i + 1}")
        for first in range(0, records, 500):
            s.ingest(IngestBatch("su01", tuple(measurements(min(500, records - first), "su01", first))))


def test_read_only_data_directory(tmp_path):
    config = write_config(tmp_path)
    data = tmp_path / "data"
    real_db(data / "central.db")
    data.chmod(0o555)
    try:
        r = run(config, unprivileged=True)
    finally:
        data.chmod(0o700)
    one_line(r, 73, f"{data}: the data directory is not writable", "Permission denied")


def test_data_directory_that_cannot_be_created(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o555)
    config = write_config(tmp_path, data_dir="ro/data")
    try:
        r = run(config, unprivileged=True)
    finally:
        parent.chmod(0o700)
    one_line(r, 73, f"{parent / 'data'}: cannot create the data directory", "Permission denied")


def test_unreadable_database(tmp_path):
    config = write_config(tmp_path)
    db = tmp_path / "data" / "central.db"
    real_db(db)
    db.chmod(0o000)
    r = run(config, unprivileged=True)
    one_line(r, 66, f"{db}: cannot read the database", "Permission denied")


def test_read_only_database_file(tmp_path):
    config = write_config(tmp_path)
    db = tmp_path / "data" / "central.db"
    real_db(db)
    db.chmod(0o400)
    r = run(config, unprivileged=True)
    one_line(r, 73, f"{db}: the database is not writable", "Permission denied")


@pytest.mark.parametrize("content, why", [
    (os.urandom(8192), "not an SQLite database (no SQLite header)"),
    (b"SQLite format 3\x00\x10\x00", "not an SQLite database (only 18 bytes)"),
    (b"not a database\n" * 100, "not an SQLite database (no SQLite header)"),
], ids=["random", "a-few-bytes-of-header", "text"])  # fmt: skip
def test_a_file_that_is_no_database(tmp_path, content, why):
    config = write_config(tmp_path)
    db = tmp_path / "data" / "central.db"
    db.parent.mkdir()
    db.write_bytes(content)
    one_line(run(config), 65, f"{db}: {why}")
    assert db.read_bytes() == content  # not "repaired", not replaced


def test_a_truncated_database(tmp_path):
    config = write_config(tmp_path)
    db = tmp_path / "data" / "central.db"
    real_db(db, records=5000)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2)
    one_line(run(config), 65, f"{db}: truncated: {size // 2} bytes, its header says {size // 4096} pages")


def test_a_database_whose_schema_page_is_overwritten(tmp_path):
    """Not even the schema can be read: SQLite refuses to open it (not the degraded start of a database
    that only fails quick_check)."""
    config = write_config(tmp_path)
    db = tmp_path / "data" / "central.db"
    real_db(db, records=2000)
    with open(db, "r+b") as f:  # page 1 after its 100-byte header: the sqlite_schema b-tree
        f.seek(100)
        f.write(b"\xa5" * 3996)
    one_line(run(config), 65, f"{db}: ", "malformed")


def test_a_database_from_newer_software(tmp_path):
    config = write_config(tmp_path)
    db = tmp_path / "data" / "central.db"
    real_db(db)
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO schema_version VALUES (999, 0)")
    c.close()
    one_line(run(config), 65, "schema version 999 is newer than this software's")


def test_a_busy_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write_config(tmp_path, port=port)
        r = run(config)
    one_line(r, 75, f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_a_missing_site_file(tmp_path):
    config = write_config(tmp_path, site=str(tmp_path / "no-such-site.toml"))
    one_line(run(config), 2, "site: neither a built-in site", "no-such-site.toml")


def test_a_wide_database_mode_is_narrowed_with_a_warning(tmp_path):
    """Not a failure: the start-up check narrows it (the service logs the warnings once it has started)."""
    db = tmp_path / "data" / "central.db"
    real_db(db)
    db.chmod(0o644)
    (tmp_path / "data").chmod(0o755)
    from central.store.integrity import preflight

    warnings = preflight(db)
    assert oct(db.stat().st_mode & 0o777) == "0o600" and oct((tmp_path / "data").stat().st_mode & 0o777) == "0o750"
    assert any("mode was 0644, narrowed to 0600" in w for w in warnings), warnings
    assert any("mode was 0755, narrowed to 0750" in w for w in warnings), warnings
    assert preflight(db) == []  # once narrowed, nothing more to say
