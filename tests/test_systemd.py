"""systemd/: the units (verify, security exposure, settings), the udev rule, the config templates,
install.sh into a temporary root, journal logging, the central unit's sd_notify, ``rftwin-central status``.

How the units are checked offline (systemd is not PID 1 in CI containers, so nothing is started):

- ``systemd-analyze verify`` refuses a unit whose ExecStart binary does not exist, and the venv under
  /opt/rftwin is not there in CI. So each unit is copied into a temporary directory with
  ``/opt/rftwin/venv`` rewritten to a temporary venv holding stub executables, and verified there. The
  copy is otherwise byte-identical. docs/architecture.md (platform facts): verify exits 0 on some parse errors (an unknown key,
  a key in the wrong section), so *any* output fails the test; a deliberately broken unit proves that
  the check would see such an error.
- ``systemd-analyze security --offline=true`` scores the same copy (the score does not depend on the
  path); the "Overall exposure level" must be at most 2.5.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from central.config import DEFAULT_CUSUM_DRIFT, DEFAULT_CUSUM_THRESHOLD, DEFAULT_DETECTOR

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "systemd"
INSTALL = SYSTEMD / "install.sh"
ROLES = ("node", "central")
MAX_EXPOSURE = 2.5
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                                reason="needs root and useradd (user creation, chown)")  # fmt: skip


def unit_path(role: str) -> Path:
    return SYSTEMD / f"rftwin-{role}.service"


def unit_settings(role: str) -> dict[str, list[str]]:
    """[Service]/[Unit]/[Install] settings as {key: [values in order]} (systemd keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in unit_path(role).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def verifiable_copy(role: str, tmp_path: Path) -> Path:
    """The unit with /opt/rftwin/venv pointing at a temporary venv of stub executables."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True, exist_ok=True)
    for name in ("rftwin-node", "rftwin-central"):
        stub = venv_bin / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    text = unit_path(role).read_text()
    assert "/opt/rftwin/venv/bin/" in text
    copy = tmp_path / unit_path(role).name
    copy.write_text(text.replace("/opt/rftwin/venv", str(tmp_path / "venv")))
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"})  # fmt: skip


# ------------------------------------------------------------------------------------------ units


@needs_analyze
@pytest.mark.parametrize("role", ROLES)
def test_unit_verifies_without_any_output(role, tmp_path):
    r = analyze("verify", str(verifiable_copy(role, tmp_path)))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stdout + r.stderr


@needs_analyze
def test_verify_would_see_a_broken_unit(tmp_path):
    """The check above is meaningful: a key in the wrong section exits 0 but prints a warning."""
    copy = verifiable_copy("node", tmp_path)
    copy.write_text(copy.read_text().replace("[Service]\n", "[Service]\nStartLimitBurst=3\nProtectSytem=strict\n"))
    r = analyze("verify", str(copy))
    assert "Unknown key" in r.stderr and "ProtectSytem" in r.stderr


@needs_analyze
@pytest.mark.parametrize("role", ROLES)
def test_unit_security_exposure_at_most_2_5(role, tmp_path):
    r = analyze("security", "--offline=true", "--no-pager", str(verifiable_copy(role, tmp_path)))
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    score = float(m.group(1))
    print(f"rftwin-{role}.service: exposure {score}")
    assert score <= MAX_EXPOSURE, r.stdout


@pytest.mark.parametrize("role", ROLES)
def test_unit_settings(role):
    s = unit_settings(role)

    def one(key: str) -> str:
        assert len(s.get(key, [])) == 1, f"{key}: {s.get(key)}"
        return s[key][0]

    assert one("ExecStart") == f"/opt/rftwin/venv/bin/rftwin-{role} run --config /etc/rftwin/{role}.toml"
    assert f"rftwin-{role} =" in (ROOT / "pyproject.toml").read_text()  # the console script exists
    for key, value in {"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "User": "rftwin",
                       "Group": "rftwin", "StateDirectory": f"rftwin/{role}", "ConfigurationDirectory": "rftwin",
                       "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                       "CapabilityBoundingSet": "", "UMask": "0077", "StandardOutput": "journal",
                       "SyslogLevelPrefix": "yes", "SystemCallArchitectures": "native", "StartLimitIntervalSec": "0",
                       "WantedBy": "multi-user.target"}.items():  # fmt: skip
        assert one(key) == value, key
    assert s["SystemCallFilter"][0] == "@system-service"
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    watchdog = one("WatchdogSec")
    assert watchdog.endswith("s") and 10 <= float(watchdog[:-1]) <= 120
    assert "IPAddressDeny" not in s  # the services talk to the plant network
    if role == "node":  # USB SDRs: the device cgroup admits them; PrivateDevices would hide /dev/bus/usb
        assert one("SupplementaryGroups") == "plugdev" and one("DevicePolicy") == "closed"
        assert s["DeviceAllow"] == ["char-usb_device rw"] and "PrivateDevices" not in s
        assert one("MemoryDenyWriteExecute") == "yes" and one("RestartPreventExitStatus") == "2"
    else:  # Dr.Jit's LLVM JIT needs W+X pages; no radio here
        assert "MemoryDenyWriteExecute" not in s and one("PrivateDevices") == "yes"
        assert one("CacheDirectory") == "rftwin/central"
        env = " ".join(s["Environment"])
        assert "RFTWIN_CACHE_DIR=/var/cache/rftwin/central" in env and "DRJIT_CACHE_DIR=/var/cache/rftwin/central" in env


def test_templates_point_at_the_units_directories():
    node = tomllib.loads((SYSTEMD / "node.toml.example").read_text())
    central = tomllib.loads((SYSTEMD / "central.toml.example").read_text())
    assert node["state_dir"] == "/var/lib/rftwin/node" and central["data_dir"] == "/var/lib/rftwin/central"
    assert node["central"]["token_file"].startswith("/etc/rftwin/")


def test_node_template_is_a_valid_config_once_edited(tmp_path):
    """Every active key of the template is a real key with a valid value (the loader rejects typos)."""
    from node.config import parse_config

    doc = tomllib.loads((SYSTEMD / "node.toml.example").read_text())
    (tmp_path / "token").write_text("a-token\n")
    (tmp_path / "cal.toml").write_text("frequencies_hz = [3.6e9, 3.8e9]\ngains_db = [0.0, 70.0]\n"
                                       "offsets_db = [[-10.0, -80.0], [-10.0, -80.0]]\n")  # fmt: skip
    doc["central"]["token_file"] = str(tmp_path / "token")
    doc["calibration"]["file"] = str(tmp_path / "cal.toml")
    cfg = parse_config(doc, "node.toml.example", tmp_path)
    assert cfg.radio.backend == "pluto" and cfg.central.url is None and cfg.central.token == "a-token"
    # The commented-out keys are real keys too: uncommented (with their example values) they parse.
    text = (SYSTEMD / "node.toml.example").read_text()
    uncommented = re.sub(r"(?m)^# (\[|[a-z_]+ = )", r"\1", text)
    doc = tomllib.loads(uncommented)
    doc["central"]["token_file"] = str(tmp_path / "token")
    doc["calibration"]["file"] = str(tmp_path / "cal.toml")
    doc["central"].pop("ca_file")  # a file that must exist
    cfg = parse_config(doc, "node.toml.example (all keys)", tmp_path)
    assert cfg.central.url == "https://central.hall:8443" and len(cfg.band.subbands) == 1


def test_central_template_is_a_valid_config():
    from central.config import parse_config

    text = (SYSTEMD / "central.toml.example").read_text()
    cfg = parse_config(tomllib.loads(text), "central.toml.example")
    assert cfg.site == "factory-hall-a" and str(cfg.data_dir) == "/var/lib/rftwin/central"
    # The commented-out keys are real keys with valid values too ([tls] needs files, the token tables
    # real hashes: left commented).
    head, tail = text.split("# Context feeds")
    head = "\n".join(line for line in head.splitlines() if not line.startswith(("# [tls]", "# cert =", "# key =")))
    # [webhooks] as written, but with the key inline: the template's secret_file does not exist here
    head = head.replace("# [webhooks]", "[webhooks]").replace('# secret_file = "/etc/rftwin/webhook.key"',
                                                            '# secret = "a-key-of-16-chars"')  # fmt: skip
    cfg = parse_config(tomllib.loads(re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", head)), "central.toml.example (all keys)")
    assert cfg.listen.port == 8080 and cfg.retention.snapshots_days == 30.0
    assert cfg.webhooks.urls == ("https://scheduler.hall:9443/rftwin",) and cfg.webhooks.backoff_max_s == 300.0
    # the commented values are the product's defaults
    d = cfg.detection
    assert (d.detector, d.integration, d.cusum_drift, d.cusum_threshold) == (
        DEFAULT_DETECTOR, "cusum", DEFAULT_CUSUM_DRIFT, DEFAULT_CUSUM_THRESHOLD)


def test_udev_rule_syntax():
    """Each rule line is comma-separated KEY[{attr}]OP"value" pairs with known keys; plugdev, 0660."""
    keys = {"ACTION", "SUBSYSTEM", "ENV", "ATTR", "ATTRS", "GOTO", "LABEL", "MODE", "GROUP", "TAG"}
    pair = re.compile(r'^(?P<key>[A-Z]+)(\{[A-Za-z_]+\})?(?P<op>==|!=|=|\+=|:=)"(?P<value>[^"]*)"$')
    rules = 0
    for n, line in enumerate((SYSTEMD / "90-rftwin-sdr.rules").read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        for p in parts:
            m = pair.match(p)
            assert m and m.group("key") in keys, f"line {n}: {p!r}"
        if any(p.startswith("ATTR{idVendor}==") for p in parts):
            rules += 1
            assert 'MODE="0660"' in parts and 'GROUP="plugdev"' in parts, f"line {n}"
            assert re.fullmatch(r'ATTR\{idVendor\}=="[0-9a-f]{4}"', parts[0]) and \
                re.fullmatch(r'ATTR\{idProduct\}=="[0-9a-f]{4}"', parts[1]), f"line {n}"
    assert rules >= 2
    text = (SYSTEMD / "90-rftwin-sdr.rules").read_text()
    assert 'ATTR{idVendor}=="0456", ATTR{idProduct}=="b673"' in text  # ADALM-Pluto
    assert text.count('GOTO="rftwin_sdr_end"') == 3 and 'LABEL="rftwin_sdr_end"' in text


# ------------------------------------------------------------------------------------- install.sh


def install(*args, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", str(INSTALL), *map(str, args)], capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def fake_etc(root: Path) -> None:
    """A target with its own user database, so that useradd --root creates the user there."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    for name, text in (("shadow", "root:*:19000:0:99999:7:::\n"), ("gshadow", "root:*::\n")):
        (etc / name).write_text(text)
        (etc / name).chmod(0o640)


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns,
                                         os.readlink(p) if p.is_symlink() else None)  # fmt: skip
    return out


