"""Bayes-factor point-source detector: the likelihood ratio of "a jammer somewhere" against "no jammer",
averaged over the jammer's position (the twin's gain-map cells) and power (a log-uniform grid).

Why not the GLRT's maximum: a weak jammer buried in model error has no sharp maximum; the maximum over
thousands of cells and powers pays a look-elsewhere cost that the average does not. On the reference hall
(SUs 1.5 m, σ = 6 dB) the average lifts the AUC from 0.83 (GLRT) to 0.86, within 0.01 of the oracle that
knows the jammer's power exactly (same likelihood, one power).

Model (as the paper's data: the twin's error is additive in dB on the total power). At SU j, with the
twin's prediction P̂_j (mW) of the legitimate transmitters and a jammer of power p (mW) at cell c with
linear path gain g_cj,

    Δ_j = 10 log10(1 + p g_cj / P̂_j) + ε_j,   ε ~ N(μ, Σ) learned from normal residuals (Ledoit–Wolf),

so with a_cj(p) = 10 log10(1 + p g_cj / P̂_j), u = W(Δ − μ) and v = W a (W the whitener of Σ),

    log LR(c, p) = uᵀv − ½ vᵀv,   score = log mean_{c, p} LR(c, p)   (log-sum-exp).

``tails="student"``: the model error is a multivariate Student t with the same mean and covariance and
ν degrees of freedom fitted to the normal residuals by maximum likelihood (:func:`fit_student_dof`).
Why: residuals of a twin against a world it does not model (clutter, deeper multipath) are heavy
tailed; a Gaussian likelihood reads a normal outlier as strong evidence and a jammer whose true gains
differ from the twin's as none. With Q = ‖u‖² (the Mahalanobis distance of Δ) and m observed SUs,

    log LR(c, p) = −(ν + m)/2 · [ln(ν − 2 + ‖u − v‖²) − ln(ν − 2 + Q)],

which tends to the Gaussian uᵀv − ½ vᵀv as ν → ∞ (the scale matrix is Σ (ν − 2)/ν, so Σ stays the
covariance).

``cell_spacing_m`` thins the cells for scoring (one representative per square of that side): on the
reference hall the average over a 2 m lattice and 6 dB power steps gives the AUC of the 0.5 m lattice and
1 dB steps (0.861 at σ = 6 dB) at 1/40 of the cost. :meth:`locate` scores every
full-resolution cell.

Missing SUs (NaN residual or prediction) are left out (marginal sub-covariance). ``predicted_dbm`` is
required by fit, score and locate. Gains (C, n_su) and cell positions (C, 2|3) are saved with the model.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from models.detectors.base import DetectorError, ResidualDetector, as_matrix, register
from models.detectors.point_source import PointSourceCells
from models.detectors.robust import RobustCleaningMixin, marginal_mahalanobis, pattern_groups

K_DB = 10.0 / np.log(10.0)
_CHUNK_ELEMS = 1_500_000  # P × b × C × m float32 per step
TAILS = ("gauss", "student")
# ν candidates of the Student-t fit (> 2: the covariance exists); the Gaussian competes as ν = ∞.
DOF_GRID = (2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 25.0, 50.0, 100.0)


def fit_student_dof(mahalanobis2: np.ndarray, m: int, grid=DOF_GRID) -> float:
    """ν of the multivariate Student t (scale Σ(ν − 2)/ν, so Σ is its covariance) with the highest
    likelihood of normal residuals whose squared Mahalanobis distances under Σ are ``mahalanobis2``
    (m SUs each); ``inf`` when the Gaussian is at least as likely. Terms common to all ν are left out."""
    q = np.asarray(mahalanobis2, dtype=np.float64)
    best_dof, best_ll = np.inf, float(np.mean(-0.5 * q - 0.5 * m * np.log(2.0)))  # Gaussian: −Q/2 − (m/2) ln 2π
    for nu in grid:
        ll = (gammaln((nu + m) / 2) - gammaln(nu / 2) - 0.5 * m * np.log(nu - 2.0)
              - 0.5 * (nu + m) * np.mean(np.log1p(q / (nu - 2.0))))  # fmt: skip
        if ll > best_ll:  # both carry −(m/2) ln π − ½ ln|Σ|, dropped
            best_dof, best_ll = float(nu), float(ll)
    return best_dof


def thin_cells(positions_m: np.ndarray, spacing_m: float) -> np.ndarray:
    """Indices of one cell (the first) per square of side ``spacing_m`` in x, y: a coarser lattice."""
    if spacing_m <= 0:
        return np.arange(positions_m.shape[0])
    xy = np.asarray(positions_m)[:, :2]
    key = np.floor((xy - xy.min(axis=0)) / spacing_m + 1e-9).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    return np.sort(first)


@register
class BayesDetector(PointSourceCells, RobustCleaningMixin, ResidualDetector):
    kind = "bayes"
    handles_missing = True

    def __init__(
        self,
        cell_positions_m=None,
        gain_lin=None,
        power_dbm_min: float = 0.0,
        power_dbm_max: float = 30.0,
        power_step_db: float = 6.0,
        cell_spacing_m: float = 2.0,
        tails: str = "gauss",
        target_far: float = 0.05,
        name: str | None = None,
    ):
        super().__init__(target_far=target_far, name=name)
        if tails not in TAILS:
            raise DetectorError(f"tails must be one of {TAILS}, got {tails!r}")
        self.tails = tails
        self.dof_ = np.inf  # ν of the Student-t model error; ∞: Gaussian
        if not power_dbm_max >= power_dbm_min or power_step_db <= 0:
            raise DetectorError(
                f"power grid: need power_dbm_min ≤ power_dbm_max and power_step_db > 0, got "
                f"{power_dbm_min}, {power_dbm_max}, {power_step_db}"
            )
        self.power_dbm_min = float(power_dbm_min)
        self.power_dbm_max = float(power_dbm_max)
        self.power_step_db = float(power_step_db)
        self.cell_spacing_m = float(cell_spacing_m)
        if gain_lin is not None or cell_positions_m is not None:
            self.set_cells(cell_positions_m, gain_lin)

    @property
    def powers_dbm(self) -> np.ndarray:
        n = int(np.floor((self.power_dbm_max - self.power_dbm_min) / self.power_step_db + 1e-9)) + 1
        return self.power_dbm_min + self.power_step_db * np.arange(n)

    def _cells_changed(self) -> None:
        self._coarse = thin_cells(self.cell_positions_m, self.cell_spacing_m)

    def _fit_tails(self, complete_rows: np.ndarray) -> None:
        self.dof_ = np.inf
        if self.tails == "student":
            d2, _ = marginal_mahalanobis(complete_rows, self.mean_, self.cov_)
            self.dof_ = fit_student_dof(d2, complete_rows.shape[1])
        self.fit_info["dof"] = None if np.isinf(self.dof_) else self.dof_

    # ------------------------------------------------------------------ fit / score

    def _score(self, x, pred):
        return self.log_lr(x, pred, self._coarse)[0]

    def log_lr(
        self, residuals_db, predicted_dbm, cells: np.ndarray, powers_dbm=None, profile: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(log of the LR averaged over ``cells`` × powers (B,), log LR per cell (B, len(cells)): averaged
        over the powers, or their maximum with ``profile``). Powers: the detector's grid unless given.
        NaN where no SU is observed."""
        self._need(predicted_dbm)
        if self.mean_ is None:
            raise DetectorError(f"{self.name}: not fitted")
        x = as_matrix(residuals_db, self.gain_lin.shape[1])
        pred = as_matrix(predicted_dbm, x.shape[1], "predicted_dbm")
        if pred.shape[0] != x.shape[0]:
            raise DetectorError(f"predicted_dbm has {pred.shape[0]} rows, residuals {x.shape[0]}")
        grid = self.powers_dbm if powers_dbm is None else np.asarray(powers_dbm, dtype=np.float64)
        powers = np.power(10.0, grid / 10.0).astype(np.float32)
        total = np.full(x.shape[0], np.nan)
        per_cell = np.full((x.shape[0], cells.size), np.nan)
        ok = np.isfinite(x) & np.isfinite(pred)
        for rows, idx, w in pattern_groups(ok, self.cov_):
            g = self.gain_lin[np.ix_(cells, idx)].astype(np.float32)
            wt = w.T.astype(np.float32)
            chunk = max(1, _CHUNK_ELEMS // (len(powers) * g.shape[0] * idx.size))
            for s in range(0, rows.size, chunk):
                rr = rows[s : s + chunk]
                u = ((x[np.ix_(rr, idx)] - self.mean_[idx]) @ w.T).astype(np.float32)  # (b, m)
                h = (
                    g[None, :, :]
                    * np.power(10.0, -pred[np.ix_(rr, idx)] * 0.1).astype(np.float32)[:, None, :]
                )
                # Every power at once (P, b, C, m): one call per step instead of one per power. log(1 + x)
                # rather than log1p: 2.5× faster in float32, and where they differ (x < 1e-7) a ≈ 0 anyway.
                v = (K_DB * np.log(1.0 + powers[:, None, None, None] * h[None])) @ wt
                uv, vv = np.einsum("pbcm,bm->pbc", v, u), np.einsum("pbcm,pbcm->pbc", v, v)
                if np.isinf(self.dof_):
                    llr = uv - 0.5 * vv
                else:
                    q0 = np.einsum("bm,bm->b", u, u)[None, :, None]  # Mahalanobis² under H0
                    llr = -0.5 * (self.dof_ + idx.size) * np.log1p((vv - 2.0 * uv) / (self.dof_ - 2.0 + q0))
                top = llr.max(axis=(0, 2))  # (b,)
                e = np.exp(llr - top[None, :, None]).astype(np.float64)
                cell_mean = e.mean(axis=0)  # (b, C), relative to top
                total[rr] = np.log(cell_mean.mean(axis=1)) + top
                with np.errstate(divide="ignore"):
                    per_cell[rr] = llr.max(axis=0) if profile else np.log(cell_mean) + top[:, None]
        return total, per_cell

    def locate(self, residuals_db, predicted_dbm, top: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Jammer position estimate (B, 2) and the log LR of the chosen cell at its best power (B,); NaN
        where no SU is observed. Every full-resolution cell is scored on the detector's power grid (the
        thinned lattice can miss a narrow peak), then the ``top`` best on a 1 dB grid: the cell with the
        highest likelihood wins (at high SNR the maximum is sharper than the average)."""
        self._require_fitted()
        x = as_matrix(residuals_db, self.gain_lin.shape[1])
        pred = as_matrix(predicted_dbm, x.shape[1], "predicted_dbm")
        every = np.arange(self.gain_lin.shape[0])
        _, per_cell = self.log_lr(x, pred, every, profile=True)
        lo, hi = self.power_dbm_min - self.power_step_db, self.power_dbm_max + self.power_step_db
        fine_powers = np.arange(lo, hi + 0.5, 1.0)  # 1 dB steps, one grid step beyond each end
        pos = np.full((x.shape[0], 2), np.nan)
        evidence = np.full(x.shape[0], np.nan)
        k = min(top, every.size)
        for i in np.flatnonzero(np.isfinite(per_cell).any(axis=1)):
            cand = np.argpartition(-np.nan_to_num(per_cell[i], nan=-np.inf), k - 1)[:k]
            _, fine = self.log_lr(x[i : i + 1], pred[i : i + 1], cand, powers_dbm=fine_powers, profile=True)
            j = int(np.nanargmax(fine[0]))
            pos[i] = self.cell_positions_m[cand[j], :2]
            evidence[i] = fine[0, j]
        return pos, evidence

    # ------------------------------------------------------------------ persistence

    def _params(self):
        return {"power_dbm_min": self.power_dbm_min, "power_dbm_max": self.power_dbm_max,
                "power_step_db": self.power_step_db, "cell_spacing_m": self.cell_spacing_m,
                "tails": self.tails}  # fmt: skip

    def _arrays(self):
        return {**super()._arrays(), "dof": np.float64(self.dof_)}

    def _restore(self, arrays):
        super()._restore(arrays)
        self.dof_ = float(arrays["dof"]) if "dof" in arrays else np.inf  # models saved before tails: Gaussian
