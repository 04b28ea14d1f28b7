"""Helpers for the central unit's tests: a config in a temp dir, records, a Prometheus text parser."""

from __future__ import annotations

import re
import time
from pathlib import Path

from central.auth import hash_token
from central.config import CentralConfig, parse_config
from node.protocol import Measurement

INTEGRATION_TOKEN = "rti_config-integration-token"
OPERATOR_TOKEN = "rto_config-operator-token"
VIEWER_TOKEN = "rtv_config-viewer-token"
SCRAPER_TOKEN = "rts_config-scraper-token"


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header of a request made with ``token``."""
    return {"Authorization": f"Bearer {token}"}


VIEWER = bearer(VIEWER_TOKEN)  # headers of a read


def central_config(tmp_path: Path, **sections) -> CentralConfig:
    """The paper's hall, data in tmp_path, an ephemeral loopback port, no zeroconf; one integration
    one operator, one viewer and one scraper token from the config file. ``sections`` override/add
    top-level keys."""
    doc = {
        "site": "factory-hall-a",
        "data_dir": str(tmp_path / "data"),
        "advertise": False,
        "listen": {"host": "127.0.0.1", "port": 0},
        "integrations": [{"name": "scenario", "token_sha256": hash_token(INTEGRATION_TOKEN)}],
        "operators": [{"name": "shift-lead", "token_sha256": hash_token(OPERATOR_TOKEN)}],
        "viewers": [{"name": "control-room", "token_sha256": hash_token(VIEWER_TOKEN)}],
        "scrapers": [{"name": "prometheus", "token_sha256": hash_token(SCRAPER_TOKEN)}],
        **sections,
    }
    return parse_config(doc, "<test>", tmp_path)


def records(n: int, node_id: str = "su01", first_seq: int = 0, t0_ns: int | None = None, **kw) -> list[Measurement]:
    t0 = time.time_ns() - 10**9 if t0_ns is None else t0_ns
    return [Measurement(node_id, s, t0 + s * 1000, 3.7e9, 20e6, -70.0 + 0.1 * (s % 100), (-75.0, -76.5), **kw)
            for s in range(first_seq, first_seq + n)]  # fmt: skip


def batch_dict(n: int, node_id: str = "su01", first_seq: int = 0, **kw) -> dict:
    return {"protocol": 1, "node_id": node_id, "records": [m.to_dict() for m in records(n, node_id, first_seq, **kw)]}


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the Prometheus text format (0.0.4) strictly enough to catch a malformed line: every
    sample's metric has a TYPE line before it, values are floats. Returns {(name, labels): value}."""
    assert text.endswith("\n")
    typed: dict[str, str] = {}
    out = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            typed[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed sample line: {line!r}"
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        family = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        assert name in typed or typed.get(family) == "histogram", f"sample before its TYPE: {line!r}"
        out[(name, tuple(sorted(_LABEL.findall(labels))))] = float(value)
    return out
