"""Live-detection cost on the default twin (the paper's hall, 12 SUs): per-snapshot evaluate() with
ED and with LOF (N normal training snapshots), the localiser alone, and the ingest-side update.

Usage: python bench/live_detection.py [--train 4000] [--reps 2000]
Last line: one JSON object: evaluate_us_{ed,lof}_{normal,anomalous} (median µs per evaluate() call:
assembly + prediction + score + hysteresis, + localisation when anomalous), score_us_{ed,lof}
(the detector's score() on one snapshot), localise_us, assembler_update_us (per measurement),
cells, n_su, n_train. Builds the default twin if it is not cached (minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from central.detection import EngineConfig, DetectionEngine, PointSourceLocaliser  # noqa: E402
from central.live import TxContext  # noqa: E402
from central.twin import Twin  # noqa: E402
from central.twin.verify import sample_tx_positions  # noqa: E402
from node.protocol import Measurement  # noqa: E402

S = 1_000_000_000


def median_us(fn, reps: int) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        runs.append((time.perf_counter() - t) / reps * 1e6)
    return float(np.median(runs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=2000)
    args = ap.parse_args()
    twin = Twin.load(None)
    pred = twin.predictor
    rng = np.random.default_rng(0)
    n = pred.num_su
    train = rng.normal(0, 1.0, (args.train, n)) + rng.normal(0, 0.5, (args.train, 1))  # ~σ = 1 dB twin
    tx = sample_tx_positions(twin.site, 3, rng)
    jam = sample_tx_positions(twin.site, 1, rng)[0]
    normal_dbm = pred.predict(tx, np.full(3, 20.0))
    g = pred.lookup(jam[None]).gain_db[0]
    jammed_dbm = 10 * np.log10(10 ** (normal_dbm / 10) + 10 ** ((20.0 + g) / 10))
    out: dict = {"n_su": n, "cells": int(pred.maps.grid.num_valid), "n_train": args.train}

    t0 = 1_700_000_000 * S
    for kind in ("ed", "lof"):
        cfg = EngineConfig(detector=kind)  # the anomalous loop runs with the alarm active
        eng = DetectionEngine(pred, cfg)
        t = time.perf_counter()
        det = eng.learn(train)
        out[f"learn_s_{kind}"] = round(time.perf_counter() - t, 3)
        one = train[:1]
        out[f"score_us_{kind}"] = round(median_us(lambda: det.score(one), args.reps), 1)
        eng.on_context(TxContext(f"ue{i}", t0, tuple(tx[i]), 20.0) for i in range(3))
        for label, powers in (("normal", normal_dbm), ("anomalous", jammed_dbm)):
            eng.on_measurements(Measurement(su, 1 if label == "normal" else 2, t0, 3.7e9, 20e6, float(p))
                                for su, p in zip(eng.su_ids, powers))  # fmt: skip
            snap, _ = eng.evaluate(t0)
            assert snap.anomalous == (label == "anomalous"), (kind, label, snap.score, snap.threshold)
            out[f"evaluate_us_{kind}_{label}"] = round(median_us(lambda: eng.evaluate(t0), args.reps), 1)

    loc = PointSourceLocaliser.from_predictor(pred)
    out["localise_us"] = round(median_us(lambda: loc.locate(jammed_dbm, normal_dbm), args.reps), 1)
    eng = DetectionEngine(pred, EngineConfig(localise=False))
    ms = [Measurement(eng.su_ids[i % n], i, t0 + i, 3.7e9, 20e6, -60.0) for i in range(10_000)]
    t = time.perf_counter()
    eng.on_measurements(ms)
    out["assembler_update_us"] = round((time.perf_counter() - t) / len(ms) * 1e6, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
