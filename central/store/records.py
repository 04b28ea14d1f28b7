"""Records the store returns that are its own (node and model rows), and row helpers shared by the
query modules. The live records (snapshots, alarms, context) are :mod:`central.live`'s."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from central.live import Snapshot, SuState, TxContext


@dataclass(frozen=True)
class NodeRecord:
    id: str
    position_m: tuple[float, float, float]
    su_id: str | None
    token_sha256: str
    enrolled_ns: int
    revoked: bool


@dataclass(frozen=True)
class ModelRecord:
    id: int
    kind: str
    path: str
    created_ns: int
    provenance: dict
    active: bool

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "path": self.path, "created_ns": self.created_ns,
                "provenance": self.provenance, "active": self.active}  # fmt: skip


def _tuple_or_none(v) -> tuple | None:
    return None if v is None else tuple(float(x) for x in v)


def snapshot_from_dict(d: dict) -> Snapshot:
    """Inverse of :meth:`Snapshot.to_dict` (lists back to tuples)."""
    sus = tuple(SuState(**{**s, "position_m": tuple(s["position_m"]),
                           "subband_measured_dbm": tuple(s.get("subband_measured_dbm", ())),
                           "subband_predicted_dbm": tuple(s.get("subband_predicted_dbm", ()))}) for s in d["sus"])  # fmt: skip
    txs = tuple(TxContext(**{**t, "position_m": tuple(t["position_m"]), "allocation": allocation_tuple(t.get("allocation"))})
                for t in d["txs"])  # fmt: skip
    return Snapshot(**{**d, "sus": sus, "txs": txs, "suspected_position_m": _tuple_or_none(d.get("suspected_position_m")),
                       "busy_subbands": tuple(d.get("busy_subbands", ())),
                       "affected_subbands": tuple(d.get("affected_subbands", ()))})  # fmt: skip


def allocation_tuple(allocation) -> tuple[tuple[int, float], ...] | None:
    """A TxContext allocation from JSON back to tuples: [{"subband", "power_dbm"}, …] (snapshots, as the API
    serves them), [[sub-band, dBm], …] (the context table, and snapshots stored before) or null."""
    if allocation is None:
        return None
    return tuple((int(a["subband"]), float(a["power_dbm"])) if isinstance(a, dict) else (int(a[0]), float(a[1]))
                 for a in allocation)  # fmt: skip


def _floats_json(values: Sequence[float]) -> str:
    """A JSON array of validated (finite) floats: their repr is valid JSON, at half the cost of
    json.dumps (~1 µs per record on the ingest path)."""
    try:
        return "[" + ",".join(map(float.__repr__, values)) + "]"
    except TypeError:  # ints, or other non-float numbers
        return json.dumps([float(v) for v in values])


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)

