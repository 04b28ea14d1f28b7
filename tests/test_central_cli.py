"""``rftwin-central`` run / node / integration / operator, and the central config file, as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from central.config import load_config, parse_config
from central.detection.live import engine_config
from central.twin.gain_maps import cache_key
from central.twin.solvers import DEEP_PATHS_PER_TARGET, TWIN_FIDELITY, SolverSettings, fidelity_settings
from contracts.toml_fields import ConfigError
from tests.central_helpers import batch_dict

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = str(Path(sys.executable).with_name("rftwin-central"))


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "central.toml"
    path.write_text('site = "factory-hall-a"\ndata_dir = "data"\nadvertise = false\n'
                    '[listen]\nhost = "127.0.0.1"\nport = 0\n')  # fmt: skip
    return path


# The running service traces its site at start: the tiny hall takes seconds on a cold cache.
TINY_3SU = Path(__file__).parent / "data" / "tiny_hall_3su.toml"


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(f'site = "{TINY_3SU}"\ndata_dir = "data"\nadvertise = false\n'
                    '[listen]\nhost = "127.0.0.1"\nport = 0\n')  # fmt: skip
    return path


def db_bytes(config: Path) -> bytes:
    data = config.parent / "data"
    return b"".join(p.read_bytes() for p in data.glob("central.db*"))


# --------------------------------------------------------------------------------------- config


def test_config_defaults_and_relative_paths(config, tmp_path):
    cfg = load_config(config)
    assert cfg.site == "factory-hall-a" and cfg.data_dir == tmp_path / "data"
    assert cfg.db_path == tmp_path / "data" / "central.db" and cfg.models_dir == tmp_path / "data" / "models"
    d = cfg.detection
    assert (d.window_s, d.stale_s, d.raise_after, d.of_last, d.clear_after, d.detector) == (0.1, 1.0, 2, 3, 5, "fusion")
    assert (cfg.retention.measurements_days, cfg.retention.snapshots_days) == (7.0, 30.0)
    assert (cfg.limits.max_batch_records, cfg.limits.max_future_skew_s) == (1000, 60.0)
    assert cfg.tls is None and cfg.scheme == "http" and cfg.load_site().name == "factory-hall-a"
    # the product's twin fidelity: depth 5 (with a path buffer for it), no diffraction
    assert cfg.twin.solver_settings() == TWIN_FIDELITY == fidelity_settings(max_depth=5)
    # alarms come from the CUSUM at the operating point chosen on the validation replay
    chosen = json.loads((ROOT / "docs" / "results" / "operating_point.json").read_text())
    assert (d.integration, d.cusum_drift, d.cusum_threshold) == ("cusum", chosen["drift"], chosen["threshold"])
    engine = engine_config(cfg)
    assert engine.integration == "cusum" and (engine.cusum.drift, engine.cusum.threshold) == (d.cusum_drift, d.cusum_threshold)


def test_twin_fidelity_is_a_setting_and_part_of_the_map_cache_key(tmp_path):
    """A deeper trace or diffraction must trace new maps, never reuse those of another fidelity."""
    cfg = parse_config({"twin": {"max_depth": 5, "diffraction": True}}, "c.toml", tmp_path)
    settings = cfg.twin.solver_settings()
    assert (settings.max_depth, settings.diffraction) == (5, True)
    # a deep trace gets a path buffer big enough for its candidates (central.twin.solvers)
    assert settings.max_paths_per_target == DEEP_PATHS_PER_TARGET > SolverSettings().max_paths_per_target
    site = cfg.load_site()
    keys = {cache_key(site, s, "rt") for s in (SolverSettings(), settings, replace(settings, diffraction=False))}
    assert len(keys) == 3


def test_config_site_file_tls_and_tokens(tmp_path):
    site = Path(__file__).parent / "data" / "tiny_hall.toml"
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    sha = hashlib.sha256(b"t").hexdigest()
    cfg = parse_config({"site": str(site), "tls": {"cert": "c.pem", "key": "k.pem"},
                        "integrations": [{"name": "ran", "token_sha256": sha}],
                        "operators": {"token_sha256": sha.upper()}}, "c.toml", tmp_path)  # fmt: skip
    assert cfg.load_site().name == "tiny-hall" and cfg.scheme == "https" and cfg.tls.cert == tmp_path / "c.pem"
    assert cfg.integrations[0].name == "ran" and cfg.operators[0].name == "operator"
    assert cfg.operators[0].token_sha256 == sha


@pytest.mark.parametrize(("doc", "why"), [
    ({"sitee": "x"}, "c.toml: sitee: unknown key"),
    ({"detection": {"window": 0.1}}, "detection.window: unknown key"),
    ({"detection": {"raise_after": 4, "of_last": 3}}, "detection.raise_after: 4 anomalous windows can never occur"),
    ({"detection": {"window_s": -1.0}}, "detection.window_s: -1 is outside"),
    ({"listen": {"port": 70000}}, "listen.port: 70000 is outside 0..65535"),
    ({"limits": {"max_batch_records": 5000}}, "limits.max_batch_records: 5000 is outside 1..1000"),
    ({"retention": {"measurements_days": "7"}}, "retention.measurements_days: expected a finite number"),
    ({"site": "no-such-hall"}, "site: neither a built-in site"),
    ({"tls": {"cert": "c.pem"}}, "tls.key: missing"),
    ({"tls": {"cert": "nope.pem", "key": "nope.pem"}}, "tls.cert: no such file"),
    ({"integrations": [{"name": "a", "token_sha256": "secret"}]}, "integrations[0].token_sha256: expected 64 hex"),
    ({"integrations": [{"name": "a b", "token_sha256": "0" * 64}]}, "integrations[0].name: must be"),
    ({"operators": [{"name": "a", "token_sha256": "0" * 64}, {"name": "a", "token_sha256": "1" * 64}]},
     "operators: duplicate name 'a'"),
    ({"advertise": "yes"}, "advertise: expected true or false"),
    ({"detection": {"detector": "magic"}}, "detection.detector: unknown detector kind 'magic'"),
    ({"detection": {"integration": "ewma"}}, "detection.integration: "),
    ({"detection": {"cusum_threshold": 0}}, "detection.cusum_threshold: 0 is outside"),
    ({"twin": {"max_depth": 0}}, "twin.max_depth: 0 is outside 1..8"),
    ({"twin": {"diffraction": "on"}}, "twin.diffraction: expected true or false"),
])  # fmt: skip
def test_config_errors_name_the_key(tmp_path, doc, why):
    with pytest.raises(ConfigError, match=re.escape(why)):
        parse_config(doc, "c.toml", tmp_path)


# --------------------------------------------------------------------------------------- nodes


def test_node_add_prints_the_token_once_and_stores_only_its_hash(config):
    r = cli("node", "add", "su01", "--position", "6.5,29.5,1.5", "--config", config)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("rtn_") and "\n" not in token  # stdout is the token alone: scriptable
    assert "as sensing unit su01 of site factory-hall-a" in r.stderr and "shown only now" in r.stderr
    raw = db_bytes(config)
    assert token.encode() not in raw and hashlib.sha256(token.encode()).hexdigest().encode() in raw

    r = cli("node", "add", "board-7", "--position", "12.3,29.4,1.6", "--config", config)
    assert r.returncode == 0 and "as sensing unit su02" in r.stderr  # near su02: serves su02

    listing = cli("node", "list", "--config", config)
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["node", "su", "position_m", "records", "state"]
    assert lines[1].split()[:4] == ["board-7", "su02", "12.3,29.4,1.6", "0"] and "never seen" in lines[1]
    assert lines[2].split()[:2] == ["su01", "su01"]


@pytest.mark.parametrize(("args", "why"), [
    (["su01", "--position", "6.5,29.5,1.5"], "node 'su01' is already enrolled"),
    (["su13", "--position", "6.6,29.5,1.5"], "sensing unit 'su01' is already served by node 'su01'"),
    (["x", "--position", "41,20,1.5"], "is outside the hall of site 'factory-hall-a'"),
    (["x", "--position", "8,25,1.5"], "is inside obstacle 'line-1'"),
    (["x", "--position", "20,20,1.5"], "8.86 m from the nearest sensing unit of site 'factory-hall-a' (su09)"),
    (["su05", "--position", "12.5,29.5,1.5"], "has the id of sensing unit 'su05'"),
    (["bad id", "--position", "12.5,29.5,1.5"], "node id must be"),
])  # fmt: skip
def test_node_add_refuses_with_the_reason(config, args, why):
    assert cli("node", "add", "su01", "--position", "6.5,29.5,1.5", "--config", config).returncode == 0
    r = cli("node", "add", *args, "--config", config)
    assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""


def test_node_add_rejects_a_malformed_position(config):
    r = cli("node", "add", "su01", "--position", "6.5,nan", "--config", config)
    assert r.returncode == 2 and "expected three finite numbers" in r.stderr


def test_node_revoke(config):
    cli("node", "add", "su01", "--position", "6.5,29.5,1.5", "--config", config)
    r = cli("node", "revoke", "su01", "--config", config)
    assert r.returncode == 0 and "revoked node su01" in r.stdout
    assert "already revoked" in cli("node", "revoke", "su01", "--config", config).stdout
    r = cli("node", "revoke", "nope", "--config", config)
    assert r.returncode == 2 and "no node 'nope' is enrolled" in r.stderr
    assert "revoked" in cli("node", "list", "--config", config).stdout
    r = cli("node", "add", "su01", "--position", "6.5,29.5,1.5", "--config", config)
    assert r.returncode == 2 and "ids are never reused" in r.stderr


def test_integration_and_operator_tokens(config):
    for kind, prefix in (("integration", "rti_"), ("operator", "rto_")):
        r = cli(kind, "add", "alice", "--config", config)
        assert r.returncode == 0 and r.stdout.startswith(prefix)
        assert r.stdout.strip().encode() not in db_bytes(config)
        dup = cli(kind, "add", "alice", "--config", config)
        assert dup.returncode == 2 and "already exists" in dup.stderr
        assert cli(kind, "list", "--config", config).stdout.split() == ["alice"]


def test_config_from_the_environment_and_a_missing_config(config, tmp_path):
    r = cli("node", "list", env={"RFTWIN_CENTRAL_CONFIG": str(config)})
    assert r.returncode == 0 and "no nodes enrolled" in r.stdout
    r = cli("node", "list", "--config", tmp_path / "nope.toml")
    assert r.returncode == 2 and "nope.toml: cannot read" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('site = "factory-hall-a"\nlisten = { hots = "x" }\n')
    r = cli("run", "--config", bad)
    assert r.returncode == 2 and "listen.hots: unknown key" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------------------- run


def test_run_serves_the_api_and_stops_gracefully_on_sigterm(tiny_config):
    config = tiny_config
    token = cli("node", "add", "su01", "--position", "1.3,4.6,3.5", "--config", config).stdout.strip()
    proc = subprocess.Popen([SCRIPT, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        url = None
        lines = []
        while url is None:  # until it says where it listens or exits (pytest's timeout bounds a hang)
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"API at (http://127\.0\.0\.1:\d+)/api/v1, docs at", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        assert httpx.get(url + "/api/v1/health").json() == {"status": "ok"}
        r = httpx.post(url + "/api/v1/ingest", content=json.dumps(batch_dict(3)),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
        assert r.json() == {"acked": [0, 1, 2], "duplicates": 0}
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "central unit stopped" in rest and "Traceback" not in rest
    r = cli("node", "list", "--config", config)
    assert r.stdout.splitlines()[1].split()[3] == "3"  # stored, and visible after the restart


def test_run_advertises_itself_and_a_node_discovers_it(tmp_path):
    """In a private network namespace: the service advertises _rftwin._tcp.local., the node's
    discover_central finds its URL, the API answers there, and SIGTERM withdraws it."""
    from tests.test_node_discovery import _netns_cmd, _netns_or_skip

    _netns_or_skip()
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'site = "{TINY_3SU}"\ndata_dir = "data"\nadvertise = true\n[listen]\nhost = "0.0.0.0"\nport = 18431\n')
    script = f"""
