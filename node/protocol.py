"""The record a node sends and the central unit stores: defined once, here (central imports it).

Units are in the names: ``_hz``, ``_dbm``, ``_db``; ``t_ns`` is UTC nanoseconds since the Unix epoch.
``from_dict`` validates everything that crosses a process boundary and says what is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

PROTOCOL_VERSION = 1
# The central unit's ingest endpoint (relative to its base URL). Nodes POST an IngestBatch there with
# ``Authorization: Bearer <node token>`` and get an IngestAck back.
INGEST_PATH = "/api/v1/ingest"
HEALTH_PATH = "/api/v1/health"  # 200 when the central unit is up (``rftwin-node check`` asks it)
BAND_PLAN_PATH = "/api/v1/band-plan"  # the site's band plan (node token); ``rftwin-node check`` compares
MAX_BATCH_RECORDS = 1000
NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BAND_PLAN_RE = re.compile(r"^[0-9a-f]{0,32}$")
MAX_SUBBAND_ID = 64  # sub-band ids are 0 … 63 (contracts.band_plan.MAX_SUBBANDS)
# Bounds that no real reading can leave: anything outside is a bug or an attack, not a measurement.
POWER_DBM_RANGE = (-200.0, 60.0)
FREQUENCY_HZ_RANGE = (1e6, 1e11)
GAIN_DB_RANGE = (-50.0, 120.0)
MIN_T_NS = 1_577_836_800_000_000_000  # 2020-01-01T00:00:00Z in ns since the epoch
"""The earliest ``t_ns`` a reading (or a context estimate) may carry. A node that booted without a
clock (an ADALM-Pluto has no RTC; a Pi without network time) stamps its readings in 1970, and such a
reading can never be placed against context, snapshots or alarms: it is refused (the node's spool
validates before storing, so it never blocks the replay queue), as a ``t_ns`` too far in the future is
refused by the central unit (``[limits] max_future_skew_s``)."""


class ProtocolError(ValueError):
    """A record that cannot be a measurement; the message names the field."""


def check_keys(d: object, what: str, allowed: set[str], required: set[str], prefix: str = "") -> None:
    """``d`` is a JSON object with only ``allowed`` and all ``required`` keys (ProtocolError otherwise)."""
    if not isinstance(d, dict):
        raise ProtocolError(f"{what} must be an object, got {type(d).__name__}")
    if unknown := set(d) - allowed:
        raise ProtocolError(f"{prefix}unknown fields {sorted(unknown)}")
    if missing := required - set(d):
        raise ProtocolError(f"{prefix}missing fields {sorted(missing)}")


@dataclass(frozen=True)
class Measurement:
    node_id: str
    seq: int  # per node, strictly increasing; (node_id, seq) makes uploads idempotent
    t_ns: int
    f_center_hz: float
    bandwidth_hz: float
    power_dbm: float  # a lower bound when ``saturated``
    subband_powers_dbm: tuple[float, ...] = ()
    saturated: bool = False
    clip_fraction: float = 0.0
    gain_db: float = 0.0
    # contracts.band_plan.BandPlan.fingerprint of the plan the sub-bands were measured against; "" when
    # the node's sub-bands follow no plan (nodes before band plans): the central unit then uses only
    # the band power, never the sub-bands
    band_plan: str = ""
    # Which of the plan's sub-bands ``subband_powers_dbm`` are, ascending (a sweeping node's step reading,
    # node.sweep): then ``power_dbm`` is the power in those sub-bands and ``f_center_hz`` / ``bandwidth_hz``
    # describe the span they cover. Empty: all of the plan's sub-bands, in order (a full-band reading).
    subband_ids: tuple[int, ...] = ()

    @property
    def partial(self) -> bool:
        """A step reading: it covers only the sub-bands ``subband_ids`` of its band plan."""
        return bool(self.subband_ids)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["subband_powers_dbm"] = list(self.subband_powers_dbm)
        if self.subband_ids:
            d["subband_ids"] = list(self.subband_ids)
        else:  # absent rather than []: what a central unit from before sweeping accepts
            del d["subband_ids"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        check_keys(d, "a measurement", set(cls.__dataclass_fields__),
                   {"node_id", "seq", "t_ns", "f_center_hz", "bandwidth_hz", "power_dbm"})  # fmt: skip

        node_id = d["node_id"]
        if not isinstance(node_id, str) or not NODE_ID_RE.match(node_id):
            raise ProtocolError(f"node_id must be 1-64 of letters, digits, '-', '_', '.', got {node_id!r}")
        seq, t_ns = _int(d, "seq", 0), _int(d, "t_ns", 1)
        if t_ns < MIN_T_NS:
            raise ProtocolError(f"node clock not set? t_ns {t_ns} is before 2020-01-01 (t_ns must be at least "
                                f"{MIN_T_NS}, UTC ns since the epoch): set the node's clock (NTP)")  # fmt: skip
        f = _real(d, "f_center_hz", *FREQUENCY_HZ_RANGE)
        bw = _real(d, "bandwidth_hz", 1.0, f)
        power = _real(d, "power_dbm", *POWER_DBM_RANGE)
        subs = d.get("subband_powers_dbm", [])
        if not isinstance(subs, (list, tuple)) or len(subs) > 64:
            raise ProtocolError("subband_powers_dbm must be a list of at most 64 numbers")
        subs = tuple(_real({"subband_powers_dbm": v}, "subband_powers_dbm", *POWER_DBM_RANGE) for v in subs)
        saturated = d.get("saturated", False)
        if not isinstance(saturated, bool):
            raise ProtocolError(f"saturated must be true or false, got {saturated!r}")
        clip = _real(d, "clip_fraction", 0.0, 1.0, default=0.0)
        gain = _real(d, "gain_db", *GAIN_DB_RANGE, default=0.0)
        plan = d.get("band_plan", "")
        if not isinstance(plan, str) or not BAND_PLAN_RE.match(plan):
            raise ProtocolError(f"band_plan must be a band plan's fingerprint (0-32 hex digits), got {plan!r}")
        ids = d.get("subband_ids", [])
        if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ProtocolError(f"subband_ids must be a list of sub-band ids (integers), got {ids!r}")
        if ids:
            if not all(0 <= i < MAX_SUBBAND_ID for i in ids):
                raise ProtocolError(f"subband_ids must be sub-band ids in [0, {MAX_SUBBAND_ID}), got {list(ids)}")
            if any(b <= a for a, b in zip(ids, ids[1:])):
                raise ProtocolError(f"subband_ids must be unique and ascending, got {list(ids)}")
            if len(ids) != len(subs):
                raise ProtocolError(f"subband_ids names {len(ids)} sub-bands but subband_powers_dbm has {len(subs)} "
                                    "powers: one power per named sub-band")  # fmt: skip
            if not plan:
                raise ProtocolError("subband_ids needs band_plan: sub-band ids are ids of a band plan's grid")
        return cls(node_id, seq, t_ns, f, bw, power, subs, saturated, clip, gain, plan, tuple(ids))


@dataclass(frozen=True)
class SpoolState:
    """The node's spool when it sent a batch: the batch header that lets the central unit show that a
    node is losing readings to a full disk before anyone reads the node's journal. Optional in
    :class:`IngestBatch` (protocol 1 batches without it stay valid), so it needs no new version.

    ``full``: the spool had no room for the node's latest reading (disk or ``max_records``);
    ``dropped``: records the ``drop_oldest`` policy deleted unsent, since the spool was created;
    ``refused``: readings not stored because the spool was full, since the agent started;
    ``free_bytes``: free space on the filesystem of the node's spool."""

    full: bool
    dropped: int = 0
    refused: int = 0
    free_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpoolState":
        check_keys(d, "spool", set(cls.__dataclass_fields__), set(cls.__dataclass_fields__), prefix="spool: ")
        if not isinstance(d["full"], bool):
            raise ProtocolError(f"spool: full must be true or false, got {d['full']!r}")
        try:
            return cls(d["full"], _int(d, "dropped", 0), _int(d, "refused", 0), _int(d, "free_bytes", 0))
        except ProtocolError as e:
            raise ProtocolError(f"spool: {e}") from None