def gid_in(root: Path, name: str) -> int:
    for line in (root / "etc" / "group").read_text().splitlines():
        if line.split(":")[0] == name:
            return int(line.split(":")[2])
    raise KeyError(name)


@needs_root
def test_install_node_into_a_root_then_again_then_uninstall(tmp_path):
    root = tmp_path / "root"
    fake_etc(root)
    first = install("node", "--prefix", root, "--no-venv")
    assert "useradd --root" in first.stdout and "made" in first.stdout
    passwd = (root / "etc" / "passwd").read_text()
    assert re.search(r"^rftwin:x:\d+:\d+:rftwin services:/var/lib/rftwin:/usr/sbin/nologin$", passwd, re.M)
    gid = gid_in(root, "rftwin")
    gid_in(root, "plugdev")  # the udev rule's group exists

    def mode(rel: str) -> str:
        return oct(stat.S_IMODE((root / rel).stat().st_mode))

    assert mode("etc/rftwin/node.toml") == "0o640" and (root / "etc/rftwin/node.toml").stat().st_gid == gid
    assert (root / "etc/rftwin/node.toml").read_text() == (SYSTEMD / "node.toml.example").read_text()
    assert mode("etc/rftwin") == "0o750" and (root / "etc/rftwin").stat().st_gid == gid
    assert mode("etc/systemd/system/rftwin-node.service") == "0o644"
    assert (root / "etc/systemd/system/rftwin-node.service").read_bytes() == unit_path("node").read_bytes()
    assert mode("etc/udev/rules.d/90-rftwin-sdr.rules") == "0o644"
    assert mode("var/lib/rftwin/node") == "0o750" and (root / "var/lib/rftwin/node").stat().st_gid == gid
    assert os.readlink(root / "usr/local/bin/rftwin-node") == "/opt/rftwin/venv/bin/rftwin-node"
    assert not (root / "etc/systemd/system/rftwin-central.service").exists()
    assert "systemctl daemon-reload && systemctl enable --now rftwin-node.service" in first.stdout

    # Idempotent: the second run changes nothing and says so.
    before = snapshot(root)
    second = install("node", "--prefix", root, "--no-venv")
    assert "nothing to do" in second.stdout and "+ " not in second.stdout, second.stdout
    assert snapshot(root) == before

    # An edited config is never overwritten; a tampered unit is put back.
    (root / "etc/rftwin/node.toml").write_text('node_id = "su07"\n')
    (root / "etc/systemd/system/rftwin-node.service").write_text("[Service]\n")
    third = install("node", "--prefix", root, "--no-venv")
    assert (root / "etc/rftwin/node.toml").read_text() == 'node_id = "su07"\n'
    assert (root / "etc/systemd/system/rftwin-node.service").read_bytes() == unit_path("node").read_bytes()
    assert "made 1 change" in third.stdout

    # Uninstall: units, rule and commands go; config and state stay.
    (root / "var/lib/rftwin/node/spool.db").write_text("data")
    out = install("uninstall", "node", "--prefix", root)
    assert not (root / "etc/systemd/system/rftwin-node.service").exists()
    assert not (root / "etc/udev/rules.d/90-rftwin-sdr.rules").exists()
    assert not (root / "usr/local/bin/rftwin-node").is_symlink()
    assert (root / "etc/rftwin/node.toml").exists() and (root / "var/lib/rftwin/node/spool.db").exists()
    assert "kept" in out.stdout
    assert "nothing to do" in install("uninstall", "node", "--prefix", root).stdout
    # --purge also deletes config and state; the user stays.
    install("node", "--prefix", root, "--no-venv")
    install("uninstall", "node", "--prefix", root, "--purge")
    assert not (root / "etc/rftwin/node.toml").exists() and not (root / "var/lib/rftwin/node").exists()
    assert "rftwin:" in (root / "etc/passwd").read_text()


