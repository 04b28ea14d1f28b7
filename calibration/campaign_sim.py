"""``rftwin-calibrate campaign simulate``: a calibration campaign against the simulated world.

The same workflow as on site, with the site engineer replaced by a schedule: a scenario in which ONE
reference transmitter visits N points in turn, each on air only during its own slot (no other
transmitter in the scenario), is written into a simulated world (true materials + per-SU model
error, :func:`sim.world_builder.make_world`); a real central unit and one node process per SU run
against it (:class:`sim.station.SimulatedStation`); then the campaign API is driven exactly
as ``campaign start`` / ``campaign point`` do, with each point's window set to its slot (less a guard
at both ends, so no reading straddles two positions), and the points are exported to CSV.

Points are uniform over the TX plane outside obstacles (:func:`central.twin.positions.sample_positions`,
seeded); the world checks them against its maps at load. Times are scenario seconds from the
station's common start time; nodes stamp readings on the same clock as the scenario.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.campaign_client import CentralClient, point_line, to_points
from calibration.points import CampaignPoint, write_points_csv
from central.twin.site import Site


@dataclass(frozen=True)
class SimSettings:
    points: int = 40
    dwell_s: float = 3.0  # each slot: the reference transmitter is on this long
    gap_s: float = 0.5  # off between slots
    guard_s: float = 0.25  # trimmed from both ends of a slot for the point's window
    lead_in_s: float = 15.0  # before the first slot: the node processes start (12 on 2 cores: ~10 s)
    # The nodes' SDR gain: full scale at -20 dBm. Lower leaves far SUs in digital zeros (a 12-bit
    # ADC spans ~70 dB); higher saturates SUs near the reference (those points are rejected).
    gain_db: float = 10.0
    power_dbm: float = 20.0  # reference EIRP
    bandwidth_hz: float = 18e6
    seed: int = 0
    model_error_db: float = 1.0  # per-SU gain offset std of the world (the twin does not know it)
    world_seed: int = 7

    def slot(self, i: int) -> tuple[float, float]:
        """Scenario seconds [start, end) the reference transmitter is on at point ``i``."""
        start = self.lead_in_s + i * (self.dwell_s + self.gap_s)
        return start, start + self.dwell_s


@dataclass(frozen=True)
class SimResult:
    csv_path: Path
    campaign: str
    points: list[CampaignPoint]

    @property
    def accepted(self) -> int:
        return sum(p.usable for p in self.points)


def reference_positions(site: Site, n: int, seed: int) -> np.ndarray:
    """(n, 3) reference positions, m: uniform over the TX plane outside obstacles, seeded."""
    from central.twin.positions import sample_positions

    return sample_positions(site, n, np.random.default_rng(seed))


def reference_scenario_toml(positions_m: np.ndarray, s: SimSettings) -> str:
    """One fixed emitter per point, each on air during its own slot only."""
    parts = ['[scenario]\nname = "calibration campaign: one reference transmitter visiting the points"\n']
    for i, (x, y, z) in enumerate(positions_m):
        start, end = s.slot(i)
        parts.append(f'[[emitters]]\nid = "ref-{i:03d}"\nrole = "legitimate"\ntx_power_dbm = {s.power_dbm}\n'
                     f"bandwidth_hz = {s.bandwidth_hz}\nposition_m = [{x:.3f}, {y:.3f}, {z:.3f}]\n"
                     f"start_s = {start}\nend_s = {end}\n")  # fmt: skip
    return "\n".join(parts)


def simulate_campaign(
    workdir: Path,
    site: Site,
    site_file: Path,
    truth: Site,
    out_csv: Path,
    name: str,
    s: SimSettings = SimSettings(),
    say: Callable[[str], None] = print,
    env: dict | None = None,
    central_timeout_s: float = 600.0,
    progress: Callable | None = None,
) -> SimResult:
    """Run the whole simulated campaign; returns the exported CSV and its points.

    ``site``/``site_file``: the twin's hall (the central unit loads it); ``truth``: the same hall with
    the world's true materials (its maps are traced, or read from the cache, once).
    """
    import shutil

    from sim.station import OPERATOR_TOKEN, SimulatedStation, StationSettings  # simulation: imported lazily
    from sim.world_builder import WorldRecipe, make_world

    say(f"simulated world ({truth.name}): loading or ray-tracing the true gain maps")
    positions = reference_positions(site, s.points, s.seed)
    recipe = dataclasses.replace(WorldRecipe(), seed=s.world_seed, model_error_db=s.model_error_db)
    files = make_world(workdir / "world", truth, recipe, scenario_toml=reference_scenario_toml(positions, s),
                       progress=progress)  # fmt: skip
    shutil.rmtree(workdir / "station", ignore_errors=True)  # a fresh central unit: no campaign of a past run
    station = SimulatedStation(workdir / "station", site_file, site, files.maps_path, files.scenario_path,
                               StationSettings(gain_db=s.gain_db), env=env)  # fmt: skip
    station.prepare()
    try:
        station.start(central_timeout_s=central_timeout_s)
        say(f"central unit at {station.url}; {len(site.sensing_units)} simulated nodes; "
            f"{s.points} points of {s.dwell_s:g} s from t = {s.lead_in_s:g} s")  # fmt: skip
        client = CentralClient(station.url, OPERATOR_TOKEN)
        client.start_campaign(name, f"simulated: {s.points} points, seed {s.seed}, world {truth.name}")
        _wait_for_nodes(station, len(site.sensing_units), s.slot(0)[0], say)
        for i, pos in enumerate(positions):
            start, end = s.slot(i)
            while station.scenario_time_s() < end:
                station.check_processes()
                time.sleep(min(0.2, max(0.01, end - station.scenario_time_s())))
            t0 = int((station.start_time_s + start + s.guard_s) * 1e9)
            t1 = int((station.start_time_s + end - s.guard_s) * 1e9)
            p = client.add_point(name, pos, s.power_dbm, window_ns=(t0, t1), settle_s=1.0)
            say(f"[{i + 1:>{len(str(s.points))}}/{s.points}] {point_line(p)}")
        points = to_points(client.campaign(name)["points"])
        client.close_campaign(name)
    finally:
        station.stop()
    path = write_points_csv(points, out_csv)
    return SimResult(path, name, points)


def _wait_for_nodes(station, n: int, until_s: float, say: Callable[[str], None]) -> None:
    """Until every node reports (or the first slot starts: its point will say which are missing)."""
    while station.scenario_time_s() < until_s:
        station.check_processes()
        up = sum(h["healthy"] for h in station.get("/nodes"))
        if up == n:
            t = station.scenario_time_s()
            say(f"all {n} nodes reporting after {t:.1f} s; first point at {until_s:g} s")
            return
        time.sleep(0.2)
    say(f"only {up} of {n} nodes reporting when the first point starts (a longer --lead-in would help)")
