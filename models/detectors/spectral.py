"""Spectral detection: a point-source test over the twin's cells × sub-bands of the residual matrix.

A wideband detector sees one number per SU; a 10 dBm jammer in one of 16 sub-bands raises that
number by a fraction of a dB where the legitimate signal is strong, and a deceptive emitter that
follows a legitimate transmitter's allocation hides in the total entirely. Per sub-band it stands out.

**Residual matrix.** Per snapshot and SU j, sub-band b: r_jb = measured − predicted (dB), the
prediction from the scheduler's allocations (``central.twin.predictor.Predictor.predict_subbands``).

**Normal statistics per SU, sub-band and allocation state.** A sub-band the scheduler gave a
legitimate transmitter that SU j hears (predicted more than ``signal_margin_db`` above the noise in
that sub-band) carries the twin's model error, several dB; an idle one, or one whose transmitter j
cannot hear, carries only the receiver's noise-floor error and the power estimator's scatter, a
fraction of a dB. So the state s_jb ∈ {noise, signal} is read off the prediction, and location μ_jbs
and scale σ_jbs of r are learned per (j, b, s) from normal snapshots (median and 1.4826·MAD),
shrunk towards the (j, s) pool where a cell of that table saw few samples.

**The test.** z_jb = (r_jb − μ_jbs) / σ_jbs is ~N(0, 1) in normal operation. A point source of EIRP
a_b in sub-band b at cell c adds a_b·g_cj (mW) at SU j; linearised around the bias-corrected
prediction Q_jb = 10^((P̂_jb + μ_jbs)/10), that is a rise of a_b·t_cjb in z, with template
t_cjb = g_cj / (Q_jb · ln(10)/10 · σ_jbs). The generalised likelihood ratio of "a source at c in b"
(a_b ≥ 0 fitted in closed form) is

    T_cb = max(Σ_j z_jb t_cjb, 0)² / Σ_j t_cjb²        (≈ χ²₁ under H0, one-sided)

and a jammer occupies an unknown set of sub-bands, so the evidence at c is Σ_b max(0, T_cb − κ):
the soft threshold κ (``penalty``) is what a sub-band must add to be counted, the GLRT over sets of
sub-bands with a per-sub-band cost. The score is the maximum over cells. Two (C × n_su) × (n_su × K)
matrix products per snapshot: ~1600 cells × 12 SUs × 16 sub-bands, a few hundred µs.

Why z-space for detection and not the linear-domain least squares of
``central.detection.localise``: under H0 the linear excess of a dB-Gaussian error is log-normal
(a +2σ error at σ = 3 dB is +300 % in mW), which the linear test mistakes for a jammer next to an SU;
z is Gaussian by construction. For *where* and *how strong*, :meth:`SpectralDetector.locate` uses the
linear-domain least squares with relative weights (the localiser's, summed over the affected
sub-bands): the z-linearisation saturates for a strong source and would bias its EIRP.

**Affected sub-bands** are those with T at the best cell above ``affected_t`` (default κ: the
sub-bands the score counted) whose fitted EIRP at that cell (linear domain) is within
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

from models.detectors.base import DetectorError, model_paths, normal_quantile, quantile_threshold

BETA = math.log(10.0) / 10.0  # d(ln mW) / d(dB)
NOISE, SIGNAL = 0, 1
FORMAT = "rftwin-spectral-detector/1"


@dataclass(frozen=True)
class SpectralEvidence:
    """One snapshot through the spectral test."""

    score: float  # max over cells of Σ_b max(0, T_cb − κ); NaN when the snapshot cannot be scored
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

    def __init__(self, cell_positions_m, gain_lin, noise_dbm, *, penalty: float = 6.0, affected_t: float | None = None,
                 affected_within_db: float = 10.0, signal_margin_db: float = 3.0, min_sigma_db: float = 0.1,
                 shrink_n: float = 30.0, target_far: float = 0.01):  # fmt: skip
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
        self.affected_t = self.penalty if affected_t is None else float(affected_t)
        self.affected_within_db = float(affected_within_db)
        self.signal_margin_db, self.min_sigma_db = float(signal_margin_db), float(min_sigma_db)
        self.shrink_n, self.target_far = float(shrink_n), float(target_far)
        self.mu_db: np.ndarray | None = None  # (n_su, K, 2)
        self.sigma_db: np.ndarray | None = None  # (n_su, K, 2)
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

    def state(self, predicted_dbm: np.ndarray) -> np.ndarray:
        """SIGNAL where a legitimate transmitter is predicted ``signal_margin_db`` above the noise, else NOISE."""
        return (predicted_dbm - self.noise_dbm > self.signal_margin_db).astype(np.int8)

    def fit(self, measured_dbm, predicted_dbm, *, provenance: dict | None = None) -> SpectralDetector:
        """Learn μ, σ per (SU, sub-band, state) from normal snapshots (N, n_su, K), NaN = not usable,
        and the threshold at ``target_far`` of the training scores."""
        m, p = self._check(measured_dbm, predicted_dbm)
        r, st = m - p, self.state(p)
        n, k = self.n_su, self.subbands
        mu, sig = np.zeros((n, k, 2)), np.ones((n, k, 2))
        for s in (NOISE, SIGNAL):
            sel = np.where((st == s) & np.isfinite(r), r, np.nan)  # (N, n, K)
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
        self.mu_db, self.sigma_db = mu, sig
        scores = self.score(m, p)
        finite = np.sort(scores[np.isfinite(scores)])
        if finite.size < 10:
            raise DetectorError(f"only {finite.size} scorable normal snapshots: need at least 10")
        self.train_scores = finite
        self.threshold = quantile_threshold(finite, self.target_far)
        self.provenance = dict(provenance or {})
        return self

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

    def _z_and_template_scale(self, m: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z (N, n, K; 0 where not usable) and 1 / (Q·β·σ) (N, n, K; 0 where not usable)."""
        if self.mu_db is None:
            raise DetectorError("spectral detector not fitted")
        st = self.state(p)
        mu = np.take_along_axis(self.mu_db[None], st[..., None].astype(np.intp), axis=3)[..., 0]
        sig = np.take_along_axis(self.sigma_db[None], st[..., None].astype(np.intp), axis=3)[..., 0]
        ok = np.isfinite(m) & np.isfinite(p)
        z = np.where(ok, (np.where(ok, m - p, 0.0) - mu) / sig, 0.0)
        q_mw = np.power(10.0, (np.where(ok, p, 0.0) + mu) / 10.0)
        inv = np.where(ok, 1.0 / (q_mw * BETA * sig), 0.0)
        return z, inv

    def cell_t(self, measured_dbm, predicted_dbm) -> np.ndarray:
        """T_cb (N, C, K): the one-sided GLRT of a point source at each cell in each sub-band."""
        m, p = self._check(measured_dbm, predicted_dbm)
        z, inv = self._z_and_template_scale(m, p)
        a = np.einsum("cj,njk->nck", self.gain_lin, z * inv, optimize=True)
        b = np.einsum("cj,njk->nck", self.gain_sq, inv * inv, optimize=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(b > 0, np.maximum(a, 0.0) ** 2 / b, 0.0)
        return t

    def score(self, measured_dbm, predicted_dbm, *, chunk: int = 64) -> np.ndarray:
        """(N,) max over cells of Σ_b max(0, T_cb − κ); NaN for a snapshot with fewer than 2 usable SUs."""
        m, p = self._check(measured_dbm, predicted_dbm)
        out = np.empty(m.shape[0])
        for i in range(0, m.shape[0], chunk):
            t = self.cell_t(m[i : i + chunk], p[i : i + chunk])
            out[i : i + chunk] = np.maximum(t - self.penalty, 0.0).sum(axis=2).max(axis=1)
        usable = (np.isfinite(m) & np.isfinite(p)).all(axis=2).sum(axis=1)
        return np.where(usable >= 2, out, np.nan)

    def evidence(self, measured_dbm, predicted_dbm) -> SpectralEvidence:
        """One snapshot (n_su, K): score, best cell, T per sub-band there, affected sub-bands."""
        t = self.cell_t(measured_dbm, predicted_dbm)[0]  # (C, K)
        cells = np.maximum(t - self.penalty, 0.0).sum(axis=1)
        m = np.asarray(measured_dbm, dtype=np.float64)
        usable = int((np.isfinite(m) & np.isfinite(np.asarray(predicted_dbm))).all(axis=1).sum())
        if usable < 2:
            return SpectralEvidence(math.nan, -1, np.zeros(self.subbands), (), cells)
        c = int(np.argmax(cells))
        tb = t[c]
        cand = np.flatnonzero(tb > self.affected_t)
        if cand.size > 1:  # keep those whose fitted EIRP at c is within affected_within_db of the strongest
            eirp = self._eirp_at(c, m, np.asarray(predicted_dbm, dtype=np.float64), cand)
            cand = cand[eirp >= eirp.max() - self.affected_within_db]
        affected = tuple(int(b) for b in cand)
        if not affected and cells[c] > 0:
            affected = (int(np.argmax(tb)),)
        return SpectralEvidence(float(cells[c]), c, tb, affected, cells)

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
        """Scores on the normal scale (z ~ N(0, 1) in normal operation), as the CUSUM integrates them."""
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
            np.savez(f, positions_m=self.positions_m, gain_lin=self.gain_lin, noise_dbm=self.noise_dbm,
                     mu_db=self.mu_db, sigma_db=self.sigma_db, train_scores=self.train_scores)  # fmt: skip
        doc = {"format": FORMAT, "kind": self.kind, "threshold": self.threshold, "provenance": self.provenance,
               "params": {"penalty": self.penalty, "affected_t": self.affected_t, "target_far": self.target_far,
                          "affected_within_db": self.affected_within_db,
                          "signal_margin_db": self.signal_margin_db, "min_sigma_db": self.min_sigma_db,
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
        det.mu_db, det.sigma_db, det.train_scores = a["mu_db"], a["sigma_db"], a["train_scores"]
        det.threshold, det.provenance = float(doc["threshold"]), doc.get("provenance", {})
        return det