def test_install_central_without_a_user_database(tmp_path):
    """No etc/passwd in the root: the user is skipped with a note; files land with their modes."""
    root = tmp_path / "root"
    root.mkdir()
    out = install("central", "--prefix", root, "--no-venv").stdout
    assert "user: skipped" in out
    for rel, want in (("etc/rftwin/central.toml", 0o640), ("etc/systemd/system/rftwin-central.service", 0o644),
                      ("var/lib/rftwin/central", 0o750), ("var/cache/rftwin/central", 0o750)):  # fmt: skip
        assert stat.S_IMODE((root / rel).stat().st_mode) == want, rel
    assert not (root / "etc/udev").exists() and not (root / "etc/systemd/system/rftwin-node.service").exists()
    assert {p.name for p in (root / "usr/local/bin").iterdir()} == {"rftwin-central", "rftwin-calibrate"}
    assert "nothing to do" in install("central", "--prefix", root, "--no-venv").stdout


def test_dry_run_changes_nothing_and_shows_the_venv_commands(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    node = install("node", "--prefix", root, "--dry-run").stdout
    assert list(root.iterdir()) == []
    venv = f"{root}/opt/rftwin/venv"
    pips = [line for line in node.splitlines() if "/bin/pip install" in line]
    assert f"[dry-run] would run: /usr/bin/python3 -m venv {venv}" in node
    assert len(pips) == 2 and pips[0].endswith(f"{ROOT}[node]") and "--no-deps --force-reinstall" in pips[1]
    assert "torch" not in node and "sionna" not in node
    central = install("central", "--prefix", root, "--dry-run", "--extras", "central,train", "--wheels", tmp_path).stdout
    pips = [line for line in central.splitlines() if "/bin/pip install" in line]
    assert pips[0].endswith(f"--find-links {tmp_path} torch==2.13.0")  # torch first, from the local wheels
    assert pips[1].endswith(f"{ROOT}[central,train]")
    plain = install("central", "--prefix", root, "--dry-run").stdout
    assert "torch" not in plain  # the central extra needs no torch (sionna-rt does not depend on it)
    assert list(root.iterdir()) == []


def test_install_refuses_bad_input(tmp_path):
    r = install("node", "--prefix", tmp_path, "--python", "/root/python3", check=False)
    assert r.returncode == 2 and "ProtectHome" in r.stderr
    r = install("gateway", check=False)
    assert r.returncode == 2 and "unknown argument" in r.stderr
    r = install("node", "--prefix", tmp_path / "missing", check=False)
    assert r.returncode == 2 and "no such directory" in r.stderr
    r = install("node", "--purge", "--prefix", tmp_path, check=False)
    assert r.returncode == 2 and "--purge goes with uninstall" in r.stderr


# ---------------------------------------------------------------------------------------- logging


def _stream_env(path: Path) -> tuple[object, dict]:
    f = open(path, "w+")  # noqa: SIM115 - closed by the caller
    st = os.fstat(f.fileno())
    return f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def _log_a_few(name: str = "rftwin.test") -> None:
    log = logging.getLogger(name)
    log.debug("debug line")
    log.info("started", extra={"journal": {"ALARM_ID": 3}})
    log.warning("radio slow")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("upload failed")
    log.critical("watchdog")


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_journal_stream_gets_syslog_level_prefixes(tmp_path, restore_logging):
    from contracts.journal import setup_logging

    f, env = _stream_env(tmp_path / "stderr")
    with f:
        kind = setup_logging("rftwin-test", logging.DEBUG, {"RFTWIN_NODE_ID": "su01"}, stream=f, environ=env,
                             socket_path=str(tmp_path / "no-journal-socket"), force=True)  # fmt: skip
        assert kind == "prefix"
        _log_a_few()
        f.seek(0)
        lines = f.read().splitlines()
    assert lines[0] == "<7>rftwin.test: debug line"
    assert lines[1] == "<6>rftwin.test: started alarm_id=3"
    assert lines[2] == "<4>rftwin.test: radio slow"
    assert lines[3] == "<3>rftwin.test: upload failed"
    assert lines[4] == "<3>Traceback (most recent call last):" and lines[-2] == "<3>RuntimeError: boom"
    assert lines[-1] == "<2>rftwin.test: watchdog"
    assert all(re.match(r"<[2-7]>", line) for line in lines)  # every line, traceback included


def _parse_journal_datagram(data: bytes) -> dict[str, str]:
    out, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            out[k.decode()] = v.decode()
            i = nl + 1
        else:  # KEY\n<u64 le length><bytes>\n
            n = int.from_bytes(data[nl + 1:nl + 9], "little")
            out[line.decode()] = data[nl + 9:nl + 9 + n].decode()
            assert data[nl + 9 + n:nl + 10 + n] == b"\n"
            i = nl + 10 + n
    return out


def test_journal_native_protocol_sends_structured_fields(tmp_path, restore_logging):
    from contracts.journal import setup_logging

    sock_path = tmp_path / "journal.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(2)
    f, env = _stream_env(tmp_path / "stderr")
    with f, sock:
        assert setup_logging("rftwin-node", "info", {"RFTWIN_NODE_ID": "su01"}, stream=f, environ=env,
                             socket_path=str(sock_path), force=True) == "journal"  # fmt: skip
        _log_a_few("rftwin.uplink")
        records = [_parse_journal_datagram(sock.recv(65536)) for _ in range(4)]  # debug is below the level
        f.seek(0)
        assert f.read() == ""  # nothing on the stream: all went over the socket
    info, warning, error, critical = records
    assert info["MESSAGE"] == "started" and info["PRIORITY"] == "6" and info["ALARM_ID"] == "3"
    assert info["SYSLOG_IDENTIFIER"] == "rftwin-node" and info["RFTWIN_NODE_ID"] == "su01"
    assert info["LOGGER"] == "rftwin.uplink" and info["CODE_FUNC"] == "_log_a_few" and int(info["CODE_LINE"]) > 0
    assert warning["PRIORITY"] == "4" and critical["PRIORITY"] == "2"
    assert error["PRIORITY"] == "3" and error["MESSAGE"].startswith("upload failed\nTraceback")
    assert error["EXCEPTION"].endswith("RuntimeError: boom")


def test_plain_format_off_the_journal(tmp_path, restore_logging):
    from contracts.journal import choose_format, setup_logging

    f, env = _stream_env(tmp_path / "stderr")
    with f:
        assert choose_format(f, {}) == "plain"
        assert choose_format(f, {"JOURNAL_STREAM": "1:2"}) == "plain"  # someone else's stream
        assert choose_format(f, {**env, "RFTWIN_LOG_FORMAT": "plain"}) == "plain"
        assert setup_logging("rftwin-test", "info", stream=f, environ={}) == "kept"  # pytest's handlers
        setup_logging("rftwin-test", "info", stream=f, environ={}, force=True)
        logging.getLogger("rftwin.test").warning("hello")
        f.seek(0)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ WARNING rftwin.test: hello\n", f.read())


def test_node_status_and_check_default_to_the_installed_config(tmp_path, monkeypatch, capsys):
    from node.cli import main

    monkeypatch.setenv("RFTWIN_NODE_CONFIG", str(tmp_path / "node.toml"))
    assert main(["status"]) == 2 and f"{tmp_path / 'node.toml'}: cannot read" in capsys.readouterr().err
    monkeypatch.delenv("RFTWIN_NODE_CONFIG")
    from node.cli import build_parser

    assert build_parser().parse_args(["status"]).config == Path("/etc/rftwin/node.toml")
    assert build_parser().parse_args(["check"]).config == Path("/etc/rftwin/node.toml")


def test_node_agent_logs_with_prefixes_under_journal_stream(tmp_path):
    """``rftwin-node run`` as systemd starts it: stderr is the journal stream (without the native socket
    the prefixed lines are what journald reads; with it, forcing the prefix format keeps the test local)."""
    from contracts.journal import JOURNAL_SOCKET
    from tests.node_configs import simulated_node_toml, write_config

    cfg = write_config(tmp_path, simulated_node_toml(url="http://127.0.0.1:9", interval_s=0.05))
    r_fd, w_fd = os.pipe()
    st = os.fstat(w_fd)
    env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    env.pop("RFTWIN_LOG_FORMAT", None)
    if os.path.exists(JOURNAL_SOCKET):
        env["RFTWIN_LOG_FORMAT"] = "prefix"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("rftwin-node")), "run", "--config", str(cfg),
                             "--duration", "1.5"], stderr=w_fd, env=env, cwd=tmp_path)  # fmt: skip
    os.close(w_fd)
    with os.fdopen(r_fd) as r:
        err = r.read()
    assert proc.wait(timeout=30) == 0, err
    lines = [line for line in err.splitlines() if line]
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), err
    assert any(line.startswith("<6>") for line in lines) and any(line.startswith("<4>") for line in lines), err