import json, signal, subprocess, sys, time, httpx
from node.discovery import discover_central
p = subprocess.Popen([{SCRIPT!r}, "run", "--config", {str(cfg)!r}], stderr=subprocess.PIPE, text=True)
try:
    svc = discover_central(15.0)
    health = httpx.get(svc.url + "/api/v1/health").json()
    p.send_signal(signal.SIGTERM)
    log = p.communicate(timeout=30)[1]
    print(json.dumps({{"url": svc.url, "props": svc.properties, "health": health, "rc": p.returncode, "log": log}}))
finally:
    if p.poll() is None:
        p.kill()
"""
    r = subprocess.run(_netns_cmd(sys.executable, "-c", script), capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["url"] == "http://127.0.0.1:18431" and out["props"]["scheme"] == "http"
    assert out["health"] == {"status": "ok"} and out["rc"] == 0
    assert "advertised as rftwin-central-" in out["log"]


# ------------------------------------------------------------------------------ [store] integrity


def test_config_store_integrity_check_keys(tmp_path):
    cfg = parse_config({}, "c.toml", tmp_path)
    assert (cfg.store.integrity_check_startup_s, cfg.store.integrity_check_period_s) == (5.0, 3600.0)
    cfg = parse_config({"store": {"integrity_check_startup_s": 0.5, "integrity_check_period_s": 0}}, "c.toml", tmp_path)
    assert (cfg.store.integrity_check_startup_s, cfg.store.integrity_check_period_s) == (0.5, 0.0)
    for doc, why in (({"store": {"integrity_check_period_s": 0.5}}, "store.integrity_check_period_s: at least 1 s"),
                     ({"store": {"integrity_check_startup_s": -1}}, "store.integrity_check_startup_s: -1 is outside"),
                     ({"store": {"integrity_check": 1}}, "store.integrity_check: unknown key")):  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(why)):
            parse_config(doc, "c.toml", tmp_path)


def test_backup_refuses_without_a_database_and_an_existing_output_without_force(config, tmp_path):
    out = tmp_path / "copy.db"
    r = cli("backup", "--config", config, "--out", out)
    assert r.returncode == 66 and r.stderr.strip().endswith("central.db: no database (has the service ever run?)")
    assert cli("node", "add", "su01", "--position", "6.5,29.5,1.5", "--config", config).returncode == 0
    r = cli("backup", "--config", config, "--out", out)
    assert r.returncode == 0 and "quick_check ok" in r.stdout and "(1 nodes, 0 measurements, 0 alarms)" in r.stdout
    assert out.stat().st_mode & 0o777 == 0o600
    r = cli("backup", "--config", config, "--out", out)
    assert r.returncode == 73 and r.stderr.strip() == f"rftwin-central: error: {out}: exists; --force replaces it"
    assert cli("backup", "--config", config, "--out", out, "--force").returncode == 0
