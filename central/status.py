"""``rftwin-central status``: the central unit at a glance, for a person at the console.

Asks the running service whether it is up (``/health`` on loopback, the one open operation: every
other read needs a viewer's credential, which a console command on the unit's own host has no need
for) and reads nodes, active alarms, the active detector model and the database size from the
database **read-only** and the data directory. Every section names its source (``api`` or
``database``).

The database's health: what the service's ``/health`` says (a ``failing`` one is a 503 that still
answers: the service is up but refuses writes, e.g. a database that failed its integrity check), or,
when it does not answer, ``PRAGMA quick_check`` on the read-only connection for at most ``--timeout``
seconds.

Read-only for real: the database is opened with ``mode=ro`` only while its ``-wal`` and ``-shm`` files
exist (the service is running, or stopped uncleanly), else with ``immutable=1`` (a clean shutdown
leaves everything in the main file). It never creates a file next to the database, so running this
as root cannot leave root-owned files that the service (user rftwin) could not open.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from central.config import CentralConfig
from central.store import Store
from node.protocol import HEALTH_PATH

DETECTOR_KIND = "detector"  # central.detection.live.MODEL_KIND (not imported: that pulls in the twin)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ReadOnlyStore(Store):
    """The store's queries over a read-only connection: no writer, no migration, no new files."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 2.0):  # noqa: D107 - no super(): it writes
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no database (has the service ever run?)")
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        if wal.exists() and wal.stat().st_size > 0:
            if not shm.exists():
                raise OSError(f"{self.path}: its write-ahead log has no -shm file; not opened (starting the "
                              "service recovers it)")  # fmt: skip
            self._uri = f"{self.path.resolve().as_uri()}?mode=ro"
        else:
            self._uri = f"{self.path.resolve().as_uri()}?immutable=1"
        self._busy_timeout_s = busy_timeout_s
        self._wlock = threading.RLock()
        self._init_health()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self._uri, uri=True, timeout=self._busy_timeout_s, isolation_level=None,
                            check_same_thread=False)  # fmt: skip
        c.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
        return c

    def close(self) -> None:
        with self._readers_lock:
            for r in self._readers:
                r.close()
            self._readers.clear()
        self._closed = True


def api_root(cfg: CentralConfig) -> str:
    host = cfg.listen.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"{cfg.scheme}://{f'[{host}]' if ':' in host else host}:{cfg.listen.port}"


def gather(cfg: CentralConfig, url: str | None = None, timeout_s: float = 3.0) -> dict:
    """Everything ``status`` shows, as a dict (``--json`` prints it as is)."""
    import httpx

    url = (url or api_root(cfg)).rstrip("/")
    host = httpx.URL(url).host
    out: dict[str, Any] = {"config": cfg.source, "site": cfg.site, "time_ns": time.time_ns(),
                           "service": {"url": url, "reachable": False, "detail": ""}}  # fmt: skip
    # No credentials are sent (/health is open), so on loopback the server's name need not match its
    # certificate; anywhere else the certificate is checked as usual.
    verify = host not in LOOPBACK
    try:
        with httpx.Client(timeout=timeout_s, verify=verify) as client:
            t0 = time.perf_counter()
            r = client.get(url + HEALTH_PATH)
            if r.status_code != 503:  # 503: up, but failing (a problem body with health and checks)
                r.raise_for_status()
            health = r.json()
            state = health.get("status", "ok") if r.status_code == 200 else health.get("health", "failing")
            out["service"].update(reachable=True, latency_ms=round((time.perf_counter() - t0) * 1e3, 1),
                                  detail=f"health {state}", health=state, checks=health.get("checks") or {})  # fmt: skip
    except (httpx.HTTPError, ValueError) as e:
        why = f"{type(e).__name__}: " + (str(e).splitlines() or [""])[0]
        out["service"]["detail"] = f"{out['service']['detail']}; {why}" if out["service"]["reachable"] else why
    store = None
    db_error = None
    try:
        store = ReadOnlyStore(cfg.db_path)
        out["nodes"] = {"source": "database", "items": [h.to_dict() for h in store.node_health(cfg.detection.stale_s)]}
        out["alarms"] = {"source": "database", "active": [a.to_dict() for a in store.alarms("active", 1000)]}
        if not out["service"]["reachable"]:
            out["integrity"] = _offline_check(store, timeout_s)
        model = store.active_model(DETECTOR_KIND)
        out["detector"] = {"source": "database", "configured": cfg.detection.detector,
                           "model": model.to_dict() if model else None}  # fmt: skip
    except (OSError, sqlite3.Error, ValueError) as e:
        db_error = f"{type(e).__name__}: {e}"
        why = "database not readable (below)"
        out.setdefault("nodes", {"source": None, "items": [], "error": why})
        out.setdefault("alarms", {"source": None, "active": [], "error": why})
        out["detector"] = {"source": None, "configured": cfg.detection.detector, "model": None, "error": why}
    finally:
        if store is not None:
            store.close()
    sizes = {}
    for suffix in ("", "-wal"):
        p = Path(f"{cfg.db_path}{suffix}")
        try:
            sizes["db_bytes" if not suffix else "wal_bytes"] = p.stat().st_size
        except OSError:
            pass
    out["database"] = {"path": str(cfg.db_path), **sizes, **({"error": db_error} if db_error else {})}
    return out


