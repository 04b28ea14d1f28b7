"""LoS/NLoS identification from uplink channel estimates (the second paper, issue 7).

- :mod:`models.los.dataset`: the twin dataset record (channels, LoS labels, UE positions), its settings,
  cache key and npz format, the position-wise train/test split, AWGN and least-squares pilot estimates.
  The ray tracing that fills it lives in :mod:`evaluation.los_dataset` (``models`` imports nothing of
  ``central``; docs/architecture.md).
- :mod:`models.los.features`: the ADCPM (angle-delay channel power matrix), its max-pool down-sampling
  and log normalisation (the network input), and the hand-crafted features of the classical baselines.
- :mod:`models.los.baselines`: SVM (linear, RBF) and random forest on the hand-crafted features.

``dataset`` and ``features`` need numpy only (the central unit runs the ONNX model on ``features``);
``baselines`` imports scikit-learn when a baseline is trained.
"""
