"""The central unit's HTTP API: every refusal with its reason (never a 500), idempotent ingest, nodes
writing only as themselves, context, alarms, metrics, OpenAPI; and, over a real uvicorn server on
loopback, the node agent delivering exactly once and HTTPS."""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import time
import warnings

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.api import AppState, create_app
from central.events import EventBus
from central.live import TxContext
from central.service import CentralService
from central.store import Store
from node.protocol import INGEST_PATH, MIN_T_NS, IngestAck
from tests.central_helpers import (
    SCRAPER_TOKEN,
    VIEWER,
    INTEGRATION_TOKEN,
    OPERATOR_TOKEN,
    batch_dict,
    bearer,
    central_config,
    parse_prometheus,
    records,
)
from tests.pki import make_site_pki
from tests.test_central_store import snapshot

with warnings.catch_warnings():  # starlette's TestClient would like httpx2; httpx is what is installed
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient

NODE_TOKENS = {"su01": "rtn_token-of-su01", "su02": "rtn_token-of-su02", "su03": "rtn_token-of-su03"}


class Central:
    """The app on a TestClient (ASGI, no socket) with three enrolled nodes, su03 revoked."""

    def __init__(self, tmp_path, **sections):
        self.cfg = central_config(tmp_path, **sections)
        self.store = Store(self.cfg.db_path)
        for i, (nid, tok) in enumerate(NODE_TOKENS.items()):
            su = self.cfg.load_site().sensing_units[i]
            self.store.add_node(nid, su.position_m, su_id=su.id, token=tok)
        self.store.revoke_node("su03")
        self.ingested: list[tuple[str, int]] = []
        self.contexts: list[TxContext] = []
        self.state = AppState(self.cfg, self.store, EventBus(), self.cfg.load_site(),
                              on_ingest=lambda nid, ms: self.ingested.append((nid, len(ms))),
                              on_context=self.contexts.extend)  # fmt: skip
        self.client = TestClient(create_app(self.state), raise_server_exceptions=True)

    def ingest(self, body, token: str | None = NODE_TOKENS["su01"], content_type: str | None = "application/json",
               **headers) -> httpx.Response:  # fmt: skip
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.client.post(INGEST_PATH, content=content, headers=headers)

    def metrics(self) -> dict:
        r = self.client.get("/api/v1/metrics", headers=bearer(SCRAPER_TOKEN))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse_prometheus(r.text)

    def close(self):
        self.client.close()
        self.store.close()


@pytest.fixture
def central(tmp_path):
    c = Central(tmp_path)
    yield c
    c.close()


PROBLEM_FIELDS = {"type", "title", "status", "detail", "reason"}


