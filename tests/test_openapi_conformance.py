"""The API conforms to its own OpenAPI document, judged by schemathesis (every default check) and
openapi-spec-validator: tests/openapi_conformance_suite.py, run in a fresh interpreter so that nothing
an earlier test loaded into this process (flush-to-zero from a ``-ffast-math`` library) changes how
Hypothesis generates requests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = Path(__file__).with_name("openapi_conformance_suite.py")


def test_the_api_conforms_to_its_openapi_document():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(SUITE)],
                       cwd=ROOT, capture_output=True, text=True, timeout=1200)  # fmt: skip
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, r.stdout[-12000:] + r.stderr[-3000:]
    # both tests ran (the second checks that the first reached the handlers with real tokens)
    assert re.search(r"\b2 passed\b", summary) and "skipped" not in summary and "failed" not in summary, summary
