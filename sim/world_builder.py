"""The simulated plant: a "physical twin" that differs from the digital twin, and the demo's scenario.

``make_world`` traces the hall as it *is*, which differs from the twin the way a real hall does
(:class:`WorldRecipe`): the true materials of its site file (``factory-hall-a-truth``: concrete
ε_r 7.0, σ 0.3 S/m, where the twin assumes ITU concrete); unmodelled clutter drawn per seed
(:mod:`sim.clutter`: pallets, carts, machines, cabinets the twin's site file does not contain); a
higher ray-tracing fidelity than the twin's (deeper reflections, edge diffraction, diffuse reflection
off rough surfaces: :data:`WORLD_FIDELITY`); a per-SU model
error (a gain offset the twin does not know: cable loss, antenna pattern); and the impairments of
real readings (:mod:`sim.impairments`: per-reading noise, slow gain drift, dropouts). It writes one
gain-map file the simulated nodes read with numpy alone (:class:`contracts.gain_maps.GainMapFile`:
true maps, and in its metadata the offsets, clutter, fidelity and impairments), so a test can load
a world without ray tracing. The traced maps are cached like the twin's (the clutter is part of
the site, hence of the cache key).

:data:`IN_MODEL` is the reference world of the first round: the twin's geometry and fidelity, only
materials and offsets differ. Figures measured on it are a reference, not a headline.

The demo scenario: three AGVs carry the legitimate transmitters along the aisles between the
production lines; a wideband noise jammer switches on at a scripted time.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from central.twin import Twin
from central.twin.site import Site, resolve_site
from central.twin.solvers import SolverSettings, fidelity_settings
from contracts.gain_maps import GainMapFile
from sim.clutter import clutter_to_dicts, draw_clutter, with_clutter
from sim.impairments import Impairments
from sim.world import Scenario, World, scenario_from_dict

TRUTH_SITE = "factory-hall-a-truth"
# Depth 5 with edge diffraction, and diffuse reflection off rough surfaces (stacked goods, racks,
# corrugated walls): scattering coefficient 0.3 on every material, within the 0.2–0.5 measured on
# building walls. On hall A's 1.5 m SUs it moves the path gains by 0.4–0.5 dB median, 1.3–1.7 dB p95
# (net −0.2 to −0.4 dB: the specular part loses S² per bounce, and much of what is scattered leaves the
# SUs' plane) for about twice the trace time (bench/diffuse.py, docs/results/diffuse.md). The twin
# models none of it.
WORLD_SCATTERING = 0.3
WORLD_FIDELITY = replace(fidelity_settings(max_depth=5, diffraction=True), scattering_coefficient=WORLD_SCATTERING)


@dataclass(frozen=True)
class WorldRecipe:
    """How the simulated hall differs from its twin, besides the true materials of its site file."""

    clutter_per_100m2: float = 1.25  # unmodelled objects (sim.clutter) per 100 m² of floor: 20 in a 40 m hall
    clutter_clearance_m: float = 1.0  # kept free around the SUs and the scenario's routes
    fidelity: SolverSettings = WORLD_FIDELITY  # how the world's maps are traced
    model_error_db: float = 1.0  # per-SU static gain offsets ~ N(0, this)
    # the world file's impairments take the recipe's seed (make_world): one seed draws the whole world
    impairments: Impairments = field(default_factory=lambda: Impairments(
        reading_noise_db=1.0, drift_db=0.5, drift_period_s=1800.0, dropout_per_h=1.0, dropout_s=20.0))  # fmt: skip
    seed: int = 7

    def clutter_count(self, site: Site) -> int:
        return round(self.clutter_per_100m2 * site.hall_size_m[0] * site.hall_size_m[1] / 100.0)


# The first round's world: the twin's geometry and fidelity; only materials and offsets differ.
IN_MODEL = WorldRecipe(clutter_per_100m2=0.0, fidelity=SolverSettings(), impairments=Impairments())


@dataclass(frozen=True)
class WorldFiles:
    maps_path: Path
    scenario_path: Path


def make_world(out_dir: Path, site: Site | str = TRUTH_SITE, recipe: WorldRecipe = WorldRecipe(),
               progress: Callable[[str, int, int], None] | None = None, jammer_start_s: float = 60.0,
               jammer_position_m: tuple[float, float] = (36.0, 8.0), scenario_toml: str | None = None) -> WorldFiles:  # fmt: skip
    """Write ``world.npz`` (the true maps of ``site`` with the recipe's clutter, traced at its fidelity;
    its offsets, clutter, fidelity and impairments in the metadata) and ``scenario.toml``
    (``scenario_toml``, or the demo scenario of the paper's hall), and check that they fit together
    (:class:`sim.world.ScenarioError` names the emitter that does not)."""
    site = site if isinstance(site, Site) else resolve_site(site)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenario_text = scenario_toml or demo_scenario_toml(site, jammer_start_s, jammer_position_m)
    twin, clutter = world_twin(site, recipe, scenario_routes(scenario_text), progress)
    m = twin.maps
    offsets = np.random.default_rng(recipe.seed).normal(0.0, recipe.model_error_db, m.num_su)
    meta = {
        "site_name": site.name, "su_ids": m.su_ids, "cell_size_m": m.grid.cell_size_m, "height_m": m.grid.height_m,
        "su_gain_offsets_db": {su: round(float(o), 3) for su, o in zip(m.su_ids, offsets)},
        "model_error_db": recipe.model_error_db, "seed": recipe.seed,
        "clutter": clutter_to_dicts(clutter), "fidelity": recipe.fidelity.to_dict(),
        "impairments": replace(recipe.impairments, seed=recipe.seed).to_dict(),
    }  # fmt: skip
    maps_path = out_dir / "world.npz"
    GainMapFile(meta, m.gain_db, m.grid.valid, m.su_positions_m).save(maps_path)
    scenario_path = out_dir / "scenario.toml"
    scenario_path.write_text(scenario_text)
    World.load(maps_path, scenario_path)
    return WorldFiles(maps_path, scenario_path)


def world_twin(site: Site, recipe: WorldRecipe, keep_clear_m=(), progress: Callable[[str, int, int], None] | None = None,
               cache_dir: Path | None = None) -> tuple[Twin, tuple]:  # fmt: skip
    """The world's hall traced as it is: ``site`` (with its true materials) plus the recipe's clutter
    (kept off ``keep_clear_m`` and the SUs), at the recipe's fidelity; cached like any twin. Returns
    the traced twin and the clutter boxes."""
    traced, clutter = world_site(site, recipe, keep_clear_m)
    return Twin.load(traced, recipe.fidelity, cache_dir=cache_dir, progress=progress), clutter


def world_site(site: Site, recipe: WorldRecipe, keep_clear_m=()) -> tuple[Site, tuple]:
    """``site`` with the recipe's clutter (drawn from its seed, off ``keep_clear_m`` and the SUs), and
    the clutter boxes; ``site`` itself when the recipe has none. Cheap: no ray tracing."""
    clutter = ()
    if n_clutter := recipe.clutter_count(site):
        rng = np.random.default_rng(recipe.seed)
        clutter = draw_clutter(site, rng, n_clutter, keep_clear_m, recipe.clutter_clearance_m)
    return (with_clutter(site, clutter, f"{site.name}-world-s{recipe.seed}") if clutter else site), clutter


def scenario_routes(scenario_toml: str) -> list[tuple[float, ...]]:
    """Where the emitters of a scenario file's text stand or pass: what a world's clutter keeps off."""
    return route_points_m(scenario_from_dict(tomllib.loads(scenario_toml), "scenario"))


def route_points_m(scenario: Scenario, step_m: float = 0.5) -> list[tuple[float, ...]]:
    """Every place the scenario's emitters stand or pass (their routes at ``step_m``): clutter keeps off."""
    out: list[tuple[float, ...]] = []
    for e in scenario.emitters:
        out += e.anchor_points_m
        if e.waypoints_m is not None:
            out += [tuple(p) for p in e.points_along_loop(np.arange(0.0, e.loop_length_m, step_m))]
    return out


@dataclass(frozen=True)
class SpectralDemo:
    """The spectral part of the demo scenario: the site's band plan with the scheduler allocating it to
    the AGVs, a narrowband noise jammer in one sub-band over [narrow_start_s, narrow_end_s) at
    ``narrow_position_m``, then a wideband one (the whole PRB grid) from ``wide_start_s`` where the
    demo's jammer stands (on the AGVs' route). The narrowband one stands where the band totals hide it
    best: 1.75 m off the south aisle, 8 m from the nearest SUs, where it raises the mean over SUs of the
    band total (what the energy detector sees) by 0.08 dB in the median against the AGVs' traffic in the
    demo's world (0.15 dB on the aisle itself, by the wall's reflection; 0.36 dB by the middle aisle);
    the clutter keeps off it as off the routes."""

    narrow_start_s: float
    narrow_end_s: float
    wide_start_s: float
    narrow_subband: int = 5
    narrow_power_dbm: float = 10.0
    narrow_position_m: tuple[float, float] = (19.25, 3.75)
    wide_power_dbm: float = 20.0
    scheduler_seed: int = 0


def demo_scenario_toml(site: Site, jammer_start_s: float, jammer_position_m: tuple[float, float],
                       jammer_end_s: float | None = None, speed_m_s: float = 1.0,
                       spectral: SpectralDemo | None = None) -> str:  # fmt: skip
    """AGVs on closed loops along the aisles of the paper's hall (lines at x 7-11, 18-22, 29-33 and
    y 4-18, 22-36), 20 dBm OFDM over 18 MHz, and a 20 dBm noise jammer from ``jammer_start_s``.

    With ``spectral`` (needs the site's ``[band]``): the AGVs transmit what the scheduler allocates them
    over the band plan, and the jammers are :class:`SpectralDemo`'s (``jammer_start_s`` is then unused).
    The emitters stand and pass where they do without it, so the world's clutter is the same."""
    h = site.tx_plane.height_m
    loops = {
        "agv-1": [(3.0, 20.0), (37.0, 20.0), (37.0, 2.0), (3.0, 2.0)],  # middle aisle, back along the south wall
        "agv-2": [(14.5, 38.0), (14.5, 2.0), (25.5, 2.0), (25.5, 38.0)],  # the two vertical aisles
        "agv-3": [(37.0, 38.0), (3.0, 38.0), (3.0, 20.0), (37.0, 20.0)],  # north wall and middle aisle
    }
    parts = ['[scenario]\nname = "demo: AGVs in the aisles, a jammer appears"\n']
    for agv, pts in loops.items():
        wp = ", ".join(f"[{x}, {y}, {h}]" for x, y in pts)
        parts.append(f'[[emitters]]\nid = "{agv}"\nrole = "legitimate"\ntx_power_dbm = 20.0\nbandwidth_hz = 18e6\n'
                     f"waypoints_m = [{wp}]\nspeed_m_s = {speed_m_s}\n")  # fmt: skip
    jx, jy = jammer_position_m
    if spectral is not None:
        return "\n".join(parts + _spectral_parts(site, spectral, (jx, jy, h)))
    end = f"end_s = {jammer_end_s}\n" if jammer_end_s is not None else ""
    parts.append(f'[[emitters]]\nid = "jammer"\nrole = "jammer"\ntx_power_dbm = 20.0\nbandwidth_hz = 18e6\n'
                 f'waveform = "noise"\nposition_m = [{jx}, {jy}, {h}]\nstart_s = {jammer_start_s}\n{end}')  # fmt: skip
    return "\n".join(parts)


def _spectral_parts(site: Site, d: SpectralDemo, position_m: tuple[float, float, float]) -> list[str]:
    plan = site.band_plan
    if plan is None:
        raise ValueError(f"site {site.name} declares no [band]: the spectral demo needs its band plan")
    b = plan.grid[d.narrow_subband]
    pos = f"[{position_m[0]}, {position_m[1]}, {position_m[2]}]"
    narrow_pos = f"[{d.narrow_position_m[0]}, {d.narrow_position_m[1]}, {position_m[2]}]"
    band = ", ".join(f"{k} = {v!r}" for k, v in plan.to_dict().items())
    return [
        f"[band]\n{band.replace(', ', chr(10))}\n",
        f"[scheduler]\nperiod_s = 1.0\nseed = {d.scheduler_seed}\n",
        f'[[emitters]]\nid = "jammer-narrowband"\nrole = "jammer"\ntx_power_dbm = {d.narrow_power_dbm}\n'
        f'waveform = "noise"\noffset_hz = {b.center_hz - plan.center_hz!r}\nbandwidth_hz = {b.width_hz!r}\n'
        f"position_m = {narrow_pos}\nstart_s = {d.narrow_start_s}\nend_s = {d.narrow_end_s}\n",
        f'[[emitters]]\nid = "jammer-wideband"\nrole = "jammer"\ntx_power_dbm = {d.wide_power_dbm}\n'
        f'waveform = "noise"\nbandwidth_hz = {plan.occupied_hz!r}\nposition_m = {pos}\nstart_s = {d.wide_start_s}\n',
    ]
