"""What an alarm's interference is, where it is, and what the network should do about it.

The spectral test (:class:`models.detectors.spectral.SpectralDetector`) says, per snapshot, which
sub-bands carry excess power and how strongly each cell of the floor explains it. One snapshot cannot
tell a sweep from a narrowband jammer, nor an emitter that follows a legitimate transmitter's
allocation from one that happens to sit in its sub-band now: the scheduler moves that transmitter
every second and a deceptive emitter moves with it. So :class:`InterferenceTracker` keeps the
findings of an alarm's snapshots and classifies their history (rules, in this order):

- none before the emitter was seen in ``min_seen`` snapshots: one snapshot's finding may be the test's
  own false crossing, and a class from it would be a guess;
- **deceptive** (co-channel with a named legitimate TX): in at least ``deceptive_match`` of the
  snapshots where the emitter was seen, the test put it in that transmitter's allocation (the
  allocation residual named that transmitter, or the affected sub-bands coincide with its allocation:
  Jaccard index ≥ ``jaccard``), over at least two allocations of it that share no sub-band (an emitter
  that stays in one sub-band the transmitter keeps being given is not following it);
- **sweeping**: a narrow emission (median affected width ≤ ``narrow_max``) whose centre has visited at
  least ``sweep_visits`` different sub-bands;
- **wideband**: the median number of affected sub-bands, or their union over the recent findings, is
  at least ``wide_fraction`` of the band (a weak wideband emitter shows only in the sub-bands nobody
  uses at that moment, and the scheduler moves those every second);
- else by the median number of affected sub-bands: **partial-band** (more than ``narrow_max``),
  **narrowband**.

Affected sub-bands: those in at least half of the recent findings (a static emitter's), the union
(a sweep's), the followed transmitter's current allocation (deceptive), or all (wideband).

Time pattern: the fraction of the alarm's snapshots in which the emitter was present: its evidence on
the normal scale at least ``presence_z`` (2: a normal snapshot passes 2.3 % of the time), lower than
the test's threshold, which is set for false alarms (0.1 %) and which a continuous emitter a few dB
over the noise misses in one snapshot of three; "continuous" from ``continuous_duty`` up, else
"duty-cycled" with that duty. (Findings without that score: the snapshots where it was seen.)

EIRP: the median over the recent findings of the fitted source's spectral density where it was seen,
times the width of the sub-bands it occupies (a sweep: what it sends within one snapshot).

Where: the linear-domain point-source fit (:meth:`SpectralDetector.locate`) of each finding, its
misfit J_c over cells averaged over the last ``locate_window`` findings (one snapshot's fit follows its
readings' scatter and, where the emitter shares a busy sub-band, that link's error; the emitter does
not move in a few seconds; the window, 3 s at 10 Hz, is chosen on a validation split in
``bench/spectral.py``) and turned into a likelihood exp(−(J_c − J_min) / (2 β² s²)) with s =
``region_sigma_db`` (the spread of the twin's error the fit sees; chosen on a validation split in
``bench/spectral.py`` so that the 90 % region holds the emitter 90 % of the time), the 90 % region
the smallest set of cells holding 90 % of it.

Countermeasures follow the paper's §III-C: narrowband or partial-band → leave the affected sub-bands
unallocated (``avoid_subbands``, machine-readable for a scheduler); wideband → move band; sweeping →
scheduling around it does not help; deceptive → verify the named transmitter; always: locate and
remove near the estimated position.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from central.live import Interference, LikelihoodMap
from contracts.band_plan import BandPlan

BETA = math.log(10.0) / 10.0


@dataclass(frozen=True)
class CharacteriseSettings:
    narrow_max: int = 2  # at most this many sub-bands: narrowband
    wide_fraction: float = 0.75  # at least this fraction of the band: wideband
    sweep_visits: int = 5  # a narrow emission whose centre visited this many sub-bands sweeps
    min_seen: int = 3  # snapshots with the emitter seen before anything is said about it
    deceptive_match: float = 0.7
    jaccard: float = 0.6
    continuous_duty: float = 0.9
    presence_z: float = 2.0  # evidence (normal scale) from which a snapshot counts as the emitter on
    region_mass: float = 0.9
    region_sigma_db: float = 3.0
    locate_window: int = 30  # findings whose misfits are averaged for the position (3 s at 10 Hz; bench/spectral.py)
    map_cell_m: float = 1.0  # the dashboard's heat map resolution
    history: int = 600  # findings kept per alarm (a minute at 10 Hz)


@dataclass(frozen=True)
class Finding:
    """One snapshot of an alarm through the spectral test."""

    t_ns: int
    seen: bool  # the emitter's evidence in this snapshot is above the test's threshold
    subbands: tuple[int, ...]  # affected in this snapshot
    allocations: Mapping[str, tuple[int, ...]]  # legitimate transmitters' sub-bands at that time
    position_m: tuple[float, float] | None = None
    subband_eirp_dbm: np.ndarray | None = None  # (K,) the fitted source's EIRP per affected sub-band (−inf elsewhere)
    cost: np.ndarray | None = None  # (C,) the point-source misfit over cells
    transmitter: str | None = None  # the legitimate TX whose allocation the test put the emitter in, if it did
    evidence_z: float | None = None  # the snapshot's spectral score on the normal scale (N(0, 1) when normal)


def finding_of(t_ns: int, det, ev, measured_dbm: np.ndarray, predicted_dbm: np.ndarray,
               allocations: Mapping[str, tuple[int, ...]], tx_ids) -> Finding:  # fmt: skip
    """One snapshot's finding from the spectral test ``det``'s evidence ``ev``
    (:class:`models.detectors.spectral.SpectralEvidence`): seen when its score is past the test's threshold,
    then located over its affected sub-bands. ``tx_ids``: the transmitters in the order of the groups the
    evidence was computed with (``ev.transmitter`` indexes them)."""
    seen = bool(ev.score > det.threshold)
    fit = det.locate(measured_dbm, predicted_dbm, ev.affected) if seen else None
    tx = tx_ids[ev.transmitter] if seen and 0 <= ev.transmitter < len(tx_ids) else None
    return Finding(t_ns, seen, ev.affected if seen else (), allocations, None if fit is None else fit.position_m,
                   None if fit is None else fit.subband_eirp_dbm, None if fit is None else fit.cost, tx,
                   float(det.normal_scores([ev.score])[0]))  # fmt: skip


def likelihood_region(cost: np.ndarray, sigma_db: float, mass: float) -> tuple[np.ndarray, np.ndarray]:
    """(likelihood over cells normalised to 1 at its peak, bool mask of the smallest set holding ``mass``)."""
    ll = -(cost - np.min(cost)) / (2 * (BETA * sigma_db) ** 2)
    lik = np.exp(ll)
    order = np.argsort(-lik)
    cum = np.cumsum(lik[order]) / lik.sum()
    keep = order[: int(np.searchsorted(cum, mass)) + 1]
    mask = np.zeros(lik.shape, dtype=bool)
    mask[keep] = True
    return lik, mask


def coarse_map(positions_m: np.ndarray, values: np.ndarray, hall_xy_m: tuple[float, float], cell_m: float) -> LikelihoodMap:
    """The maximum of ``values`` per coarse cell of ``cell_m`` over the hall floor."""
    nx, ny = max(1, math.ceil(hall_xy_m[0] / cell_m)), max(1, math.ceil(hall_xy_m[1] / cell_m))
    ix = np.clip((positions_m[:, 0] // cell_m).astype(int), 0, nx - 1)
    iy = np.clip((positions_m[:, 1] // cell_m).astype(int), 0, ny - 1)
    grid = np.zeros(ny * nx)
    np.maximum.at(grid, iy * nx + ix, values)
    return LikelihoodMap((0.0, 0.0), float(cell_m), (ny, nx), tuple(round(float(v), 3) for v in grid))


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


class InterferenceTracker:
    """The findings of one alarm, and what they say (:meth:`interference`)."""

    def __init__(self, plan: BandPlan, positions_m: np.ndarray, hall_xy_m: tuple[float, float],
                 settings: CharacteriseSettings = CharacteriseSettings()):  # fmt: skip
        self.plan, self.settings = plan, settings
        self.positions_m = np.asarray(positions_m, dtype=np.float64)
        self.hall_xy_m = hall_xy_m
        self.findings: collections.deque[Finding] = collections.deque(maxlen=settings.history)

    def reset(self) -> None:
        self.findings.clear()

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def classify(self) -> tuple[str, tuple[int, ...], str | None] | None:
        """(class, affected sub-bands, mimicked TX or None) from the findings; None before the emitter was seen."""
        st, k = self.settings, self.plan.subbands
        seen = [f for f in self.findings if f.seen and f.subbands]
        if len(seen) < max(st.min_seen, 1):
            return None
        for tx in sorted({tx for f in seen for tx in f.allocations}):
            matched = [f for f in seen if f.allocations.get(tx) and (
                f.transmitter == tx or _jaccard(set(f.subbands), set(f.allocations[tx])) >= st.jaccard)]  # fmt: skip
            allocs = {f.allocations[tx] for f in matched}
            if (len(matched) >= st.deceptive_match * len(seen) and len(allocs) >= 2
                    and not set.intersection(*(set(a) for a in allocs))):  # fmt: skip
                return "deceptive", tuple(sorted(seen[-1].allocations.get(tx) or ())), tx
        width = float(np.median([len(f.subbands) for f in seen]))
        if width <= st.narrow_max:
            centres = {round(_circular_centre(f.subbands, k)) % k for f in seen}
            if len(centres) >= st.sweep_visits:
                return "sweeping", tuple(sorted({b for f in seen for b in f.subbands})), None
        union = {b for f in seen[-50:] for b in f.subbands}
        if width >= st.wide_fraction * k or len(union) >= st.wide_fraction * k:
            return "wideband", tuple(range(k)), None
        recent = seen[-20:]
        counts = collections.Counter(b for f in recent for b in f.subbands)
        common = tuple(sorted(b for b, c in counts.items() if c >= len(recent) / 2)) or seen[-1].subbands
        return ("partial-band" if width > st.narrow_max else "narrowband"), common, None

    def interference(self) -> Interference | None:
        """What the findings say so far; None before the emitter has been seen in any snapshot."""
        got = self.classify()
        if got is None:
            return None
        cls, subbands, mimics = got
        st = self.settings
        seen = [f for f in self.findings if f.seen and f.subbands]
        present = [f.seen if f.evidence_z is None else f.evidence_z >= st.presence_z for f in self.findings]
        duty = sum(present) / len(present)
        located = [f for f in seen if f.position_m is not None]
        eirps = [e for e in (self._eirp_dbm(f, cls, subbands) for f in located[-20:]) if math.isfinite(e)]
        eirp = float(np.median(eirps)) if eirps else None
        region: tuple[tuple[float, float], ...] = ()
        lmap = None
        cost = self.location_cost()
        pos = located[-1].position_m if located else None
        if cost is not None:
            best = int(np.argmin(cost))
            pos = (float(self.positions_m[best, 0]), float(self.positions_m[best, 1]))
            lik, mask = likelihood_region(cost, st.region_sigma_db, st.region_mass)
            region = tuple((round(float(x), 2), round(float(y), 2)) for x, y in self.positions_m[mask][:, :2])
            lmap = coarse_map(self.positions_m, lik, self.hall_xy_m, st.map_cell_m)
        pattern = "continuous" if duty >= st.continuous_duty else "duty-cycled"
        avoid = subbands if cls in ("narrowband", "partial-band") else ()
        text = self.plan.describe(subbands)
        return Interference(cls, subbands, text, avoid, eirp, pos, region, self._cell_m(), pattern, round(duty, 3), mimics,
                            countermeasure(cls, text, pos, mimics, pattern, duty), lmap)  # fmt: skip

    def location_cost(self) -> np.ndarray | None:
        """(C,) the point-source misfit averaged over the last ``locate_window`` findings that located the
        emitter (it stands still for a few seconds; the mean averages the readings' scatter); None before any."""
        costs = [f.cost for f in self.findings if f.seen and f.subbands and f.position_m is not None and f.cost is not None]
        return np.mean(costs[-self.settings.locate_window:], axis=0) if costs else None

    def _eirp_dbm(self, f: Finding, cls: str, subbands: tuple[int, ...]) -> float:
        """The emitter's EIRP from one finding: a sweep's is what it sends in that snapshot; any other's is
        its spectral density where it was seen times the width of the sub-bands it occupies (a wideband
        emitter shows only where nobody else transmits, yet sends everywhere)."""
        if f.subband_eirp_dbm is None or not f.subbands:
            return -math.inf
        p_mw = np.power(10.0, f.subband_eirp_dbm[list(f.subbands)] / 10)
        if cls == "sweeping":
            total = p_mw.sum()
        else:
            w = np.array([self.plan.grid[b].width_hz for b in f.subbands])
            total = float(np.median(p_mw / w)) * sum(self.plan.grid[b].width_hz for b in subbands)
        return 10 * math.log10(total) if total > 0 else -math.inf

    def _cell_m(self) -> float:
        if len(self.positions_m) < 2:
            return 0.0
        d = np.abs(np.diff(np.unique(self.positions_m[:, 0])))
        return float(d.min()) if d.size else 0.0


def _circular_centre(subbands, k: int) -> float:
    ang = np.asarray(subbands, dtype=np.float64) * 2 * np.pi / k
    return float(np.angle(np.exp(1j * ang).mean()) * k / (2 * np.pi)) % k


def countermeasure(cls: str, subbands_text: str, position_m, mimics: str | None, pattern: str, duty: float) -> str:
    """The operator's sentence (the paper's §III-C)."""
    near = "" if position_m is None else f" near ({position_m[0]:.0f}, {position_m[1]:.0f}) m"
    when = f" (on {duty:.0%} of the time)" if pattern == "duty-cycled" else ""
    if cls in ("narrowband", "partial-band"):
        return f"{cls}{when}: exclude {subbands_text} from scheduling; locate and remove{near}"
    if cls == "wideband":
        return f"wideband{when}: move band; locate and remove{near}"
    if cls == "sweeping":
        return f"sweeping across {subbands_text}{when}: excluding sub-bands does not help; locate and remove{near}"
    return f"emitter mimicking TX {mimics} in its sub-bands{when}: locate{near}; verify {mimics}'s identity"
