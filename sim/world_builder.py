"""The simulated plant: a "physical twin" that differs from the digital twin, and the demo's scenario.

``make_world`` traces the hall with the *true* materials (``factory-hall-a-truth``: concrete ε_r 7.0,
σ 0.3 S/m, where the twin assumes ITU concrete), adds a per-SU model error (a gain offset the twin
does not know: cable loss, antenna pattern) and writes one gain-map file the simulated nodes read
with numpy alone (:class:`contracts.gain_maps.GainMapFile`, offsets in ``meta["su_gain_offsets_db"]``).

The demo scenario: three AGVs carry the legitimate transmitters along the aisles between the
production lines; a wideband noise jammer switches on at a scripted time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from central.twin import Twin
from central.twin.site import Site, resolve_site
from central.twin.solvers import SolverSettings
from contracts.gain_maps import GainMapFile
from sim.world import World

TRUTH_SITE = "factory-hall-a-truth"


@dataclass(frozen=True)
class WorldFiles:
    maps_path: Path
    scenario_path: Path


def make_world(out_dir: Path, site: Site | str = TRUTH_SITE, model_error_db: float = 1.0, seed: int = 7,
               settings: SolverSettings = SolverSettings(), progress: Callable[[str, int, int], None] | None = None,
               jammer_start_s: float = 60.0, jammer_position_m: tuple[float, float] = (36.0, 8.0),
               scenario_toml: str | None = None) -> WorldFiles:  # fmt: skip
    """Write ``world.npz`` (true maps + per-SU offsets ~ N(0, model_error_db)) and ``scenario.toml``
    (``scenario_toml``, or the demo scenario of the paper's hall), and check that they fit together
    (:class:`sim.world.ScenarioError` names the emitter that does not)."""
    site = site if isinstance(site, Site) else resolve_site(site)
    out_dir.mkdir(parents=True, exist_ok=True)
    twin = Twin.load(site, settings, progress=progress)  # cached by the gain-map cache
    m = twin.maps
    offsets = np.random.default_rng(seed).normal(0.0, model_error_db, m.num_su)
    meta = {
        "site_name": site.name, "su_ids": m.su_ids, "cell_size_m": m.grid.cell_size_m, "height_m": m.grid.height_m,
        "su_gain_offsets_db": {su: round(float(o), 3) for su, o in zip(m.su_ids, offsets)},
        "model_error_db": model_error_db, "seed": seed,
    }  # fmt: skip
    maps_path = out_dir / "world.npz"
    GainMapFile(meta, m.gain_db, m.grid.valid, m.su_positions_m).save(maps_path)
    scenario_path = out_dir / "scenario.toml"
    scenario_path.write_text(scenario_toml or demo_scenario_toml(site, jammer_start_s, jammer_position_m))
    World.load(maps_path, scenario_path)
    return WorldFiles(maps_path, scenario_path)


def demo_scenario_toml(site: Site, jammer_start_s: float, jammer_position_m: tuple[float, float],
                       jammer_end_s: float | None = None, speed_m_s: float = 1.0) -> str:  # fmt: skip
    """AGVs on closed loops along the aisles of the paper's hall (lines at x 7-11, 18-22, 29-33 and
    y 4-18, 22-36), 20 dBm OFDM over 18 MHz, and a 20 dBm noise jammer from ``jammer_start_s``."""
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
    end = f"end_s = {jammer_end_s}\n" if jammer_end_s is not None else ""
    jx, jy = jammer_position_m
    parts.append(f'[[emitters]]\nid = "jammer"\nrole = "jammer"\ntx_power_dbm = 20.0\nbandwidth_hz = 18e6\n'
                 f'waveform = "noise"\nposition_m = [{jx}, {jy}, {h}]\nstart_s = {jammer_start_s}\n{end}')  # fmt: skip
    return "\n".join(parts)
