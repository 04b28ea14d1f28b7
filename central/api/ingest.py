"""``POST /ingest``: a node uploads a batch of measurements (node token), idempotent on (node_id, seq).

The body is validated by :meth:`node.protocol.IngestBatch.from_dict`, the validator the node itself
runs before spooling (same rules on both sides, and ~5 µs per record instead of pydantic's object
construction on the hot path); :class:`~central.schemas.IngestBatchModel` documents it.

Measured (one 1000-record batch of ~255 kB): JSON parse ≈ 1.6 ms, protocol validation ≈ 4.7 ms, row
building ≈ 0.7 ms, insert + durable commit ≈ 2.5 ms (``bench/central.py``).
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from central.api.bodies import body_schema, parse_json, read_body, require_json, where_in_batch
from central.api.problems import ApiError
from central.api.responses import AUTH, BODY, STORE, errors
from central.api.security import node_credential
from central.api.state import AppState, app_state
from central.schemas import IngestAckModel, IngestBatchModel
from central.store import now_ns
from node.protocol import IngestBatch, ProtocolError

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"])


@router.post(
    "/ingest",
    summary="Upload a batch of measurements (node token)",
    response_model=IngestAckModel,
    responses=errors(*AUTH, *BODY, *STORE, {
        403: "the token belongs to another node than the batch's node_id",
        413: "body too large, or more records than [limits] max_batch_records",
        422: "malformed JSON or an invalid batch (the detail names the record and field): a record's node_id "
             "differs from the batch's, or its t_ns is more than [limits] max_future_skew_s ahead "
             "(reason future_timestamp)",
        503: "store unavailable (disk full, locked): keep the records and retry after Retry-After",
    }),
    openapi_extra=body_schema(IngestBatchModel, "node.protocol.IngestBatch; idempotent on (node_id, seq)"),
)  # fmt: skip
async def ingest(request: Request, node_id: str = Depends(node_credential),
                 state: AppState = Depends(app_state)) -> Response:  # fmt: skip
    """Store a batch of one node's records, idempotent on (node_id, seq). The answer acknowledges
    every seq of the batch once it is durably stored (new or already there, counted in
    ``duplicates``); the node may then delete them from its spool."""
    require_json(request)
    raw = await read_body(request, state.config.limits.max_body_bytes)
    body = await run_in_threadpool(store_batch, state, node_id, raw)
    return Response(body, media_type="application/json")


def store_batch(state: AppState, node_id: str, raw: bytes) -> bytes:
    """Validate and store one node's batch (blocking: run it in the threadpool); the ack as JSON."""
    limits = state.config.limits
    doc = parse_json(raw)
    if isinstance(doc, dict):
        claimed = doc.get("node_id")
        if isinstance(claimed, str) and claimed != node_id:
            raise ApiError(403, f"this token belongs to node {node_id!r}, not {claimed[:80]!r}: "
                           "a node can only write as itself", "forbidden")  # fmt: skip
        recs = doc.get("records")
        if isinstance(recs, list) and len(recs) > limits.max_batch_records:
            raise ApiError(413, f"batch of {len(recs)} records exceeds the limit of "
                           f"{limits.max_batch_records}", "too_large")  # fmt: skip
        if isinstance(doc.get("protocol"), bool):  # True == 1 in Python, not in JSON
            raise ApiError(422, f"protocol must be the integer 1, got {doc['protocol']!r}", "invalid")
    try:
        batch = IngestBatch.from_dict(doc)
    except ProtocolError as e:
        raise ApiError(422, str(e), "invalid") from None
    except (TypeError, ValueError, OverflowError) as e:  # e.g. an integer no float can hold
        raise ApiError(422, f"{where_in_batch(doc)}invalid number: {e}", "invalid") from None
    if batch.node_id != node_id:  # a non-string node_id claim got here only if it validated
        raise ApiError(403, f"this token belongs to node {node_id!r}", "forbidden")
    horizon = now_ns() + limits.max_future_skew_ns
    for i, m in enumerate(batch.records):
        if m.t_ns > horizon:
            ahead = (m.t_ns - horizon) / 1e9 + limits.max_future_skew_s
            raise ApiError(422, f"records[{i}]: t_ns is {ahead:.1f} s in the future (limit "
                           f"{limits.max_future_skew_s:g} s): check the node's clock", "future_timestamp")  # fmt: skip
    ack = state.store.ingest(batch)
    committed_ns = now_ns()  # the store returns once the batch is durably committed
    if batch.spool is not None:  # after the store: a refused batch's header says nothing
        state.node_spool[node_id] = batch.spool.to_dict()
    state.metrics.ingested(len(batch.records), ack.duplicates, committed_ns, [m.t_ns for m in batch.records])
    # Readings of another band plan than the site's are stored but never mixed into detection (GET
    # /nodes flags their node); readings that follow no plan ("") carry only their band power.
    usable = [m for m in batch.records if m.band_plan in ("", state.site.band_plan.fingerprint)]
    if state.on_ingest is not None and usable:
        try:
            state.on_ingest(node_id, usable)
        except Exception:
            log.exception("on_ingest callback failed (the batch is stored)")
    try:
        state.publish_nodes()
    except Exception:
        log.exception("publishing node health failed")
    return json.dumps(ack.to_dict(), separators=(",", ":")).encode()
