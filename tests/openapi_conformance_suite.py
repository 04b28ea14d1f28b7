"""Run by tests/test_openapi_conformance.py in a fresh interpreter (not collected on its own: its name
does not start with ``test_``): by the time the suite reaches it, an earlier test has loaded a library
built with ``-ffast-math`` (Dr.Jit/Mitsuba), which turns on flush-to-zero for the whole process, and
Hypothesis, under schemathesis, refuses to generate floats without subnormals.

OpenAPI conformance, checked by an external tool: schemathesis (its Python API) against a live central
unit, a real uvicorn server on loopback, reading the unit's own ``/openapi.json``.

Every operation gets generated requests, valid ones and invalid ones (schemathesis' examples,
coverage and fuzzing phases, a bounded number of examples each), authenticated with the credential
its security scheme names (a node token for ingest, an integration token for context, an operator
token for acknowledging, learning and campaigns, a viewer token or the dashboard's cookie for reads,
a scraper token for metrics), and every default check runs on every answer:
no 5xx, status codes, content types, bodies and headers as documented (one problem+json body for
every error), invalid data refused, valid data accepted, authentication enforced, a 405 with an
``Allow`` listing the path's methods. Any failure fails the test. The document itself is validated
too (openapi-spec-validator).

What the document cannot say in JSON Schema, and the check configuration therefore allows:

- *valid data answered 422* on the operations whose extra rules are written in their descriptions
  (positions inside the hall and outside obstacles, timestamps against the server's clock, a
  record's node id equal to its batch's, the window of a point);
- *invalid data answered 413*: a body over ``[limits] max_body_bytes`` (e.g. one item past a long
  ``maxItems``) is refused as too large before it is parsed, and more records than
  ``[limits] max_batch_records`` is a 413 by design (the node splits the batch);
- *503* from ``/los`` for a channel estimate: no LoS model is installed here (documented); an
  extra check, :func:`los_503_only_for_a_channel`, holds it to that.

A tiny site (``tests/data/tiny_hall.toml``), no live engine (nothing is ray-traced) but a stand-in
learner, the dashboard mounted (``/api/v1/events``), the rate limit off so that every case gets a
real answer. A valid point request would block for its dwell: :func:`bounded` shortens the dwell
and moves a future window into the past (keeping the request valid) before it is sent.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from openapi_spec_validator import validate as validate_spec
from schemathesis.config import SchemathesisConfig

from central.dashboard import mount
from central.detection.live import LearnResult
from central.live import TxContext
from central.service import CentralService
from tests.central_helpers import INTEGRATION_TOKEN, OPERATOR_TOKEN, SCRAPER_TOKEN, VIEWER_TOKEN, batch_dict, central_config
from tests.test_central_store import snapshot

TINY_HALL = Path(__file__).parent / "data" / "tiny_hall.toml"
NODE_TOKEN = "rtn_conformance-node-su01"
MAX_EXAMPLES = 25
# Operations with rules JSON Schema cannot express (their descriptions say which): valid data may get 422.
CODE_ONLY_RULES = ["/api/v1/ingest", "/api/v1/context", "/api/v1/campaigns/{name}/points",
                   "/api/v1/campaigns/{name}/import"]  # fmt: skip
ACCEPTED_OR_EXPLAINED = '["2xx", "401", "403", "404", "409", "422", "429", "5xx"]'

CONFIG = f"""
seed = 20240613
request-timeout = 15
max-stream-events = 1

[generation]
max-examples = {MAX_EXAMPLES}
deterministic = true
database = "none"

[auth.openapi.NodeToken]
bearer = "{NODE_TOKEN}"
[auth.openapi.IntegrationToken]
bearer = "{INTEGRATION_TOKEN}"
[auth.openapi.OperatorToken]
bearer = "{OPERATOR_TOKEN}"
[auth.openapi.ViewerToken]
bearer = "{VIEWER_TOKEN}"
[auth.openapi.ScraperToken]
bearer = "{SCRAPER_TOKEN}"

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
""" + "".join(f"""
[[operations]]
include-path = "{path}"
checks.positive_data_acceptance.expected-statuses = {ACCEPTED_OR_EXPLAINED}
""" for path in CODE_ONLY_RULES) + f"""
[[operations]]
include-path = "/api/v1/los"
checks.positive_data_acceptance.expected-statuses = {ACCEPTED_OR_EXPLAINED}
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""  # fmt: skip


def learn(since_ns: int, until_ns: int, detector, target_far, contamination) -> LearnResult:
    """A stand-in for the live engine: learns from any window that ends after it starts."""
    if until_ns <= since_ns:
        raise ValueError(f"the window [{since_ns}, {until_ns}] is empty")
    return LearnResult(1, detector or "energy", 3.0, 50, since_ns, until_ns)


