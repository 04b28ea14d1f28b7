"""Where rftwin keeps what it can rebuild: traced gain maps, LoS datasets, Dr.Jit kernels.

One root for every cache so that a service, a test run or CI can move all of them with one variable:
``$RFTWIN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/rftwin``, else ``~/.cache/rftwin``. Each kind of
cache is a folder under it (``gain-maps``, ``los``, ``drjit``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The folder all of rftwin's caches live under (see the module docstring)."""
    env = os.environ.get("RFTWIN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rftwin"


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cache, e.g. ``cache_dir("gain-maps")`` (not created here)."""
    return cache_root() / kind
