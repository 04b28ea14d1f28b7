"""Path-loss surrogate (first paper): per-SU regression of the TX→SU path gain (dB) from [x, y, d_1 … d_n].

Trained on ray-traced samples of the site (the twin's gain maps at their valid cell centres,
:mod:`.data`), as one random forest per SU (:mod:`.rf`, the paper's model) or one small MLP with an
output per SU (:mod:`.mlp`), exported to ONNX and served by :class:`SurrogatePredictor` with numpy and
onnxruntime alone (the interface of ``central.twin.predictor.Predictor``). A model directory
(:mod:`.bundle`) carries a manifest with the site's content hash; loading refuses another site's model.
Training (:mod:`.train`) imports scikit-learn / PyTorch lazily; this package's import needs neither.
"""

from models.surrogate.bundle import KINDS, SurrogateError, SurrogateManifest, check_site, find_bundle, read_manifest
from models.surrogate.data import SurrogateData, holdout_mask
from models.surrogate.features import feature_names, tx_features
from models.surrogate.metrics import GainError, gain_error
from models.surrogate.plane import PlaneSpec
from models.surrogate.predictor import SurrogatePredictor

__all__ = [
    "KINDS",
    "GainError",
    "PlaneSpec",
    "SurrogateData",
    "SurrogateError",
    "SurrogateManifest",
    "SurrogatePredictor",
    "check_site",
    "feature_names",
    "find_bundle",
    "gain_error",
    "holdout_mask",
    "read_manifest",
    "tx_features",
]
