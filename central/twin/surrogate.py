"""The path-loss surrogate (``models.surrogate``) as the central unit's twin predictor.

The twin's traced gain maps are the surrogate's training samples (:func:`surrogate_data`, with the
site's provenance from :func:`site_info`); a trained surrogate directory becomes a :class:`Twin` whose
predictor is the surrogate (:func:`surrogate_twin`), refused when it was built for another site.
``models`` cannot import the twin, so this glue lives here.
"""

from __future__ import annotations

from pathlib import Path

from central.twin import Twin
from central.twin.site import Site
from models.surrogate import SurrogateData, SurrogatePredictor
from models.surrogate.train import SiteInfo

__all__ = ["load_surrogate", "site_info", "surrogate_data", "surrogate_twin"]


def surrogate_data(twin: Twin) -> SurrogateData:
    """Ray-traced samples of the site: the twin's gain maps at their valid cell centres."""
    return SurrogateData.from_gain_maps(twin.maps, twin.site.hall_size_m[:2])


def site_info(twin: Twin) -> SiteInfo:
    from central.twin.rt_runtime import sionna_version

    return SiteInfo(twin.site.name, twin.site.content_hash(), sionna_version(), twin.maps.key,
                    float(twin.site.noise_floor_dbm))  # fmt: skip


def load_surrogate(site: Site, directory: str | Path, threads: int = 1) -> SurrogatePredictor:
    """The surrogate in ``directory``; ``SurrogateError`` if missing, malformed or built for another site."""
    predictor = SurrogatePredictor.load(directory, site_hash=site.content_hash(), threads=threads)
    if tuple(predictor.maps.su_ids) != tuple(site.su_ids):
        from models.surrogate import SurrogateError

        raise SurrogateError(f"{directory}: SUs {predictor.maps.su_ids}, the site has {site.su_ids}")
    return predictor


def surrogate_twin(site: Site, directory: str | Path) -> Twin:
    """A twin whose predictor is the surrogate: no gain maps are loaded or traced. ``maps`` is the
    surrogate's :class:`models.surrogate.predictor.SurrogateInfo` (key, site name, SUs, plane)."""
    predictor = load_surrogate(site, directory)
    return Twin(site, predictor.maps, predictor, Path(directory), from_cache=True)  # type: ignore[arg-type]