@dataclass(frozen=True)
class IngestBatch:
    """One upload: records of one node, in sequence order (a node can only write as itself), and,
    from nodes that send it, the state of the node's spool (``spool``: null or absent when not sent)."""

    node_id: str
    records: tuple[Measurement, ...]
    protocol: int = PROTOCOL_VERSION
    spool: SpoolState | None = None

    def to_dict(self) -> dict:
        d = {"protocol": self.protocol, "node_id": self.node_id, "records": [m.to_dict() for m in self.records]}
        if self.spool is not None:  # absent rather than null: what a central unit before it expects
            d["spool"] = self.spool.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "IngestBatch":
        """Validate a whole batch; one bad record refuses the batch (the error names its index)."""
        check_keys(d, "a batch", {"protocol", "node_id", "records", "spool"}, set())
        if d.get("protocol") != PROTOCOL_VERSION:
            raise ProtocolError(f"protocol must be {PROTOCOL_VERSION}, got {d.get('protocol')!r}")
        node_id, records = d.get("node_id"), d.get("records")
        if not isinstance(node_id, str) or not NODE_ID_RE.match(node_id):
            raise ProtocolError(f"node_id must be 1-64 of letters, digits, '-', '_', '.', got {node_id!r}")
        if not isinstance(records, list) or not 1 <= len(records) <= MAX_BATCH_RECORDS:
            raise ProtocolError(f"records must be a list of 1 to {MAX_BATCH_RECORDS} measurements")
        parsed = []
        for i, r in enumerate(records):
            try:
                m = Measurement.from_dict(r)
            except ProtocolError as e:
                raise ProtocolError(f"records[{i}]: {e}") from None
            if m.node_id != node_id:
                raise ProtocolError(f"records[{i}]: node_id {m.node_id!r} differs from the batch's {node_id!r}")
            parsed.append(m)
        spool = d.get("spool")
        return cls(node_id, tuple(parsed), spool=None if spool is None else SpoolState.from_dict(spool))


