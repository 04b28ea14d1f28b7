"""Ray-tracing primitives: wideband path gain between points, and over a horizontal plane.

Wideband, incoherent: the sensing units measure band power, so small-scale fading averages out and
the path gain is Σ over paths of |a|² (linear, no phase). Two Sionna RT solvers are wrapped:

* :func:`path_gain_matrix` — PathSolver between sources and explicit target points. Exact up to the
  paths the shooting-and-bouncing stage finds (the image method refines each specular chain), and
  correct when a source lies in the plane of its targets.
* :func:`radio_map_gain` — RadioMapSolver over a plane. Much cheaper for thousands of cells, but it
  only counts rays that *cross* the plane, so it reads several dB low for a source in (or near)
  that plane: in-plane LoS and wall reflections never cross it (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np

from central.twin.grid import PlaneGrid
from central.twin.rt_runtime import sionna_rt

Method = Literal["auto", "paths", "radiomap"]


@dataclass(frozen=True)
class SolverSettings:
    """Everything that changes a traced gain; part of the gain-map cache key."""

    max_depth: int = 3
    # PathSolver: rays shot per source. Specular chains are found by plane hashing and refined by the
    # image method, so modest counts find nearly all chains in a hall of boxes (bench/twin.py).
    path_samples_per_src: int = 10_000
    max_paths_per_target: int = 200
    targets_per_call: int = 1000
    # Slots per target in the PathSolver's specular-chain hash table (see chain_hash_table).
    chain_hash_slots_per_target: int = 30_000
    # RadioMapSolver: rays per source; per-cell noise falls as 1/sqrt(samples) (1e7: ≈0.3 dB median).
    radiomap_samples_per_src: int = 10_000_000
    # "auto" uses the radio map only when the source is at least this far from the map plane.
    radiomap_min_plane_offset_m: float = 1.5
    method: Method = "auto"
    specular_reflection: bool = True
    refraction: bool = True
    diffraction: bool = False
    # Scattering coefficient S given to every material (0: specular only, the twin's model). With S > 0
    # a reflection keeps sqrt(1 - S²) of its field specular and scatters the rest diffusely (Sionna RT's
    # model); see :func:`diffuse_part_gain` for how PathSolver maps get their diffuse part.
    scattering_coefficient: float = 0.0
    seed: int = 42

    def __post_init__(self):
        if not 0.0 <= self.scattering_coefficient <= 1.0:
            raise ValueError(f"scattering_coefficient must be in [0, 1], got {self.scattering_coefficient}")

    def to_dict(self) -> dict:
        return asdict(self)

    def method_for(self, source_height_m: float, plane_height_m: float) -> str:
        if self.method != "auto":
            return self.method
        far = abs(source_height_m - plane_height_m) >= self.radiomap_min_plane_offset_m
        return "radiomap" if far else "paths"


# The PathSolver's buffer (max_paths_per_target per target) holds *candidate* paths, before their
# validation: deeper traces and diffraction make many more candidates, and a full buffer drops paths
# silently. Measured on hall A (12 positions × 12 SUs, against 5000 paths per target and 100 000 rays):
# at depth 5 with diffraction, 200 per target left the median gain 28 dB low (most of the paths lost);
# 2000 is within 0.2 dB (p5 −1.4 dB). At depth 3 without diffraction 200 and 2000 agree exactly.
DEEP_PATHS_PER_TARGET = 2000


def fidelity_settings(max_depth: int = 3, diffraction: bool = False, base: SolverSettings = SolverSettings()) -> SolverSettings:
    """``base`` at another fidelity, with a path buffer big enough for it (:data:`DEEP_PATHS_PER_TARGET`
    beyond depth 3 or with diffraction; the default twin keeps its settings, and so its cache key)."""
    deep = max_depth > 3 or diffraction
    paths = max(base.max_paths_per_target, DEEP_PATHS_PER_TARGET) if deep else base.max_paths_per_target
    return replace(base, max_depth=max_depth, diffraction=diffraction, max_paths_per_target=paths)


@contextmanager
def chain_hash_table(slots_per_source: int):
    """Size the PathSolver's specular-chain hash table for this call.

    The shooting-and-bouncing stage deduplicates (chain, target) pairs in a hash table of
    max(max_num_paths_per_src, SBCandidateGenerator.MIN_SPEC_COUNT_SIZE = 1e6) slots per source.
    With a thousand targets per source that table saturates, colliding chains are dropped as
    "already seen", and whole cells lose their only (deep-shadow) paths — more rays make it worse.
    Measured on the default hall (1000 cells, one SU): 9 of 907 cells off by > 3 dB with 1e6 slots,
    none with 3e7 (bench/twin.py checks the outcome on every run).
    """
    from sionna.rt.path_solvers.sb_candidate_generator import SBCandidateGenerator

    old = SBCandidateGenerator.MIN_SPEC_COUNT_SIZE
    SBCandidateGenerator.MIN_SPEC_COUNT_SIZE = int(slots_per_source)
    try:
        yield
    finally:
        SBCandidateGenerator.MIN_SPEC_COUNT_SIZE = old


def _clear_devices(scene) -> None:
    for name in list(scene.transmitters) + list(scene.receivers):
        scene.remove(name)


def _incoherent_gain(paths) -> np.ndarray:
    """Σ_paths |a|² per (target, source): shape (num_rx, num_tx), linear."""
    a_re, a_im = paths.a
    power = np.asarray(a_re, dtype=np.float64) ** 2 + np.asarray(a_im, dtype=np.float64) ** 2
    # (num_rx, rx_ant=1, num_tx, tx_ant=1, num_paths)
    return power.sum(axis=(1, 3, 4))


def path_gain_matrix(
    scene,
    sources_m: np.ndarray,
    targets_m: np.ndarray,
    settings: SolverSettings,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Linear path gain (num_sources, num_targets) with the PathSolver, targets in chunks.

    Chunking bounds the path buffer (``max_num_paths_per_src`` is preallocated per source and shared
    by all targets of a call). ``progress(targets_done, targets_total)`` is called after each chunk.
    Specular chains, refraction and diffraction only: diffuse reflection would add a candidate per
    ray bounce and target, which overflows any affordable path buffer (:func:`diffuse_part_gain`).
    """
    rt = sionna_rt()
    sources_m = np.atleast_2d(np.asarray(sources_m, dtype=float))
    targets_m = np.atleast_2d(np.asarray(targets_m, dtype=float))
    solver = rt.PathSolver()
    out = np.zeros((len(sources_m), len(targets_m)))
    for start in range(0, len(targets_m), settings.targets_per_call):
        chunk = targets_m[start : start + settings.targets_per_call]
        _clear_devices(scene)
        for i, p in enumerate(sources_m):
            scene.add(rt.Transmitter(f"src{i}", position=[float(c) for c in p]))
        for k, p in enumerate(chunk):
            scene.add(rt.Receiver(f"tgt{k}", position=[float(c) for c in p]))
        with chain_hash_table(settings.chain_hash_slots_per_target * len(chunk)):
            paths = solver(
                scene,
                max_depth=settings.max_depth,
                max_num_paths_per_src=len(chunk) * settings.max_paths_per_target,
                samples_per_src=settings.path_samples_per_src,
                specular_reflection=settings.specular_reflection,
                refraction=settings.refraction,
                diffraction=settings.diffraction,
                seed=settings.seed,
            )
        out[:, start : start + len(chunk)] = _incoherent_gain(paths).T
        if progress:
            progress(start + len(chunk), len(targets_m))
    _clear_devices(scene)
    return out


