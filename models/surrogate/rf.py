"""The paper's surrogate: one random forest per SU, exported to one ONNX graph (training needs scikit-learn).

``MultiOutputRegressor(RandomForestRegressor)`` fits one independent forest per SU (the paper found
separate per-SU models best) and skl2onnx turns the set into one graph with one TreeEnsembleRegressor
per SU and a (N, n_su) output.

Number of trees: the paper used 400. Measured on factory-hall-a (held-out random 20 % of cells, pairs
≥ −150 dB): RMSE 4.53 / 4.46 / 4.45 dB and median |error| 0.23 / 0.23 / 0.23 dB for 50 / 100 / 400 trees,
with 2.9 M / 5.8 M / 23 M tree nodes in all (≈ 39 bytes each in ONNX: 0.11 / 0.23 / 0.9 GB). 400 trees buy
0.01 dB for 4× the size, training time and inference cost, so the default is :data:`DEFAULT_TREES` = 100.

Exactness of the export: scikit-learn compares float32 features with float64 thresholds, ONNX with
float32 thresholds; a threshold that rounds up to a training value would send that value the other
way (and our grid positions repeat exactly). :func:`float32_safe_thresholds` rounds every threshold
down to the largest float32 at or below it, which changes no scikit-learn decision on float32 inputs
and makes the float32 graph take the same branches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_TREES = 100
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}

__all__ = ["DEFAULT_TREES", "export_rf_onnx", "float32_safe_thresholds", "predict_rf", "train_rf"]


def train_rf(x: np.ndarray, y: np.ndarray, n_trees: int = DEFAULT_TREES, min_samples_leaf: int = 1,
             seed: int = 0, n_jobs: int = -1, progress: Callable[[int, int], None] | None = None):  # fmt: skip
    """One forest per column of ``y`` (N, n_su, dB) on features ``x`` (N, F, float32); a fitted
    ``MultiOutputRegressor``. ``progress(done, total)`` after each SU's forest."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.multioutput import MultiOutputRegressor

    if n_trees < 1 or min_samples_leaf < 1:
        raise ValueError(f"need n_trees ≥ 1 and min_samples_leaf ≥ 1, got {n_trees}, {min_samples_leaf}")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64)
    forests = []
    for j in range(y.shape[1]):  # one at a time so progress can be shown (MultiOutputRegressor does the same)
        rf = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=min_samples_leaf,
                                   random_state=seed + j, n_jobs=n_jobs)  # fmt: skip
        forests.append(float32_safe_thresholds(rf.fit(x, y[:, j])))
        if progress:
            progress(j + 1, y.shape[1])
    model = MultiOutputRegressor(RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=min_samples_leaf))
    model.estimators_ = forests
    model.n_features_in_ = x.shape[1]
    return model


def float32_safe_thresholds(forest):
    """Round every split threshold down to a float32 (in place; decisions on float32 inputs unchanged)."""
    for tree in forest.estimators_:
        th = tree.tree_.threshold  # a writable view of the tree's node array
        split = tree.tree_.children_left >= 0
        f = th.astype(np.float32)
        f = np.where(f.astype(np.float64) > th, np.nextafter(f, np.float32(-np.inf)), f)
        th[split] = f[split]
    return forest


def predict_rf(model, x: np.ndarray) -> np.ndarray:
    """(N, n_su) dB from scikit-learn (the reference the ONNX graph must reproduce)."""
    return np.asarray(model.predict(np.asarray(x, dtype=np.float32)), dtype=np.float64).reshape(len(x), -1)


def export_rf_onnx(model, n_features: int) -> bytes:
    """The fitted forests as one ONNX graph: input ``features`` (N, n_features) float32 → (N, n_su) dB."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, n_features]))], target_opset=ONNX_OPSET)
    return onx.SerializeToString()