def refused(r: httpx.Response, status: int, *fragments: str) -> str:
    """An RFC 9457 problem (application/problem+json) of ``status`` whose detail has the fragments."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json", r.headers
    body = r.json()
    assert set(body) == PROBLEM_FIELDS and isinstance(body["detail"], str), body
    assert body["status"] == status and body["type"] == "about:blank" and isinstance(body["reason"], str), body
    for f in fragments:
        assert f in body["detail"], (f, body["detail"])
    return body["detail"]


# ------------------------------------------------------------------------------------------- ingest


def test_health(central):
    r = central.client.get("/api/v1/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_ingest_acks_every_seq_stores_once_and_calls_the_engine_after_storing(central):
    r = central.ingest(batch_dict(5))
    assert r.status_code == 200 and IngestAck.from_dict(r.json()) == IngestAck((0, 1, 2, 3, 4), 0)
    assert central.ingest(batch_dict(5)).json() == {"acked": [0, 1, 2, 3, 4], "duplicates": 5}
    assert central.ingest(batch_dict(3, first_seq=4)).json() == {"acked": [4, 5, 6], "duplicates": 1}
    assert central.store.seqs("su01") == list(range(7))
    assert central.ingested == [("su01", 5), ("su01", 5), ("su01", 3)]
    m = central.metrics()
    assert m[("rftwin_ingest_records_total", ())] == 7 and m[("rftwin_ingest_duplicates_total", ())] == 6
    assert m[("rftwin_ingest_batches_total", ())] == 3
    assert m[("rftwin_node_records_total", (("node", "su01"),))] == 7
    assert m[("rftwin_node_last_seen_timestamp_seconds", (("node", "su01"),))] == pytest.approx(time.time(), abs=5)
    # each new record's age at its durable commit (the records are stamped 1 s ago); the two batches
    # with resends are left out, their records were stored by the first
    assert m[("rftwin_ingest_age_seconds_count", ())] == 5
    assert m[("rftwin_ingest_age_seconds_bucket", (("le", "1.0"),))] == 0
    assert m[("rftwin_ingest_age_seconds_bucket", (("le", "2.5"),))] == 5 == m[("rftwin_ingest_age_seconds_bucket", (("le", "+Inf"),))]
    assert 5.0 < m[("rftwin_ingest_age_seconds_sum", ())] < 12.5


def test_a_failing_engine_callback_does_not_lose_the_ack(central):
    central.state.on_ingest = lambda nid, ms: 1 / 0
    assert central.ingest(batch_dict(2)).json() == {"acked": [0, 1], "duplicates": 0}
    assert central.store.seqs("su01") == [0, 1]


@pytest.mark.parametrize(("token", "header", "why"), [
    (None, None, "missing or malformed 'Authorization: Bearer"),
    (None, "Basic dXNlcjpwYXNz", "missing or malformed"),
    (None, "Bearer", "missing or malformed"),
    ("rtn_not-a-token", None, "unknown or wrong node token"),
    (NODE_TOKENS["su01"] + "x", None, "unknown or wrong node token"),
    (NODE_TOKENS["su03"], None, "token of node 'su03' has been revoked"),
    (INTEGRATION_TOKEN, None, "unknown or wrong node token"),  # an integration is not a node
])  # fmt: skip
def test_401_unknown_wrong_revoked_or_missing_token(central, token, header, why):
    extra = {"Authorization": header} if header else {}
    r = central.ingest(batch_dict(1, node_id="su03" if token == NODE_TOKENS["su03"] else "su01"), token=token, **extra)
    refused(r, 401, why)
    assert r.headers["www-authenticate"] == "Bearer"
    assert central.store.count("measurements") == 0


def test_403_a_node_cannot_write_as_another(central):
    refused(central.ingest(batch_dict(2, node_id="su02")), 403, "belongs to node 'su01', not 'su02'",
            "only write as itself")  # fmt: skip
    body = batch_dict(2)
    body["records"][1]["node_id"] = "su02"  # smuggled inside a batch of its own
    refused(central.ingest(body), 422, "records[1]: node_id 'su02' differs from the batch's 'su01'")
    assert central.store.count("measurements") == 0
    assert central.metrics()[("rftwin_rejected_requests_total", (("endpoint", "/ingest"), ("reason", "forbidden")))] == 1


def test_413_oversize_body_or_batch(tmp_path):
    c = Central(tmp_path, limits={"max_body_bytes": 16_384, "max_batch_records": 10})
    try:
        refused(c.ingest(batch_dict(11)), 413, "batch of 11 records exceeds the limit of 10")
        big = json.dumps(batch_dict(10)).encode() + b" " * 20_000
        refused(c.ingest(big), 413, "exceeds the limit of 16384 bytes")

        def chunks():  # no Content-Length: the limit holds while streaming
            for _ in range(40):
                yield b" " * 1024

        r = c.client.post(INGEST_PATH, content=chunks(), headers={"Authorization": f"Bearer {NODE_TOKENS['su01']}",
                                                                  "Content-Type": "application/json"})  # fmt: skip
        refused(r, 413, "body exceeds the limit of 16384 bytes")
        assert c.ingest(batch_dict(10)).status_code == 200
        m = c.metrics()
        assert m[("rftwin_rejected_requests_total", (("endpoint", "/ingest"), ("reason", "too_large")))] == 3
    finally:
        c.close()


def test_413_default_limit_is_the_protocols_batch_size(central):
    refused(central.ingest(batch_dict(1001)), 413, "batch of 1001 records exceeds the limit of 1000")


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_415_wrong_content_type(central, ctype):
    refused(central.ingest(batch_dict(1), content_type=ctype), 415, "Content-Type must be application/json")


def test_content_type_parameters_are_fine(central):
    assert central.ingest(batch_dict(1), content_type="application/json; charset=utf-8").status_code == 200


def _with(record_changes: dict | None = None, **top) -> dict:
    b = batch_dict(2)
    b.update(top)
    if record_changes:
        b["records"][1].update(record_changes)
    return b


NOW_NS = time.time_ns()
BAD_BODIES = [
    (b"", "empty body"),
    (b"{", "malformed JSON"),
    (b"\xff\xfe\xfa", "malformed JSON"),
    (b"[1, 2]", "a batch must be an object"),
    (b"null", "a batch must be an object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (json.dumps(_with({"power_dbm": 1.0})).replace("1.0", "NaN").encode(), "NaN is not allowed"),
    (json.dumps(_with({"power_dbm": 1.0})).replace("1.0", "Infinity").encode(), "Infinity is not allowed"),
    (json.dumps(_with({"power_dbm": 1.0})).replace("1.0", "-Infinity").encode(), "-Infinity is not allowed"),
    (json.dumps(_with({"power_dbm": 1.0})).replace("1.0", "1e999").encode(), "records[1]: power_dbm must be a finite"),
    (json.dumps(_with({"power_dbm": 1.0})).replace("1.0", "1" + "0" * 400).encode(), "records[1]"),
    (json.dumps(_with({"seq": 1.0})).replace("1.0", "9" * 5000).encode(), "malformed JSON"),
    (json.dumps(_with({"seq": 2**64})).encode(), "records[1]: seq must be an integer in [0, 2^63)"),
    (json.dumps(_with({"seq": "1"})).encode(), "records[1]: seq must be an integer"),
    (json.dumps(_with({"seq": True})).encode(), "records[1]: seq must be an integer"),
    (json.dumps(_with({"power_dbm": "-60"})).encode(), "records[1]: power_dbm must be a finite number"),
    (json.dumps(_with({"power_dbm": 500.0})).encode(), "records[1]: power_dbm must be a finite number in [-200, 60]"),
    (json.dumps(_with({"saturated": "yes"})).encode(), "records[1]: saturated must be true or false"),
    (json.dumps(_with({"subband_powers_dbm": [1] * 65})).encode(), "subband_powers_dbm must be a list of at most 64"),
    (json.dumps(_with({"colour": "red"})).encode(), "records[1]: unknown fields ['colour']"),
    (json.dumps(_with(protocol=2)).encode(), "protocol must be 1, got 2"),
    (json.dumps(_with(records=[])).encode(), "records must be a list of 1 to 1000"),
    (json.dumps(_with(records={"a": 1})).encode(), "records must be a list"),
    (json.dumps(_with(extra=1)).encode(), "unknown fields ['extra']"),
    (json.dumps({"protocol": 1, "node_id": "su01", "records": [{"node_id": "su01"}]}).encode(), "missing fields"),
    (json.dumps(_with({"t_ns": NOW_NS + 3600 * 10**9})).encode(), "s in the future (limit 60 s): check the node's clock"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "why"), BAD_BODIES, ids=[w for _, w in BAD_BODIES])
def test_422_with_the_reason_never_a_500(central, body, why):
    refused(central.ingest(body), 422, why)
    assert central.store.count("measurements") == 0 and central.ingested == []


def test_t_ns_just_inside_the_skew_limit_is_accepted(central):
    assert central.ingest(_with({"t_ns": time.time_ns() + 50 * 10**9})).status_code == 200


@pytest.mark.parametrize("t_ns", [1, MIN_T_NS - 1])
def test_422_a_reading_from_before_2020_a_node_without_a_clock(central, t_ns):
    detail = refused(central.ingest(_with({"t_ns": t_ns})), 422, "records[1]: ", f"t_ns {t_ns} is before 2020-01-01")
    assert "node clock not set?" in detail
    assert central.store.count("measurements") == 0 and central.ingested == []
    assert central.ingest(_with({"t_ns": MIN_T_NS})).status_code == 200  # the bound itself is a valid time


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=20))  # fmt: skip
def test_no_json_document_whatsoever_gets_a_500(central, doc):
    for body in (doc, {"protocol": 1, "node_id": "su01", "records": [doc]}):
        r = central.ingest(json.dumps(body))
        assert r.status_code in (200, 403, 422), r.text
        assert isinstance(r.json().get("detail", ""), str)


def test_rejections_are_counted_by_reason_and_the_metrics_text_parses(central):
    central.ingest(batch_dict(1), token=None)
    central.ingest(b"{", token=NODE_TOKENS["su01"])
    central.ingest(batch_dict(1), content_type="text/plain")
    central.store.open_alarm("residual", 1)
    m = central.metrics()
    rej = {dict(labels)["reason"]: v for (name, labels), v in m.items() if name == "rftwin_rejected_requests_total"}
    assert rej == {"unauthorized": 1, "invalid": 1, "unsupported_media_type": 1}
    assert m[("rftwin_alarms_active", ())] == 1
    assert m[("rftwin_node_healthy", (("node", "su01"),))] == 0  # never seen
    assert ("rftwin_node_last_seen_timestamp_seconds", (("node", "su01"),)) not in m


def test_a_store_that_cannot_write_answers_503_so_the_node_retries(central, monkeypatch):
    def locked(batch, received_ns=None):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(central.store, "ingest", locked)
    r = central.ingest(batch_dict(1))
    refused(r, 503, "store unavailable: database is locked")
    assert r.headers["retry-after"] == "1"


# ------------------------------------------------------------------------------------------ context


def tx(tx_id="ue1", t_ns=None, pos=(10.0, 20.0, 1.5), **kw) -> dict:
    return {"tx_id": tx_id, "t_ns": time.time_ns() if t_ns is None else t_ns, "position_m": list(pos),
            "power_dbm": 20.0, **kw}  # fmt: skip


def post_context(central, body, token=INTEGRATION_TOKEN) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return central.client.post("/api/v1/context", content=body if isinstance(body, bytes) else json.dumps(body),
                               headers=headers)  # fmt: skip


def test_context_is_stored_served_latest_per_tx_and_handed_to_the_engine(central):
    t100, t200 = MIN_T_NS + 100, MIN_T_NS + 200  # t_ns before 2020 is refused
    r = post_context(central, {"transmitters": [tx("ue1", t100), tx("ue2", t100, f_center_hz=3.7e9, bandwidth_hz=2e7)]})
    assert r.status_code == 200 and r.json() == {"stored": 2}
    assert post_context(central, [tx("ue1", t200, pos=(30.0, 5.0, 1.5))]).json() == {"stored": 1}  # bare list
    latest = central.client.get("/api/v1/context", headers=VIEWER).json()
    assert [(t["tx_id"], t["t_ns"], t["position_m"]) for t in latest] == [("ue1", t200, [30.0, 5.0, 1.5]),
                                                                          ("ue2", t100, [10.0, 20.0, 1.5])]  # fmt: skip
    assert latest[1]["f_center_hz"] == 3.7e9 and latest[0]["f_center_hz"] == 0.0
    assert [t.tx_id for t in central.contexts] == ["ue1", "ue2", "ue1"]
    assert central.contexts[2] == TxContext("ue1", t200, (30.0, 5.0, 1.5), 20.0, 0.0, 0.0)


def test_the_schedulers_allocation_is_stored_served_and_handed_on(central):
    t = MIN_T_NS + 100
    plan = central.state.site.band_plan.fingerprint
    two = [{"subband": 6, "power_dbm": 17.0}, {"subband": 5, "power_dbm": 16.9897}]  # 50 + 50 mW = 20 dBm
    r = post_context(central, [tx("ue1", t, allocation=two, band_plan=plan), tx("ue2", t, allocation=[])])
    assert r.status_code == 200, r.text
    latest = {x["tx_id"]: x for x in central.client.get("/api/v1/context", headers=VIEWER).json()}
    assert latest["ue1"]["allocation"] == [{"subband": 5, "power_dbm": 16.9897}, {"subband": 6, "power_dbm": 17.0}]
    assert latest["ue2"]["allocation"] == [] and central.store.latest_context()[1].allocation == ()
    ue1, ue2 = central.contexts
    assert ue1.allocation == ((5, 16.9897), (6, 17.0)) and ue1.transmitting and not ue2.transmitting
    assert ue1.subband_powers_dbm(central.state.site.band_plan)[[4, 5, 6]] == pytest.approx([-np.inf, 16.9897, 17.0])


def test_context_tokens_from_the_config_or_enrolled(central):
    enrolled = central.store.add_integration("fleet-manager")
    assert post_context(central, [tx()], token=enrolled).status_code == 200
    refused(post_context(central, [tx()], token=None), 401, "missing or malformed")
    refused(post_context(central, [tx()], token=NODE_TOKENS["su01"]), 401, "unknown or wrong integration token")
    refused(post_context(central, [tx()], token=OPERATOR_TOKEN), 401, "unknown or wrong integration token")


BAD_CONTEXT = [
    ([tx(pos=(41.0, 20.0, 1.5))], "transmitters[0] (ue1): position_m [41.0, 20.0, 1.5] is outside the hall"),
    ([tx(pos=(10.0, -0.1, 1.5))], "is outside the hall [0..40] x [0..40] x [0..5] m"),
    ([tx(pos=(10.0, 20.0, 9.0))], "outside the hall"),
    ([tx(pos=(10.0, 20.0))], "transmitters[0].position_m: List should have at least 3 items"),
    ([tx(pos=("a", 1, 1))], "transmitters[0].position_m[0]: Input should be a valid number"),
    ([tx(t_ns=time.time_ns() + 10**12)], "t_ns is more than 60 s in the future"),
    ([tx(t_ns=1.5)], "transmitters[0].t_ns: Input should be a valid integer"),
    ([tx(t_ns="1")], "transmitters[0].t_ns: Input should be a valid integer"),
    ([tx(power_dbm=1000.0)], "transmitters[0].power_dbm: Input should be less than or equal to 60"),
    ([tx(tx_id="ue 1")], "transmitters[0].tx_id: String should match pattern"),
    ([tx(colour="red")], "transmitters[0].colour: Extra inputs are not permitted"),
    ([tx(f_center_hz=1e6, bandwidth_hz=2e6)], "bandwidth_hz exceeds f_center_hz"),
    ([tx(allocation=[{"subband": 16, "power_dbm": 20.0}])], "allocation: sub-band 16 is outside the band plan's 0..15"),
    ([tx(allocation=[{"subband": 2, "power_dbm": 17.0}, {"subband": 2, "power_dbm": 17.0}])], "a sub-band appears twice"),
    ([tx(allocation=[{"subband": 2, "power_dbm": 14.0}])], "power_dbm 20 is not the allocation's total 14.00 dBm"),
    ([tx(allocation=[{"subband": -1, "power_dbm": 20.0}])], "allocation[0].subband: Input should be greater than"),
    ([tx(band_plan="0123456789ab", allocation=[])], "band_plan 0123456789ab is not the site's"),
    ([], "transmitters: List should have at least 1 item"),
    ({"txs": []}, "transmitters: Field required"),
    ("hello", "Input should be a valid dictionary"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "why"), BAD_CONTEXT, ids=[w[:40] for _, w in BAD_CONTEXT])
def test_context_validation_422_with_the_reason(central, body, why):
    refused(post_context(central, body), 422, why)
    assert central.store.count("context") == 0


@pytest.mark.parametrize("t_ns", [1, MIN_T_NS - 1])
def test_context_from_before_2020_is_refused_naming_t_ns(central, t_ns):
    refused(post_context(central, [tx(), tx("ue2", t_ns=t_ns)]), 422,
            f"transmitters[1].t_ns: Input should be greater than or equal to {MIN_T_NS}")  # fmt: skip
    assert central.store.count("context") == 0 and central.contexts == []
    assert post_context(central, [tx(t_ns=MIN_T_NS)]).status_code == 200


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_context_refuses_non_finite_numbers(central, literal):
    body = json.dumps([tx(power_dbm=1.5)]).replace("1.5", literal).encode()
    refused(post_context(central, body), 422)


def test_context_wrong_content_type_and_malformed_json(central):
    r = central.client.post("/api/v1/context", content=b"x", headers={"Authorization": f"Bearer {INTEGRATION_TOKEN}"})
    refused(r, 415, "Content-Type must be application/json")
    refused(post_context(central, b"{bad"), 422, "malformed JSON")


# --------------------------------------------------------------------------- reads, alarms, site


def test_nodes_report_health(central):
    central.ingest(batch_dict(3))
    nodes = {n["node_id"]: n for n in central.client.get("/api/v1/nodes", headers=VIEWER).json()}
    assert set(nodes) == {"su01", "su02", "su03"}
    assert nodes["su01"]["healthy"] and nodes["su01"]["records"] == 3 and nodes["su01"]["extra"]["su_id"] == "su01"
    assert nodes["su01"]["last_power_dbm"] == pytest.approx(-69.8)
    assert (nodes["su02"]["healthy"], nodes["su02"]["detail"]) == (False, "never seen")
    assert nodes["su03"]["detail"] == "revoked"


def test_snapshots_with_scheduler_allocations_are_served_as_the_context_api_takes_them(central):
    """A snapshot's transmitters carry their allocation: served as [{subband, power_dbm}], never a 500."""
    import dataclasses

    from central.live import TxContext

    agv = TxContext("agv-1", 100, (5.0, 5.0, 1.5), 20.0, allocation=((4, 7.9), (5, 7.9)))
    idle = TxContext("agv-2", 100, (9.0, 5.0, 1.5), 20.0, allocation=())
    central.store.add_snapshot(dataclasses.replace(snapshot(100), txs=(agv, idle), busy_subbands=(4, 5),
                                                   spectral_score=3.2, spectral_threshold=2.3, affected_subbands=(5,)))  # fmt: skip
    r = central.client.get("/api/v1/snapshots", headers=VIEWER)
    assert r.status_code == 200, r.text
    s = r.json()[0]
    assert s["txs"][0]["allocation"] == [{"subband": 4, "power_dbm": 7.9}, {"subband": 5, "power_dbm": 7.9}]
    assert s["txs"][1]["allocation"] == [] and s["affected_subbands"] == [5] and s["spectral_score"] == 3.2
    assert central.store.snapshots(1)[0].txs[0].allocation == ((4, 7.9), (5, 7.9))


