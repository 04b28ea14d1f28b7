"""Per-SU gain maps by reciprocity, and their on-disk cache.

With isotropic antennas the path gain TX→SU equals SU→TX, so the twin traces one map per sensing unit
(the SU as the source, the map over the transmitter plane) instead of one per transmitter position.
Any transmitter position is then an interpolated lookup (:mod:`central.twin.predictor`), and every
cell is a candidate jammer position for localisation.

Maps are cached as ``<cache_dir>/<key>.npz`` where the key hashes the site's geometry and materials,
the solver settings, the Sionna RT version and the file format version (:mod:`contracts.gain_maps`, which
owns the format so the simulated world can read maps without the twin): change any and the maps are
rebuilt; nothing else invalidates them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from central.twin.grid import PlaneGrid
from contracts.cache import cache_dir
from central.twin.site import Site
from central.twin.solvers import SolverSettings
from contracts.gain_maps import GAIN_FLOOR_DB, GAIN_MAP_FORMAT, GainMapFile

# The file format (and the no-path gain floor) belong to contracts.gain_maps, which the simulated world
# reads without the twin; the format version is part of the cache key.
FORMAT_VERSION = GAIN_MAP_FORMAT

log = logging.getLogger("rftwin.twin")


@dataclass
class GainMaps:
    """Path gain in dB from each SU to each cell of the transmitter plane.

    ``gain_db[j, iy, ix]`` is the gain between SU j and cell (iy, ix); NaN where the cell is invalid.
    """

    key: str
    site_name: str
    su_ids: list[str]
    su_positions_m: np.ndarray  # (n_su, 3)
    grid: PlaneGrid
    gain_db: np.ndarray  # (n_su, ny, nx) float32
    methods: list[str]  # solver used per SU: "paths" or "radiomap"
    settings: dict = field(default_factory=dict)
    build_s: float = 0.0

    @property
    def num_su(self) -> int:
        return len(self.su_ids)

    def save(self, path: Path) -> None:
        """Atomic write: a crash mid-save never leaves a truncated cache entry behind."""
        meta = {
            "key": self.key,
            "site_name": self.site_name,
            "su_ids": self.su_ids,
            "methods": self.methods,
            "settings": self.settings,
            "build_s": self.build_s,
            "cell_size_m": self.grid.cell_size_m,
            "height_m": self.grid.height_m,
        }
        GainMapFile(meta, self.gain_db, self.grid.valid, self.su_positions_m).save(path)

    @classmethod
    def load(cls, path: Path) -> GainMaps:
        f = GainMapFile.load(path)
        meta = f.meta
        grid = PlaneGrid(f.cell_size_m, f.valid.shape[1], f.valid.shape[0], f.height_m, f.valid)
        return cls(
            key=meta["key"],
            site_name=meta["site_name"],
            su_ids=f.su_ids,
            su_positions_m=f.su_positions_m,
            grid=grid,
            gain_db=f.gain_db,
            methods=list(meta["methods"]),
            settings=meta["settings"],
            build_s=float(meta["build_s"]),
        )


def cache_key(site: Site, settings: SolverSettings, rt_version: str) -> str:
    blob = json.dumps(
        {"site": site.content_hash(), "settings": settings.to_dict(), "rt": rt_version, "format": FORMAT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    """``gain-maps`` under the cache root (:func:`contracts.cache.cache_root`)."""
    return cache_dir("gain-maps")


def build_gain_maps(
    site: Site,
    settings: SolverSettings = SolverSettings(),
    progress: Callable[[str, int, int], None] | None = None,
) -> GainMaps:
    """Ray-trace one map per SU.

    The PathSolver puts receivers at the valid cell centres (needed when the SU is in or near the
    plane); the RadioMapSolver averages over each cell (cheap when the SU is well above the plane).
    ``progress(su_id, cells_done, cells_total)`` is called as work completes, counted over the whole
    build (every SU's cells), so that the total is known before the first cell is traced and a bar
    over it only ever moves forward; ``su_id`` is the SU being traced.
    """
    from central.twin.rt_runtime import load_rt_scene, sionna_version
    from central.twin.solvers import set_scattering

    t0 = time.perf_counter()
    grid = PlaneGrid.for_site(site)
    scene = load_rt_scene(site)
    targets = grid.cell_centres_m(only_valid=True)
    gains = np.full((len(site.sensing_units), grid.ny, grid.nx), np.nan, dtype=np.float32)
    methods = []
    total = len(site.sensing_units) * len(targets)  # every SU's map covers the same valid cells
    if progress:
        progress(site.sensing_units[0].id, 0, total)
    if settings.scattering_coefficient:
        set_scattering(scene, settings.scattering_coefficient)
    for j, su in enumerate(site.sensing_units):
        method = settings.method_for(su.position_m[2], grid.height_m)
        methods.append(method)
        before = j * len(targets)
        report = (lambda done, _, su_id=su.id, before=before: progress(su_id, before + done, total)) if progress else None
        lin_map = su_gain_map(scene, su.position_m, grid, settings, method, report)
        if progress:
            progress(su.id, before + len(targets), total)
        with np.errstate(divide="ignore"):
            db = 10.0 * np.log10(lin_map)
        db = np.maximum(db, GAIN_FLOOR_DB)
        db[~grid.valid] = np.nan
        gains[j] = db
    return GainMaps(
        key=cache_key(site, settings, sionna_version()),
        site_name=site.name,
        su_ids=site.su_ids,
        su_positions_m=np.array(site.su_positions_m),
        grid=grid,
        gain_db=gains,
        methods=methods,
        settings=settings.to_dict(),
        build_s=time.perf_counter() - t0,
    )


def su_gain_map(scene, su_position_m, grid: PlaneGrid, settings: SolverSettings, method: str,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:  # fmt: skip
    """One SU's linear path gain (ny, nx; NaN off the valid cells) by ``method``: "paths" puts receivers
    at the valid cell centres (with S > 0 the diffuse part is added from radio maps:
    :func:`~central.twin.solvers.diffuse_part_gain`), "radiomap" averages over each cell."""
    from central.twin.solvers import diffuse_part_gain, path_gain_matrix, radio_map_gain

    if method != "paths":
        return radio_map_gain(scene, su_position_m, grid, settings)
    flat = np.full(grid.ny * grid.nx, np.nan)
    flat[grid.valid.ravel()] = path_gain_matrix(scene, [su_position_m], grid.cell_centres_m(only_valid=True), settings, progress)[0]
    lin = flat.reshape(grid.ny, grid.nx)
    if settings.scattering_coefficient:
        lin = lin + diffuse_part_gain(scene, su_position_m, grid, settings)
    return lin


@dataclass(frozen=True)
class CacheResult:
    maps: GainMaps
    path: Path
    hit: bool


def get_gain_maps(
    site: Site,
    settings: SolverSettings = SolverSettings(),
    cache_dir: Path | None = None,
    rebuild: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> CacheResult:
    """Gain maps from the cache, or traced and cached on a miss (or when ``rebuild``)."""
    from central.twin.rt_runtime import sionna_version

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"{cache_key(site, settings, sionna_version())}.npz"
    if rebuild:
        log.info("rebuilding the gain maps of %s (%s): tracing, this takes a while", site.name, path)
    elif path.exists():
        try:
            return CacheResult(GainMaps.load(path), path, hit=True)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            # a corrupt or foreign entry is rebuilt, not trusted; but say so: a trace takes minutes
            log.warning("gain-map cache %s unreadable (%s: %s): re-tracing %s, this takes a while",
                        path, type(e).__name__, e, site.name)  # fmt: skip
    else:
        log.info("no gain-map cache for %s at %s: tracing, this takes a while", site.name, path)
    maps = build_gain_maps(site, settings, progress)
    maps.save(path)
    return CacheResult(maps, path, hit=False)
