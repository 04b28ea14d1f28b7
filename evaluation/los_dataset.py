"""Ray-trace the LoS/NLoS twin dataset (issue 7): a ceiling gNB with a UPA, UEs on a grid, Sionna RT.

This is the twin-facing half of :mod:`models.los.dataset` (which holds the record, settings, file
format and noise models, and may not import ``central``). One PathSolver call traces the gNB to
``ues_per_call`` UEs at once (synthetic array: paths from the array centre, per-element phases applied
as plane waves), so a few thousand channels take about a minute on 2 cores.

Labels: a UE is LoS when the solver returns a valid path with no interaction. LoS paths are found by a
dedicated visibility test before any ray is shot and stored first, so a full candidate buffer can drop
weak multipath but never the LoS path.

Run ``python -m evaluation.los_dataset`` to build (or find) the default dataset in the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from central.twin.positions import free_mask
from central.twin.site import Site, resolve_site
from models.los.dataset import (
    LosDataset,
    LosDatasetSettings,
    channel_power,
    channels_from_paths,
    default_cache_dir,
    load_los_dataset,
    los_cache_key,
    normalise_channels,
)

Progress = Callable[[int, int], None]


def ue_positions(site: Site, settings: LosDatasetSettings) -> np.ndarray:
    """(M, 3) UE positions (m): cell centres of a ``ue_spacing_m`` grid over the hall, each moved by a
    seeded uniform ± ``ue_jitter_m`` in x and y, at ``ue_height_m``, outside every obstacle; at most
    ``n_samples`` (a seeded random subset, in grid order)."""
    L, W, H = site.hall_size_m
    if not 0 < settings.ue_height_m < H:
        raise ValueError(f"ue_height_m {settings.ue_height_m} is not inside the hall (0, {H})")
    c = settings.ue_spacing_m
    xs = (np.arange(int(round(L / c))) + 0.5) * c
    ys = (np.arange(int(round(W / c))) + 0.5) * c
    X, Y = np.meshgrid(xs, ys)
    xy = np.column_stack([X.ravel(), Y.ravel()])
    rng = np.random.default_rng(settings.seed)
    xy = xy + rng.uniform(-settings.ue_jitter_m, settings.ue_jitter_m, size=xy.shape)
    margin = 0.05  # keep UEs off the walls
    xy = np.clip(xy, margin, np.array([L, W]) - margin)
    xy = xy[free_mask(site, xy, settings.ue_height_m)]
    if len(xy) > settings.n_samples:
        xy = xy[np.sort(rng.choice(len(xy), settings.n_samples, replace=False))]
    return np.column_stack([xy, np.full(len(xy), settings.ue_height_m)])


def _check_gnb(site: Site, settings: LosDatasetSettings) -> None:
    g = settings.gnb_position_m
    if not all(0 < c < lim for c, lim in zip(g, site.hall_size_m)):
        raise ValueError(f"gnb_position_m {list(g)} is not strictly inside the hall {list(site.hall_size_m)}")
    box = site.obstacle_at(g)
    if box is not None:
        raise ValueError(f"gnb_position_m {list(g)} is inside obstacle {box.name!r}")


def _sionna_to_row_major(x: np.ndarray, rows: int, cols: int, axis: int) -> np.ndarray:
    """Sionna's PlanarArray numbers element (row r, column c) as r + rows·c; reorder to r·cols + c."""
    x = np.moveaxis(x, axis, -1)
    shape = x.shape[:-1]
    x = x.reshape(*shape, cols, rows).swapaxes(-1, -2).reshape(*shape, rows * cols)
    return np.moveaxis(x, -1, axis)


