"""The digital twin: site → Sionna RT scene → per-SU gain maps → predicted SU powers.

Heavy imports (Sionna RT, Dr.Jit) happen only when maps are actually traced; loading cached maps
and predicting needs numpy and scipy alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from central.twin.gain_maps import GainMaps, get_gain_maps
from central.twin.predictor import Predictor
from central.twin.site import Site, SiteError, resolve_site
from central.twin.solvers import SolverSettings

__all__ = ["GainMaps", "Predictor", "Site", "SiteError", "SolverSettings", "Twin", "resolve_site"]


@dataclass
class Twin:
    site: Site
    maps: GainMaps
    predictor: Predictor
    cache_path: Path
    from_cache: bool

    @classmethod
    def load(
        cls,
        site: Site | str | Path | None = None,
        settings: SolverSettings = SolverSettings(),
        cache_dir: Path | None = None,
        rebuild: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Twin:
        """The twin of a site (a :class:`Site`, a site file, a built-in name, or the default hall)."""
        site = site if isinstance(site, Site) else resolve_site(site)
        res = get_gain_maps(site, settings, cache_dir, rebuild, progress)
        return cls(site, res.maps, Predictor(res.maps, site.noise_floor_dbm, site.hall_size_m), res.path, res.hit)
