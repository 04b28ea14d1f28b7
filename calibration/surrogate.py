"""``rftwin-surrogate``: train and evaluate the path-loss surrogate from the twin's ray-traced maps.

    rftwin-surrogate train --site factory-hall-a --kind rf|mlp --out DIR [--split random|blocks]
                           [--holdout 0.2] [--seed 0] [--trees 100] [--epochs 400]
    rftwin-surrogate evaluate DIR [--site NAME|FILE]

Training is offline work (scikit-learn / PyTorch, the ``train`` extra), like the calibration fits, so it
lives here; the model itself is ``models.surrogate`` and the central unit only loads its ONNX file
(``[twin] predictor = "surrogate"`` in the central config). The twin's maps are traced first if they
are not cached. ``evaluate`` prints one JSON object: held-out and training accuracy vs ray tracing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rftwin-surrogate", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fit a surrogate on the site's gain maps and write DIR")
    t.add_argument("--site", default=None, help="built-in site name or site file (default: factory-hall-a)")
    t.add_argument("--kind", choices=("rf", "mlp"), required=True, help="random forest per SU, or one MLP")
    t.add_argument("--out", required=True, help="model directory to write (manifest.json, model.onnx, plane.npz)")
    t.add_argument("--split", choices=("random", "blocks"), default="random", help="held-out positions")
    t.add_argument("--holdout", type=float, default=0.2, help="held-out fraction (default %(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--trees", type=int, default=None, help="rf: trees per SU (default 100, see models.surrogate.rf)")
    t.add_argument("--min-samples-leaf", type=int, default=1, help="rf: minimum samples per leaf")
    t.add_argument("--epochs", type=int, default=None, help="mlp: training epochs (default 400)")
    e = sub.add_parser("evaluate", help="re-score a surrogate directory on its held-out positions (JSON)")
    e.add_argument("dir")
    e.add_argument("--site", default=None, help="site (default: the one in the manifest, by built-in name)")
    return ap


def _train(args) -> int:
    from central.twin import Twin
    from central.twin.surrogate import site_info, surrogate_data
    from models.surrogate.mlp import MlpParams
    from models.surrogate.rf import DEFAULT_TREES
    from models.surrogate.train import TrainConfig, train_surrogate

    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    twin = Twin.load(args.site, progress=lambda su, done, total: say(f"tracing {su}: {done}/{total} cells"))
    say(f"twin of {twin.site.name} {'from cache' if twin.from_cache else 'ray-traced'} ({twin.cache_path})")
    mlp = MlpParams() if args.epochs is None else MlpParams(epochs=args.epochs)
    config = TrainConfig(args.kind, args.split, args.holdout, args.seed, args.trees or DEFAULT_TREES,
                         args.min_samples_leaf, mlp=mlp)  # fmt: skip
    m = train_surrogate(surrogate_data(twin), site_info(twin), args.out, config, progress=say)
    say(f"wrote {args.out}: held-out RMSE {m.holdout_rmse_db:.2f} dB, median |error| {m.holdout_median_abs_db:.3f} dB, "
        f"p95 |error| {m.holdout_p95_abs_db:.2f} dB")
    return 0


def _evaluate(args) -> int:
    from central.twin import Twin, resolve_site
    from central.twin.surrogate import load_surrogate, surrogate_data
    from models.surrogate import read_manifest
    from models.surrogate.train import evaluate_surrogate

    site = resolve_site(args.site or read_manifest(args.dir).site_name)
    predictor = load_surrogate(site, args.dir)
    report = evaluate_surrogate(predictor, surrogate_data(Twin.load(site)))
    print(json.dumps({"dir": str(args.dir), "site": site.name, **report.to_dict()}))
    return 0


def main(argv=None) -> int:
    from models.surrogate import SurrogateError

    args = build_parser().parse_args(argv)
    try:
        return _train(args) if args.cmd == "train" else _evaluate(args)
    except (SurrogateError, ValueError, OSError) as e:
        print(f"rftwin-surrogate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