def trace_channels(
    site: Site, settings: LosDatasetSettings, positions_m: np.ndarray, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (unnormalised) channels, LoS flags and path counts for UEs at ``positions_m`` (M, 3).

    Returns H (M, rows·cols, n_sc) complex64 (row-major antennas), los (M,) bool, num_paths (M,) int32.
    ``progress(ues_done, ues_total)`` after every PathSolver call.
    """
    from central.twin.rt_runtime import load_rt_scene, sionna_rt
    from central.twin.solvers import chain_hash_table

    rt = sionna_rt()
    _check_gnb(site, settings)
    s = settings
    scene = load_rt_scene(site)
    scene.tx_array = rt.PlanarArray(num_rows=s.rows, num_cols=s.cols, vertical_spacing=s.spacing_wavelengths,
                                    horizontal_spacing=s.spacing_wavelengths, pattern="iso", polarization="V")  # fmt: skip
    scene.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    solver = rt.PathSolver()
    freqs = s.subcarrier_frequencies_hz()
    positions_m = np.atleast_2d(np.asarray(positions_m, dtype=float))
    m = len(positions_m)
    h = np.zeros((m, s.n_ant, s.num_subcarriers), dtype=np.complex64)
    los = np.zeros(m, dtype=bool)
    num_paths = np.zeros(m, dtype=np.int32)
    for start in range(0, m, s.ues_per_call):
        chunk = positions_m[start : start + s.ues_per_call]
        for name in list(scene.transmitters) + list(scene.receivers):
            scene.remove(name)
        scene.add(rt.Transmitter("gnb", position=list(s.gnb_position_m), orientation=list(s.gnb_orientation_rad)))
        for k, p in enumerate(chunk):
            scene.add(rt.Receiver(f"ue{k}", position=[float(c) for c in p]))
        with chain_hash_table(s.chain_hash_slots_per_ue * len(chunk)):
            paths = solver(scene, max_depth=s.max_depth, max_num_paths_per_src=s.max_paths_per_ue * len(chunk),
                           samples_per_src=s.samples_per_src, synthetic_array=True,
                           specular_reflection=s.specular_reflection, refraction=s.refraction,
                           diffraction=s.diffraction, seed=s.seed)  # fmt: skip
        # Synthetic array: valid, tau (rx, tx, P); interactions (depth, rx, tx, P).
        valid = np.asarray(paths.valid)[:, 0, :]
        inter = np.asarray(paths.interactions)[:, :, 0, :]
        los[start : start + len(chunk)] = np.any(valid & np.all(inter == 0, axis=0), axis=-1)
        num_paths[start : start + len(chunk)] = valid.sum(axis=-1)
        # Baseband coefficients (carrier phase applied) and delays relative to each UE's first path.
        a, tau = paths.cir(normalize_delays=True, out_type="numpy")  # a: complex (rx, 1, tx, tx_ant, P, 1)
        a = a[:, 0, 0, :, :, 0]  # (rx, tx_ant, P)
        tau = tau[:, 0, :]  # (rx, P), -1 where invalid
        ok = valid & (tau >= 0)
        a = _sionna_to_row_major(a, s.rows, s.cols, axis=1)
        h[start : start + len(chunk)] = channels_from_paths(a, tau, freqs, ok)
        if progress:
            progress(start + len(chunk), m)
    for name in list(scene.transmitters) + list(scene.receivers):
        scene.remove(name)
    return h, los, num_paths


def build_los_dataset(settings: LosDatasetSettings, site: Site | None = None,
                      progress: Progress | None = None) -> LosDataset:  # fmt: skip
    """Trace a dataset (no cache). UEs that receive no path at all are dropped (counted in meta)."""
    from central.twin.rt_runtime import sionna_version

    t0 = time.perf_counter()
    site = site if site is not None else resolve_site(settings.site)
    pos = ue_positions(site, settings)
    if len(pos) == 0:
        raise ValueError(f"no UE position: the {settings.ue_spacing_m} m grid has no free cell at "
                         f"{settings.ue_height_m} m in {site.name}")  # fmt: skip
    h, los, num_paths = trace_channels(site, settings, pos, progress)
    keep = channel_power(h) > 0
    if not keep.all():
        h, los, num_paths, pos = h[keep], los[keep], num_paths[keep], pos[keep]
    h, gain_db = normalise_channels(h, inplace=True)
    rt_version = sionna_version()
    meta = {
        "site": site.name, "site_hash": site.content_hash(), "sionna_version": rt_version,
        "key": los_cache_key(settings, site.content_hash(), rt_version), "build_s": time.perf_counter() - t0,
        "n_dropped_no_path": int(np.sum(~keep)), "normalisation": "unit mean |h|^2 per sample; gain_db holds it",
        "antenna_order": "row-major r*cols+c", "created_unix": time.time(),
    }  # fmt: skip
    return LosDataset(h=h, los=los, ue_positions_m=pos, gain_db=gain_db, num_paths=num_paths,
                      settings=settings, meta=meta)  # fmt: skip


def los_cache_path(settings: LosDatasetSettings, cache_dir: str | Path | None = None,
                   site: Site | None = None) -> Path:  # fmt: skip
    from central.twin.rt_runtime import sionna_version

    site = site if site is not None else resolve_site(settings.site)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    return cache_dir / f"{los_cache_key(settings, site.content_hash(), sionna_version())}.npz"


def generate_los_dataset(
    settings: LosDatasetSettings = LosDatasetSettings(),
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> LosDataset:
    """The dataset from the cache (``~/.cache/rftwin/los`` or ``$RFTWIN_CACHE_DIR/los``), or traced and
    cached on a miss (or when ``rebuild``). ``meta["cache_path"]`` and ``meta["cache_hit"]`` say which."""
    site = resolve_site(settings.site)
    path = los_cache_path(settings, cache_dir, site)
    if path.exists() and not rebuild:
        try:
            ds = load_los_dataset(path)
            ds.meta.update(cache_path=str(path), cache_hit=True)
            return ds
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a corrupt or foreign entry is rebuilt, not trusted
    ds = build_los_dataset(settings, site, progress)
    ds.save(path)
    ds.meta.update(cache_path=str(path), cache_hit=False)
    return ds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build (or find in the cache) the LoS/NLoS twin dataset.")
    ap.add_argument("--site", default=LosDatasetSettings.site)
    ap.add_argument("--n-samples", type=int, default=LosDatasetSettings.n_samples)
    ap.add_argument("--spacing", type=float, default=LosDatasetSettings.ue_spacing_m, help="UE grid pitch (m)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    settings = dataclasses.replace(LosDatasetSettings(), site=args.site, n_samples=args.n_samples,
                                   ue_spacing_m=args.spacing, ue_jitter_m=min(0.25, args.spacing / 2))  # fmt: skip
    t0 = time.perf_counter()
    ds = generate_los_dataset(settings, args.cache_dir, rebuild=args.rebuild,
                              progress=lambda d, t: print(f"  traced {d}/{t} UEs ({time.perf_counter() - t0:.1f} s)",
                                                          file=sys.stderr, flush=True))  # fmt: skip
    print(f"{ds.n} channels {ds.h.shape[1:]}, LoS {ds.los_fraction:.1%}, "
          f"{'cache hit' if ds.meta['cache_hit'] else 'traced'} in {time.perf_counter() - t0:.1f} s: "
          f"{ds.meta['cache_path']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
