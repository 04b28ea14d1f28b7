"""Spectral detection: a point-source test over the twin's cells × sub-bands of the residual matrix.

A wideband detector sees one number per SU; a 10 dBm jammer in one of 16 sub-bands raises that
number by a fraction of a dB where the legitimate signal is strong, and a deceptive emitter that
follows a legitimate transmitter's allocation hides in the total entirely. Per sub-band it stands out.

**Residual matrix.** Per snapshot and SU j, sub-band b: r_jb = measured − predicted (dB), the
prediction from the scheduler's allocations (``central.twin.predictor.Predictor.predict_subbands``).
Which transmitter each sub-band is allocated to (``groups``, (N, K), −1 idle) is what lets the test
tell a twin's error on a link from an emitter: the error is the same in every sub-band of that
transmitter. Without allocations the sub-bands the twin expects legitimate power in are taken as one.

**Two components**, one for each way an emitter can show, both point-source tests (below):

- **Contrast** (:func:`contrast`, per sub-band): in each transmitter's allocation the median over that
  allocation at the same SU is taken off every one of its sub-bands, and an idle sub-band is judged
  against the leakage of what was measured next to it. Why: where the world has a path the twin lacks,
  a link's error is tens of dB, in all of its sub-bands alike; the contrast removes it and keeps a
  jammer that occupies some of the transmitter's sub-bands or an idle one (narrowband, tone, sweep,
  partial-band, and a wideband one in the sub-bands nobody uses).
- **Allocation** (:func:`allocation_residual`, per legitimate transmitter): the measured over the
  predicted power summed over each transmitter's allocation, per SU. An emitter that follows the whole
  allocation (deceptive) is removed by the contrast and shows only here. Why not per sub-band: the
  link's error is common to its sub-bands, so a per-sub-band test would count one error once per
  sub-band; here it is counted once, at its own spread (learned). A point source "in transmitter t's
  allocation" is tested per t, and the evidence is the largest over t.

**Normal statistics per SU and state.** Where SU j hears a legitimate transmitter, r carries the
twin's model error, several dB; where it hears only noise (an idle sub-band, or a transmitter it
cannot hear), the receiver's noise-floor error and the estimator's scatter, a fraction of a dB. The
state is read off the prediction as the legitimate fraction f = 1 − noise / prediction: location and
scale of the noise state (f < 0.2) and of the signal state (f > 0.8) are learned per (j, b) for the
contrast and per SU for the allocation residual, from normal snapshots (median and 1.4826·MAD, shrunk
towards the SU's pool where few samples), and blended for any f: μ = (1 − f)·μ_n + f·μ_s,
σ² = σ_n² + (f·σ_s)². (A hard switch fails where the twin puts a transmitter just under the noise
and the world has it 10 dB louder.)

**The test.** z = (r − μ) / σ is ~N(0, 1) in normal operation. A point source of EIRP a in column b (a
sub-band, or a transmitter's allocation) at cell c adds a·g_cj (mW) at SU j; linearised around the
bias-corrected prediction Q_jb = 10^((P̂_jb + μ_jb)/10), that is a rise of a·t_cjb in z, with template
t_cjb = g_cj / (Q_jb · ln(10)/10 · σ_jb). The generalised likelihood ratio of "a source at c in b"
(a ≥ 0 fitted in closed form) is

    T_cb = max(Σ_j z_jb t_cjb, 0)² / Σ_j t_cjb²        (≈ χ²₁ under H0, one-sided)

For the contrast a jammer occupies an unknown set of sub-bands, so the evidence at c is
Σ_b max(0, T_cb − κ): the soft threshold κ (``penalty``) is what a sub-band must add to be counted,
the GLRT over sets of sub-bands with a per-sub-band cost. For the allocation component it is max_t T_ct
(a deceptive emitter follows one transmitter). A component's score is the maximum over cells; each is
put on the normal scale against its own training scores, and the two are fused (``fusion``: the
larger, their sum, or the soft maximum log(e^a + e^b), chosen on validation in ``bench/spectral.py``).
One (C × n_su) × (n_su × K) and one (C × n_su) × (n_su × T) matrix product per snapshot: ~1300 cells
(the maps' cells thinned to 1 m) × 12 SUs × (16 sub-bands + a few transmitters). For one snapshot
at a time, as the live engine calls it, the time goes to the number of numpy calls more than to
arithmetic: everything is vectorised over snapshots, sub-bands and transmitters (no Python loop), and
the GLRT keeps cells on the last axis so that its sums over sub-bands run along the outer one.

Why z-space for detection and not the linear-domain least squares of
``central.detection.localise``: under H0 the linear excess of a dB-Gaussian error is log-normal
(a +2σ error at σ = 3 dB is +300 % in mW), which the linear test mistakes for a jammer next to an SU;
z is Gaussian by construction. For *where* and *how strong*, :meth:`SpectralDetector.locate` uses the
linear-domain least squares with relative weights (the localiser's, summed over the affected
sub-bands): the z-linearisation saturates for a strong source and would bias its EIRP.

**Affected sub-bands** come from the component with the larger normal-scale score. The contrast's:
those with T at the best cell above ``affected_t`` (default 9: a one-sided χ²₁ tail of 1.3e-3 per
sub-band; κ, which the score uses, may be lower) whose fitted EIRP at that cell (linear domain) is
within ``affected_within_db`` of the strongest (the twin's error on a link lifts all of that
transmitter's sub-bands a little; in mW that is far less than a jammer adds to its own). The
allocation's: the best transmitter's allocation, or those of its sub-bands that stand out in the
contrast at that cell (an emitter in part of it).

Nothing here imports ``node``, ``central`` or ``calibration``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.band_plan import SUBBAND_LEAKAGE_DB, neighbour_sum, own_power, own_power_scatter
from models.detectors.base import DetectorError, NormalScale, model_paths, quantile_threshold

BETA = math.log(10.0) / 10.0  # d(ln mW) / d(dB)
NOISE, SIGNAL = 0, 1
FORMAT = "rftwin-spectral-detector/3"  # 3: the contrast's scale is learned over its leakage amplification
FUSIONS = ("max", "sum", "softmax")
_TINY = 1e-300  # added to a GLRT's denominator (a sum of squares ≥ 0) so that an empty column divides to 0
LEAK_DOMINATED = 6.0  # leakage into a sub-band over its own power (or the noise) past which its reading says nothing of it


def contrast(measured_dbm: np.ndarray, predicted_dbm: np.ndarray, groups: np.ndarray, leakage_db: float,
             noise_dbm: np.ndarray) -> np.ndarray:  # fmt: skip
    """The contrast residual (N, n_su, K): each sub-band of a legitimate transmitter's allocation against
    the other sub-bands of that allocation at the same SU, with the leakage between neighbours taken out.

    Why: the twin's error on a link (a path the world has and the twin lacks, a clutter object in
    between) is the same in every sub-band of that transmitter, and can be tens of dB where the twin
    sees no path. The median residual over the allocation at that SU removes it; a jammer in some of its
    sub-bands stands out against the rest. A one-sub-band allocation has no reference: NaN (not used).
    An idle sub-band keeps its residual. Both sides are first de-leaked (the node's estimator leaks
    ``leakage_db`` of each sub-band into each neighbour; :func:`contracts.band_plan.own_power` undoes
    it): a link the twin under-predicts by 30 dB leaks 30 dB more into the idle sub-band next to it, and
    a strong jammer into the busy one next to it, and neither is an emitter there. A sub-band whose
    reading is mostly its neighbours' leakage (``LEAK_DOMINATED`` times its own power or the noise) is
    not used (NaN): what is left after taking out leakage 40 dB over the noise is the scatter of the
    neighbours' estimate (a few %, times the leakage), not the sub-band's power. (An emitter that
    follows a whole allocation is removed with it: the allocation residual sees that one.)"""
    m = np.asarray(measured_dbm, dtype=np.float64)
    p = np.asarray(predicted_dbm, dtype=np.float64)
    noise = np.power(10.0, np.asarray(noise_dbm, dtype=np.float64) / 10)  # (K,)
    leak = 10 ** (leakage_db / 10)
    read = _mw(m)
    own_m = np.maximum(own_power(read, leakage_db), 0.1 * noise)
    own_p = np.maximum(own_power(_mw(p), leakage_db), 0.1 * noise)
    usable = np.isfinite(m) & np.isfinite(p) & (leak * neighbour_sum(read) < LEAK_DOMINATED * np.maximum(own_m, noise))
    out = np.where(usable, 10 * np.log10(own_m / own_p), np.nan)
    g = np.asarray(groups, dtype=np.int64)
    if not (g >= 0).any():
        return out
    med = allocation_nanmedian(out, g)  # (N, n_su, T)
    own = med.transpose(0, 2, 1)[np.arange(g.shape[0])[:, None], np.maximum(g, 0)].transpose(0, 2, 1)  # (N, n_su, K)
    busy = g >= 0
    alone = busy & ((g[:, :, None] == g[:, None, :]).sum(axis=2) < 2)  # (N, K) a one-sub-band allocation
    return np.where(alone[:, None, :], np.nan, out - np.where(busy[:, None, :], own, 0.0))


def allocation_nanmedian(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(N, n_su, T) the median of ``x`` (N, n_su, K) over each transmitter's allocation (``groups`` (N, K),
    values 0 … T−1, −1 idle), NaN ignored; NaN where an allocation has no value. Why not ``np.nanmedian``
    per allocation: that is a Python loop over snapshots and transmitters, and was most of the spectral
    test's time per snapshot; sorted with the NaNs last, every median is two gathers."""
    n_tx = int(groups.max(initial=-1)) + 1
    member = groups[:, None, :] == np.arange(n_tx)[None, :, None]  # (N, T, K)
    v = np.sort(np.where(member[:, None, :, :], x[:, :, None, :], np.nan), axis=-1)  # NaN sorts last
    k = v.shape[-1]
    flat = v.reshape(-1, k)
    cnt = k - np.isnan(flat).sum(axis=1)
    rows = np.arange(flat.shape[0])
    # the two middle values (one for an odd count); an empty allocation reads its first value, NaN
    med = 0.5 * (flat[rows, np.maximum(cnt - 1, 0) // 2] + flat[rows, np.minimum(cnt // 2, k - 1)])
    return med.reshape(v.shape[:-1])


def _mw(dbm: np.ndarray) -> np.ndarray:
    """dBm → mW, a missing reading (NaN) as nothing (−300 dBm)."""
    return np.power(10.0, np.fmax(dbm, -300.0) / 10)


def leakage_amplification(measured_dbm: np.ndarray, predicted_dbm: np.ndarray, leakage_db: float,
                          noise_dbm: np.ndarray) -> np.ndarray:  # fmt: skip
    """(…, K) the estimator's scatter in each sub-band's own power (after the leakage is taken out),
    relative to what it is in a reading with nothing leaking into it (≥ 1).

    Why: the node's estimator scatters by a fraction of each whole reading (a few %), and the contrast
    takes the neighbours' leakage out of the readings (:func:`contracts.band_plan.own_power`). Two sub-
    bands from a link 35 dB over the noise, an idle sub-band's own power carries the scatter of that
    link's first- and second-order leakage, many times its own scatter (3 dB where a reading alone
    scatters 0.15 dB). The scatter is the larger of what the readings and the twin's prediction put
    there (a link the twin under-predicts leaks more than it expects), over the own power *measured*
    (a jammer in an idle sub-band next to a busy one is its own power, far above the leakage's scatter).
    Dividing the contrast's deviations by it puts every sub-band on the same scale of error."""
    xm, xp = (_mw(np.asarray(x, dtype=np.float64)) for x in (measured_dbm, predicted_dbm))
    noise = np.power(10.0, np.asarray(noise_dbm, dtype=np.float64) / 10)
    scatter = np.maximum(own_power_scatter(xm, leakage_db), own_power_scatter(xp, leakage_db))
    return np.maximum(scatter / np.maximum(own_power(xm, leakage_db), 0.1 * noise), 1.0)


def allocation_residual(measured_dbm: np.ndarray, predicted_dbm: np.ndarray, groups: np.ndarray,
                        noise_dbm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per legitimate transmitter t (the columns of ``groups``' values 0 … T−1) and SU: the residual
    (dB) of the power summed over t's allocation, measured against predicted; its legitimate fraction;
    the predicted power (mW). Each (N, n_su, T); NaN / 0 / 1 where t has nothing allocated (or no
    usable reading in its sub-bands).

    Why summed: the twin's error on a link is the same in all of its sub-bands, so they are one
    observation of it; summing takes the estimator's scatter down with the width."""
    m = np.asarray(measured_dbm, dtype=np.float64)
    p = np.asarray(predicted_dbm, dtype=np.float64)
    g = np.asarray(groups)
    ok = np.isfinite(m) & np.isfinite(p)
    mw = np.where(ok, np.stack((_mw(m), _mw(p), np.broadcast_to(_mw(np.asarray(noise_dbm, dtype=np.float64)), m.shape))), 0.0)
    n_tx = max(int(g.max(initial=-1)) + 1, 1)
    onehot = (g[:, :, None] == np.arange(n_tx)[None, None, :]).astype(np.float64)  # (N, K, T)
    mt, pt, nt = mw @ onehot  # measured, predicted, noise (N, n_su, T), each summed over the allocation
    has = pt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(has, 10 * np.log10(np.where(has, mt, 1.0) / np.where(has, pt, 1.0)), np.nan)
        f = np.where(has, np.clip(1.0 - nt / np.where(has, pt, 1.0), 0.0, 1.0), 0.0)
    return r, f, np.where(has, pt, 1.0)


@dataclass(frozen=True)
class SpectralEvidence:
    """One snapshot through the spectral test."""

    score: float  # the fused score (normal scale); NaN when it cannot be scored
    cell: int  # best cell (index into the detector's cells); −1 without a score
    subband_t: np.ndarray  # (K,) the contrast's T_cb at the best cell
    affected: tuple[int, ...]  # the sub-bands the emitter is in (see the module's docstring)
    cell_scores: np.ndarray  # (C,) the evidence at every cell (for the likelihood map)
    component: str = ""  # "contrast" or "allocation": the one with the larger normal-scale score
    transmitter: int = -1  # the allocation component's best transmitter (index into the groups), else −1


@dataclass(frozen=True)
class SourceFit:
    """Where the emitter is and how strong, from the linear-domain fit over the affected sub-bands."""

    cell: int
    position_m: tuple[float, float]
    eirp_dbm: float  # summed over the affected sub-bands; −inf when no excess
    subband_eirp_dbm: np.ndarray  # (K,) per sub-band at the best cell (−inf outside the affected set)
    cost: np.ndarray  # (C,) weighted misfit (squared relative errors), for the likelihood over cells


@dataclass(frozen=True)
class _Stats:
    """Location and scale (…, 2) of one residual, [noise, signal] state."""

    mu_db: np.ndarray
    sigma_db: np.ndarray

    def z_and_template_scale(self, r: np.ndarray, f: np.ndarray, pred_mw: np.ndarray, z_cap: float | None,
                             scale: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """z and 1 / (Q·β·σ), 0 where r is not usable; σ times ``scale`` (the leakage amplification)."""
        mu = (1 - f) * self.mu_db[..., NOISE] + f * self.mu_db[..., SIGNAL]
        sig = np.sqrt(self.sigma_db[..., NOISE] ** 2 + (f * self.sigma_db[..., SIGNAL]) ** 2) * scale
        ok = np.isfinite(r)
        z = np.where(ok, (r - mu) / sig, 0.0)
        if z_cap is not None:
            z = np.minimum(z, z_cap)
        inv = np.where(ok, 1.0 / (np.where(ok, pred_mw, 1.0) * np.power(10.0, mu / 10.0) * BETA * sig), 0.0)
        return z, inv


class SpectralDetector:
    kind = "spectral"

    def __init__(self, cell_positions_m, gain_lin, noise_dbm, *, penalty: float = 6.0, affected_t: float = 9.0,
                 affected_within_db: float = 10.0, min_sigma_db: float = 0.1, fusion: str = "softmax",
                 shrink_n: float = 30.0, target_far: float = 0.01, z_cap: float | None = None,
                 leakage_db: float = SUBBAND_LEAKAGE_DB):  # fmt: skip
        self.positions_m = np.asarray(cell_positions_m, dtype=np.float64)
        g = np.asarray(gain_lin, dtype=np.float64)
        if g.ndim != 2 or g.shape[0] != self.positions_m.shape[0]:
            raise DetectorError(f"gain_lin {g.shape} does not match {self.positions_m.shape[0]} cell positions")
        self.gain_lin = np.ascontiguousarray(g)  # (C, n_su)
        self.gain_sq = self.gain_lin**2
        self._gain_t, self._gain_sq_t = np.ascontiguousarray(self.gain_lin.T), np.ascontiguousarray(self.gain_sq.T)
        self.noise_dbm = np.asarray(noise_dbm, dtype=np.float64)  # (K,) the twin's noise floor per sub-band
        if not 0 < target_far < 1:
            raise DetectorError(f"target_far must be in (0, 1), got {target_far}")
        if fusion not in FUSIONS:
            raise DetectorError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        self.penalty = float(penalty)
        self.affected_t = float(affected_t)
        self.affected_within_db = float(affected_within_db)
        self.min_sigma_db = float(min_sigma_db)
        self.fusion = fusion
        self.shrink_n, self.target_far = float(shrink_n), float(target_far)
        self.z_cap = None if z_cap is None else float(z_cap)
        self.leakage_db = float(leakage_db)
        self.contrast_stats: _Stats | None = None  # (n_su, K, 2)
        self.allocation_stats: _Stats | None = None  # (n_su, 1, 2): per SU, pooled over transmitters
        self.threshold: float | None = None
        # each component's sorted training scores, and the fused score's (for normal_scores), as normal scales
        self._contrast_scale: NormalScale | None = None
        self._allocation_scale: NormalScale | None = None
        self._fused_scale: NormalScale | None = None
        self.provenance: dict = {}

    @property
    def n_su(self) -> int:
        return self.gain_lin.shape[1]

    @property
    def subbands(self) -> int:
        return self.noise_dbm.shape[0]

    @property
    def fitted(self) -> bool:
        return self.contrast_stats is not None

    @property
    def ref_contrast(self) -> np.ndarray | None:
        return None if self._contrast_scale is None else self._contrast_scale.reference

    @property
    def ref_allocation(self) -> np.ndarray | None:
        return None if self._allocation_scale is None else self._allocation_scale.reference

    @property
    def train_scores(self) -> np.ndarray | None:
        return None if self._fused_scale is None else self._fused_scale.reference

    # ------------------------------------------------------------------ normal statistics

    def legit_fraction(self, predicted_dbm: np.ndarray) -> np.ndarray:
        """f = the part of the predicted power that legitimate transmitters make (1 − noise / prediction)."""
        return np.clip(1.0 - np.power(10.0, (self.noise_dbm - predicted_dbm) / 10.0), 0.0, 1.0)

    def fit(self, measured_dbm, predicted_dbm, groups=None, *, provenance: dict | None = None) -> SpectralDetector:
        """Learn the normal statistics of both residuals from normal snapshots (N, n_su, K; NaN = not
        usable), and the threshold at ``target_far`` of the training scores. ``groups`` (N, K): the index
        of the legitimate transmitter each sub-band is allocated to (−1: idle); None: see the module."""
        m, p = self._check(measured_dbm, predicted_dbm)
        g = self._groups(groups, p)
        f = self.legit_fraction(p)
        self.contrast_stats = self._location_scale_fit(contrast(m, p, g, self.leakage_db, self.noise_dbm), f,
                                                       self._leakage_amplification(m, p))  # fmt: skip
        r, fa, _ = allocation_residual(m, p, g, self.noise_dbm)
        n_tx = r.shape[2]  # pooled over transmitters: (N·T, n_su, 1)
        pool = lambda x: x.transpose(0, 2, 1).reshape(-1, self.n_su, 1)  # noqa: E731
        self.allocation_stats = self._location_scale_fit(pool(r), pool(fa))
        con, alloc = self._component_scores(m, p, g)
        ref_con, ref_alloc = (np.sort(x[np.isfinite(x)]) for x in (con, alloc))
        if ref_con.size < 10 or ref_alloc.size < 10:
            raise DetectorError(f"only {min(ref_con.size, ref_alloc.size)} scorable normal "
                                "snapshots: need at least 10")  # fmt: skip
        self._set_references(ref_con, ref_alloc, None)
        scores = self.fuse(con, alloc)
        self._set_references(ref_con, ref_alloc, np.sort(scores[np.isfinite(scores)]))
        self.threshold = quantile_threshold(self.train_scores, self.target_far)
        self.provenance = {"transmitters_seen": n_tx, **(provenance or {})}
        return self

    def _location_scale_fit(self, r: np.ndarray, f: np.ndarray, scale: np.ndarray | float = 1.0) -> _Stats:
        """Per (SU, column) location and scale of ``r`` (N, n_su, k) in each state, shrunk to the SU's pool;
        the scale of the deviations over ``scale`` (the leakage amplification: a bias, such as an SU's own
        noise floor, is not amplified, its scatter is)."""
        scale = np.broadcast_to(scale, r.shape)
        n, k = r.shape[1], r.shape[2]
        mu, sig = np.zeros((n, k, 2)), np.ones((n, k, 2))
        for s, sel_f in ((NOISE, f < 0.2), (SIGNAL, f > 0.8)):
            sel = np.where(sel_f & np.isfinite(r), r, np.nan)  # (N, n, k)
            cnt = np.isfinite(sel).sum(axis=0)  # (n, k)
            with warnings.catch_warnings():  # all-NaN cells (a state an SU never saw) fall back below
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(sel, axis=0)
                mad = 1.4826 * np.nanmedian(np.abs(sel - med) / scale, axis=0)
                flat = sel.transpose(1, 0, 2).reshape(n, -1)  # the (SU, state) pool over columns
                flat_scale = scale.transpose(1, 0, 2).reshape(n, -1)
                pool_med = np.nanmedian(flat, axis=1)
                pool_mad = 1.4826 * np.nanmedian(np.abs(flat - pool_med[:, None]) / flat_scale, axis=1)
            glob_med = np.nanmedian(sel) if np.isfinite(sel).any() else 0.0
            glob_mad = 1.4826 * np.nanmedian(np.abs(sel - glob_med) / scale) if np.isfinite(sel).any() else 1.0
            pool_med = np.where(np.isfinite(pool_med), pool_med, glob_med)
            pool_mad = np.where(np.isfinite(pool_mad), pool_mad, glob_mad)
            lam = cnt / (cnt + self.shrink_n)  # weight of the cell's own estimate
            med = np.where(cnt > 0, med, 0.0)
            mad = np.where(cnt > 1, mad, 0.0)
            mu[:, :, s] = lam * med + (1 - lam) * pool_med[:, None]
            sig[:, :, s] = np.maximum(np.sqrt(lam * mad**2 + (1 - lam) * pool_mad[:, None] ** 2), self.min_sigma_db)
        return _Stats(mu, sig)

    def _set_references(self, contrast_ref: np.ndarray, allocation_ref: np.ndarray, fused_ref: np.ndarray | None) -> None:
        """The sorted normal scores each component, and the fused score, are put on the normal scale against."""
        self._contrast_scale, self._allocation_scale = NormalScale.of(contrast_ref), NormalScale.of(allocation_ref)
        self._fused_scale = None if fused_ref is None else NormalScale.of(fused_ref)

    # ------------------------------------------------------------------ scoring

    def _leakage_amplification(self, m: np.ndarray, p: np.ndarray) -> np.ndarray:
        return leakage_amplification(m, p, self.leakage_db, self.noise_dbm)

    def _check(self, measured_dbm, predicted_dbm) -> tuple[np.ndarray, np.ndarray]:
        m = np.asarray(measured_dbm, dtype=np.float64)
        p = np.asarray(predicted_dbm, dtype=np.float64)
        want = (self.n_su, self.subbands)
        if m.ndim == 2:
            m, p = m[None], p[None] if p.ndim == 2 else p
        if m.shape[1:] != want or p.shape != m.shape:
            raise DetectorError(f"measured/predicted must be (N, {want[0]}, {want[1]}), got {m.shape} and {p.shape}")
        return m, p

    def _groups(self, groups, predicted: np.ndarray) -> np.ndarray:
        """(N, K) transmitter per sub-band; without ``groups``, the sub-bands where the twin expects any SU
        to hear more legitimate power than noise, as one allocation."""
        n = predicted.shape[0]
        if groups is None:
            busy = (self.legit_fraction(np.fmax(predicted, -300.0)) > 0.5).any(axis=1)
            return np.where(busy, 0, -1).astype(np.int64)
        g = np.asarray(groups, dtype=np.int64)
        g = g[None] if g.ndim == 1 else g
        if g.shape != (n, self.subbands):
            raise DetectorError(f"groups must be (N, {self.subbands}) like the snapshots, got {g.shape}")
        return g

    def _glrt(self, z: np.ndarray, inv: np.ndarray) -> np.ndarray:
        """T (N, k, C): the one-sided GLRT of a point source at each cell in each column of z (N, n_su, k).

        Cells last, and in place: per snapshot this is the spectral test's bulk (~20 000 values per
        component), and sums over the columns then run along the outer axis, which numpy vectorises."""
        a = (z * inv).transpose(0, 2, 1) @ self._gain_t  # (N, k, n_su) @ (n_su, C)
        b = (inv * inv).transpose(0, 2, 1) @ self._gain_sq_t
        np.maximum(a, 0.0, out=a)
        a *= a
        b += _TINY  # b = 0 only where a column has no usable SU, and a = 0 there: T = 0
        a /= b
        return a

    def _t(self, m: np.ndarray, p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contrast T (N, K, C), allocation T (N, T, C))."""
        if not self.fitted:
            raise DetectorError("spectral detector not fitted")
        f = self.legit_fraction(p)
        zc, ic = self.contrast_stats.z_and_template_scale(contrast(m, p, g, self.leakage_db, self.noise_dbm), f,
                                                          _mw(p), self.z_cap,
                                                          self._leakage_amplification(m, p))  # fmt: skip
        r, fa, pt = allocation_residual(m, p, g, self.noise_dbm)
        za, ia = self.allocation_stats.z_and_template_scale(r, fa, pt, self.z_cap)
        t = self._glrt(np.concatenate((zc, za), axis=2), np.concatenate((ic, ia), axis=2))  # one product for both
        k = zc.shape[2]
        return t[:, :k], t[:, k:]

    def _cell_evidence(self, tc: np.ndarray, ta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Evidence per cell (…, C) of each component: Σ_b max(0, T_cb − κ) and max_t T_ct."""
        return np.maximum(tc - self.penalty, 0.0).sum(axis=-2), ta.max(axis=-2)

    def _component_scores(self, m, p, g, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(contrast score, allocation score) per snapshot, the maximum of each's evidence over cells."""
        n = m.shape[0]
        con, alloc = np.empty(n), np.empty(n)
        for i in range(0, n, chunk):
            sl = slice(i, i + chunk)
            ec, ea = self._cell_evidence(*self._t(m[sl], p[sl], g[sl]))
            con[sl], alloc[sl] = ec.max(axis=1), ea.max(axis=1)
        usable = (np.isfinite(m) & np.isfinite(p)).all(axis=2).sum(axis=1) >= 2
        return np.where(usable, con, np.nan), np.where(usable, alloc, np.nan)

    def component_scores(self, measured_dbm, predicted_dbm, groups=None) -> tuple[np.ndarray, np.ndarray]:
        """(N,) each component's score on the normal scale (against its own training scores)."""
        m, p = self._check(measured_dbm, predicted_dbm)
        con, alloc = self._component_scores(m, p, self._groups(groups, p))
        return self._contrast_scale(con), self._allocation_scale(alloc)

    def fuse(self, contrast_score: np.ndarray, allocation_score: np.ndarray, fusion: str | None = None) -> np.ndarray:
        """The components' raw scores, each on the normal scale, fused by ``fusion`` (default: the detector's)."""
        zc, za = self._contrast_scale(contrast_score), self._allocation_scale(allocation_score)
        return fuse_normal(zc, za, fusion or self.fusion)

    def score(self, measured_dbm, predicted_dbm, groups=None) -> np.ndarray:
        """(N,) the fused score; NaN with fewer than 2 usable SUs."""
        m, p = self._check(measured_dbm, predicted_dbm)
        return self.fuse(*self._component_scores(m, p, self._groups(groups, p)))

    def evidence(self, measured_dbm, predicted_dbm, groups=None) -> SpectralEvidence:
        """One snapshot (n_su, K): score, best cell, affected sub-bands, from the component with the larger
        normal-scale score."""
        m, pr = self._check(measured_dbm, predicted_dbm)
        g = self._groups(groups, pr)
        tc, ta = (x[0] for x in self._t(m, pr, g))
        ec, ea = self._cell_evidence(tc, ta)
        zc, za = float(self._contrast_scale(ec.max())), float(self._allocation_scale(ea.max()))
        score = float(fuse_normal(zc, za, self.fusion))
        m, pr, g = m[0], pr[0], g[0]
        usable = int((np.isfinite(m) & np.isfinite(pr)).all(axis=1).sum())
        if usable < 2:
            return SpectralEvidence(math.nan, -1, np.zeros(self.subbands), (), ec)
        by_allocation = za > zc
        c = int(np.argmax(ea if by_allocation else ec))
        tb, tt = tc[:, c], ta[:, c]
        return SpectralEvidence(score, c, tb, self._affected(c, tb, tt, g, m, pr, by_allocation), ea if by_allocation else ec,
                                "allocation" if by_allocation else "contrast",
                                int(np.argmax(tt)) if by_allocation else -1)  # fmt: skip

    def _affected(self, c: int, tb: np.ndarray, tt: np.ndarray, g: np.ndarray, m: np.ndarray, p: np.ndarray,
                  by_allocation: bool = False) -> tuple[int, ...]:  # fmt: skip
        """The sub-bands an emitter at cell ``c`` is in: those the contrast names there, and the whole
        allocation of each transmitter whose allocation T there is above ``affected_t`` where the contrast
        names none of its sub-bands (an emitter over all of that allocation: deceptive, or wideband in the
        sub-bands in use) and whose fitted EIRP at ``c`` (the median over the allocation) is within
        ``affected_within_db`` of the strongest sub-band the contrast names (a link the twin under-predicts
        at the SU next to a strong tone lifts that transmitter's allocation past ``affected_t`` too, by far
        less power; a wideband emitter sends as much there as in the idle sub-bands). When the allocation
        component decided (``by_allocation``), the contrast's sub-bands are kept only within
        ``affected_within_db`` of the best transmitter's allocation: at a cell chosen for that allocation the
        contrast's strays are other links' errors. Where nothing is past ``affected_t``: the sub-band, or
        the allocation, of the strongest T."""
        seen, eirp = self._contrast_affected(c, tb, m, p)
        if by_allocation and seen.size and tt.size:
            best = np.flatnonzero(g == int(np.argmax(tt)))
            if best.size:
                keep = eirp >= np.median(self._eirp_at(c, m, p, best)) - self.affected_within_db
                seen, eirp = seen[keep], eirp[keep]
        out = set(int(b) for b in seen)
        floor = eirp.max() - self.affected_within_db if seen.size else -math.inf
        for t in np.flatnonzero(tt > self.affected_t):
            alloc = np.flatnonzero(g == t)
            if not np.intersect1d(seen, alloc).size and np.median(self._eirp_at(c, m, p, alloc)) >= floor:
                out.update(int(b) for b in alloc)
        if not out:
            out = {int(np.argmax(tb))} if tb.max(initial=0.0) >= tt.max(initial=0.0) else set(int(b) for b in np.flatnonzero(g == np.argmax(tt)))
        return tuple(sorted(out))

    def _contrast_affected(self, c: int, tb: np.ndarray, m: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the sub-bands whose contrast T at cell ``c`` is above ``affected_t`` and whose fitted EIRP there is
        within ``affected_within_db`` of the strongest, their EIRP): the twin's error on a link lifts all
        of that transmitter's sub-bands a little; in mW that is far less than a jammer adds to its own."""
        cand = np.flatnonzero(tb > self.affected_t)
        eirp = self._eirp_at(c, m, p, cand)
        if cand.size > 1:
            keep = eirp >= eirp.max() - self.affected_within_db
            cand, eirp = cand[keep], eirp[keep]
        return cand, eirp

    def _eirp_at(self, c: int, m: np.ndarray, p: np.ndarray, subbands: np.ndarray) -> np.ndarray:
        """The linear-domain least-squares EIRP (dBm) of a source at cell ``c`` in each of ``subbands``."""
        mm, pp = m[:, subbands], p[:, subbands]
        ok = np.isfinite(mm) & np.isfinite(pp)
        pm = np.power(10.0, np.where(ok, mm, 0.0) / 10)
        e = np.where(ok, np.maximum(pm - np.power(10.0, np.where(ok, pp, 0.0) / 10), 0.0), 0.0)
        w = np.where(ok, 1.0 / (pm * pm), 0.0)
        g = self.gain_lin[c][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return 10 * np.log10(np.maximum((w * e * g).sum(axis=0) / (w * g * g).sum(axis=0), 1e-30))

    def normal_scores(self, scores) -> np.ndarray:
        """Scores on the normal scale (z ~ N(0, 1) in normal operation), as the CUSUM integrates them: the
        fused score of two normal-scale components is not quite on it, so again against its training scores."""
        if self.train_scores is None:
            raise DetectorError("spectral detector not fitted")
        return self._fused_scale(scores)

    # ------------------------------------------------------------------ where and how strong

    def locate(self, measured_dbm, predicted_dbm, subbands) -> SourceFit | None:
        """The point source (cell, EIRP) that best explains the excess power in ``subbands`` (linear
        domain, relative weights 1/P²: the localiser's fit, one EIRP per sub-band, misfits summed)."""
        m = np.asarray(measured_dbm, dtype=np.float64)
        p = np.asarray(predicted_dbm, dtype=np.float64)
        sb = np.asarray(sorted(subbands), dtype=np.intp)
        if sb.size == 0:
            return None
        mm, pp = m[:, sb], p[:, sb]  # (n, |A|)
        ok = np.isfinite(mm) & np.isfinite(pp)
        if ok.all(axis=1).sum() < 2:
            return None
        pm = np.power(10.0, np.where(ok, mm, 0.0) / 10)
        pq = np.power(10.0, np.where(ok, pp, 0.0) / 10)
        e = np.where(ok, np.maximum(pm - pq, 0.0), 0.0)
        w = np.where(ok, 1.0 / (pm * pm), 0.0)
        a = self.gain_lin @ (w * e)  # (C, |A|)
        b = self.gain_sq @ w
        with np.errstate(divide="ignore", invalid="ignore"):
            pw = np.where(b > 0, np.maximum(a / b, 0.0), 0.0)
        cost = ((w * e * e).sum(axis=0)[None, :] - 2 * pw * a + pw * pw * b).sum(axis=1)
        c = int(np.argmin(cost))
        per = np.full(self.subbands, -np.inf)
        with np.errstate(divide="ignore"):
            per[sb] = 10 * np.log10(pw[c])
            total = float(10 * np.log10(pw[c].sum()))
        x, y = self.positions_m[c][:2]
        return SourceFit(c, (float(x), float(y)), total, per, cost)

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        if not self.fitted:
            raise DetectorError("spectral detector not fitted")
        npz, meta = model_paths(path)
        npz.parent.mkdir(parents=True, exist_ok=True)
        with open(npz, "wb") as f:
            np.savez(f, positions_m=self.positions_m, gain_lin=self.gain_lin, noise_dbm=self.noise_dbm,
                     contrast_mu_db=self.contrast_stats.mu_db, contrast_sigma_db=self.contrast_stats.sigma_db,
                     allocation_mu_db=self.allocation_stats.mu_db, allocation_sigma_db=self.allocation_stats.sigma_db,
                     ref_contrast=self.ref_contrast, ref_allocation=self.ref_allocation,
                     train_scores=self.train_scores)  # fmt: skip
        doc = {"format": FORMAT, "kind": self.kind, "threshold": self.threshold, "provenance": self.provenance,
               "params": {"penalty": self.penalty, "affected_t": self.affected_t, "target_far": self.target_far,
                          "affected_within_db": self.affected_within_db, "z_cap": self.z_cap,
                          "leakage_db": self.leakage_db, "fusion": self.fusion,
                          "min_sigma_db": self.min_sigma_db,
                          "shrink_n": self.shrink_n}}  # fmt: skip
        meta.write_text(json.dumps(doc, indent=1, default=str))
        return meta

    @classmethod
    def load(cls, path: str | Path) -> SpectralDetector:
        npz, meta = model_paths(path)
        try:
            doc = json.loads(meta.read_text())
            if doc.get("format") != FORMAT:
                raise DetectorError(f"{meta}: not a spectral detector of this version ({doc.get('format')!r}, this "
                                    f"release reads {FORMAT!r}): learn it again")  # fmt: skip
            with np.load(npz, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            det = cls(a["positions_m"], a["gain_lin"], a["noise_dbm"], **doc["params"])
            det.contrast_stats = _Stats(a["contrast_mu_db"], a["contrast_sigma_db"])
            det.allocation_stats = _Stats(a["allocation_mu_db"], a["allocation_sigma_db"])
            det._set_references(a["ref_contrast"], a["ref_allocation"], a["train_scores"])
            det.threshold, det.provenance = float(doc["threshold"]), doc.get("provenance", {})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DetectorError(f"{meta}: cannot load the spectral detector: {e}") from None
        return det


def fuse_normal(z_contrast: np.ndarray, z_allocation: np.ndarray, fusion: str) -> np.ndarray:
    """Two normal-scale component scores as one: the larger (``max``), their sum (``sum``), or the soft
    maximum log(e^a + e^b) (``softmax``: the larger, lifted where both see something)."""
    if fusion == "max":
        return np.fmax(z_contrast, z_allocation)
    if fusion == "sum":
        return z_contrast + z_allocation
    if fusion == "softmax":
        with np.errstate(invalid="ignore"):  # NaN (not scorable) stays NaN
            return np.logaddexp(z_contrast, z_allocation)
    raise DetectorError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
