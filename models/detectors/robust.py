"""Shared statistics for the issue-5 detectors: shrinkage covariance, NaN-tolerant Mahalanobis, and the
robust (MCD-like) outlier cleaning that keeps a contaminated offline phase from poisoning a model.

- :func:`ledoit_wolf`: the Ledoit–Wolf closed-form shrinkage towards a scaled identity (same formula as
  ``sklearn.covariance.ledoit_wolf``), so the covariance is well conditioned with few snapshots.
- :func:`marginal_mahalanobis`: d² of each row over its *observed* SUs only (sub-mean, sub-covariance),
  plus the number of observed SUs, so a caller can turn d² into a χ² tail probability that is comparable
  across missing patterns. Rows are grouped by missing pattern (one Cholesky per pattern).
- :func:`robust_clean`: C-steps of the minimum-covariance-determinant estimator on the rows (keep the
  (1 − c) fraction with the smallest d², refit, until the kept set stops changing), consistency-corrected,
  then reweighted: every row whose robust d² is below the χ² ``keep_quantile`` is kept. Normal rows are
  almost all kept (≈ 1 − keep_quantile dropped if the residuals are Gaussian), so thresholds learned on
  the cleaned set stay honest; jammed rows (far in the tail) are dropped.

numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import stats

from models.detectors.base import DetectorError


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean (n,), shrunk covariance (n, n), shrinkage in [0, 1]) of complete rows x (N, n)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DetectorError("ledoit_wolf needs at least 2 complete rows")
    mean = x.mean(axis=0)
    xc = x - mean
    n, p = xc.shape
    emp = xc.T @ xc / n
    x2 = xc * xc
    mu = np.trace(emp) / p
    beta_ = float((x2.T @ x2).sum())
    delta_ = float((emp * emp).sum())  # = sum((XᵀX)²)/n²
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * np.trace(emp) + p * mu * mu) / p
    beta = min(beta, delta)
    shrink = 0.0 if delta <= 0 else beta / delta
    cov = (1.0 - shrink) * emp
    cov[np.diag_indices(p)] += shrink * mu
    if mu <= 0:  # constant data: keep it invertible
        cov[np.diag_indices(p)] += 1e-12
    return mean, cov, float(shrink)


def pattern_groups(ok: np.ndarray, cov: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Rows grouped by which SUs they observe: (row indices, observed SU indices, whitener of the
    sub-covariance) per non-empty pattern, so each group is scored with one matrix product."""
    if ok.shape[0] == 1:  # the live engine's case: one snapshot, one pattern (np.unique costs more than the rest)
        if ok[0].any():
            idx = np.flatnonzero(ok[0])
            yield np.zeros(1, dtype=np.int64), idx, whitener(cov, idx)
        return
    pats, inv = np.unique(ok, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    for pi, pat in enumerate(pats):
        if pat.any():
            idx = np.flatnonzero(pat)
            yield np.flatnonzero(inv == pi), idx, whitener(cov, idx)


def whitener(cov: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """W (m, m) with ||W v||² = vᵀ Σ_JJ⁻¹ v for the sub-covariance over SU indices ``idx``."""
    sub = cov[np.ix_(idx, idx)]
    chol = np.linalg.cholesky(sub)
    return np.linalg.solve(chol, np.eye(len(idx)))


def marginal_mahalanobis(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d² (B,), observed count (B,)) over each row's non-NaN entries; d² NaN for all-NaN rows."""
    ok = ~np.isnan(x)
    d2 = np.full(x.shape[0], np.nan)
    k = ok.sum(axis=1)
    for rows, idx, w in pattern_groups(ok, cov):
        z = (x[np.ix_(rows, idx)] - mean[idx]) @ w.T
        d2[rows] = np.einsum("ij,ij->i", z, z)
    return d2, k


def chi2_neglogp(d2: np.ndarray, k: np.ndarray) -> np.ndarray:
    """−log P(χ²_k > d²): a Mahalanobis score comparable across numbers of observed SUs (NaN stays NaN)."""
    out = np.full(d2.shape, np.nan)
    ok = np.isfinite(d2) & (k > 0)
    out[ok] = -stats.chi2.logsf(d2[ok], k[ok])
    return out


def _complete(x: np.ndarray) -> np.ndarray:
    c = x[~np.isnan(x).any(axis=1)]
    if c.shape[0] < max(2, x.shape[1] + 1):
        raise DetectorError(f"need at least {x.shape[1] + 1} complete normal snapshots, got {c.shape[0]}")
    return c


def robust_clean(
    x: np.ndarray, contamination: float, *, keep_quantile: float = 0.999, max_steps: int = 30
) -> tuple[np.ndarray, dict]:
    """Keep mask (N,) of rows that look normal under a robust (MCD-like) Gaussian fit, and a report.

    ``contamination`` c: fraction trimmed in the C-steps (h = (1 − c) N rows kept; use ≥ the expected
    fraction of anomalous snapshots). Rows with missing SUs are judged on their observed SUs.
    """
    if not 0.0 < contamination < 0.5:
        raise DetectorError(f"contamination must be in (0, 0.5), got {contamination}")
    n_su = x.shape[1]
    comp = _complete(x)
    h = int(np.ceil((1.0 - contamination) * comp.shape[0]))
    # Start: coordinate-wise median / MAD (robust to the outliers we want to find).
    med = np.median(comp, axis=0)
    mad = 1.4826 * np.median(np.abs(comp - med), axis=0)
    mad = np.where(mad > 0, mad, comp.std(axis=0) + 1e-12)
    d2 = (((comp - med) / mad) ** 2).sum(axis=1)
    keep = np.argsort(d2)[:h]
    steps = 0
    for steps in range(1, max_steps + 1):  # noqa: B007
        mean, cov, _ = ledoit_wolf(comp[keep])
        d2, _ = marginal_mahalanobis(comp, mean, cov)
        new = np.sort(np.argsort(d2)[:h])
        if np.array_equal(new, np.sort(keep)):
            break
        keep = new
    # Consistency: the h smallest d² of a Gaussian sample shrink the covariance by this factor.
    alpha = h / comp.shape[0]
    q = stats.chi2.ppf(alpha, n_su)
    factor = alpha / stats.chi2.cdf(q, n_su + 2)
    cov = cov * factor
    d2_all, k_all = marginal_mahalanobis(x, mean, cov)
    limit = stats.chi2.ppf(keep_quantile, np.maximum(k_all, 1))
    keep_mask = ~(d2_all > limit)  # all-NaN rows (d² NaN) kept: the caller drops them anyway
    info = {"method": "mcd-reweighted", "contamination": float(contamination), "keep_quantile": keep_quantile,
            "c_steps": steps, "consistency": float(factor), "dropped": int((~keep_mask).sum())}  # fmt: skip
    return keep_mask, info


class RobustCleaningMixin:
    """``_clean`` via :func:`robust_clean` on the residuals (detector-independent, so every detector
    gets the same cleaned training set)."""

    def _clean(self, x, pred, contamination):
        if contamination <= 0.0:
            self.fit_info["cleaning"] = None
            return x, pred
        keep, info = robust_clean(x, contamination)
        self.fit_info["cleaning"] = info
        return x[keep], (None if pred is None else pred[keep])
