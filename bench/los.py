"""LoS/NLoS identification benchmark (issue 7): ResNet on the ADCPM against SVM and random-forest
baselines on hand-crafted features, all trained on the twin's channels and tested on held-out UE
positions with channels estimated from noisy pilots (least squares at −15, 0, 15 dB SNR).

Usage: python bench/los.py [--depth 18] [--width 32] [--epochs 12] [--max-samples N] [--out DIR]

Dataset: :func:`models.los.dataset.generate_los_dataset` with its defaults (factory-hall-a, 8 × 16 UPA
on the ceiling, 512 subcarriers over ≥ 100 MHz, UEs at 1.5 m; cached under ~/.cache/rftwin/los).
Split by position (:func:`models.los.dataset.split_by_position`). The ResNet trains with AWGN
augmentation (:mod:`models.los.train`); the baselines train on clean channels' features (as the paper).
The test channels are LS estimates, one noise draw per SNR, the same for every model.

Last line: one JSON object with auc_{resnet,svm_linear,svm_rbf,rf}_snr{-15,0,15}, acc_…, resnet_gflops
(measured by forward hooks, 2 FLOPs per multiply-add), ort_ms_b1 (median onnxruntime latency of one
sample), ort_ms_per_sample_b256, onnx_max_abs_diff (torch vs onnxruntime probabilities), train_s, sizes.
``--out`` also writes the ONNX model (``los.onnx``, ready for the central unit's models directory).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.protocol import auc_score  # noqa: E402
from models.los.baselines import predict_proba, train_baseline  # noqa: E402
from evaluation.los_dataset import generate_los_dataset  # noqa: E402
from models.los.dataset import LosDatasetSettings, ls_estimate, split_by_position  # noqa: E402
from models.los.features import handcrafted_features, network_input  # noqa: E402
from models.los.onnx_model import LosOnnxModel  # noqa: E402
from models.los.train import LosTrainSettings, export_onnx, predict_torch, train_resnet  # noqa: E402
from run_info import run_info  # noqa: E402

SNRS_DB = (-15, 0, 15)
BASELINES = ("svm_linear", "svm_rbf", "rf")


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=LosTrainSettings.depth)
    ap.add_argument("--width", type=int, default=LosTrainSettings.width)
    ap.add_argument("--epochs", type=int, default=LosTrainSettings.epochs)
    ap.add_argument("--max-samples", type=int, default=None, help="use at most this many samples")
    ap.add_argument("--holdout", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    ds_settings = LosDatasetSettings()
    ds = generate_los_dataset(ds_settings, progress=lambda d, n: print(f"  dataset: traced {d}/{n}", file=sys.stderr,
                                                                        flush=True))  # fmt: skip
    rows, cols = ds_settings.rows, ds_settings.cols
    h, y = ds.h, ds.los.astype(bool)
    gain = ds.gain_db
    pos = ds.ue_positions_m
    if args.max_samples and len(h) > args.max_samples:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(h), args.max_samples, replace=False))
        h, y, pos, gain = h[keep], y[keep], pos[keep], gain[keep]
    # whole 4 m squares held out (neighbours 0.5 m apart are near-copies), stratified by label
    train, test = split_by_position(pos, args.holdout, args.seed, labels=y)
    print(f"dataset: {len(h)} channels {h.shape[1:]} ({y.mean():.1%} LoS), {len(train)} train / {len(test)} test, "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)  # fmt: skip
    figures: dict = {"n_train": int(len(train)), "n_test": int(len(test)), "los_fraction": round(float(y.mean()), 3)}

    settings = LosTrainSettings(depth=args.depth, width=args.width, epochs=args.epochs, seed=args.seed)
    t = time.perf_counter()
    model, history = train_resnet(h[train], y[train], rows, cols, settings,
                                  progress=lambda r: print(f"  epoch {r['epoch']}: loss {r['loss']:.4f} "
                                                           f"({r['seconds']:.1f} s)", file=sys.stderr, flush=True))  # fmt: skip
    figures["train_s_resnet"] = round(time.perf_counter() - t, 1)
    from models.los.resnet import count_flops

    figures["resnet_gflops"] = round(count_flops(model) / 1e9, 4)
    figures["resnet"] = f"ResNet{args.depth} width {args.width}"
    onnx_path = export_onnx(model, out_dir / "los.onnx", {"rows": rows, "cols": cols,
                                                           "num_subcarriers": int(h.shape[2]),
                                                           "gnb_position_m": list(ds_settings.gnb_position_m),
                                                           "train": settings.__dict__, "site": ds_settings.site})  # fmt: skip
    ort = LosOnnxModel(onnx_path, threads=1)

    t = time.perf_counter()
    sc = ds_settings.subcarrier_spacing_hz
    f_train = handcrafted_features(h[train], rows, cols, subcarrier_spacing_hz=sc, gain_db=gain[train])
    base = {k: train_baseline(k, f_train, y[train], args.seed) for k in BASELINES}
    figures["train_s_baselines"] = round(time.perf_counter() - t, 1)

    rng = np.random.default_rng(args.seed + 1)
    h_test = h[test]
    for snr in SNRS_DB:
        h_est = ls_estimate(h_test, snr, rng)
        x = network_input(h_est, rows, cols)
        p_torch = predict_torch(model, x)
        p_ort = ort.predict_features(x)
        figures[f"onnx_max_abs_diff_snr{snr}"] = float(np.max(np.abs(p_torch - p_ort)))
        probs = {"resnet": p_ort}
        f_test = handcrafted_features(h_est, rows, cols, subcarrier_spacing_hz=sc, gain_db=gain[test])
        for k in BASELINES:
            probs[k] = predict_proba(base[k], f_test)
        for k, p in probs.items():
            figures[f"auc_{k}_snr{snr}"] = round(auc_score(y[test], p), 4)
            figures[f"acc_{k}_snr{snr}"] = round(float(np.mean((p >= 0.5) == y[test])), 4)
        print(f"  SNR {snr:+d} dB: " + ", ".join(f"{k} AUC {figures[f'auc_{k}_snr{snr}']:.4f}" for k in probs),
              file=sys.stderr, flush=True)  # fmt: skip

    x1 = network_input(h_test[:1], rows, cols)
    x256 = network_input(h_test[:256], rows, cols)
    ort.predict_features(x1)
    figures["ort_ms_b1"] = round(median_ms(lambda: ort.predict_features(x1), 50), 3)
    figures["ort_ms_per_sample_b256"] = round(median_ms(lambda: ort.predict_features(x256), 5) / len(x256), 4)
    figures["feature_ms_per_sample"] = round(median_ms(lambda: network_input(h_test[:64], rows, cols), 5) / 64, 3)
    figures["run"] = run_info()
    (out_dir / "los.json").write_text(json.dumps({**figures, "history": history}, indent=1) + "\n")
    print(f"wrote {onnx_path} and {out_dir / 'los.json'}", file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
