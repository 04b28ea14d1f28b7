"""Alarm transitions POSTed to the plant's systems: written to an outbox in the alarm's own
transaction, delivered in order per URL, HMAC-signed, retried with backoff, and not lost when the
central unit restarts before it could deliver (a real HTTP receiver on loopback)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from central.config import ConfigError, WebhookConfig
from central.service import CentralService
from central.store import Store
from central.webhooks import WebhookDispatcher, verify_signature
from tests.central_helpers import central_config
from tests.polling import wait_for

SECRET = "a-webhook-key-of-enough-length"


class Receiver:
    """A scheduler's webhook endpoint: records every POST; answers 503 to the first ``fail_first``."""

    def __init__(self, port: int = 0, fail_first: int = 0):
        self.posts: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers), body))
                code = 503 if len(receiver.posts) <= receiver.fail_first else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rftwin"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict]:
        """The bodies the receiver answered 2xx to, in arrival order, each checked against the secret."""
        out = []
        for k, (headers, body) in enumerate(self.posts):
            if k >= self.fail_first:
                assert verify_signature(SECRET, headers, body), headers
                out.append(json.loads(body))
        return out

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_transition_goes_to_the_outbox_with_the_alarm_itself(tmp_path):
    with Store(tmp_path / "c.db") as store:
        store.set_webhook_urls(["http://a.example/x", "http://b.example/y"])
        a = store.open_alarm("residual", 100, 3.0, ["su01"], (10.0, 20.0))
        store.update_alarm(a.id, peak_score=5.0)  # an update is not a transition
        store.acknowledge_alarm(a.id, "shift-lead")
        store.acknowledge_alarm(a.id, "someone-else")  # the first acknowledgement counts, once
        store.clear_alarm(a.id, 900)
        store.clear_alarm(a.id, 950)
        due = store.due_webhooks()
        assert [(d.url, d.event) for d in due] == [("http://a.example/x", "raised"), ("http://b.example/y", "raised")]
        assert store.webhook_backlog() == {"http://a.example/x": 3, "http://b.example/y": 3}
        body = json.loads(due[0].body)
        assert body["alarm"]["id"] == a.id and body["alarm"]["state"] == "active" and body["alarm"]["affected_sus"] == ["su01"]


def test_delivery_is_in_order_signed_and_retried_until_the_receiver_takes_it(tmp_path):
    rx = Receiver(fail_first=2)
    store = Store(tmp_path / "c.db")
    store.set_webhook_urls([rx.url])
    dispatcher = WebhookDispatcher(store, WebhookConfig((rx.url,), SECRET, 2.0, 0.05, 0.2), poll_s=0.05).start()
    try:
        a = store.open_alarm("residual", 100, 3.0, ["su01"], (10.0, 20.0))
        store.acknowledge_alarm(a.id, "shift-lead")
        store.clear_alarm(a.id, 900)
        wait_for(lambda: dispatcher.delivered == 3, 20, "three deliveries recorded")  # its 2xx arrives before the outbox records it: wait for that
        assert [b["event"] for b in rx.accepted()] == ["raised", "acknowledged", "cleared"]
        assert [h["X-Rftwin-Event"] for h, _ in rx.posts] == ["raised", "raised", "raised", "acknowledged", "cleared"]
        assert store.webhook_backlog() == {} and (dispatcher.delivered, dispatcher.failed) == (3, 2)
        headers, body = rx.posts[-1]
        assert not verify_signature(SECRET, headers, body.replace(b"cleared", b"raised"))  # a forged body fails
        assert not verify_signature(SECRET, headers, body, now_s=int(headers["X-Rftwin-Timestamp"]) + 600)  # a replay
    finally:
        dispatcher.stop()
        store.close()
        rx.close()


def test_an_alarm_raised_while_the_receiver_is_down_is_delivered_after_a_central_restart(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/rftwin"
    cfg = central_config(tmp_path, webhooks={"urls": [url], "secret": SECRET, "backoff_initial_s": 0.05,
                                             "backoff_max_s": 0.1})  # fmt: skip
    svc = CentralService(cfg, use_default_plugins=False, log_level="warning").start()
    alarm = svc.store.open_alarm("residual", time.time_ns(), 4.0, ["su02"], (31.0, 12.0))
    wait_for(lambda: svc.webhooks.failed >= 2, 20, "two failed attempts")  # nobody listens: retried, kept
    svc.stop()
    rx = Receiver(port)
    try:
        svc = CentralService(cfg, use_default_plugins=False, log_level="warning").start()
        try:
            wait_for(lambda: rx.accepted() and svc.store.webhook_backlog() == {}, 20, "the delivery recorded")  # the 2xx, then the outbox's record
            assert [(b["event"], b["alarm"]["id"]) for b in rx.accepted()] == [("raised", alarm.id)]
            assert svc.store.webhook_backlog() == {}
        finally:
            svc.stop()
    finally:
        rx.close()


@pytest.mark.parametrize("webhooks, why", [
    ({"urls": ["ftp://x"], "secret": SECRET}, "webhooks.urls: expected a list of http:// or https:// URLs"),
    ({"urls": ["http://x/a", "http://x/a"], "secret": SECRET}, "a URL appears twice"),
    ({"urls": ["http://x/a"]}, "webhooks need an HMAC key of at least 16 characters"),
    ({"urls": ["http://x/a"], "secret": "short"}, "at least 16 characters"),
    ({"urls": ["http://x/a"], "secret": SECRET, "secret_file": "k"}, "give secret or secret_file, not both"),
    ({"urls": ["http://x/a"], "secret_file": "missing.key"}, "webhooks.secret_file: cannot read"),
    ({"urls": [], "backoff_initial_s": 10.0, "backoff_max_s": 1.0}, "backoff_max_s: must be >= backoff_initial_s"),
    ({"urls": [], "retries": 3}, "webhooks.retries: unknown key"),
])  # fmt: skip
def test_bad_webhook_settings_fail_at_start_naming_the_key(tmp_path, webhooks, why):
    with pytest.raises(ConfigError, match=why.replace(".", r"\.").replace("/", "/")):
        central_config(tmp_path, webhooks=webhooks)


def test_a_secret_file_is_read_and_stripped(tmp_path):
    (tmp_path / "webhook.key").write_text(SECRET + "\n")
    cfg = central_config(tmp_path, webhooks={"urls": ["https://scheduler.hall/rftwin"], "secret_file": "webhook.key"})
    assert cfg.webhooks.secret == SECRET and cfg.webhooks.urls == ("https://scheduler.hall/rftwin",)
