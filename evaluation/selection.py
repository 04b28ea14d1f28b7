"""Choosing the one default detector (issue 15): on a validation split, never on the figures it reports.

A candidate is a registered detector kind with fixed constructor parameters. Each is run through the
paper's protocol (:mod:`evaluation.protocol`) on validation datasets: mismatched worlds that are not
the ones the headline is reported on (another clutter draw, other realisations), at every SU height
and σ, and under the robustness stresses of :mod:`evaluation.stress`. The default is the candidate
whose *worst* AUC margin over the energy detector (ED, the paper's baseline) across all those
conditions is largest: the goal is "at least as good as ED everywhere", so the weakest condition
decides, not the average. Ties go to the earlier (cheaper) candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from evaluation.protocol import evaluate_arrays
from evaluation.stress import STRESSES, Stress, stressed_residuals
from models.detectors import constructor_params

BASELINE = "ed"
_CELL_PARAMS = ("cell_positions_m", "gain_lin", "gain_db", "cell_gains")


def twin_params(kind: str, twin) -> dict | None:
    """Constructor arguments a detector kind needs from a :class:`central.twin.Twin`, by parameter
    name (its gain-map cells, noise floor, predictor); None if it needs one a twin cannot supply."""
    cg = None
    out = {}
    for name, required in constructor_params(kind).items():
        if name in _CELL_PARAMS:
            cg = cg or twin.predictor.cell_gains()
            out[name] = {"cell_positions_m": cg.positions_m, "gain_lin": cg.gain_lin, "gain_db": cg.gain_db,
                         "cell_gains": cg}[name]  # fmt: skip
        elif name == "noise_floor_dbm":
            out[name] = twin.site.noise_floor_dbm
        elif name in ("predictor", "twin"):
            out[name] = twin.predictor if name == "predictor" else twin
        elif required:
            return None
    return out


@dataclass(frozen=True)
class Candidate:
    """A detector configuration: registry kind plus parameters beyond those the twin supplies."""

    name: str
    kind: str
    params: Mapping = field(default_factory=dict)


# Cheapest first (ties go to the earlier one). LOF is a baseline of the paper, not a candidate: it
# cannot score a snapshot with an SU missing, which a live station must. Nor is the GLRT: one snapshot
# costs it ~20 ms (bench/detection.py), a fifth of a core at the engine's 10 Hz, over the live budget of
# a few ms a default must keep to on the central unit's two cores.
CANDIDATES = (
    Candidate("ed", "ed"),
    Candidate("maxres", "maxres"),
    Candidate("gls", "gls"),
    Candidate("gauss", "gauss"),
    Candidate("bayes", "bayes"),
    Candidate("bayes_t", "bayes", {"tails": "student"}),
    Candidate("fusion", "fusion"),
    Candidate("fusion_t", "fusion", {"tails": "student"}),
)


@dataclass(frozen=True)
class Condition:
    """Model error σ (dB) and, optionally, a robustness stress at that σ."""

    sigma_db: float
    stress: str | None = None

    @property
    def tag(self) -> str:
        return f"sigma{self.sigma_db:g}" if self.stress is None else Stress(self.stress, self.sigma_db).tag


PAPER_CONDITIONS = tuple(Condition(s) for s in (0.0, 3.0, 6.0))
STRESS_CONDITIONS = tuple(Condition(3.0, k) for k in STRESSES)


def auc_of(candidate: Candidate, dataset, condition: Condition, twin_params: Callable[[str], dict | None],
           seed: int = 0) -> float | None:  # fmt: skip
    """The candidate's pooled 5-fold AUC on ``dataset`` under ``condition``; None if the twin cannot
    supply its constructor parameters."""
    base = twin_params(candidate.kind)
    if base is None:
        return None
    if condition.stress is None:
        delta, missing = dataset.delta_db(condition.sigma_db), None
    else:
        delta, missing = stressed_residuals(dataset, Stress(condition.stress, condition.sigma_db), seed + 17)
    r = evaluate_arrays(candidate.kind, delta, dataset.jammer, predicted_dbm=dataset.dt_dbm, seed=seed,
                        params={**base, **candidate.params}, missing_at_test=missing)  # fmt: skip
    return float(r["auc"])


def auc_table(candidates, datasets: Mapping[str, tuple], conditions, seed: int = 0,
              log: Callable[[str], None] = lambda s: None) -> dict[tuple[str, str, str], float]:  # fmt: skip
    """{(height key, condition tag, candidate name): AUC} for ``datasets`` = {height key: (dataset,
    twin_params)}, where ``twin_params(kind)`` gives the kind's constructor arguments from its twin."""
    out = {}
    for h, (ds, twin_params) in datasets.items():
        for c in conditions:
            for cand in candidates:
                t0 = time.perf_counter()
                auc = auc_of(cand, ds, c, twin_params, seed)
                if auc is not None:
                    out[(h, c.tag, cand.name)] = auc
                    log(f"  {h} {c.tag:24s} {cand.name:8s} AUC {auc:.3f} ({time.perf_counter() - t0:.0f} s)")
    return out


def margins_over_baseline(table: Mapping[tuple[str, str, str], float], name: str) -> dict[tuple[str, str], float]:
    """{(height, condition): AUC(name) − AUC(ED)} over every condition both were scored on."""
    return {(h, c): auc - table[(h, c, BASELINE)] for (h, c, n), auc in table.items()
            if n == name and (h, c, BASELINE) in table}  # fmt: skip


def choose_default(table: Mapping[tuple[str, str, str], float], candidates=CANDIDATES) -> tuple[str, float]:
    """(name, worst margin over ED) of the candidate whose worst AUC margin over ED is largest; the
    first such candidate on ties (ED itself has margin 0 everywhere, so the winner is never worse
    than ED on the validation conditions)."""
    conditions = {(h, c) for h, c, n in table if n == BASELINE}
    best: tuple[str, float] | None = None
    for cand in candidates:
        m = margins_over_baseline(table, cand.name)
        if set(m) != conditions:
            continue  # not scored everywhere: cannot be judged everywhere
        worst = float(np.min(list(m.values())))
        if best is None or worst > best[1] + 1e-9:
            best = (cand.name, worst)
    if best is None:
        raise ValueError("no candidate was scored on every validation condition")
    return best


def candidate(name: str, candidates=CANDIDATES) -> Candidate:
    for c in candidates:
        if c.name == name:
            return c
    raise KeyError(f"no candidate {name!r}; known: {[c.name for c in candidates]}")
