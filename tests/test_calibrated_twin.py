"""A twin calibrated by a simulated campaign in a world it never saw (real Sionna RT, the tiny hall).

The world is the tiny hall with another concrete (ε_r 7.0 where the twin assumes ITU's ≈ 5.2); the
campaign reads the world's path gains with per-SU offsets and noise. The fit must move the twin's
concrete towards the world's, and a second call must reuse the cached fit instead of fitting again.
"""

from __future__ import annotations

import json

import pytest

from calibration.calibrated_twin import SimulatedCampaign, calibrated_twin
from calibration.material_fit import with_materials
from central.twin import Twin

pytestmark = pytest.mark.raytracing

CAMPAIGN = SimulatedCampaign(points=24, noise_db=0.5, offset_db=2.0, seed=3)


@pytest.fixture(scope="module")
def world(tiny_site, tiny_settings, tmp_path_factory):
    truth = with_materials(tiny_site, {"concrete": (7.0, 0.13)}, "the world's concrete")
    return Twin.load(truth, tiny_settings, cache_dir=tmp_path_factory.mktemp("world-maps"))


def test_the_campaign_pulls_the_twins_concrete_to_the_worlds_and_the_fit_is_cached(tiny_site, tiny_settings, world, tmp_path):
    first = calibrated_twin(tiny_site, tiny_settings, world, CAMPAIGN, cache_root=tmp_path)
    eps, _ = first.materials["concrete"]
    assert not first.fit_cached and tiny_site.materials["concrete"].relative_permittivity is None  # ITU's model
    assert eps == pytest.approx(7.0, rel=0.1)
    assert first.twin.site.materials["concrete"].relative_permittivity == pytest.approx(eps, abs=1e-3)
    assert "calibrated" in first.twin.site.materials["concrete"].provenance

    again = calibrated_twin(tiny_site, tiny_settings, world, CAMPAIGN, cache_root=tmp_path)
    assert again.fit_cached and again.materials == first.materials and again.fit_s == first.fit_s
    other = calibrated_twin(tiny_site, tiny_settings, world, SimulatedCampaign(points=24, noise_db=0.5, offset_db=2.0, seed=4),
                            cache_root=tmp_path)  # fmt: skip
    assert not other.fit_cached  # another campaign is another fit


def test_a_torn_cache_entry_is_fitted_again_not_trusted(tiny_site, tiny_settings, world, tmp_path):
    calibrated_twin(tiny_site, tiny_settings, world, CAMPAIGN, cache_root=tmp_path)
    (entry,) = (tmp_path / "calibrated-twins").glob("*.json")
    entry.write_text('{"materials": {"concr')
    again = calibrated_twin(tiny_site, tiny_settings, world, CAMPAIGN, cache_root=tmp_path)
    assert not again.fit_cached
    assert json.loads(entry.read_text())["materials"] == {k: list(v) for k, v in again.materials.items()}
