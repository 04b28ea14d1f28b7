"""Issue 8 security: token rotation and removal (effective at once, hashed at rest) and the site PKI
made by ``rftwin-central tls init`` (a CA the nodes pin, a server certificate with the right SANs)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import pytest

from central.auth import hash_token, match_token
from central.store import Store, StoreError
from central.tls import SiteCa, TlsError, san_entries
from tests.central_helpers import batch_dict
from tests.test_central_api import NODE_TOKENS, Central
from tests.test_central_cli import SCRIPT, cli, config  # noqa: F401 (fixture)


def test_rotating_a_node_token_refuses_the_old_one_at_once(tmp_path):
    c = Central(tmp_path)
    try:
        old = NODE_TOKENS["su01"]
        assert c.ingest(batch_dict(2)).status_code == 200
        new = c.store.rotate_node_token("su01")
        assert new != old and new.startswith("rtn_")
        r = c.ingest(batch_dict(2, first_seq=2), token=old)
        assert r.status_code == 401
        assert c.ingest(batch_dict(2, first_seq=2), token=new).status_code == 200
        stored = {h for h, _ in c.store.node_credentials()}
        assert hash_token(new) in stored and new not in stored  # only the hash is kept
        with pytest.raises(StoreError, match="revoked"):
            c.store.rotate_node_token("su03")
        with pytest.raises(StoreError, match="no node"):
            c.store.rotate_node_token("nope")
    finally:
        c.close()


def test_integration_and_operator_rotate_and_remove(config):  # noqa: F811
    tok = cli("integration", "add", "ran", "--config", config).stdout.strip()
    r = cli("integration", "rotate", "ran", "--config", config)
    assert r.returncode == 0 and "shown only now" in r.stderr
    new = r.stdout.strip()
    store = Store(config.parent / "data" / "central.db")
    try:
        creds = store.credentials("integration")
        assert match_token(tok, creds) is None and match_token(new, creds) == "ran"
    finally:
        store.close()
    assert cli("integration", "remove", "ran", "--config", config).returncode == 0
    r = cli("integration", "rotate", "ran", "--config", config)
    assert r.returncode == 2 and "no integration 'ran'" in r.stderr
    r = cli("operator", "remove", "nobody", "--config", config)
    assert r.returncode == 2 and "no operator 'nobody'" in r.stderr


def test_node_rotate_on_the_command_line(config):  # noqa: F811
    tok = cli("node", "add", "su01", "--position", "6.5,29.5,1.5", "--config", config).stdout.strip()
    r = cli("node", "rotate", "su01", "--config", config)
    assert r.returncode == 0 and r.stdout.strip() not in ("", tok) and "token file" in r.stderr


def test_tls_init_makes_a_ca_the_nodes_can_pin(config):  # noqa: F811
    r = cli("tls", "init", "--config", config, "--name", "127.0.0.1", "--name", "central.plant.local")
    assert r.returncode == 0, r.stderr
    d = config.parent / "data" / "tls"
    for name, mode in (("ca.key", 0o600), ("server.key", 0o600)):
        assert (d / name).stat().st_mode & 0o777 == mode
    assert "BEGIN" not in r.stdout  # no key material printed
    text = subprocess.run(["openssl", "x509", "-in", str(d / "server.pem"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "IP Address:127.0.0.1" in text and "DNS:central.plant.local" in text and "TLS Web Server" in text
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.pem"), str(d / "server.pem")],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # a second init would cut off every node: refused with the reason
    again = cli("tls", "init", "--config", config)
    assert again.returncode == 2 and "every node pins it" in again.stderr
    before = (d / "server.pem").read_bytes()
    assert cli("tls", "renew", "--config", config, "--name", "127.0.0.1").returncode == 0
    assert (d / "server.pem").read_bytes() != before
    _handshake(d)


def test_tls_init_into_a_relative_folder_is_all_or_nothing(config):  # noqa: F811
    """``--out tls`` is relative to where the command runs; a failed init leaves no half-built CA behind."""
    run = lambda *a: subprocess.run([SCRIPT, "tls", "init", "--config", str(config), "--out", "tls", *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=config.parent)  # fmt: skip
    d = config.parent / "tls"
    bad = run("--name", "not a name")
    assert bad.returncode == 2 and "not a DNS name or IP address" in bad.stderr
    assert not d.exists() or list(d.iterdir()) == []  # nothing a second run would refuse to replace
    good = run("--name", "127.0.0.1")
    assert good.returncode == 0, good.stderr
    assert sorted(p.name for p in d.iterdir()) == ["ca.key", "ca.pem", "ca.srl", "server.key", "server.pem"]
    _handshake(d)


def _handshake(d):
    """A TLS handshake on loopback: the server's certificate verifies against the pinned site CA."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(d / "server.pem", d / "server.key")
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            s.sendall(b"ok")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port)) as raw, client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        assert s.recv(2) == b"ok"
    t.join(5)
    srv.close()


def test_site_ca_refusals(tmp_path):
    with pytest.raises(TlsError, match="tls init"):
        SiteCa(tmp_path).issue_server(["127.0.0.1"])
    with pytest.raises(TlsError, match="not a DNS name"):
        san_entries(["bad name"])
    assert san_entries(["::1", "a.b"]) == ["IP:::1", "DNS:a.b"]
