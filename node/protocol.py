"""The record a node sends and the central unit stores: defined once, here (central imports it).

Units are in the names: ``_hz``, ``_dbm``, ``_db``; ``t_ns`` is UTC nanoseconds since the Unix epoch.
``from_dict`` validates everything that crosses a process boundary and says what is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

PROTOCOL_VERSION = 1
NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Bounds that no real reading can leave: anything outside is a bug or an attack, not a measurement.
POWER_DBM_RANGE = (-200.0, 60.0)
FREQUENCY_HZ_RANGE = (1e6, 1e11)
GAIN_DB_RANGE = (-50.0, 120.0)


class ProtocolError(ValueError):
    """A record that cannot be a measurement; the message names the field."""


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["subband_powers_dbm"] = list(self.subband_powers_dbm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        if not isinstance(d, dict):
            raise ProtocolError(f"a measurement must be an object, got {type(d).__name__}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ProtocolError(f"unknown fields {sorted(unknown)}")
        missing = {"node_id", "seq", "t_ns", "f_center_hz", "bandwidth_hz", "power_dbm"} - set(d)
        if missing:
            raise ProtocolError(f"missing fields {sorted(missing)}")

        node_id = d["node_id"]
        if not isinstance(node_id, str) or not NODE_ID_RE.match(node_id):
            raise ProtocolError(f"node_id must be 1-64 of letters, digits, '-', '_', '.', got {node_id!r}")
        seq, t_ns = _int(d, "seq", 0), _int(d, "t_ns", 1)
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
        return cls(node_id, seq, t_ns, f, bw, power, subs, saturated, clip, gain)


def _int(d: dict, key: str, minimum: int) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum or v >= 2**63:
        raise ProtocolError(f"{key} must be an integer in [{minimum}, 2^63), got {v!r}")
    return v


def _real(d: dict, key: str, lo: float, hi: float, default: float | None = None) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ProtocolError(f"{key} must be a finite number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)