def _offline_check(store: ReadOnlyStore, budget_s: float) -> dict:
    """``quick_check`` of the database the service is not serving, bounded (not through the store's
    check_integrity: that would log, and this command prints)."""
    from central.store.integrity import IntegrityResult, quick_check

    try:
        c = store._connect()
    except sqlite3.Error as e:
        return IntegrityResult("error", (str(e),), time.time_ns()).to_dict()
    try:
        return quick_check(c, budget_s).to_dict()
    finally:
        c.close()


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _ago(t_ns: int | None, now_ns: int) -> str:
    return "never" if t_ns is None else f"{max(0.0, (now_ns - t_ns) / 1e9):.1f} s ago"


def _utc(t_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t_ns / 1e9))


SOURCE = {"api": "API", "database": "database"}


def render(st: dict) -> str:
    now = st["time_ns"]
    svc = st["service"]
    lines = [f"rftwin central unit, site {st['site']} ({st['config']})"]
    if svc["reachable"]:
        lines.append(f"service   up: {svc['url']} answers ({svc['detail']}, {svc.get('latency_ms')} ms)")
        for name, c in (svc.get("checks") or {}).items():
            lines.append(f"  {c['status'].upper()} {name}: {c['reason']}: {c['detail']}")
        if svc.get("health") == "failing":
            lines.append("          nothing is acknowledged; the nodes keep their spools: see docs/operations.md")
    else:
        lines.append(f"service   DOWN: {svc['url']} does not answer ({svc['detail']})")
        lines.append("          showing the database (read-only); see: systemctl status rftwin-central, "
                     "journalctl -u rftwin-central")  # fmt: skip

    nodes = st["nodes"]
    items = nodes["items"]
    src = f" [from the {SOURCE[nodes['source']]}]" if nodes.get("source") else ""
    if nodes.get("error"):
        lines.append(f"nodes     unknown: {nodes['error']}")
    else:
        healthy = sum(1 for n in items if n["healthy"])
        lines.append(f"nodes     {healthy} of {len(items)} healthy{src}")
        for n in items:
            su = (n.get("extra") or {}).get("su_id") or "-"
            state = "healthy" if n["healthy"] else (n.get("detail") or "unhealthy")
            power = "" if n.get("last_power_dbm") is None else f", {n['last_power_dbm']:.1f} dBm"
            lines.append(f"  {n['node_id']:<12} SU {su:<6} {state:<32} last seen {_ago(n.get('last_seen_ns'), now)}, "
                         f"{n['records']} records{power}")  # fmt: skip

    alarms = st["alarms"]
    src = f" [from the {SOURCE[alarms['source']]}]" if alarms.get("source") else ""
    if alarms.get("error"):
        lines.append(f"alarms    unknown: {alarms['error']}")
    else:
        active = alarms["active"]
        lines.append(f"alarms    {len(active)} active{src}" if active else f"alarms    none active{src}")
        for a in active:
            score = "" if a.get("peak_score") is None else f", peak score {a['peak_score']:.3g}"
            pos = a.get("suspected_position_m")
            where = "" if not pos else f", suspected at ({pos[0]:.1f}, {pos[1]:.1f}) m"
            sus = ", ".join(a.get("affected_sus") or []) or "-"
            ack = f"acknowledged by {a['acknowledged_by']}" if a.get("acknowledged_by") else "NOT acknowledged"
            lines.append(f"  #{a['id']} {a['kind']} since {_utc(a['start_ns'])}{score}{where}; SUs {sus}; {ack}")

    det = st["detector"]
    if det.get("error"):
        lines.append(f"detector  configured {det['configured']}; active model unknown: {det['error']}")
    elif det["model"] is None:
        lines.append(f"detector  configured {det['configured']}; no learned model yet (POST /api/v1/detector/learn "
                     "or rftwin-calibrate learn)")  # fmt: skip
    else:
        m = det["model"]
        prov = m.get("provenance") or {}
        extra = "".join(f", {k} {prov[k]:.4g}" if isinstance(prov.get(k), float) else f", {k} {prov[k]}"
                        for k in ("threshold", "n_snapshots") if k in prov)  # fmt: skip
        lines.append(f"detector  configured {det['configured']}; active model #{m['id']} "
                     f"{prov.get('detector', m['kind'])} learned {_utc(m['created_ns'])}{extra} [from the database]")  # fmt: skip

    db = st["database"]
    size = ""
    if "db_bytes" in db:
        size = _size(db["db_bytes"]) + (f" + {_size(db['wal_bytes'])} WAL" if db.get("wal_bytes") else "")
    lines.append(f"database  {db['path']}: " + "; ".join(x for x in (size, db.get("error")) if x))
    integrity = st.get("integrity")
    if integrity is not None:
        bad = integrity["status"] == "failed"
        lines.append(f"          integrity [from the database]: {'CORRUPT: ' if bad else ''}{integrity['summary']}"
                     + ("; restore a backup or recover it (docs/operations.md)" if bad else ""))  # fmt: skip
    elif svc["reachable"] and svc.get("health"):
        checks = svc.get("checks") or {}
        db_check = checks.get("database")
        lines.append("          integrity [from the API]: " + (f"{db_check['status'].upper()}: {db_check['detail']}"
                     if db_check else "no problem reported"))  # fmt: skip
    return "\n".join(lines)