def test_snapshots_by_limit_and_since(central):
    for t in range(1, 6):
        central.store.add_snapshot(snapshot(t * 100, anomalous=t == 4))
    got = central.client.get("/api/v1/snapshots", params={"limit": 2}, headers=VIEWER).json()
    assert [s["t_ns"] for s in got] == [400, 500]
    assert got[0]["anomalous"] and got[0]["suspected_position_m"] == [20.0, 10.0]
    assert got[0]["sus"][1] == {"su_id": "su02", "position_m": [12.5, 29.5, 1.5], "measured_dbm": None,
                                "predicted_dbm": -62.0, "residual_db": None, "stale": True, "saturated": False,
                                "subband_measured_dbm": [], "subband_predicted_dbm": []}  # fmt: skip
    assert [s["t_ns"] for s in central.client.get("/api/v1/snapshots?since_ns=250", headers=VIEWER).json()] == [300, 400, 500]
    refused(central.client.get("/api/v1/snapshots?limit=0", headers=VIEWER), 422, "limit")
    refused(central.client.get("/api/v1/snapshots?limit=abc", headers=VIEWER), 422, "query.limit: Input should be a valid integer")
    refused(central.client.get("/api/v1/snapshots?since_ns=" + "9" * 30, headers=VIEWER), 422, "since_ns")


