"""Recordings judged by the SigMF project's own validator (the ``sigmf`` package), warnings as errors:
what it only warns about today (an undeclared extension namespace, say) it says it will refuse later."""

from __future__ import annotations

import warnings
from pathlib import Path

from sigmf import sigmffile


def assert_valid_sigmf(meta_path: Path) -> sigmffile.SigMFFile:
    """Load and validate one recording (schema, namespaces, data file length); returns it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recording = sigmffile.fromfile(str(meta_path))
        recording.validate()
    return recording