# ----------------------------------------------------------------------- central unit: notify, status


def _central_toml(tmp_path: Path) -> Path:
    path = tmp_path / "central.toml"
    path.write_text('site = "factory-hall-a"\ndata_dir = "data"\nadvertise = false\n'
                    '[listen]\nhost = "127.0.0.1"\nport = 0\n')  # fmt: skip
    return path


def test_central_service_notifies_systemd(tmp_path, monkeypatch):
    """READY=1 once the API answers, WATCHDOG=1 from the event loop every WatchdogSec/3, STOPPING=1."""
    from central.config import load_config
    from central.service import CentralService

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "300000")  # pings every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    svc = CentralService(load_config(_central_toml(tmp_path)), use_default_plugins=False).start()
    messages: list[str] = []
    try:
        assert httpx.get(svc.url + "/api/v1/health").status_code == 200
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
    finally:
        svc.stop()
    sock.settimeout(1)
    while not any(m == "STOPPING=1" for m in messages):
        messages.append(sock.recv(4096).decode())
    sock.close()
    ready = [m for m in messages if "READY=1" in m]
    assert len(ready) == 1 and f"port {svc.port}" in ready[0]
    assert messages.index(ready[0]) < messages.index("WATCHDOG=1")
    assert messages.count("WATCHDOG=1") >= 5