@pytest.fixture(scope="module")
def unit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conformance")
    cfg = central_config(tmp, site=str(TINY_HALL), limits={"requests_per_s": 0.0, "failed_auth_per_s": 0.0})
    svc = CentralService(cfg, use_default_plugins=False, log_level="critical")
    svc.store.add_node("su01", (1.3, 4.6, 1.5), su_id="low", token=NODE_TOKEN)
    svc.state.learn = learn
    now = time.time_ns()  # something to read back, so that the answers' schemas are exercised
    svc.store.add_snapshot(snapshot(now - 10**9, anomalous=True))
    svc.store.open_alarm("residual", now - 10**9, 5.0, ["low"], (4.0, 3.0))
    svc.store.add_context([TxContext("ue1", now - 10**9, (1.0, 1.0, 1.5), 20.0)])
    svc.store.add_model("energy", tmp / "energy.json", {"site": "tiny-hall"})
    mount(svc.app, svc.state)  # the dashboard serves /api/v1/events
    svc.start()
    r = httpx.post(svc.url + "/api/v1/ingest", json=batch_dict(3), timeout=10,
                   headers={"Authorization": f"Bearer {NODE_TOKEN}"})  # fmt: skip
    assert r.status_code == 200, r.text
    yield svc
    svc.app.state.dashboard_recorder.stop()
    svc.stop()


@pytest.fixture(scope="module")
def api_schema(unit):
    doc = httpx.get(unit.url + "/openapi.json", timeout=10).json()
    validate_spec(doc)  # the document itself is a valid OpenAPI 3.1 document
    # The dashboard's cookie, of a viewer: schemathesis never sends the CSRF header, so its DELETE
    # /session is refused (403) and the session lasts the run.
    login = httpx.post(unit.url + "/api/v1/session", json={"token": VIEWER_TOKEN}, timeout=10)
    assert login.status_code == 201, login.text
    session = f'[auth.openapi.DashboardSession]\napi_key = "{login.cookies["rftwin_session"]}"\n'
    return schemathesis.openapi.from_url(unit.url + "/openapi.json",
                                         config=SchemathesisConfig.from_str(CONFIG + session))  # fmt: skip


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """schemathesis 4.32's lazy (fixture) loader reads ``request.node._nodeid``, which pytest 9.2 no
    longer has (it renames the node per operation for its report); give it one to read."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def bounded(case) -> None:
    """A valid point request blocks until its window has ended: keep that short (a dwell of at most
    0.1 s, no settling, a future window moved into the past), without changing whether it is valid."""
    body = case.body
    if not case.path.endswith("/points") or not isinstance(body, dict):
        return
    if _number(body.get("dwell_s")) and 0 < body["dwell_s"] <= 600:
        body["dwell_s"] = min(body["dwell_s"], 0.1)
    if _number(body.get("settle_s")) and 0 <= body["settle_s"] <= 60:
        body["settle_s"] = 0.0
    since, until, now = body.get("since_ns"), body.get("until_ns"), time.time_ns()
    if _integer(since) and _integer(until) and now < until <= now + 600 * 10**9 and 0 < until - since <= 600 * 10**9:
        shift = until - now + 10**9
        if since - shift >= 1:
            body["since_ns"], body["until_ns"] = since - shift, until - shift


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def los_503_only_for_a_channel(ctx, response, case) -> None:
    """The one 5xx allowed, narrowed to what it documents: a channel estimate with no model installed.
    A position is answered from the geometry, model or not."""
    if case.path == "/api/v1/los" and response.status_code == 503:
        channel = case.body.get("channel") if isinstance(case.body, dict) else None
        assert channel is not None, f"503 for a request without a channel estimate: {response.text}"


ANSWERS: dict[str, set[int]] = {}  # "METHOD path" -> statuses seen, for the test after this one


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case):
    bounded(case)
    response = case.call_and_validate(additional_checks=[los_503_only_for_a_channel])
    ANSWERS.setdefault(f"{case.method} {case.operation.path}", set()).add(response.status_code)


def test_the_conformance_run_was_authenticated_and_reached_the_handlers(api_schema):
    """A run whose tokens were not sent would pass on 401s alone: every operation that wants a
    credential must have been answered otherwise too, and the writes and the reads must have
    succeeded at least once. Only /health and the login are open."""
    if not ANSWERS:
        pytest.skip("runs after test_api_conforms_to_its_openapi_document")
    operations = [f"{op.method.upper()} {op.path}" for op in (r.ok() for r in api_schema.get_all_operations())]
    secured = [label for label, op in zip(operations, (r.ok() for r in api_schema.get_all_operations()))
               if op.definition.raw.get("security")]  # fmt: skip
    assert set(operations) - set(secured) == {"GET /api/v1/health", "POST /api/v1/session"}  # the open ones
    for label in secured:
        assert ANSWERS.get(label, set()) - {401}, (label, ANSWERS.get(label))
    for label in ("POST /api/v1/ingest", "POST /api/v1/context", "POST /api/v1/detector/learn",
                  "POST /api/v1/alarms/{alarm_id}/ack", "POST /api/v1/los", "GET /api/v1/events",
                  "GET /api/v1/nodes", "GET /api/v1/alarms", "GET /api/v1/metrics", "GET /api/v1/session"):  # fmt: skip
        # (a login succeeds only with a real token, which no generator guesses: tests/test_read_auth.py)
        assert 200 in ANSWERS.get(label, set()), (label, ANSWERS.get(label))
