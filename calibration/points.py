"""Calibration campaign points: the reference transmitter's placements and what every SU measured.

A point is one placement of the reference transmitter (position in m, EIRP in dBm) and, per SU, the
mean received power (dBm) over the dwell, its standard deviation (dB) and the number of readings. A SU
that was saturated or silent during the dwell has no value (NaN mean, count 0) and the point records why
it was rejected, if it was. This is the exchange format between the central unit's campaign API, the
CSV export and the material fit (:mod:`calibration.material_fit`).

CSV (one row per point and SU, so spreadsheets and total-station logs stay simple)::

    point,x_m,y_m,z_m,power_dbm,su_id,mean_dbm,std_db,count,rejected
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CSV_COLUMNS = ("point", "x_m", "y_m", "z_m", "power_dbm", "su_id", "mean_dbm", "std_db", "count", "rejected")


class PointsError(ValueError):
    """A campaign file or point that cannot be used, with the reason."""


@dataclass
class CampaignPoint:
    position_m: tuple[float, float, float]
    power_dbm: float
    su_ids: list[str]
    mean_dbm: np.ndarray  # (n_su,) NaN where the SU gave no usable reading
    std_db: np.ndarray  # (n_su,)
    count: np.ndarray  # (n_su,) int
    rejected: str = ""  # why the point is not used ("" = usable)
    meta: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return not self.rejected


def write_points_csv(points: list[CampaignPoint], path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for i, p in enumerate(points):
            for j, su in enumerate(p.su_ids):
                mean = "" if math.isnan(p.mean_dbm[j]) else f"{p.mean_dbm[j]:.3f}"
                std = "" if math.isnan(p.std_db[j]) else f"{p.std_db[j]:.3f}"
                w.writerow([i, *(f"{c:.3f}" for c in p.position_m), f"{p.power_dbm:.2f}", su, mean, std,
                            int(p.count[j]), p.rejected])  # fmt: skip
    tmp.replace(path)
    return path


def read_points_csv(path: str | Path) -> list[CampaignPoint]:
    """Points from a CSV written by :func:`write_points_csv` (or by hand / a robot's log in that format)."""
    path = Path(path)
    rows: dict[int, list[dict]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise PointsError(f"{path}: missing columns {sorted(missing)} (want {', '.join(CSV_COLUMNS)})")
        for n, row in enumerate(reader, start=2):
            try:
                rows.setdefault(int(row["point"]), []).append(row)
            except ValueError:
                raise PointsError(f"{path}:{n}: point must be an integer, got {row['point']!r}") from None
    points = []
    for idx in sorted(rows):
        rs = rows[idx]
        try:
            pos = tuple(float(rs[0][k]) for k in ("x_m", "y_m", "z_m"))
            power = float(rs[0]["power_dbm"])
            mean = np.array([float(r["mean_dbm"]) if r["mean_dbm"] else np.nan for r in rs])
            std = np.array([float(r["std_db"]) if r["std_db"] else np.nan for r in rs])
            count = np.array([int(r["count"] or 0) for r in rs])
        except ValueError as e:
            raise PointsError(f"{path}: point {idx}: {e}") from None
        if not all(map(math.isfinite, (*pos, power))):
            raise PointsError(f"{path}: point {idx}: position and power must be finite")
        points.append(CampaignPoint(pos, power, [r["su_id"] for r in rs], mean, std, count, rs[0]["rejected"] or ""))
    return points


def measurement_matrix(points: list[CampaignPoint], su_ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions (P, 3) m, powers (P,) dBm, measured (P, n_su) dBm with NaN gaps) of the usable points,
    columns in ``su_ids`` order (a SU a point did not report is NaN)."""
    use = [p for p in points if p.usable]
    meas = np.full((len(use), len(su_ids)), np.nan)
    col = {s: j for j, s in enumerate(su_ids)}
    for i, p in enumerate(use):
        for j, su in enumerate(p.su_ids):
            if su in col:
                meas[i, col[su]] = p.mean_dbm[j]
    pos = np.array([p.position_m for p in use], dtype=float).reshape(-1, 3)
    return pos, np.array([p.power_dbm for p in use], dtype=float), meas
