"""Classical LoS/NLoS baselines on the hand-crafted features (:func:`models.los.features.handcrafted_features`):
linear SVM, RBF SVM and random forest, as in the paper, each behind feature standardisation.

Sized to train in seconds on a few thousand samples on 2 cores. Classes are weighted by their inverse
frequency (the paper's RF uses the class ratio; LoS is the minority in most halls) so that no baseline
wins accuracy by predicting the majority class. scikit-learn is imported when a baseline is built: the
central unit imports :mod:`models.los.features` and :mod:`models.los.dataset` without it.
"""

from __future__ import annotations

import numpy as np

BASELINE_KINDS = ("svm_linear", "svm_rbf", "rf")


def _check_xy(X, y=None) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (N, k) array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"features hold {int(np.sum(~np.isfinite(X)))} non-finite values")
    if y is None:
        return X, None
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"labels must be (N,) = ({X.shape[0]},), got {y.shape}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("labels hold one class only: a classifier needs LoS and NLoS samples")
    return X, y


def make_baseline(kind: str, seed: int = 0):
    """An unfitted scikit-learn pipeline: StandardScaler → classifier with ``predict_proba``."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    if kind == "svm_linear":
        # LinearSVC is much faster than SVC(kernel="linear"); Platt scaling (3-fold) gives probabilities.
        clf = CalibratedClassifierCV(LinearSVC(C=1.0, class_weight="balanced", random_state=seed), cv=3)
    elif kind == "svm_rbf":
        # Platt scaling fitted on 3-fold out-of-fold scores, then one SVC on all the data (ensemble=False).
        clf = CalibratedClassifierCV(SVC(kernel="rbf", C=1.0, gamma="scale", class_weight="balanced"), cv=3,
                                     ensemble=False)  # fmt: skip
    elif kind == "rf":
        clf = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, class_weight="balanced",
                                     criterion="gini", n_jobs=2, random_state=seed)  # fmt: skip
    else:
        raise ValueError(f"unknown baseline {kind!r}; known: {', '.join(BASELINE_KINDS)}")
    return make_pipeline(StandardScaler(), clf)


def train_baseline(kind: str, X, y, seed: int = 0):
    """Fit baseline ``kind`` (:data:`BASELINE_KINDS`) on features X (N, k) and LoS labels y (N,) bool."""
    X, y = _check_xy(X, y)
    return make_baseline(kind, seed).fit(X, y)


def predict_proba(model, X) -> np.ndarray:
    """P(LoS) (N,) from a fitted baseline."""
    X, _ = _check_xy(X)
    classes = list(model.classes_)
    if True not in classes:
        raise ValueError(f"model was not trained on boolean LoS labels (classes {classes})")
    return model.predict_proba(X)[:, classes.index(True)]
