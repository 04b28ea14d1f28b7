from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


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
