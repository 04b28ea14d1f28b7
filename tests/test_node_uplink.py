"""The uplink on its own: batches and acks over real HTTP(S), TLS against a pinned site CA, backoff,
rediscovery of the central unit, and systemd's notify socket."""

from __future__ import annotations

import random
import socket
import ssl

import pytest

from node.protocol import IngestAck, Measurement
from contracts.sd_notify import Notifier, watchdog_interval_s
from node.uplink import Backoff, CentralLocator, Uplink, UplinkAuthError, UplinkError
from tests.ingest_server import IngestServer
from tests.pki import make_site_pki


def records(n: int, node_id: str = "su01", first_seq: int = 0) -> list[Measurement]:
    return [Measurement(node_id, first_seq + i, 1_764_000_000_000_000_000 + i, 3.7e9, 20e6, -70.0 + i) for i in range(n)]


@pytest.fixture(scope="module")
def site_ca(tmp_path_factory):
    """A site CA and a server certificate for 127.0.0.1 signed by it (what `tls init` will create)."""
    return make_site_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(tmp_path):
    srv = IngestServer(tmp_path / "central.db", {"su01": "tok"}).start()
    yield srv
    srv.stop()


def test_a_batch_is_acknowledged_and_resending_it_is_harmless(server):
    up = Uplink("su01", "tok", CentralLocator(server.url))
    batch = records(5)
    assert up.send(batch) == IngestAck((0, 1, 2, 3, 4), 0)
    assert up.send(batch) == IngestAck((0, 1, 2, 3, 4), 5)  # the central unit kept one copy
    assert server.store.seqs("su01") == [0, 1, 2, 3, 4]
    up.close()


def test_refusals_carry_the_central_units_reason(server):
    with pytest.raises(UplinkAuthError, match="401: unknown node or wrong token"):
        Uplink("su01", "wrong", CentralLocator(server.url)).send(records(1))
    server.fail_with = 503
    with pytest.raises(UplinkError, match="503: told to fail"):
        Uplink("su01", "tok", CentralLocator(server.url)).send(records(1))


def test_nothing_listening_is_an_uplink_error_not_a_crash():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UplinkError, match="ConnectError"):
        Uplink("su01", "tok", CentralLocator(f"http://127.0.0.1:{port}"), timeout_s=1.0).send(records(1))


def test_https_with_the_pinned_site_ca(tmp_path, site_ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(site_ca / "server.pem", site_ca / "server.key")
    srv = IngestServer(tmp_path / "central.db", {"su01": "tok"}, tls=ctx).start()
    try:
        assert srv.url.startswith("https://")
        pinned = Uplink("su01", "tok", CentralLocator(srv.url), ca_file=site_ca / "ca.pem")
        assert pinned.send(records(2)).acked == (0, 1)
        with pytest.raises(UplinkError, match="CERTIFICATE_VERIFY_FAILED"):
            Uplink("su01", "tok", CentralLocator(srv.url), ca_file=site_ca / "other.pem").send(records(1))
        with pytest.raises(UplinkError, match="CERTIFICATE_VERIFY_FAILED"):  # system trust store: unknown CA
            Uplink("su01", "tok", CentralLocator(srv.url)).send(records(1))
    finally:
        srv.stop()


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    b = Backoff(0.5, 8.0, random.Random(1))
    delays = [b.next_delay_s() for _ in range(8)]
    for i, d in enumerate(delays):
        nominal = min(8.0, 0.5 * 2**i)
        assert nominal / 2 <= d <= nominal
    assert len({round(d, 6) for d in delays[5:]}) == 3  # capped, yet jittered
    b.reset()
    assert b.next_delay_s() <= 0.5


def test_a_discovered_central_unit_is_looked_up_again_after_invalidation():
    found = iter(["http://10.0.0.5:8080/", "http://10.0.0.6:8080"])
    calls = []
    loc = CentralLocator(None, 2.0, discover=lambda t: calls.append(t) or next(found))
    assert loc.discovers and loc.url() == "http://10.0.0.5:8080" and loc.url() == "http://10.0.0.5:8080"
    loc.invalidate()
    assert loc.url() == "http://10.0.0.6:8080" and calls == [2.0, 2.0]
    fixed = CentralLocator("http://central:80")
    fixed.invalidate()
    assert fixed.url() == "http://central:80"


def test_discovery_failure_is_an_uplink_error():
    def nothing(timeout_s):
        raise TimeoutError("no _rftwin._tcp.local. service")

    with pytest.raises(UplinkError, match="not found by zeroconf"):
        CentralLocator(None, discover=nothing).url()


def test_notifier_speaks_the_systemd_datagram_protocol(tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        n = Notifier(str(path))
        n.ready("measuring\nevery 0.1 s")
        n.watchdog()
        assert sock.recv(100) == b"READY=1\nSTATUS=measuring every 0.1 s"
        assert sock.recv(100) == b"WATCHDOG=1"
        n.close()
    assert not Notifier("").enabled  # outside systemd: a no-op
    Notifier("").ready("nothing happens")


def test_watchdog_interval_comes_from_systemd_for_this_process_only():
    import os

    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000"}) == 3.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 3.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None
