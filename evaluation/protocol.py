"""The paper's evaluation protocol, generic over any :mod:`models.detectors` kind.

5-fold cross-validation over the realisations (a seeded permutation split into 5 folds). For each fold:
fit the detector on the *normal* (no-jammer) snapshots of the other 4 folds; test on the fold's normal
snapshots plus as many anomalous (jammed) snapshots of the same fold (the first ones in fold order; all
of them if there are fewer). Scores and labels of the 5 test sets are pooled into one ROC. Reported:
AUC, detection probability at 1 % and 5 % false-alarm rate (from the pooled ROC), and the operating
point of each detector's own threshold (target_far, 95th percentile for the paper's ED), pooled.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from models.detectors import ResidualDetector, make_detector


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with ``score >= threshold`` ⇒ positive; starts at (0, 0) with +inf.
    NaN scores count as the least anomalous (never detected)."""
    y = np.asarray(labels, dtype=bool)
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]  # last index of each run of equal scores
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, s[distinct]]


def auc_score(labels, scores) -> float:
    """Area under the ROC (ties count one half): the Mann–Whitney statistic."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def pd_at_far(labels, scores, far: float) -> float:
    """Detection probability at false-alarm rate ``far``: the highest TPR of a threshold whose FPR ≤ far
    (no interpolation between thresholds)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= far + 1e-12].max())


def cv_folds(n: int, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.array_split(perm, n_folds)


DetectorFactory = Callable[[], ResidualDetector] | str


def _factory(detector_factory: DetectorFactory, params: dict | None) -> Callable[[], ResidualDetector]:
    if isinstance(detector_factory, str):
        kind = detector_factory
        return lambda: make_detector(kind, **(params or {}))
    return detector_factory


def evaluate_arrays(
    detector_factory: DetectorFactory,
    residuals_db: np.ndarray,
    anomalous: np.ndarray,
    *,
    predicted_dbm: np.ndarray | None = None,
    n_folds: int = 5,
    seed: int = 0,
    params: dict | None = None,
    anomaly_positions_m: np.ndarray | None = None,
    missing_at_test: np.ndarray | None = None,
) -> dict:
    """The protocol on raw arrays: Δ (N, n_su), anomaly flags (N,), optionally the DT's prediction
    (N, n_su) for detectors that use it (passed as ``predicted_dbm``).

    With ``anomaly_positions_m`` (N, 2|3) and a detector that can ``locate``, every tested anomaly is also
    located: ``loc_error_m`` (x, y distance to the truth, NaN where the detector gives no position) and
    ``loc_detected`` (its own threshold raised the alarm), pooled like the scores.

    ``missing_at_test`` (N, n_su) bool: residuals hidden (NaN) from the detector when a snapshot is
    *tested*, never when it trains: SUs that drop out in operation after a complete offline phase."""
    make = _factory(detector_factory, params)
    x = np.asarray(residuals_db, dtype=np.float64)
    x_test = x if missing_at_test is None else np.where(missing_at_test, np.nan, x)
    y = np.asarray(anomalous, dtype=bool)
    folds = cv_folds(len(y), n_folds, seed)
    all_s, all_y, own, loc_err, loc_det = [], [], [], [], []
    fit_s = score_s = 0.0
    n_scored = 0
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        train = train[~y[train]]
        normals, anomalies = test[~y[test]], test[y[test]]
        test = np.concatenate([normals, anomalies[: len(normals)]])
        det = make()
        t0 = time.perf_counter()
        det.fit(x[train], predicted_dbm=None if predicted_dbm is None else predicted_dbm[train])
        t1 = time.perf_counter()
        s = det.score(x_test[test], predicted_dbm=None if predicted_dbm is None else predicted_dbm[test])
        score_s += time.perf_counter() - t1
        fit_s += t1 - t0
        n_scored += len(test)
        all_s.append(s)
        all_y.append(y[test])
        own.append(np.nan_to_num(s, nan=-np.inf) > det.threshold)
        if anomaly_positions_m is not None and hasattr(det, "locate") and len(anomalies):
            a = test[y[test]]
            pos, _ = det.locate(x_test[a], None if predicted_dbm is None else predicted_dbm[a])
            loc_err.append(np.linalg.norm(pos[:, :2] - np.asarray(anomaly_positions_m)[a, :2], axis=1))
            loc_det.append(own[-1][y[test]])
    s, lab, dec = np.concatenate(all_s), np.concatenate(all_y), np.concatenate(own)
    fpr, tpr, thr = roc_curve(lab, s)
    return {
        "auc": auc_score(lab, s),
        "pd1": pd_at_far(lab, s, 0.01),
        "pd5": pd_at_far(lab, s, 0.05),
        "own_threshold_far": float(dec[~lab].mean()),
        "own_threshold_pd": float(dec[lab].mean()),
        "n_test_normal": int((~lab).sum()),
        "n_test_anomalous": int(lab.sum()),
        "n_nan_scores": int(np.isnan(s).sum()),
        "fit_s": fit_s,
        "us_per_snapshot": 1e6 * score_s / max(n_scored, 1),
        "roc": {"fpr": fpr, "tpr": tpr, "thresholds": thr},
        "scores": s,
        "labels": lab,
        **(
            {"loc_error_m": np.concatenate(loc_err), "loc_detected": np.concatenate(loc_det)}
            if loc_err
            else {}
        ),
    }


def evaluate(detector_factory: DetectorFactory, dataset, sigma: float, *, n_folds: int = 5, seed: int = 0,
             params: dict | None = None, locate: bool = False) -> dict:  # fmt: skip
    """The paper's protocol on a :class:`evaluation.dataset.DetectionDataset` at model error σ (dB).

    ``detector_factory``: a registered kind name (``"ed"``, ``"lof"``, any later kind, with ``params``)
    or a zero-argument callable returning a fresh unfitted detector. Returns ``{auc, pd1, pd5, roc, …}``
    (``roc`` = pooled {fpr, tpr, thresholds}; ``us_per_snapshot`` = batched scoring cost). ``locate``:
    also locate the tested jammers (see :func:`evaluate_arrays`).
    """
    return evaluate_arrays(detector_factory, dataset.delta_db(sigma), dataset.jammer,
                           predicted_dbm=dataset.dt_dbm, n_folds=n_folds, seed=seed, params=params,
                           anomaly_positions_m=dataset.jammer_position_m if locate else None)  # fmt: skip