def _status(*args) -> tuple[int, str]:
    """``rftwin-central status ARGS`` in this process (a subprocess costs a second of imports each)."""
    import contextlib
    import io

    from central.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["status", *map(str, args)])
    assert err.getvalue() == "", err.getvalue()
    return rc, out.getvalue()


def test_central_status_from_the_api_and_from_the_database(tmp_path):
    from central.config import load_config
    from central.service import CentralService
    from tests.central_helpers import batch_dict

    cfg_path = _central_toml(tmp_path)
    cfg = load_config(cfg_path)
    svc = CentralService(cfg, use_default_plugins=False).start()
    try:
        token = svc.store.add_node("su01", (6.5, 29.5, 1.5), su_id="su01")
        svc.store.add_node("su02", (12.5, 29.5, 1.5), su_id="su02")
        r = httpx.post(svc.url + "/api/v1/ingest", content=json.dumps(batch_dict(5)),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 200, r.text
        alarm = svc.store.open_alarm("residual", time.time_ns(), 12.5, ["su01", "su02"], (36.0, 8.0))
        svc.store.add_model("detector", tmp_path / "data" / "models" / "d1", {"detector": "gls", "threshold": 3.25,
                                                                              "n_snapshots": 600})  # fmt: skip
        rc, out = _status("--config", cfg_path, "--url", svc.url)
        assert rc == 0, out
        assert f"service   up: {svc.url} answers" in out
        # Only /health is asked (the one open operation); the rest is read from the database, read-only.
        assert "nodes     1 of 2 healthy [from the database]" in out or "nodes     0 of 2 healthy [from the database]" in out
        assert re.search(r"su01 +SU su01 .* 5 records", out) and re.search(r"su02 +SU su02 +never seen", out)
        assert f"alarms    1 active [from the database]\n  #{alarm.id} residual since" in out
        assert "peak score 12.5, suspected at (36.0, 8.0) m; SUs su01, su02; NOT acknowledged" in out
        assert f"detector  configured {DEFAULT_DETECTOR}; active model #1 gls learned" in out and "threshold 3.25, n_snapshots 600" in out
        assert re.search(r"database  .*central\.db: [\d.]+ KiB", out)
        # The API is not where --url says (service running): the database, read-only, with its WAL.
        rc, out = _status("--config", cfg_path, "--url", "http://127.0.0.1:9", "--timeout", "0.5")
        assert rc == 1 and "service   DOWN: http://127.0.0.1:9 does not answer" in out
        assert "[from the database]" in out and f"#{alarm.id} residual" in out
    finally:
        svc.stop()
    data = tmp_path / "data"
    before = {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    rc, out = _status("--config", cfg_path, "--json")  # port 0: nothing listens there
    st = json.loads(out)
    assert rc == 1 and st["service"]["reachable"] is False
    assert st["nodes"]["source"] == "database" and [n["node_id"] for n in st["nodes"]["items"]] == ["su01", "su02"]
    assert st["nodes"]["items"][0]["records"] == 5 and st["alarms"]["active"][0]["id"] == alarm.id
    assert st["detector"]["model"]["provenance"]["detector"] == "gls" and st["database"]["db_bytes"] > 0
    # Read-only for real: no file created or touched next to the database (root running this must not
    # leave root-owned -wal/-shm files that the service could not open).
    assert {p.name: p.stat().st_mtime_ns for p in data.iterdir()} == before


def test_central_status_without_a_database(tmp_path):
    rc, out = _status("--config", _central_toml(tmp_path))
    assert rc == 1 and "service   DOWN" in out
    assert "nodes     unknown: database not readable (below)" in out
    assert re.search(r"database  .*central\.db: FileNotFoundError: .*no database \(has the service ever run\?\)", out)
