"""The LoS/NLoS classifier as the central unit runs it: the exported ONNX graph under onnxruntime.

numpy + onnxruntime only (no torch): the central extra installs neither torch nor scikit-learn's
training stack. The model's metadata (``rftwin`` key, JSON) carries the array shape (rows × cols) and
the number of subcarriers it was trained on, so a channel estimate of another shape is refused with a
reason instead of producing a confident wrong answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.los.features import network_input


class LosModelError(ValueError):
    """A model file or an input that cannot be used, with the reason."""


class LosOnnxModel:
    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise LosModelError(f"{self.path}: no such LoS model (train one with `python bench/los.py --out …`)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise LosModelError(f"{self.path}: not a loadable ONNX model ({e})") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get("rftwin", "{}")
        self.meta = json.loads(meta)
        self.rows = int(self.meta.get("rows", 8))
        self.cols = int(self.meta.get("cols", 16))
        self.num_subcarriers = int(self.meta.get("num_subcarriers", 512))

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """LoS probability (N,) from network inputs (N, 1, 32, 128) float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (1, 32, 128):
            raise LosModelError(f"network input must be (N, 1, 32, 128), got {x.shape}")
        return self.session.run(["probability"], {"adcpm": x})[0].reshape(-1)

    def predict_channel(self, h: np.ndarray) -> np.ndarray:
        """LoS probability (N,) from channel estimates h (N, rows·cols, n_sc) or one (rows·cols, n_sc)."""
        h = np.asarray(h)
        if h.ndim == 2:
            h = h[None]
        want = (self.rows * self.cols, self.num_subcarriers)
        if h.ndim != 3 or h.shape[1:] != want:
            raise LosModelError(f"channel estimate must be (antennas, subcarriers) = {want}, got {h.shape[-2:]}")
        if not np.isfinite(h).all():
            raise LosModelError("channel estimate has non-finite entries")
        if not np.any(h):
            raise LosModelError("channel estimate is all zeros")
        return self.predict_features(network_input(h, self.rows, self.cols))
