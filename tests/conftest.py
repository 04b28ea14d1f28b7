from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# The test run owns every cache, never the user's: traced gain maps, LoS datasets and Dr.Jit kernels
# (contracts.cache), matplotlib's font cache, anything under XDG_CACHE_HOME. Set here, at import, before
# any test module imports mitsuba/drjit, and in os.environ so that the services, nodes and CLIs the
# tests start as subprocesses inherit it. A new empty folder per run unless RFTWIN_TEST_CACHE_DIR names
# one (.ci/run does, empty; a developer may point it at a kept folder to rerun warm).
TEST_CACHE_ROOT = Path(os.environ.get("RFTWIN_TEST_CACHE_DIR") or tempfile.mkdtemp(prefix="rftwin-test-cache-"))
for _var, _sub in (("RFTWIN_CACHE_DIR", "rftwin"), ("DRJIT_CACHE_DIR", "drjit"),
                   ("XDG_CACHE_HOME", "xdg"), ("MPLCONFIGDIR", "matplotlib")):  # fmt: skip
    os.environ[_var] = str(TEST_CACHE_ROOT / _sub)
    (TEST_CACHE_ROOT / _sub).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def tiny_site():
    from central.twin.site import load_site

    return load_site(DATA / "tiny_hall.toml")


@pytest.fixture(scope="session")
def tiny_settings():
    """Few rays: the tiny hall needs little, and CI has 2 cores."""
    from central.twin.solvers import SolverSettings

    return SolverSettings(path_samples_per_src=50_000, radiomap_samples_per_src=2_000_000)


@pytest.fixture(scope="session")
def tiny_twin(tiny_site, tiny_settings, tmp_path_factory):
    from central.twin import Twin

    return Twin.load(tiny_site, tiny_settings, cache_dir=tmp_path_factory.mktemp("maps"))
