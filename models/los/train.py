"""Training the LoS/NLoS ResNet on twin-generated channels, and its ONNX export.

Why AWGN augmentation: the twin's channels are noiseless, the base station's are estimated from noisy
pilots. Every batch draws a fresh SNR per sample (uniform in ``snr_db_range``, plus a share of clean
channels) and adds white Gaussian noise to H before the features are computed, so the network learns
the ADCPM's structure rather than the twin's noise-free texture. Tests then use least-squares estimates
at fixed SNRs (:func:`models.los.dataset.ls_estimate`). Noise: :func:`models.los.dataset.add_awgn`.

torch only for training; the export is plain ONNX (opset 17) that :mod:`models.los.onnx_model` runs with
onnxruntime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.los.dataset import add_awgn
from models.los.features import network_input


@dataclass(frozen=True)
class LosTrainSettings:
    depth: int = 18
    width: int = 32
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    snr_db_range: tuple[float, float] = (-20.0, 20.0)
    clean_fraction: float = 0.1  # share of samples left noise-free
    seed: int = 0
    threads: int = 2


def train_resnet(
    h: np.ndarray,
    los: np.ndarray,
    rows: int,
    cols: int,
    settings: LosTrainSettings = LosTrainSettings(),
    progress: Callable[[dict], None] | None = None,
):
    """Train :class:`models.los.resnet.LosResNet` on channels h (N, rows·cols, n_sc) with labels los (N,).
    Returns the model (eval mode) and the per-epoch history."""
    import torch

    from models.los.resnet import LosResNet

    torch.set_flush_denormal(True)
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    y_all = np.asarray(los, dtype=np.float32)
    if h.ndim != 3 or h.shape[0] != y_all.shape[0] or h.shape[1] != rows * cols:
        raise ValueError(f"h {h.shape} and labels {y_all.shape} do not match (N, {rows * cols}, n_sc), (N,)")
    model = LosResNet(settings.depth, settings.width)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps = settings.epochs * int(np.ceil(len(h) / settings.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.learning_rate, total_steps=steps)
    pos_weight = torch.tensor((1.0 - y_all.mean()) / max(y_all.mean(), 1e-6))  # balance LoS / NLoS
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    history = []
    for epoch in range(settings.epochs):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(h))
        total, n = 0.0, 0
        for s in range(0, len(order), settings.batch_size):
            idx = order[s : s + settings.batch_size]
            snr = rng.uniform(*settings.snr_db_range, size=idx.size)
            snr[rng.random(idx.size) < settings.clean_fraction] = np.inf
            x = torch.from_numpy(network_input(add_awgn(h[idx], snr, rng), rows, cols))
            y = torch.from_numpy(y_all[idx])
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.size
            n += idx.size
        rec = {"epoch": epoch, "loss": total / n, "seconds": time.perf_counter() - t0}
        history.append(rec)
        if progress:
            progress(rec)
    model.eval()
    return model, history


def predict_torch(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """LoS probabilities (N,) from network inputs x (N, 1, 32, 128) with the torch model."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            out.append(torch.sigmoid(model(torch.from_numpy(x[s : s + batch]))).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def export_onnx(model, path: str | Path, meta: dict | None = None) -> Path:
    """ONNX (opset 17, dynamic batch) with a ``probability`` output (sigmoid folded in) and ``meta``
    (JSON-able: settings, dataset hash, array shape) stored as model metadata."""
    import json

    import onnx
    import torch

    class WithSigmoid(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return torch.sigmoid(self.m(x))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.onnx.export(WithSigmoid(model).eval(), (torch.zeros(1, 1, 32, 128),), str(tmp), input_names=["adcpm"],
                      output_names=["probability"], dynamic_axes={"adcpm": {0: "batch"}, "probability": {0: "batch"}},
                      opset_version=17, dynamo=False)  # fmt: skip
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "rftwin", json.dumps(meta or {}, default=str)
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def settings_dict(settings: LosTrainSettings) -> dict:
    return asdict(settings)