@dataclass(frozen=True)
class IngestAck:
    """What the central unit has durably stored: ``acked`` seqs (new or already present), so the node
    may delete them from its spool. Re-sending an acked record is harmless (idempotent on seq)."""

    acked: tuple[int, ...]
    duplicates: int = 0

    def to_dict(self) -> dict:
        return {"acked": list(self.acked), "duplicates": self.duplicates}

    @classmethod
    def from_dict(cls, d: dict) -> "IngestAck":
        if not isinstance(d, dict) or not isinstance(d.get("acked"), list):
            raise ProtocolError("an ack must be an object with a list 'acked'")
        acked = tuple(_int({"acked": s}, "acked", 0) for s in d["acked"])
        dup = d.get("duplicates", 0)
        if isinstance(dup, bool) or not isinstance(dup, int) or dup < 0:
            raise ProtocolError(f"duplicates must be a non-negative integer, got {dup!r}")
        return cls(acked, dup)


def _int(d: dict, key: str, minimum: int) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum or v >= 2**63:
        raise ProtocolError(f"{key} must be an integer in [{minimum}, 2^63), got {v!r}")
    return v


def _real(d: dict, key: str, lo: float, hi: float, default: float | None = None) -> float:
    v = d.get(key, default)
    if isinstance(v, int) and not isinstance(v, bool) and not -1e300 < v < 1e300:
        v = math.inf  # an integer too large for a float (math.isfinite would raise OverflowError)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ProtocolError(f"{key} must be a finite number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)
