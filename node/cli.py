"""``rftwin-node``: run the agent, take one reading, check a node's setup, show its status.

Exit codes: 0 fine, 1 a check failed, 2 bad configuration or usage, 70 the watchdog ended a hung agent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

from node.config import ConfigError, NodeConfig, load_config, parse_config


def _setup_logging(verbose: bool, node_id: str | None = None) -> None:
    """Structured records to the journal under systemd, plain lines on a terminal (contracts/journal.py)."""
    from contracts.journal import setup_logging

    setup_logging("rftwin-node", logging.DEBUG if verbose else logging.INFO,
                  {"RFTWIN_NODE_ID": node_id} if node_id else None)  # fmt: skip
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upload would drown the journal


def cmd_run(args) -> int:
    from node.agent import Agent

    cfg = load_config(args.config)
    _setup_logging(args.verbose, cfg.node_id)
    return Agent(cfg).run(duration_s=args.duration)


def _adhoc_config(args) -> NodeConfig:
    """A config for ``measure`` without a file: just the radio and the band from the command line."""
    return parse_config({
        "node_id": args.node_id, "position_m": [0.0, 0.0, 0.0], "state_dir": "/nonexistent",
        "radio": {"backend": args.backend, "center_hz": args.center_hz, "sample_rate_hz": args.sample_rate_hz,
                  "gain_db": args.gain_db, "samples_per_reading": args.samples,
                  "args": dict(_backend_arg(a) for a in args.arg)},
        "band": {"bandwidth_hz": args.bandwidth_hz},
        "central": {"token": "unused"},
    }, "<command line>")  # fmt: skip


def _backend_arg(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a TOML value (``seed=3``, ``uri="usb:1.2.5"``), else a string."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--arg {text!r}: expected KEY=VALUE")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value


def cmd_measure(args) -> int:
    from node.measure import Measurer
    from node.sdr.open import calibration_for, open_backend

    cfg = load_config(args.config) if args.config else _adhoc_config(args)
    radio = open_backend(cfg)
    try:
        measurer = Measurer.for_config(cfg, radio, calibration_for(cfg))
        seq = 0
        for i in range(1 if args.once else args.count):
            for reading in measurer.sweep():  # one reading; a sweeping node: one per step
                measurement = dataclasses.replace(reading.measurement, seq=seq)  # each reading its own number
                seq += 1
                print(json.dumps(measurement.to_dict()), flush=True)
                if args.sigmf:
                    from node.sigmf import write_capture

                    path = write_capture(Path(args.sigmf), reading.buffer, measurement, cfg.position_m,
                                         "rftwin-node measure", cfg.radio.backend)  # fmt: skip
                    print(f"IQ written to {path}", file=sys.stderr)
            if not args.once and i + 1 < args.count:
                time.sleep(cfg.interval_s)
    finally:
        radio.close()
    return 0


def cmd_check(args) -> int:
    """Validate the config, open the radio, take a reading, reach the central unit; report each step."""
    from node.measure import Measurer
    from node.sdr.open import calibration_for, open_backend
    from node.uplink import CentralLocator, tls_verify

    ok = True

    def report(step: str, good: bool, detail: str) -> None:
        nonlocal ok
        ok &= good
        print(f"[{'ok' if good else 'FAIL'}] {step}: {detail}")

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        report("config", False, str(e))
        return 2
    report("config", True, f"{args.config}: node {cfg.node_id} at {cfg.position_m} m, backend {cfg.radio.backend}")
    if cfg.sweep is not None:
        sw = cfg.sweep
        widest = max(st.span_hz for st in sw.steps)
        report("sweep", True, (f"the band plan's {sw.plan.occupied_hz / 1e6:g} MHz ({sw.plan.subbands} sub-bands) are wider than "
                               f"the radio's usable {sw.usable_hz / 1e6:g} MHz at {sw.sample_rate_hz / 1e6:g} MS/s around "
                               f"radio.center_hz: swept in {len(sw.steps)} steps of at most {widest / 1e6:g} MHz, each "
                               f"retune followed by {_discard_count(cfg)} discarded buffers, one reading per step")
               if sw.sweeps else f"one tuning at the band plan's centre, {sw.steps[0].center_hz / 1e6:g} MHz "
                                 f"(radio.center_hz {cfg.radio.center_hz / 1e6:g} MHz does not hold it)")  # fmt: skip
        for line in sw.describe() if sw.sweeps else ():
            print(f"       {line}")
    try:
        radio = open_backend(cfg)
        try:
            readings = list(Measurer.for_config(cfg, radio, calibration_for(cfg)).sweep())
        finally:
            radio.close()
        for r in readings:
            m = r.measurement
            sat = " (SATURATED: reading is a lower bound; lower the gain)" if m.saturated else ""
            where = f" (step: {cfg.band_plan.describe(m.subband_ids)})" if m.subband_ids and cfg.band_plan else ""
            report("radio", not m.saturated,
                   f"{m.power_dbm:.1f} dBm in {m.bandwidth_hz / 1e6:g} MHz at {m.f_center_hz / 1e6:g} MHz{where}, "
                   f"clip fraction {m.clip_fraction:.2g}{sat}")  # fmt: skip
    except Exception as e:
        report("radio", False, f"{type(e).__name__}: {e}")
    locator = CentralLocator(cfg.central.url, cfg.central.discovery_timeout_s)
    try:
        import httpx

        from node.protocol import BAND_PLAN_PATH, HEALTH_PATH

        url = locator.url()
        resp = httpx.get(url + HEALTH_PATH, timeout=cfg.central.timeout_s,
                         verify=tls_verify(cfg.central.ca_file))  # fmt: skip
        report("central", resp.status_code == 200, f"{url}: health {resp.status_code}")
        resp = httpx.get(url + BAND_PLAN_PATH, timeout=cfg.central.timeout_s, verify=tls_verify(cfg.central.ca_file),
                         headers={"Authorization": f"Bearer {cfg.central.token}"})  # fmt: skip
        if resp.status_code != 200:
            report("band plan", False, f"{url}{BAND_PLAN_PATH}: {resp.status_code} {resp.text[:200]}")
        else:
            report("band plan", *band_plan_check(cfg, resp.json()))
    except Exception as e:  # UplinkError, httpx errors, TLS errors: all are a failed check
        report("central", False, f"{type(e).__name__}: {e}")
    if cfg.spool.path.exists():
        from node.spool import Spool

        sp = cfg.spool
        spool = Spool(sp.path, sp.max_records, sp.policy, sp.reserve_bytes)  # type: ignore[arg-type]
        full = spool.room()
        room = f"FULL: {spool.describe(full)}" if full else f"{spool.free_bytes()} bytes free"
        report("spool", True, f"{sp.path}: {len(spool)} pending, {spool.dropped} dropped by policy, {room}")
        spool.close()
    return 0 if ok else 1


def _discard_count(cfg) -> int:
    """Buffers the node's backend discards after a retune (node.sdr.open.open_backend's rule)."""
    if cfg.radio.backend != "simulated" and "discard_buffers_after_retune" in cfg.radio.args:
        return int(cfg.radio.args["discard_buffers_after_retune"])
    if cfg.radio.discard_buffers_after_retune is not None:
        return cfg.radio.discard_buffers_after_retune
    return 0 if cfg.radio.backend == "simulated" else 2


def band_plan_check(cfg, site_plan: dict) -> tuple[bool, str]:
    """(good, detail): does the node's [band] measure the site's band plan (``GET /api/v1/band-plan``)?"""
    from contracts.band_plan import BandPlan, BandPlanError

    try:
        site = BandPlan.from_dict({k: site_plan[k] for k in ("center_hz", "bandwidth_hz", "scs_hz", "prbs", "subbands")})
    except (KeyError, TypeError, BandPlanError) as e:
        return False, f"the central unit's band plan is not one: {e}"
    if not cfg.band.band_plan:
        return True, (f"[band] follows no band plan: the central unit uses only its band power. To measure the site's "
                      f"{site.subbands} sub-bands, set [band.plan] center_hz = {site.center_hz:g}, bandwidth_hz = "
                      f"{site.bandwidth_hz:g}, scs_hz = {site.scs_hz:g}, prbs = {site.prbs}, subbands = {site.subbands}")  # fmt: skip
    if cfg.band.band_plan == site.fingerprint:
        return True, f"measures the site's plan {site.fingerprint}: {site.subbands} sub-bands of {site.bandwidth_hz / 1e6:g} MHz at {site.center_hz / 1e6:g} MHz"
    return False, (f"[band.plan] {cfg.band.band_plan} is not the site's {site.fingerprint} (its readings would be stored, "
                   f"not used): " + "; ".join(cfg.band_plan.differences(site)))  # fmt: skip


def cmd_status(args) -> int:
    cfg = load_config(args.config)
    try:
        st = json.loads(cfg.status_path.read_text())
    except (OSError, ValueError) as e:
        print(f"no status at {cfg.status_path} ({e}); is the agent running? "
              f"(systemctl status rftwin-node; journalctl -u rftwin-node)", file=sys.stderr)  # fmt: skip
        return 1
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    age = time.time() - st.get("written_unix_s", 0)
    stale = ("; STALE: is the agent running? systemctl status rftwin-node; or is its disk too full for this file? "
             "df " + str(cfg.status_path.parent)) if age > 10 else ""  # fmt: skip
    print(f"node {st['node_id']} (status written {age:.0f} s ago{stale})")
    if st.get("spool_full"):
        action = "NOT MEASURING" if st.get("measuring_paused") else "dropping the oldest unsent readings"
        print(f"  SPOOL FULL since {time.ctime(st.get('spool_full_since_unix_s') or 0)}, {action}: "
              f"{st.get('spool_full_reason')}")  # fmt: skip
    for key in ("readings", "last_power_dbm", "saturated_readings", "read_errors", "last_read_error", "radio_open",
                "uploaded", "pending", "dropped", "refused", "spool_full", "spool_free_bytes", "measuring_paused",
                "upload_failures", "last_upload_error", "central_url", "captures"):  # fmt: skip
        print(f"  {key:20s} {st.get(key)}")
    return 0


CONFIG_ENV = "RFTWIN_NODE_CONFIG"
DEFAULT_CONFIG = Path("/etc/rftwin/node.toml")  # where systemd/install.sh node puts it
CONFIG_HELP = f"node config (TOML; default: ${CONFIG_ENV} or {DEFAULT_CONFIG})"


def _default_config() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rftwin-node", description="rftwin node agent (sensing unit)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("version", help="print the installed rftwin version")
    v.set_defaults(func=lambda args: print(f"rftwin {version('rftwin')}") or 0)

    r = sub.add_parser("run", help="run the agent (the systemd service's command)")
    r.add_argument("--config", required=True, type=Path)
    r.add_argument("--duration", type=float, default=None, help="stop after this many seconds (tests, demos)")
    r.set_defaults(func=cmd_run)

    m = sub.add_parser("measure", help="take reading(s) and print them as JSON")
    m.add_argument("--config", type=Path, help="use this node's radio, band and calibration")
    m.add_argument("--backend", choices=("pluto", "soapy", "simulated"), default="simulated")
    m.add_argument("--node-id", default="adhoc")
    m.add_argument("--center-hz", type=float, default=3.7e9)
    m.add_argument("--sample-rate-hz", type=float, default=30.72e6)
    m.add_argument("--gain-db", type=float, default=40.0)
    m.add_argument("--bandwidth-hz", type=float, default=20e6)
    m.add_argument("--samples", type=int, default=65536)
    m.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="backend argument (string)")
    m.add_argument("--once", action="store_true", help="one reading (default with no --count)")
    m.add_argument("--count", type=int, default=1)
    m.add_argument("--sigmf", metavar="DIR", help="also write each buffer as a SigMF recording into DIR")
    m.set_defaults(func=cmd_measure)

    c = sub.add_parser("check", help="validate the config, find the radio and the central unit")
    c.add_argument("--config", type=Path, default=_default_config(), help=CONFIG_HELP)
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("status", help="what the running agent reports")
    s.add_argument("--config", type=Path, default=_default_config(), help=CONFIG_HELP)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"rftwin-node: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
