"""Spectral detection: a point-source test over the twin's cells × sub-bands of the residual matrix.

A wideband detector sees one number per SU; a 10 dBm jammer in one of 16 sub-bands raises that
number by a fraction of a dB where the legitimate signal is strong, and a deceptive emitter that
follows a legitimate transmitter's allocation hides in the total entirely. Per sub-band it stands out.

**Residual matrix.** Per snapshot and SU j, sub-band b: r_jb = measured − predicted (dB), the
prediction from the scheduler's allocations (``central.twin.predictor.Predictor.predict_subbands``).

**Normal statistics per SU, sub-band and allocation state.** Where SU j hears a legitimate
transmitter in sub-band b, r carries the twin's model error, several dB; where it hears only noise
(an idle sub-band, or a transmitter it cannot hear), the receiver's noise-floor error and the
estimator's scatter, a fraction of a dB. The state is read off the prediction as the legitimate
fraction f = 1 − noise / prediction: location and scale of the noise state (f < 0.2) and of the
signal state (f > 0.8) are learned per (j, b) from normal snapshots (median and 1.4826·MAD, shrunk
towards the SU's pool where few samples), and blended for any f: μ = (1 − f)·μ_n + f·μ_s,
σ² = σ_n² + (f·σ_s)². (A hard switch fails where the twin puts a transmitter just under the noise
and the world has it 10 dB louder.)

**Two residuals.** The *level* residual r is the one above. The *contrast* residual (:func:`contrast`,
needs the allocations as ``groups``) takes, in each transmitter's allocation, the median over that
allocation at the same SU off every one of its sub-bands, and judges an idle sub-band against the
leakage of what was measured next to it. Why: the twin's error on a link is the same in all of a
transmitter's sub-bands and, where the world has a path the twin lacks, tens of dB: in the level
residual that is a "point source next to the SU in many sub-bands", the commonest false alarm. The
contrast removes it, and keeps a jammer that occupies some of the transmitter's sub-bands or an idle
one; an emitter that follows the whole allocation (deceptive) or a wideband one stays visible only in
the level residual. Each is scored (below) and put on the normal scale against its own training
scores; the score is the larger of the two.

**The test.** z_jb = (r_jb − μ_jb) / σ_jb is ~N(0, 1) in normal operation. A point source of EIRP
a_b in sub-band b at cell c adds a_b·g_cj (mW) at SU j; linearised around the bias-corrected
prediction Q_jb = 10^((P̂_jb + μ_jb)/10), that is a rise of a_b·t_cjb in z, with template
t_cjb = g_cj / (Q_jb · ln(10)/10 · σ_jb). The generalised likelihood ratio of "a source at c in b"
(a_b ≥ 0 fitted in closed form) is

    T_cb = max(Σ_j z_jb t_cjb, 0)² / Σ_j t_cjb²        (≈ χ²₁ under H0, one-sided)

and a jammer occupies an unknown set of sub-bands, so the evidence at c is Σ_b max(0, T_cb − κ):
the soft threshold κ (``penalty``) is what a sub-band must add to be counted, the GLRT over sets of
sub-bands with a per-sub-band cost. A component's score is the maximum over cells. Two
(C × n_su) × (n_su × K) matrix products per component and snapshot: ~1300 cells (the maps' cells
thinned to 1 m) × 12 SUs × 16 sub-bands, about a millisecond for both on one core (``bench/spectral.py``).

Why z-space for detection and not the linear-domain least squares of
``central.detection.localise``: under H0 the linear excess of a dB-Gaussian error is log-normal
(a +2σ error at σ = 3 dB is +300 % in mW), which the linear test mistakes for a jammer next to an SU;
z is Gaussian by construction. For *where* and *how strong*, :meth:`SpectralDetector.locate` uses the
linear-domain least squares with relative weights (the localiser's, summed over the affected
sub-bands): the z-linearisation saturates for a strong source and would bias its EIRP.

**Affected sub-bands** (of the component with the stronger evidence) are those with T at the best
cell above ``affected_t`` (default 9: a one-sided χ²₁ tail of 1.3e-3 per sub-band; κ, which the
score uses, may be lower: a sub-band can add to the evidence without being named) whose fitted EIRP at that cell (linear domain) is within
``affected_within_db`` of the strongest. Why the second rule: the twin's error on a link is the same
in every sub-band of that transmitter, so a link that happens to be under-predicted lifts all of its
sub-bands together, a little: in mW that is far less than a jammer adds to its own (T alone cannot
tell, since an idle sub-band's T is on another scale than a busy one's).

Nothing here imports ``node``, ``central`` or ``calibration``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.band_plan import SUBBAND_LEAKAGE_DB, neighbour_sum
from models.detectors.base import DetectorError, model_paths, normal_quantile, quantile_threshold

BETA = math.log(10.0) / 10.0  # d(ln mW) / d(dB)
NOISE, SIGNAL = 0, 1
FORMAT = "rftwin-spectral-detector/1"


def contrast(measured_dbm: np.ndarray, predicted_dbm: np.ndarray, groups: np.ndarray, leakage_db: float,
             noise_dbm: np.ndarray) -> np.ndarray:  # fmt: skip
    """The contrast residual (N, n_su, K): each sub-band of a legitimate transmitter's allocation against
    the other sub-bands of that allocation at the same SU, and the leakage from the neighbours as measured.

    Why: the twin's error on a link (a path the world has and the twin lacks, a clutter object in
    between) is the same in every sub-band of that transmitter, and can be tens of dB where the twin
    sees no path. The median residual over the allocation at that SU removes it; a jammer in some of its
    sub-bands stands out against the rest. A one-sub-band allocation has no reference: NaN (not used).
    An idle sub-band keeps its residual, but against a prediction whose leakage (``leakage_db`` of each
    neighbour, what the node's estimator leaks) is that of the neighbours' *measured* power: a link
    the twin under-predicts by 30 dB leaks 30 dB more into the idle sub-band next to it. (An emitter that
    follows an allocation is removed with it: the level component sees that one.)"""
    m = np.asarray(measured_dbm, dtype=np.float64)
    p = np.asarray(predicted_dbm, dtype=np.float64)
    pm, pp = np.power(10.0, np.nan_to_num(m, nan=-300.0) / 10), np.power(10.0, np.nan_to_num(p, nan=-300.0) / 10)
    leak = 10 ** (leakage_db / 10)

    noise = np.power(10.0, np.asarray(noise_dbm, dtype=np.float64) / 10)  # (K,): what leaks is the signal above it
    corrected = np.maximum(pp + leak * (neighbour_sum(np.maximum(pm - noise, 0.0)) - neighbour_sum(np.maximum(pp - noise, 0.0))),
                           noise)  # fmt: skip
    idle = (np.asarray(groups) < 0)[:, None, :]  # busy sub-bands keep the plain residual: their error is their own
    out = np.where(np.isfinite(m) & np.isfinite(p), m - np.where(idle, 10 * np.log10(corrected), p), np.nan)
    for i in range(out.shape[0]):
        gi = groups[i]
        for t in np.unique(gi[gi >= 0]):
            sb = np.flatnonzero(gi == t)
            if sb.size < 2:
                out[i][:, sb] = np.nan
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[i][:, sb] -= np.nanmedian(out[i][:, sb], axis=1, keepdims=True)
    return out


@dataclass(frozen=True)
class SpectralEvidence:
    """One snapshot through the spectral test."""

    score: float  # the fused score (normal scale of the stronger component); NaN when it cannot be scored
    cell: int  # best cell (index into the detector's cells); −1 without a score
    subband_t: np.ndarray  # (K,) T_cb at the best cell
    affected: tuple[int, ...]  # sub-bands with T above affected_t at the best cell
    cell_scores: np.ndarray  # (C,) the evidence at every cell (for the likelihood map)


@dataclass(frozen=True)
class SourceFit:
    """Where the emitter is and how strong, from the linear-domain fit over the affected sub-bands."""

    cell: int
    position_m: tuple[float, float]
    eirp_dbm: float  # summed over the affected sub-bands; −inf when no excess
    subband_eirp_dbm: np.ndarray  # (K,) per sub-band at the best cell (−inf outside the affected set)
    cost: np.ndarray  # (C,) weighted misfit (squared relative errors), for the likelihood over cells


class SpectralDetector:
    kind = "spectral"

    def __init__(self, cell_positions_m, gain_lin, noise_dbm, *, penalty: float = 6.0, affected_t: float = 9.0,
                 affected_within_db: float = 10.0, min_sigma_db: float = 0.1,
                 shrink_n: float = 30.0, target_far: float = 0.01, z_cap: float | None = None,
                 leakage_db: float = SUBBAND_LEAKAGE_DB):  # fmt: skip
        self.positions_m = np.asarray(cell_positions_m, dtype=np.float64)
        g = np.asarray(gain_lin, dtype=np.float64)
        if g.ndim != 2 or g.shape[0] != self.positions_m.shape[0]:
            raise DetectorError(f"gain_lin {g.shape} does not match {self.positions_m.shape[0]} cell positions")
        self.gain_lin = np.ascontiguousarray(g)  # (C, n_su)
        self.gain_sq = self.gain_lin**2
        self.noise_dbm = np.asarray(noise_dbm, dtype=np.float64)  # (K,) the twin's noise floor per sub-band
        if not 0 < target_far < 1:
            raise DetectorError(f"target_far must be in (0, 1), got {target_far}")
        self.penalty = float(penalty)
        self.affected_t = float(affected_t)
        self.affected_within_db = float(affected_within_db)
        self.min_sigma_db = float(min_sigma_db)
        self.shrink_n, self.target_far = float(shrink_n), float(target_far)
        self.z_cap = None if z_cap is None else float(z_cap)
        self.leakage_db = float(leakage_db)
        self.mu_db: np.ndarray | None = None  # (n_su, K, 2) of the level residual, [noise, signal] state
        self.sigma_db: np.ndarray | None = None
        self.mu_c_db: np.ndarray | None = None  # the same of the contrast residual (fitted with groups)
        self.sigma_c_db: np.ndarray | None = None
        self.ref_level: np.ndarray | None = None  # sorted training scores of each component
        self.ref_contrast: np.ndarray | None = None
        self.threshold: float | None = None
        self.train_scores: np.ndarray | None = None  # sorted, for normal_scores
        self.provenance: dict = {}

    @property
    def n_su(self) -> int:
        return self.gain_lin.shape[1]

    @property
    def subbands(self) -> int:
        return self.noise_dbm.shape[0]

    @property
    def fitted(self) -> bool:
        return self.mu_db is not None

    # ------------------------------------------------------------------ normal statistics

    def legit_fraction(self, predicted_dbm: np.ndarray) -> np.ndarray:
        """f = the part of the predicted power that legitimate transmitters make (1 − noise / prediction)."""
        return np.clip(1.0 - np.power(10.0, (self.noise_dbm - predicted_dbm) / 10.0), 0.0, 1.0)

    def fit(self, measured_dbm, predicted_dbm, groups=None, *, provenance: dict | None = None) -> SpectralDetector:
        """Learn μ, σ per (SU, sub-band) of the noise state (legitimate fraction f < 0.2) and of the signal
        state (f > 0.8), for the level and (with ``groups``) the contrast residual, from normal snapshots
        (N, n_su, K; NaN = not usable), and the threshold at ``target_far`` of the training scores.
        ``groups`` (N, K): the index of the legitimate transmitter each sub-band is allocated to (−1: idle)."""
        m, p = self._check(measured_dbm, predicted_dbm)
        g = self._groups(groups, m.shape[0])
        f = self.legit_fraction(p)
        self.mu_db, self.sigma_db = self._location_scale_fit(m - p, f)
        self.mu_c_db, self.sigma_c_db = (self._location_scale_fit(contrast(m, p, g, self.leakage_db, self.noise_dbm), f)
                                         if g is not None else (None, None))  # fmt: skip
        level, con = self._component_scores(m, p, g)
        self.ref_level = np.sort(level[np.isfinite(level)])
        self.ref_contrast = None if con is None else np.sort(con[np.isfinite(con)])
        if self.ref_level.size < 10:
            raise DetectorError(f"only {self.ref_level.size} scorable normal snapshots: need at least 10")
        scores = self._fuse(level, con)
        finite = np.sort(scores[np.isfinite(scores)])
        self.train_scores = finite
        self.threshold = quantile_threshold(finite, self.target_far)
        self.provenance = dict(provenance or {})
        return self

    def _location_scale_fit(self, r: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, k = self.n_su, self.subbands
        mu, sig = np.zeros((n, k, 2)), np.ones((n, k, 2))
        for s, sel_f in ((NOISE, f < 0.2), (SIGNAL, f > 0.8)):
            sel = np.where(sel_f & np.isfinite(r), r, np.nan)  # (N, n, K)
            cnt = np.isfinite(sel).sum(axis=0)  # (n, K)
            with warnings.catch_warnings():  # all-NaN cells (a state an SU never saw) fall back below
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(sel, axis=0)
                mad = 1.4826 * np.nanmedian(np.abs(sel - med), axis=0)
                flat = sel.transpose(1, 0, 2).reshape(n, -1)  # the (SU, state) pool over sub-bands
                pool_med = np.nanmedian(flat, axis=1)
                pool_mad = 1.4826 * np.nanmedian(np.abs(flat - pool_med[:, None]), axis=1)
            glob_med = np.nanmedian(sel) if np.isfinite(sel).any() else 0.0
            glob_mad = 1.4826 * np.nanmedian(np.abs(sel - glob_med)) if np.isfinite(sel).any() else 1.0
            pool_med = np.where(np.isfinite(pool_med), pool_med, glob_med)
            pool_mad = np.where(np.isfinite(pool_mad), pool_mad, glob_mad)
            lam = cnt / (cnt + self.shrink_n)  # weight of the cell's own estimate
            med = np.where(cnt > 0, med, 0.0)
            mad = np.where(cnt > 1, mad, 0.0)
            mu[:, :, s] = lam * med + (1 - lam) * pool_med[:, None]
            sig[:, :, s] = np.maximum(np.sqrt(lam * mad**2 + (1 - lam) * pool_mad[:, None] ** 2), self.min_sigma_db)
        return mu, sig

    # ------------------------------------------------------------------ scoring

    def _check(self, measured_dbm, predicted_dbm) -> tuple[np.ndarray, np.ndarray]:
        m = np.asarray(measured_dbm, dtype=np.float64)
        p = np.asarray(predicted_dbm, dtype=np.float64)
        want = (self.n_su, self.subbands)
        if m.ndim == 2:
            m, p = m[None], p[None] if p.ndim == 2 else p
        if m.shape[1:] != want or p.shape != m.shape:
            raise DetectorError(f"measured/predicted must be (N, {want[0]}, {want[1]}), got {m.shape} and {p.shape}")
        return m, p

    def _groups(self, groups, n: int) -> np.ndarray | None:
        if groups is None:
            return None
        g = np.asarray(groups, dtype=np.int64)
        g = g[None] if g.ndim == 1 else g
        if g.shape != (n, self.subbands):
            raise DetectorError(f"groups must be (N, {self.subbands}) like the snapshots, got {g.shape}")
        return g

    def _z_and_template_scale(self, m: np.ndarray, p: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """z (N, n, K; 0 where not usable) and 1 / (Q·β·σ) (N, n, K; 0 where not usable), of the level
        residual, or of the contrast residual when ``groups`` are given."""
        if self.mu_db is None:
            raise DetectorError("spectral detector not fitted")
        f = self.legit_fraction(p)
        mu_db, sigma_db = (self.mu_db, self.sigma_db) if groups is None else (self.mu_c_db, self.sigma_c_db)
        mu = (1 - f) * mu_db[..., NOISE] + f * mu_db[..., SIGNAL]
        sig = np.sqrt(sigma_db[..., NOISE] ** 2 + (f * sigma_db[..., SIGNAL]) ** 2)
        r = m - p if groups is None else contrast(m, p, groups, self.leakage_db, self.noise_dbm)
        ok = np.isfinite(r)
        z = np.where(ok, (np.nan_to_num(r) - mu) / sig, 0.0)
        if self.z_cap is not None:
            z = np.minimum(z, self.z_cap)
        q_mw = np.power(10.0, (np.where(ok, p, 0.0) + mu) / 10.0)
        inv = np.where(ok, 1.0 / (q_mw * BETA * sig), 0.0)
        return z, inv

    def cell_t(self, measured_dbm, predicted_dbm, groups=None) -> np.ndarray:
        """T_cb (N, C, K): the one-sided GLRT of a point source at each cell in each sub-band (of the level
        residual; of the contrast residual with ``groups``)."""
        m, p = self._check(measured_dbm, predicted_dbm)
        z, inv = self._z_and_template_scale(m, p, self._groups(groups, m.shape[0]))
        a = np.einsum("cj,njk->nck", self.gain_lin, z * inv, optimize=True)
        b = np.einsum("cj,njk->nck", self.gain_sq, inv * inv, optimize=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(b > 0, np.maximum(a, 0.0) ** 2 / b, 0.0)
        return t

    def _component_scores(self, m, p, groups, chunk: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
        """(level score, contrast score or None) per snapshot: max over cells of Σ_b max(0, T_cb − κ)."""
        n = m.shape[0]
        level = np.empty(n)
        con = None if groups is None else np.empty(n)
        for i in range(0, n, chunk):
            sl = slice(i, i + chunk)
            level[sl] = np.maximum(self.cell_t(m[sl], p[sl]) - self.penalty, 0.0).sum(axis=2).max(axis=1)
            if con is not None:
                con[sl] = np.maximum(self.cell_t(m[sl], p[sl], groups[sl]) - self.penalty, 0.0).sum(axis=2).max(axis=1)
        usable = (np.isfinite(m) & np.isfinite(p)).all(axis=2).sum(axis=1) >= 2
        return np.where(usable, level, np.nan), None if con is None else np.where(usable, con, np.nan)

    def _fuse(self, level: np.ndarray, con: np.ndarray | None) -> np.ndarray:
        """The larger of the components on the normal scale (each against its own training scores)."""
        zl = normal_quantile(level, self.ref_level)
        if con is None or self.ref_contrast is None:
            return zl
        return np.fmax(zl, normal_quantile(con, self.ref_contrast))

    def score(self, measured_dbm, predicted_dbm, groups=None) -> np.ndarray:
        """(N,) the fused score (normal scale of the larger component); NaN with fewer than 2 usable SUs.
        Without ``groups`` only the level component (a detector fitted with groups then scores less well)."""
        m, p = self._check(measured_dbm, predicted_dbm)
        g = self._groups(groups, m.shape[0]) if self.ref_contrast is not None else None
        return self._fuse(*self._component_scores(m, p, g))

    def evidence(self, measured_dbm, predicted_dbm, groups=None) -> SpectralEvidence:
        """One snapshot (n_su, K): score, best cell, T per sub-band there, affected sub-bands, from the
        component (level or contrast) with the stronger evidence."""
        m = np.asarray(measured_dbm, dtype=np.float64)
        pr = np.asarray(predicted_dbm, dtype=np.float64)
        g = None if groups is None or self.ref_contrast is None else self._groups(groups, 1)
        comps = []
        for comp, ref in ((None, self.ref_level), (g, self.ref_contrast)):
            if ref is None or (comp is None and comps):
                continue
            t = self.cell_t(m, pr, comp)[0]  # (C, K)
            cells = np.maximum(t - self.penalty, 0.0).sum(axis=1)
            comps.append((float(normal_quantile(np.array([cells.max()]), ref)[0]), t, cells))
        score = max(c[0] for c in comps)
        # where and which sub-bands: the contrast's when it alone is past the threshold (it has the leakage
        # and the links' errors taken out), else the stronger component's
        con = comps[1] if len(comps) > 1 else None
        _, t, cells = con if con is not None and self.threshold is not None and con[0] > self.threshold else max(comps, key=lambda c: c[0])
        zc = score
        usable = int((np.isfinite(m) & np.isfinite(pr)).all(axis=1).sum())
        if usable < 2:
            return SpectralEvidence(math.nan, -1, np.zeros(self.subbands), (), cells)
        c = int(np.argmax(cells))
        tb = t[c]
        cand = np.flatnonzero(tb > self.affected_t)
        if cand.size > 1:  # keep those whose fitted EIRP at c is within affected_within_db of the strongest
            eirp = self._eirp_at(c, m, pr, cand)
            cand = cand[eirp >= eirp.max() - self.affected_within_db]
        affected = tuple(int(b) for b in cand)
        if not affected and cells[c] > 0:
            affected = (int(np.argmax(tb)),)
        return SpectralEvidence(zc, c, tb, affected, cells)

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
        fused score is already on it, up to the max of two components, so again against its training scores."""
        if self.train_scores is None:
            raise DetectorError("spectral detector not fitted")
        return normal_quantile(scores, self.train_scores)

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
            extra = {} if self.ref_contrast is None else {"mu_c_db": self.mu_c_db, "sigma_c_db": self.sigma_c_db,
                                                          "ref_contrast": self.ref_contrast}  # fmt: skip
            np.savez(f, positions_m=self.positions_m, gain_lin=self.gain_lin, noise_dbm=self.noise_dbm,
                     mu_db=self.mu_db, sigma_db=self.sigma_db, train_scores=self.train_scores, ref_level=self.ref_level,
                     **extra)  # fmt: skip
        doc = {"format": FORMAT, "kind": self.kind, "threshold": self.threshold, "provenance": self.provenance,
               "params": {"penalty": self.penalty, "affected_t": self.affected_t, "target_far": self.target_far,
                          "affected_within_db": self.affected_within_db, "z_cap": self.z_cap,
                          "leakage_db": self.leakage_db,
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
                raise DetectorError(f"{meta}: not a spectral detector ({doc.get('format')!r})")
            with np.load(npz, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as e:
            raise DetectorError(f"{meta}: cannot load the spectral detector: {e}") from None
        det = cls(a["positions_m"], a["gain_lin"], a["noise_dbm"], **doc["params"])
        det.mu_db, det.sigma_db, det.train_scores, det.ref_level = a["mu_db"], a["sigma_db"], a["train_scores"], a["ref_level"]
        det.mu_c_db, det.sigma_c_db, det.ref_contrast = a.get("mu_c_db"), a.get("sigma_c_db"), a.get("ref_contrast")
        det.threshold, det.provenance = float(doc["threshold"]), doc.get("provenance", {})
        return det
