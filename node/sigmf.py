"""IQ snapshots as SigMF recordings (``.sigmf-data`` + ``.sigmf-meta``), for analysis after the fact.

A band-power record says *that* something was loud; the IQ says *what* it was (a tone, a sweep, a
wideband noise jammer). The node keeps a bounded number of captures: on demand, and when a reading
saturates, rate-limited so that a jammer parked next to a node does not fill its disk.

Format: SigMF 1.0 core namespace, ``cf32_le`` samples (full scale 1.0, as the backends deliver),
one capture segment, one annotation carrying the reading (namespace ``rftwin:``, declared as an
optional extension in ``core:extensions``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from node.protocol import Measurement
from node.sdr.base import IQBuffer

SIGMF_VERSION = "1.0.0"
# The ``rftwin:`` keys are an extension namespace of our own; SigMF requires it declared in
# ``core:extensions`` (optional: a reader that does not know it loses nothing of the core recording).
EXTENSION = {"name": "rftwin", "version": "1.0.0", "optional": True}


def write_capture(directory: Path, buf: IQBuffer, m: Measurement, position_m: tuple[float, float, float],
                  reason: str, hardware: str = "") -> Path:  # fmt: skip
    """Write one recording; returns the path of its ``.sigmf-meta``. Data first, then metadata,
    each atomically, so a recording whose metadata exists is complete."""
    directory.mkdir(parents=True, exist_ok=True)
    when = datetime.fromtimestamp(buf.t_ns / 1e9, UTC)
    stem = directory / f"{m.node_id}-{when:%Y%m%dT%H%M%S}-{buf.t_ns % 1_000_000_000:09d}"
    data = np.ascontiguousarray(buf.samples, dtype="<c8")
    _atomic_write(stem.with_suffix(".sigmf-data"), data.tobytes())
    meta = {
        "global": {
            "core:datatype": "cf32_le",
            "core:sample_rate": buf.sample_rate_hz,
            "core:version": SIGMF_VERSION,
            "core:hw": hardware,
            "core:recorder": "rftwin-node",
            "core:extensions": [EXTENSION],
            "core:description": f"rftwin node {m.node_id}: {reason}",
            "rftwin:node_id": m.node_id,
            "rftwin:position_m": list(position_m),  # hall coordinates, not GeoJSON core:geolocation
            "rftwin:gain_db": buf.gain_db,
            "rftwin:full_scale": "1.0 on I and Q (ADC full scale)",
        },
        "captures": [{"core:sample_start": 0, "core:frequency": buf.center_hz,
                      "core:datetime": when.isoformat(timespec="microseconds").replace("+00:00", "Z")}],
        "annotations": [{
            "core:sample_start": 0,
            "core:sample_count": int(data.size),
            "core:freq_lower_edge": m.f_center_hz - m.bandwidth_hz / 2,
            "core:freq_upper_edge": m.f_center_hz + m.bandwidth_hz / 2,
            "core:label": reason,
            "rftwin:measurement": m.to_dict(),
        }],
    }  # fmt: skip
    meta_path = stem.with_suffix(".sigmf-meta")
    _atomic_write(meta_path, json.dumps(meta, indent=1).encode())
    return meta_path


def prune(directory: Path, keep: int) -> int:
    """Delete the oldest recordings beyond ``keep``; returns how many were removed."""
    metas = sorted(directory.glob("*.sigmf-meta"), key=lambda p: p.name.rsplit("-", 2)[-2:])
    removed = 0
    for meta in metas[: max(len(metas) - keep, 0)]:
        meta.unlink(missing_ok=True)
        meta.with_suffix(".sigmf-data").unlink(missing_ok=True)
        removed += 1
    for tmp in directory.glob("*.tmp"):
        tmp.unlink(missing_ok=True)  # left by a crash mid-write
    return removed


def read_capture(meta_path: Path) -> tuple[dict, np.ndarray]:
    """The metadata and samples of a recording (what an analyst's tool would do)."""
    meta = json.loads(meta_path.read_text())
    samples = np.fromfile(meta_path.with_suffix(".sigmf-data"), dtype="<c8")
    return meta, samples


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