def set_scattering(scene, scattering_coefficient: float) -> None:
    """Give every material of ``scene`` the scattering coefficient S (``SolverSettings.scattering_coefficient``)."""
    for material in {obj.radio_material for obj in scene.objects.values()}:
        material.scattering_coefficient = float(scattering_coefficient)


def radio_map_gain(scene, source_m, grid: PlaneGrid, settings: SolverSettings, diffuse: bool | None = None) -> np.ndarray:
    """Linear path gain (ny, nx) averaged over each grid cell, with the RadioMapSolver; with diffuse
    reflection when ``diffuse`` (default: when the settings scatter, S > 0; the scene's materials
    must carry S: :func:`set_scattering`)."""
    diffuse = settings.scattering_coefficient > 0 if diffuse is None else diffuse
    import mitsuba as mi

    rt = sionna_rt()
    _clear_devices(scene)
    scene.add(rt.Transmitter("src0", position=[float(c) for c in source_m]))
    width, depth = grid.nx * grid.cell_size_m, grid.ny * grid.cell_size_m
    rm = rt.RadioMapSolver()(
        scene,
        center=mi.Point3f(width / 2, depth / 2, grid.height_m),
        orientation=mi.Point3f(0, 0, 0),
        size=mi.Point2f(width, depth),
        cell_size=mi.Point2f(grid.cell_size_m, grid.cell_size_m),
        samples_per_tx=settings.radiomap_samples_per_src,
        max_depth=settings.max_depth,
        specular_reflection=settings.specular_reflection,
        refraction=settings.refraction,
        diffraction=settings.diffraction,
        diffuse_reflection=diffuse,
        seed=settings.seed,
    )
    _clear_devices(scene)
    gain = np.asarray(rm.path_gain, dtype=np.float64)[0]  # (ny, nx): rows are y, columns x
    if gain.shape != (grid.ny, grid.nx):
        raise RuntimeError(f"radio map shape {gain.shape} does not match grid {(grid.ny, grid.nx)}")
    return gain



