"""``rftwin-central``: the central unit's command line. Subcommands import their heavy parts lazily.

An expected failure is one line on stderr, ``rftwin-central: error: FILE: reason``, never a traceback,
and its kind is the exit status (sysexits.h; docs/operations.md, "Start-up failures"):

====  ==============  =====================================================================================
code  name            when
====  ==============  =====================================================================================
0                     done (``run``: stopped by SIGTERM/SIGINT)
1                     ``status``: the service does not answer
2                     bad arguments, the config or site file (missing, unreadable, an invalid key), a
                      refused request (``node add`` of an enrolled id, ...)
65    EX_DATAERR      ``central.db`` is not a database (garbage, truncated), is corrupt beyond opening, or
                      fails its integrity check where a migration or a backup needs it sound; written by
                      newer software. (One that only fails ``quick_check`` makes ``run`` start degraded.)
66    EX_NOINPUT      ``central.db`` exists but cannot be read (permissions)
69    EX_UNAVAILABLE  the listen address cannot be bound (not an address of this host, ...)
73    EX_CANTCREAT    the data directory cannot be created or written, ``central.db`` cannot be written;
                      ``backup``: the output exists (without ``--force``) or cannot be written
74    EX_IOERR        a disk I/O error, or a full disk, while opening the database or writing a backup
75    EX_TEMPFAIL     the port is in use (another instance?); the database is locked by another process
77    EX_NOPERM       the port needs privileges this user lacks (below 1024)
====  ==============  =====================================================================================
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from central.twin.solvers import TWIN_FIDELITY, fidelity_settings
from contracts.cli_args import position_arg, run_command


def _load_twin(args, rebuild: bool = False):
    from central.twin import Twin
    from central.twin.progress import tracing_progress_bar

    update, close = tracing_progress_bar()
    try:
        settings = fidelity_settings(args.max_depth, args.diffraction)
        return Twin.load(args.site, settings, cache_dir=args.cache_dir, rebuild=rebuild, progress=update)
    finally:
        close()


def cmd_twin_build(args) -> int:
    twin = _load_twin(args, rebuild=args.rebuild)
    m = twin.maps
    state = "cached" if twin.from_cache else f"built in {m.build_s:.1f} s"
    print(f"site {twin.site.name}: {m.num_su} SU maps, {m.grid.nx}x{m.grid.ny} cells of {m.grid.cell_size_m} m "
          f"({m.grid.num_valid} valid), methods {sorted(set(m.methods))}, {state}")
    print(f"cache: {twin.cache_path}")
    if args.out:
        m.save(args.out)
        print(f"wrote {args.out}")
    return 0


def cmd_twin_show(args) -> int:
    from central.twin.render import render_gain_map

    twin = _load_twin(args)
    su = args.su or twin.maps.su_ids[0]
    out = render_gain_map(twin.site, twin.maps, su, args.out)
    print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------------- central unit

CONFIG_ENV = "RFTWIN_CENTRAL_CONFIG"
DEFAULT_CONFIG = Path("/etc/rftwin/central.toml")  # where systemd/install.sh central puts it


def _config(args):
    import os

    from central.config import load_config

    path = args.config or Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    return load_config(path)


def _store(cfg):
    import sqlite3

    from central.store import Store
    from central.store.integrity import open_error

    try:
        return Store(cfg.db_path)
    except sqlite3.Error as e:  # not a database, not writable, locked: one line and its exit status
        raise open_error(e, cfg.db_path) from None


def cmd_backup(args) -> int:
    """A consistent copy of the database while the service runs and writes (SQLite's online backup)."""
    from central.store.integrity import backup

    cfg = _config(args)
    tty = sys.stderr.isatty()
    shown = [-1]

    def progress(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct // 10 != shown[0] // 10:  # every 10 % (100 % at the end)
            shown[0] = pct
            print(("\r" if tty else "") + f"backup: {done}/{total} pages ({pct} %)", end="" if tty else "\n",
                  file=sys.stderr, flush=True)  # fmt: skip

    result = backup(cfg.db_path, args.out, force=args.force, pages_per_step=args.pages, progress=progress)
    if tty:
        print(file=sys.stderr)
    counts = ", ".join(f"{v} {k}" for k, v in result.counts.items())
    print(f"backed up {cfg.db_path} to {result.path}: {result.pages} pages, {result.bytes} bytes ({counts}); "
          f"{result.check.summary()}")  # fmt: skip
    return 0


def cmd_run(args) -> int:
    from contracts.journal import setup_logging

    cfg = _config(args)
    # Structured records to the journal under systemd, plain lines on a terminal (contracts/journal.py);
    # before the service's imports, so that no library's handler gets there first.
    setup_logging("rftwin-central", args.log_level, {"RFTWIN_SITE": cfg.site})
    from central.service import CentralService

    return CentralService(cfg, log_level=args.log_level).run()


def cmd_status(args) -> int:
    from central.status import gather, render

    cfg = _config(args)
    st = gather(cfg, args.url, timeout_s=args.timeout)
    if args.json:
        import json

        print(json.dumps(st, indent=1))
    else:
        print(render(st))
    return 0 if st["service"]["reachable"] else 1


def cmd_node_add(args) -> int:
    from central.enrolment import enrol_node

    cfg = _config(args)
    site = cfg.load_site()
    with _store(cfg) as store:
        token, su = enrol_node(store, site, args.id, args.position)
    print(f"enrolled node {args.id} at {list(args.position)} as sensing unit {su} of site {site.name}", file=sys.stderr)
    print("its token (shown only now; put it in the node's [central] token or token_file):", file=sys.stderr)
    print(token)
    return 0


def cmd_node_revoke(args) -> int:
    cfg = _config(args)
    with _store(cfg) as store:
        known = {n.id: n for n in store.nodes()}
        if args.id not in known:
            raise ValueError(f"no node {args.id!r} is enrolled")
        if not store.revoke_node(args.id):
            print(f"node {args.id} was already revoked")
            return 0
    print(f"revoked node {args.id}: its token is refused from now on")
    return 0


def cmd_node_list(args) -> int:
    cfg = _config(args)
    with _store(cfg) as store:
        health = store.node_health(cfg.detection.stale_s)
    if not health:
        print("no nodes enrolled")
        return 0
    print(f"{'node':<16} {'su':<8} {'position_m':<22} {'records':>9}  state")
    for h in health:
        pos = ",".join(f"{v:g}" for v in h.position_m)
        state = "healthy" if h.healthy else h.detail
        print(f"{h.node_id:<16} {h.extra.get('su_id') or '-':<8} {pos:<22} {h.records:>9}  {state}")
    return 0


def cmd_credential_add(args) -> int:
    from central.config import NAME_RE

    if not NAME_RE.match(args.name):
        raise ValueError(f"name must be 1-64 of letters, digits, '-', '_', '.', '@', got {args.name!r}")
    cfg = _config(args)
    in_config = {e.name for e in cfg.configured(args.kind)}
    if args.name in in_config:
        raise ValueError(f"{args.kind} {args.name!r} is already defined in {cfg.source}")
    with _store(cfg) as store:
        token = store.add_credential(args.kind, args.name)
    print(f"created {args.kind} {args.name}; its token (shown only now):", file=sys.stderr)
    print(token)
    return 0


def cmd_node_rotate(args) -> int:
    cfg = _config(args)
    with _store(cfg) as store:
        token = store.rotate_node_token(args.id)
    print(f"rotated node {args.id}: the old token is refused from now on; the new one (shown only now) "
          "goes into the node's token file, then restart the node (it spools meanwhile):", file=sys.stderr)  # fmt: skip
    print(token)
    return 0


def cmd_credential_rotate(args) -> int:
    cfg = _config(args)
    with _store(cfg) as store:
        token = store.rotate_credential(args.table, args.name)
    print(f"rotated {args.kind} {args.name}; its new token (shown only now):", file=sys.stderr)
    print(token)
    return 0


def cmd_credential_remove(args) -> int:
    cfg = _config(args)
    with _store(cfg) as store:
        store.remove_credential(args.table, args.name)
    print(f"removed {args.kind} {args.name}: its token is refused from now on")
    return 0


def _tls_dir(args, cfg) -> Path:
    return Path(args.out) if args.out else cfg.data_dir / "tls"


def cmd_tls_init(args) -> int:
    from central.tls import SiteCa

    cfg = _config(args)
    ca = SiteCa(_tls_dir(args, cfg))
    cert, key = ca.init(args.name, args.days, force=args.force)
    print(f"site CA {ca.ca_cert} (copy it to every node as its ca_file; keep {ca.ca_key} offline if you can)\n"
          f"server certificate {cert} for {', '.join(ca.last_names)}\n"
          f"add to {cfg.source or 'the central config'}:\n  [tls]\n  cert = \"{cert}\"\n  key = \"{key}\"")  # fmt: skip
    return 0


def cmd_tls_renew(args) -> int:
    from central.tls import SiteCa

    cfg = _config(args)
    cert, _ = SiteCa(_tls_dir(args, cfg)).issue_server(args.name, args.days)
    print(f"renewed {cert}; restart the central unit to serve it (nodes keep their pinned CA)")
    return 0


def cmd_credential_list(args) -> int:
    cfg = _config(args)
    with _store(cfg) as store:
        enrolled = store.credential_names(args.table)
    configured = [e.name for e in cfg.configured(args.kind)]
    for name in configured:
        print(f"{name}  (config file)")
    for name in enrolled:
        print(name)
    if not configured and not enrolled:
        print(f"no {args.table}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rftwin-central", description="rftwin central unit")
    sub = p.add_subparsers(dest="command", required=True)

    twin = sub.add_parser("twin", help="the digital twin: build and inspect gain maps")
    tsub = twin.add_subparsers(dest="twin_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--site", help="site file (TOML) or built-in name (default: factory-hall-a)")
    common.add_argument("--cache-dir", type=Path, help="gain-map cache (default: $RFTWIN_CACHE_DIR or ~/.cache/rftwin)")
    common.add_argument("--max-depth", type=int, default=TWIN_FIDELITY.max_depth, metavar="N",
                        help="reflections per path, as [twin] max_depth (default: %(default)s)")  # fmt: skip
    common.add_argument("--diffraction", action="store_true", help="trace edge diffraction, as [twin] diffraction")
    b = tsub.add_parser("build", parents=[common], help="ray-trace the per-SU gain maps (cached)")
    b.add_argument("--rebuild", action="store_true", help="trace again even if cached")
    b.add_argument("--out", type=Path, help="also write the maps to this .npz (e.g. a simulated world's true "
                   "maps, from --site factory-hall-a-truth)")  # fmt: skip
    b.set_defaults(func=cmd_twin_build)
    s = tsub.add_parser("show", parents=[common], help="render the hall, SUs and one gain map to PNG")
    s.add_argument("--su", help="sensing unit whose map to draw (default: the first)")
    s.add_argument("--out", type=Path, default=Path("twin.png"), help="PNG path (default: twin.png)")
    s.set_defaults(func=cmd_twin_show)

    cfg = argparse.ArgumentParser(add_help=False)
    cfg.add_argument("--config", type=Path, default=None,
                     help=f"central config (TOML; default: ${CONFIG_ENV} or {DEFAULT_CONFIG})")  # fmt: skip

    r = sub.add_parser("run", parents=[cfg], help="run the central unit (API, store, live detection, dashboard)")
    r.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    r.set_defaults(func=cmd_run)

    st = sub.add_parser("status", parents=[cfg], help="for humans: service up?, nodes, active alarms, detector, "
                        "database (exit 1: the service does not answer)")  # fmt: skip
    st.add_argument("--url", help="API root to ask (default: from the config's [listen], on loopback)")
    st.add_argument("--timeout", type=float, default=3.0, help="seconds per API request (default: %(default)s)")
    st.add_argument("--json", action="store_true", help="the same as JSON")
    st.set_defaults(func=cmd_status)

    bk = sub.add_parser("backup", parents=[cfg], help="a consistent copy of the database, also while the service "
                        "runs and writes (checked with quick_check; mode 0600)")  # fmt: skip
    bk.add_argument("--out", required=True, type=Path, help="the copy (written to a temporary file, then renamed)")
    bk.add_argument("--force", action="store_true", help="replace an existing --out")
    bk.add_argument("--pages", type=int, default=1024, help="pages copied per step (default: %(default)s)")
    bk.set_defaults(func=cmd_backup)

    node = sub.add_parser("node", help="enrol, revoke and list nodes (sensing-unit agents)")
    nsub = node.add_subparsers(dest="node_command", required=True)
    a = nsub.add_parser("add", parents=[cfg], help="enrol a node and print its token (shown once)")
    a.add_argument("id", help="node id, e.g. su01")
    a.add_argument("--position", required=True, type=position_arg, metavar="X,Y,Z",
                   help="surveyed antenna position in m; must be within 1 m of a sensing unit of the site")  # fmt: skip
    a.set_defaults(func=cmd_node_add)
    rv = nsub.add_parser("revoke", parents=[cfg], help="revoke a node's token (effective at once)")
    rv.add_argument("id")
    rv.set_defaults(func=cmd_node_revoke)
    ro = nsub.add_parser("rotate", parents=[cfg], help="a new token for a node (the old one is refused at once)")
    ro.add_argument("id")
    ro.set_defaults(func=cmd_node_rotate)
    ls = nsub.add_parser("list", parents=[cfg], help="enrolled nodes, their SU and last contact")
    ls.set_defaults(func=cmd_node_list)

    for kind, table, what in (("integration", "integrations", "a context feed (POST /api/v1/context)"),
                              ("operator", "operators", "an operator (reads; acknowledges alarms, learns)"),
                              ("viewer", "viewers", "a viewer (reads the API, the event stream, the dashboard)"),
                              ("scraper", "scrapers", "a metrics scraper (GET /api/v1/metrics only)")):  # fmt: skip
        k = sub.add_parser(kind, help=f"tokens for {what}")
        ksub = k.add_subparsers(dest=f"{kind}_command", required=True)
        ka = ksub.add_parser("add", parents=[cfg], help=f"create {what} and print its token (shown once)")
        ka.add_argument("name")
        ka.set_defaults(func=cmd_credential_add, kind=kind)
        kl = ksub.add_parser("list", parents=[cfg], help=f"names of the enrolled {table}")
        kl.set_defaults(func=cmd_credential_list, kind=kind, table=table)
        kr = ksub.add_parser("rotate", parents=[cfg], help="a new token (the old one is refused at once)")
        kr.add_argument("name")
        kr.set_defaults(func=cmd_credential_rotate, kind=kind, table=table)
        kd = ksub.add_parser("remove", parents=[cfg], help=f"remove {what.split(' (')[0]}: its token is refused")
        kd.add_argument("name")
        kd.set_defaults(func=cmd_credential_remove, kind=kind, table=table)
    tls = sub.add_parser("tls", help="the site's TLS: CA and server certificate")
    tsub2 = tls.add_subparsers(dest="tls_command", required=True)
    ti = tsub2.add_parser("init", parents=[cfg], help="create a site CA and a server certificate (nodes pin the CA)")
    ti.add_argument("--name", action="append", default=[], metavar="DNS|IP",
                    help="server name or IP address the nodes use (repeatable; default: this host's name, "
                         "localhost, 127.0.0.1)")  # fmt: skip
    ti.add_argument("--out", default=None, help="directory (default: <data_dir>/tls)")
    ti.add_argument("--days", type=int, default=825, help="server certificate validity (default: %(default)s)")
    ti.add_argument("--force", action="store_true", help="replace an existing CA (every node must re-pin)")
    ti.set_defaults(func=cmd_tls_init)
    tr = tsub2.add_parser("renew", parents=[cfg], help="a new server certificate from the existing site CA")
    tr.add_argument("--name", action="append", default=[], metavar="DNS|IP")
    tr.add_argument("--out", default=None)
    tr.add_argument("--days", type=int, default=825)
    tr.set_defaults(func=cmd_tls_renew)
    return p


def main(argv: list[str] | None = None) -> int:
    import sqlite3

    from central.twin.site import SiteError

    # ConfigError, StoreError and StoreFileError are ValueErrors; StoreCorrupt is an sqlite3.Error; the
    # store's and the service's errors carry their exit status (the table above)
    return run_command("rftwin-central", build_parser(), argv, (SiteError, ValueError, OSError, sqlite3.Error))


if __name__ == "__main__":
    sys.exit(main())
