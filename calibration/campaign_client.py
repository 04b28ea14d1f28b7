"""The calibration tools' client of a running central unit: campaigns and learning, over its HTTP API.

One job: turn API calls into Python values and refusals into :class:`CentralError` with the central
unit's reason. Points cross the wire as JSON and become :class:`calibration.points.CampaignPoint`
here, so the CSV format stays in one place (:mod:`calibration.points`); :func:`point_line` says
what a point came to in one line of text.

Tokens: the operator token goes into the ``Authorization`` header and nowhere else: it is not part of
any message, exception or log line (httpx logs URLs, never headers).
"""

from __future__ import annotations

import math
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from calibration.points import CampaignPoint

API = "/api/v1"
DEFAULT_TIMEOUT_S = 30.0
LEARN_TIMEOUT_S = 300.0  # fitting a detector (LOF on many snapshots) takes a while


class CentralError(RuntimeError):
    """The central unit refused a request (``status`` and its reason), or could not be reached
    (``status`` 0)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class CentralClient:
    """``url``: the central unit's base URL (``http://host:8080``); ``token``: an operator token;
    ``ca_file``: the site CA to pin for ``https`` (default: the system's trust store)."""

    url: str
    token: str | None = None
    ca_file: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    # ------------------------------------------------------------------------------- plumbing
    def _request(self, method: str, path: str, *, timeout_s: float | None = None, **kw) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        verify: Any = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True
        try:
            with httpx.Client(
                base_url=self.url.rstrip("/"), verify=verify, timeout=timeout_s or self.timeout_s
            ) as c:
                r = c.request(method, API + path, headers=headers, **kw)
        except httpx.TimeoutException:
            raise CentralError(0, f"{self.url}: no answer within {timeout_s or self.timeout_s:g} s") from None
        except httpx.HTTPError as e:
            raise CentralError(0, f"cannot reach the central unit at {self.url}: {e}") from None
        if r.status_code >= 400:
            try:
                detail = r.json()["detail"]
            except (ValueError, KeyError, TypeError):
                detail = r.text[:300] or r.reason_phrase
            raise CentralError(r.status_code, f"{r.status_code} {r.reason_phrase}: {detail}")
        return r.json()

    # ------------------------------------------------------------------------------ campaigns
    def start_campaign(self, name: str, description: str = "") -> dict:
        return self._request("POST", "/campaigns", json={"name": name, "description": description})

    def campaigns(self, state: str | None = None) -> list[dict]:
        return self._request("GET", "/campaigns", params={"state": state} if state else None)

    def campaign(self, name: str) -> dict:
        """The campaign with its points (``points``: the API's JSON; :func:`to_points` converts)."""
        return self._request("GET", f"/campaigns/{_seg(name)}")

    def current_campaign(self, name: str | None = None, *, open_only: bool = False) -> str:
        """``name``, or the open campaign, or (``open_only`` False) the most recent one."""
        if name:
            return name
        camps = self.campaigns()
        open_ = [c for c in camps if c["state"] == "open"]
        if open_:
            return open_[-1]["name"]
        if camps and not open_only:
            return camps[-1]["name"]
        raise CentralError(404, "no campaign is open: start one with `rftwin-calibrate campaign start NAME`"
                           if camps or open_only else "there are no campaigns yet: "
                           "start one with `rftwin-calibrate campaign start NAME`")  # fmt: skip

    def add_point(
        self,
        name: str,
        position_m,
        power_dbm: float,
        *,
        dwell_s: float | None = None,
        window_ns: tuple[int, int] | None = None,
        settle_s: float = 2.0,
        min_count: int = 1,
    ) -> dict:
        """Measure a point: the server gathers the readings over ``dwell_s`` from now (its clock) or
        over ``window_ns``, and answers when the window has ended: the HTTP timeout covers that."""
        body: dict[str, Any] = {"position_m": [float(v) for v in position_m], "power_dbm": float(power_dbm),
                                "settle_s": settle_s, "min_count": min_count}  # fmt: skip
        if window_ns is not None:
            body["since_ns"], body["until_ns"] = int(window_ns[0]), int(window_ns[1])
            wait_s = max(0.0, (window_ns[1] - time.time_ns()) / 1e9)
        else:
            body["dwell_s"] = dwell_s
            wait_s = float(dwell_s or 0.0)
        return self._request("POST", f"/campaigns/{_seg(name)}/points", json=body,
                             timeout_s=self.timeout_s + wait_s + settle_s)  # fmt: skip

    def import_points(self, name: str, points: list[CampaignPoint]) -> dict:
        return self._request(
            "POST", f"/campaigns/{_seg(name)}/import", json={"points": [to_json(p) for p in points]}
        )

    def close_campaign(self, name: str) -> dict:
        return self._request("POST", f"/campaigns/{_seg(name)}/close")

    # ------------------------------------------------------------------------------- learning
    def learn(self, duration_s: float, detector: str | None = None, target_far: float | None = None,
              contamination: float = 0.0) -> dict:  # fmt: skip
        body: dict[str, Any] = {"duration_s": duration_s, "contamination": contamination}
        if detector:
            body["detector"] = detector
        if target_far is not None:
            body["target_far"] = target_far
        return self._request("POST", "/detector/learn", json=body, timeout_s=LEARN_TIMEOUT_S)

    def model(self, model_id: int) -> dict:
        return self._request("GET", f"/models/{int(model_id)}")


def _seg(name: str) -> str:
    """A campaign name as one URL path segment (names are [A-Za-z0-9_.-]; anything else is quoted
    and the server refuses it with its reason)."""
    from urllib.parse import quote

    return quote(name, safe="")


# ------------------------------------------------------------------------------ JSON <-> points


def to_points(points_json: list[dict]) -> list[CampaignPoint]:
    """The API's points as :class:`CampaignPoint` (NaN mean/std where an SU had no reading)."""
    out = []
    for p in points_json:
        rs = p["readings"]
        nan = float("nan")
        out.append(CampaignPoint(
            tuple(float(v) for v in p["position_m"]), float(p["power_dbm"]), [r["su_id"] for r in rs],
            np.array([nan if r["mean_dbm"] is None else r["mean_dbm"] for r in rs], dtype=float),
            np.array([nan if r["std_db"] is None else r["std_db"] for r in rs], dtype=float),
            np.array([r["count"] for r in rs], dtype=int), p["rejected"],
            meta={k: p[k] for k in ("campaign", "index", "since_ns", "until_ns", "source") if k in p},
        ))  # fmt: skip
    return out


def to_json(point: CampaignPoint) -> dict:
    """A point as the import API takes it (NaN: no reading)."""

    def num(v) -> float | None:
        return None if v is None or not math.isfinite(float(v)) else float(v)

    readings = [{"su_id": su, "mean_dbm": num(point.mean_dbm[j]), "std_db": num(point.std_db[j]),
                 "count": int(point.count[j])} for j, su in enumerate(point.su_ids)]  # fmt: skip
    return {"position_m": [float(v) for v in point.position_m], "power_dbm": float(point.power_dbm),
            "readings": readings, "rejected": point.rejected}  # fmt: skip


def point_line(p: dict) -> str:
    """One line per point: where, and accepted (mean power over the SUs) or why it was rejected."""
    x, y, z = p["position_m"]
    where = f"point {p['index']} at ({x:.2f}, {y:.2f}, {z:.2f}) m, {p['power_dbm']:g} dBm"
    if p["rejected"]:
        return f"{where}: REJECTED: {p['rejected']}"
    rs = p["readings"]
    counts = [r["count"] for r in rs]
    means = [r["mean_dbm"] for r in rs]
    return (f"{where}: accepted: {len(rs)} SUs, {min(counts)}-{max(counts)} readings each, "
            f"{min(means):.1f} to {max(means):.1f} dBm")  # fmt: skip