def diffuse_part_gain(scene, source_m, grid: PlaneGrid, settings: SolverSettings) -> np.ndarray:
    """The diffuse part of the path gain (ny, nx, linear) from ``source_m``: what a PathSolver map
    (specular, refraction, diffraction) lacks when the materials scatter (S > 0).

    The PathSolver cannot trace it: every ray bounce makes a candidate path to every target (10⁴ rays
    × 5 bounces × 10³ cells per call), far beyond its path buffer, which then drops paths silently (a
    trial lost 0.5 dB at S = 0.2 and 5–8 dB at S = 0.5 instead of gaining). The RadioMapSolver
    integrates energy per cell and drops nothing, so the diffuse part is the radio map with diffuse
    reflection minus the one without (same seed), clipped at 0 and averaged over 3 × 3 cells: with
    diffuse reflection on, the radio map's stochastic bounces leave ≈ 2 dB of noise per cell on that
    part (about 1 dB after the average), where the specular-only map repeats to 0.001 dB. The radio
    map's blind spot for a source in its plane (in-plane rays never cross it) concerns the specular
    part, which the PathSolver supplies. Chains that only scatter diffusely are ~6 % of this part;
    the rest mixes specular and diffuse bounces (measured on hall A, S = 0.3).
    """
    with_diffuse = radio_map_gain(scene, source_m, grid, settings, diffuse=True)
    specular = radio_map_gain(scene, source_m, grid, settings, diffuse=False)
    return box_mean_3x3(np.maximum(with_diffuse - specular, 0.0), grid.valid)


def box_mean_3x3(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean of each cell's valid 3 × 3 neighbourhood (the cell included); 0 where the cell is invalid."""
    v = np.where(valid, values, 0.0)
    w = valid.astype(float)
    pad_v, pad_w = np.pad(v, 1), np.pad(w, 1)
    ny, nx = values.shape
    total = sum(pad_v[dy : dy + ny, dx : dx + nx] for dy in range(3) for dx in range(3))
    count = sum(pad_w[dy : dy + ny, dx : dx + nx] for dy in range(3) for dx in range(3))
    return np.where(valid, total / np.maximum(count, 1.0), 0.0)


# The twin the product builds ([twin] max_depth / diffraction, `rftwin-central twin build`): depth 5,
# no diffraction. Chosen from bench/realism.py (docs/results/realism.md): against a mismatched world
# (true materials, unmodelled clutter, depth 5 + diffraction + diffuse reflection) the depth-5 twin's
# path gains are within 0.88 dB median / 6.7 dB p95 of the world's at held-out positions, depth 3 within
# 2.9 / 13.3 dB and depth 3 with diffraction 2.7 / 10.8 dB; calibration narrows depth 3's gap (to 2.0 /
# 12.1) but does not close it (its error is the paths it lacks, not its materials). Reflections
# are what a metal-and-concrete hall is made of; diffraction adds little where reflections abound.
# ``SolverSettings()`` stays the cheapest faithful setting (depth 3), which the tests' tiny halls use.
TWIN_FIDELITY = fidelity_settings(max_depth=5)