def test_alarms_list_and_acknowledge(central):
    a = central.store.open_alarm("residual", 1000, 5.0, ["su01", "su02"], (20.0, 10.0))
    b = central.store.open_alarm("saturation", 2000, None, ["su03"])
    central.store.clear_alarm(b.id, 3000)
    assert [x["id"] for x in central.client.get("/api/v1/alarms", headers=VIEWER).json()] == [b.id, a.id]
    active = central.client.get("/api/v1/alarms?state=active", headers=VIEWER).json()
    assert active == [{"id": a.id, "kind": "residual", "state": "active", "start_ns": 1000, "end_ns": None,
                       "peak_score": 5.0, "affected_sus": ["su01", "su02"], "suspected_position_m": [20.0, 10.0],
                       "acknowledged_by": None, "acknowledged_ns": None, "interference": None,
                       "avoid_subbands": []}]  # fmt: skip
    assert [x["id"] for x in central.client.get("/api/v1/alarms", params={"state": "cleared"}, headers=VIEWER).json()] == [b.id]
    refused(central.client.get("/api/v1/alarms?state=open", headers=VIEWER), 422, "state")

    url = f"/api/v1/alarms/{a.id}/ack"
    refused(central.client.post(url), 401, "operator token")
    refused(central.client.post(url, headers={"Authorization": f"Bearer {NODE_TOKENS['su01']}"}), 401,
            "unknown or wrong operator token")  # fmt: skip
    ok = central.client.post(url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert ok.status_code == 200 and ok.json()["acknowledged_by"] == "shift-lead"
    assert ok.json()["acknowledged_ns"] == pytest.approx(time.time_ns(), abs=5e9)
    assert [e.kind for e in central.state.bus.latest()] == ["alarm"]  # the dashboard hears of it
    enrolled = central.store.add_operator("night-shift")
    again = central.client.post(url, headers={"Authorization": f"Bearer {enrolled}"})
    assert again.json()["acknowledged_by"] == "shift-lead"  # the first acknowledgement is kept
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    refused(central.client.post("/api/v1/alarms/999/ack", headers=auth), 404, "no alarm 999")
    refused(central.client.post("/api/v1/alarms/-1/ack", headers=auth), 404, "no alarm -1")
    refused(central.client.post(f"/api/v1/alarms/{'9' * 40}/ack", headers=auth), 404)
    refused(central.client.post("/api/v1/alarms/x/ack", headers=auth), 422, "alarm_id")


def test_site_for_the_dashboard(central):
    s = central.client.get("/api/v1/site", headers=VIEWER).json()
    assert s["name"] == "factory-hall-a" and s["hall_size_m"] == [40.0, 40.0, 5.0]
    assert len(s["obstacles"]) == 6 and s["obstacles"][0] == {"name": "line-1", "material": "metal",
                                                               "min_m": [7.0, 22.0, 0.0], "size_m": [4.0, 14.0, 3.0]}  # fmt: skip
    assert len(s["sensing_units"]) == 12 and s["sensing_units"][0] == {"id": "su01", "position_m": [6.5, 29.5, 1.5]}


def test_the_band_plan_is_served_to_readers_nodes_and_the_scheduler_not_to_anyone(central):
    plan = central.state.site.band_plan
    site = central.client.get("/api/v1/site", headers=VIEWER).json()["band_plan"]
    assert site["fingerprint"] == plan.fingerprint and len(site["grid"]) == 16
    assert site["grid"][5] == {"id": 5, "first_prb": 85, "last_prb": 101, "center_hz": plan.grid[5].center_hz,
                               "width_hz": pytest.approx(6.12e6)}  # fmt: skip
    for token in (NODE_TOKENS["su01"], INTEGRATION_TOKEN, OPERATOR_TOKEN):
        assert central.client.get("/api/v1/band-plan", headers=bearer(token)).json() == site
    refused(central.client.get("/api/v1/band-plan"), 401, "missing or malformed")
    refused(central.client.get("/api/v1/band-plan", headers=bearer(NODE_TOKENS["su03"])), 401, "revoked")
    refused(central.client.get("/api/v1/band-plan", headers=bearer(SCRAPER_TOKEN)), 401, "unknown or wrong")


def test_readings_of_another_band_plan_are_stored_not_used_and_their_node_is_flagged(central):
    site_plan = central.state.site.band_plan.fingerprint
    assert central.ingest(batch_dict(2, band_plan=site_plan)).status_code == 200
    assert central.ingest(batch_dict(2, first_seq=2, band_plan="0123456789ab")).json() == {"acked": [2, 3], "duplicates": 0}
    assert central.ingested == [("su01", 2)]  # stored, never handed to detection
    assert [m.band_plan for m in central.store.measurements("su01")] == [site_plan] * 2 + ["0123456789ab"] * 2
    su01 = next(n for n in central.client.get("/api/v1/nodes", headers=VIEWER).json() if n["node_id"] == "su01")
    assert not su01["healthy"] and su01["extra"]["band_plan"] == "0123456789ab"
    assert su01["detail"].startswith(f"band plan mismatch: measures against plan 0123456789ab, the site's is {site_plan}")
    central.ingest(batch_dict(1, first_seq=4))  # a node that follows no plan: its band power is used
    assert central.ingested == [("su01", 2), ("su01", 1)]
    su01 = next(n for n in central.client.get("/api/v1/nodes", headers=VIEWER).json() if n["node_id"] == "su01")
    assert su01["healthy"]


def test_unknown_paths_and_methods_answer_with_a_detail(central):
    refused(central.client.get("/api/v1/nope"), 404, "Not Found")
    refused(central.client.get(INGEST_PATH), 405, "Method Not Allowed")


@pytest.mark.parametrize(("path", "allow"), [("/api/v1/campaigns", "GET, POST"), ("/api/v1/context", "GET, POST"),
                                             (INGEST_PATH, "POST"), ("/api/v1/alarms", "GET")])  # fmt: skip
def test_405_allow_lists_every_method_the_path_serves(central, path, allow):
    """Found by schemathesis: Starlette's Allow named only the first route's method (POST), though
    GET /campaigns and GET /context are served too."""
    for method in ("DELETE", "PUT", "PATCH", "OPTIONS"):
        r = central.client.request(method, path)
        refused(r, 405, "Method Not Allowed")
        assert r.headers["allow"] == allow, (method, path, r.headers)


@pytest.mark.parametrize("path", ["/api/v1/alarms?state=AAA", "/api/v1/snapshots?since_ns=9223372036854775808",
                                  "/api/v1/snapshots?limit=0", "/api/v1/models/x", "/api/v1/campaigns?state=x"])  # fmt: skip
def test_invalid_parameters_answer_a_problem_not_fastapis_validation_error(central, path):
    refused(central.client.get(path, headers=VIEWER), 422)


def test_request_bodies_are_strictly_typed(central):
    """Found by schemathesis: campaign import stored "power_dbm": "20" and position_m [2, 2, true].
    A number is a JSON number (an integer may be written 2.0, as JSON Schema has it), never a string
    or a boolean."""
    op = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    assert central.client.post("/api/v1/campaigns", json={"name": "strict"}, headers=op).status_code == 201
    point = {"position_m": [2.0, 2.0, 1.5], "power_dbm": 20.0, "readings": [{"su_id": "su01", "mean_dbm": -60.0,
                                                                             "count": 3}]}  # fmt: skip
    for bad, where in [({"power_dbm": "20"}, "points[0].power_dbm"), ({"position_m": [2, 2, True]}, "points[0].position_m[2]"),
                       ({"readings": [{"su_id": "su01", "count": "3"}]}, "points[0].readings[0].count"),
                       ({"readings": [{"su_id": "su01", "count": 2.5, "mean_dbm": -60.0}]}, "count")]:  # fmt: skip
        r = central.client.post("/api/v1/campaigns/strict/import", json={"points": [{**point, **bad}]}, headers=op)
        refused(r, 422, where)
    assert central.store.count("campaign_points") == 0
    integral = {**point, "readings": [{"su_id": "su01", "mean_dbm": -60.0, "count": 3.0}]}  # 3.0 is an integer
    r = central.client.post("/api/v1/campaigns/strict/import", json={"points": [point, integral]}, headers=op)
    assert r.status_code == 200 and r.json()["imported"] == 2, r.text
    assert [p["readings"][0]["count"] for p in r.json()["points"]] == [3, 3]
    learn = central.client.post("/api/v1/detector/learn", json={"duration_s": "60"}, headers=op)
    refused(learn, 422, "duration_s")


def test_openapi_documents_problems_and_bearer_security(central):
    doc = central.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes == {
        **{name: {"type": "http", "scheme": "bearer", "bearerFormat": fmt, "description": schemes[name]["description"]}
           for name, fmt in (("NodeToken", "rtn_…"), ("IntegrationToken", "rti_…"), ("OperatorToken", "rto_…"),
                             ("ViewerToken", "rtv_…"), ("ScraperToken", "rts_…"))},
        "DashboardSession": {"type": "apiKey", "in": "cookie", "name": "rftwin_session",
                             "description": schemes["DashboardSession"]["description"]}}  # fmt: skip
    wants = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            wants[method.upper(), path] = [k for req in op.get("security", ()) for k in req]
            for code, response in op["responses"].items():
                if code >= "400":
                    assert response["content"] == {"application/problem+json": {"schema": {
                        "$ref": "#/components/schemas/Problem"}}}, (method, path, code)  # fmt: skip
    assert wants["POST", INGEST_PATH] == ["NodeToken"] and wants["POST", "/api/v1/context"] == ["IntegrationToken"]
    for op in [("POST", "/api/v1/alarms/{alarm_id}/ack"), ("POST", "/api/v1/detector/learn"), ("POST", "/api/v1/campaigns"),
               ("POST", "/api/v1/campaigns/{name}/points"), ("POST", "/api/v1/campaigns/{name}/import"),
               ("POST", "/api/v1/campaigns/{name}/close")]:  # fmt: skip
        assert wants[op] == ["OperatorToken", "DashboardSession"], op
    reads = [op for op in wants if op[0] == "GET" and op[1] not in ("/api/v1/health", "/api/v1/metrics", "/api/v1/session",
                                                                    "/api/v1/band-plan")]  # fmt: skip
    assert len(reads) == 8, reads  # context, site, nodes, snapshots, alarms, models, campaigns, a campaign
    for op in reads:
        assert wants[op] == ["ViewerToken", "OperatorToken", "DashboardSession"], op
    assert wants["GET", "/api/v1/health"] == [] and wants["GET", "/api/v1/metrics"] == ["ScraperToken"]
    assert wants["GET", "/api/v1/band-plan"] == ["NodeToken", "ViewerToken", "OperatorToken", "IntegrationToken", "DashboardSession"]
    assert wants["POST", "/api/v1/los"] == ["ViewerToken", "OperatorToken", "IntegrationToken", "DashboardSession"]
    assert wants["POST", "/api/v1/session"] == []  # the login: its body carries the token
    assert wants["GET", "/api/v1/session"] == wants["DELETE", "/api/v1/session"] == ["DashboardSession"]
    assert {"413", "415", "422", "503"} <= set(doc["paths"]["/api/v1/los"]["post"]["responses"])
    assert set(doc["components"]["schemas"]["Problem"]["required"]) == PROBLEM_FIELDS


def test_a_resource_router_is_testable_alone(central):
    """Each module of central.api serves its resource on its own: here the alarms router on a bare
    app (the AppState on app.state.rftwin, the problem handlers, the security state, nothing else)."""
    from fastapi import FastAPI

    from central.api import alarms, problems, security

    app = FastAPI()
    app.state.rftwin = central.state
    problems.install_error_handlers(app)
    security.install_security(app, central.cfg.limits)
    app.include_router(alarms.router, prefix="/api/v1")
    alarm = central.store.open_alarm("residual", 1000, 5.0, ["su01"], (20.0, 10.0))
    with TestClient(app) as client:
        assert [a["id"] for a in client.get("/api/v1/alarms", headers=VIEWER).json()] == [alarm.id]
        refused(client.post(f"/api/v1/alarms/{alarm.id}/ack"), 401, "operator token")
        r = client.post(f"/api/v1/alarms/{alarm.id}/ack", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert r.status_code == 200 and r.json()["acknowledged_by"] == "shift-lead", r.text
        refused(client.get("/api/v1/nodes", headers=VIEWER), 404)  # not this module's


def test_openapi_lists_every_endpoint_with_its_models(central):
    assert central.client.get("/docs").status_code == 200
    doc = central.client.get("/openapi.json").json()
    paths = doc["paths"]
    expected = {"/api/v1/ingest": "post", "/api/v1/health": "get", "/api/v1/metrics": "get",
                "/api/v1/context": "post", "/api/v1/nodes": "get", "/api/v1/snapshots": "get",
                "/api/v1/alarms": "get", "/api/v1/alarms/{alarm_id}/ack": "post", "/api/v1/site": "get"}  # fmt: skip
    for path, method in expected.items():
        assert method in paths[path], path
    assert paths["/api/v1/context"]["get"]
    schemas = doc["components"]["schemas"]
    ingest = paths["/api/v1/ingest"]["post"]
    assert ingest["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/IngestBatchModel"}
    assert ingest["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/IngestAckModel")
    assert {"401", "403", "413", "415", "422"} <= set(ingest["responses"])
    assert "records" in schemas["IngestBatchModel"]["properties"] and "power_dbm" in schemas["MeasurementModel"]["properties"]
    assert schemas["ContextUpdate"]["properties"]["transmitters"]["items"] == {"$ref": "#/components/schemas/TxContextIn"}
    for name in ("NodeHealthOut", "SnapshotOut", "AlarmOut", "SiteOut", "Problem"):
        assert name in schemas
    refs = json.dumps(doc)
    for ref in set(part.split('"')[0] for part in refs.split('"$ref": "#/components/schemas/')[1:]):
        assert ref in schemas, f"dangling $ref {ref}"


# ------------------------------------------------------------------------ a real server on loopback


@pytest.fixture
def service(tmp_path):
    svc = CentralService(central_config(tmp_path), use_default_plugins=False, log_level="warning")
    tokens = {}
    for nid in ("su01", "su02"):
        su = svc.site.sensing_units[svc.site.su_ids.index(nid)]
        tokens[nid] = svc.store.add_node(nid, su.position_m, su_id=nid)
    svc.tokens = tokens  # type: ignore[attr-defined]
    svc.start()
    yield svc
    svc.stop()


def test_the_node_agent_delivers_exactly_once_to_the_real_service(tmp_path, service):
    from node.agent import Agent
    from node.config import load_config
    from node.spool import Spool
    from tests.node_configs import simulated_node_toml, write_config
    from tests.test_node_agent import last_seq

    cfg = load_config(write_config(tmp_path, simulated_node_toml(url=service.url, token=service.tokens["su01"])))
    agent = Agent(cfg)
    assert agent.run(duration_s=1.5) == 0
    n = last_seq(cfg) + 1
    assert n >= 10 and agent.status.uploaded == n and agent.status.last_upload_error == ""
    # Read through a connection of our own: the service's store stays the service's.
    with sqlite3.connect(service.config.db_path) as db:
        seqs = [s for (s,) in db.execute("SELECT seq FROM measurements WHERE node_id = 'su01' ORDER BY seq")]
        power, subs, gain = db.execute("SELECT power_dbm, subband_powers_dbm, gain_db FROM measurements "
                                       "WHERE node_id = 'su01' AND seq = 0").fetchone()  # fmt: skip
    assert seqs == list(range(n))  # every reading, once
    assert power == pytest.approx(-60.0, abs=0.3) and len(json.loads(subs)) == 1 and gain == 30.0
    spool = Spool(cfg.spool.path)
    assert len(spool) == 0 and spool.dropped == 0
    spool.close()
    health = {h["node_id"]: h for h in httpx.get(service.url + "/api/v1/nodes", headers=VIEWER).json()}
    assert health["su01"]["records"] == n and health["su01"]["extra"]["last_seq"] == n - 1


def test_resends_over_real_http_are_absorbed_and_another_nodes_token_is_refused(service):
    from node.uplink import CentralLocator, Uplink, UplinkAuthError

    up = Uplink("su01", service.tokens["su01"], CentralLocator(service.url))
    batch = records(50)
    assert up.send(batch) == IngestAck(tuple(range(50)), 0)
    assert up.send(batch) == IngestAck(tuple(range(50)), 50)  # a lost ack, resent: stored once
    impostor = Uplink("su02", service.tokens["su01"], CentralLocator(service.url))
    with pytest.raises(UplinkAuthError, match="403: this token belongs to node 'su01', not 'su02'"):
        impostor.send(records(1, "su02"))
    up.close()
    impostor.close()
    text = httpx.get(service.url + "/api/v1/metrics", headers=bearer(SCRAPER_TOKEN)).text
    m = parse_prometheus(text)
    assert m[("rftwin_ingest_records_total", ())] == 50 and m[("rftwin_ingest_duplicates_total", ())] == 50


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_site_pki(tmp_path_factory.mktemp("pki"))


def test_https_with_the_configured_certificate(tmp_path, pki):
    from node.uplink import CentralLocator, Uplink

    cfg = central_config(tmp_path, tls={"cert": str(pki / "server.pem"), "key": str(pki / "server.key")})
    svc = CentralService(cfg, use_default_plugins=False, log_level="warning")
    token = svc.store.add_node("su01", (6.5, 29.5, 1.5), su_id="su01")
    svc.start()
    try:
        assert svc.url.startswith("https://127.0.0.1:")
        up = Uplink("su01", token, CentralLocator(svc.url), ca_file=pki / "ca.pem")
        assert up.send(records(3)).acked == (0, 1, 2)
        up.close()
        with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
            httpx.get(svc.url.replace("https", "http") + "/api/v1/health", timeout=2).raise_for_status()
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        assert httpx.get(svc.url + "/api/v1/health", verify=ctx).json() == {"status": "ok"}
    finally:
        svc.stop()


def test_a_busy_port_fails_at_start_with_the_reason(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            CentralService(central_config(tmp_path, listen={"host": "127.0.0.1", "port": port}), use_default_plugins=False)



# --------------------------------------------------------------------- a node's spool in the header

SPOOL_FULL = {"full": True, "dropped": 12, "refused": 3, "free_bytes": 4096}


def nodes_spool(central) -> dict:
    return {n["node_id"]: n["spool"] for n in central.client.get("/api/v1/nodes", headers=VIEWER).json()}


def test_the_spool_state_of_a_batch_header_is_shown_by_get_nodes(central):
    assert nodes_spool(central) == {"su01": None, "su02": None, "su03": None}  # nothing reported yet
    assert central.ingest({**batch_dict(2), "spool": SPOOL_FULL}).json() == {"acked": [0, 1], "duplicates": 0}
    assert nodes_spool(central) == {"su01": SPOOL_FULL, "su02": None, "su03": None}
    # a batch without it (a node from before the field; drain_spool) is accepted and changes nothing
    assert central.ingest(batch_dict(1, first_seq=2)).status_code == 200
    assert central.ingest({**batch_dict(1, first_seq=3), "spool": None}).status_code == 200
    assert nodes_spool(central)["su01"] == SPOOL_FULL
    recovered = {**SPOOL_FULL, "full": False, "free_bytes": 10**9}
    assert central.ingest({**batch_dict(1, first_seq=4), "spool": recovered}).status_code == 200
    assert nodes_spool(central)["su01"] == recovered  # the latest report wins
    assert central.store.seqs("su01") == list(range(5))


@pytest.mark.parametrize("spool, why", [
    ({**SPOOL_FULL, "full": "yes"}, "spool: full must be true or false"),
    ({**SPOOL_FULL, "dropped": -1}, "spool: dropped must be an integer"),
    ({k: v for k, v in SPOOL_FULL.items() if k != "free_bytes"}, "spool: missing fields ['free_bytes']"),
    ({**SPOOL_FULL, "extra": 1}, "spool: unknown fields ['extra']"),
    ([1, 2], "spool must be an object"),
])  # fmt: skip
def test_422_a_bad_spool_header_names_it_and_stores_nothing(central, spool, why):
    refused(central.ingest({**batch_dict(2), "spool": spool}), 422, why)
    assert central.store.count("measurements") == 0 and nodes_spool(central)["su01"] is None


def test_openapi_documents_the_optional_spool_header_and_its_place_in_nodes(central):
    schemas = central.client.get("/openapi.json").json()["components"]["schemas"]
    batch = schemas["IngestBatchModel"]
    assert "spool" in batch["properties"] and "spool" not in batch.get("required", [])
    assert set(schemas["SpoolStateModel"]["properties"]) == set(SPOOL_FULL)
    assert set(schemas["SpoolStateModel"]["required"]) == set(SPOOL_FULL)
    assert "spool" in schemas["NodeHealthOut"]["properties"]
