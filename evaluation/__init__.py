"""Offline evaluation of jammer detection on the twin (issue 5): datasets and the paper's protocol.

Depends on ``central.twin`` (the twin) and ``models`` (the detectors); nothing at runtime imports it.
scikit-learn is not needed (ROC/AUC are computed here in numpy).
"""

from evaluation.dataset import DetectionDataset, generate_dataset, load_dataset
from evaluation.protocol import auc_score, evaluate, pd_at_far, roc_curve

__all__ = [
    "DetectionDataset",
    "auc_score",
    "evaluate",
    "generate_dataset",
    "load_dataset",
    "pd_at_far",
    "roc_curve",
]
