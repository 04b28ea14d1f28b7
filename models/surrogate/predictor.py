"""The surrogate as the twin's predictor: numpy + onnxruntime only (the central unit loads ONNX).

:class:`SurrogatePredictor` answers like ``central.twin.predictor.Predictor``, for everything the
central unit and the evaluation read:

- ``predict(tx_positions_m (…, T, 2|3) m, tx_powers_dbm (…, T) dBm)`` → (…, n_su) dBm: powers summed in
  mW, plus the noise floor; a transmitter at −inf dBm is absent;
- ``lookup(positions_m)`` → :class:`SurrogateLookup` (``gain_db`` (…, n_su) dB, ``fallback`` (…,) True where
  the position is inside an obstacle, where the model extrapolates);
- ``cell_gains()`` → the (valid cells × SUs) gain matrix for the point-source detectors and the
  localiser, from the model evaluated at the valid cell centres;
- ``num_su``, ``noise_floor_dbm``, and ``maps`` (:class:`SurrogateInfo`: ``key``, ``site_name``,
  ``su_ids``, ``su_positions_m``, ``grid``), the attributes of the twin's ``GainMaps`` that the
  snapshot assembler and the detection engine read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.power_sum import received_power_dbm

from models.surrogate.bundle import SurrogateError, SurrogateManifest, check_site, read_manifest, read_plane
from models.surrogate.features import tx_features
from models.surrogate.plane import PlaneSpec

__all__ = ["SurrogateCellGains", "SurrogateInfo", "SurrogateLookup", "SurrogatePredictor"]


@dataclass(frozen=True)
class SurrogateLookup:
    gain_db: np.ndarray  # (..., n_su) dB
    fallback: np.ndarray  # (...,) bool: position inside an obstacle (model extrapolated)


@dataclass(frozen=True)
class SurrogateCellGains:
    """Same fields as ``central.twin.predictor.CellGains``."""

    positions_m: np.ndarray  # (C, 3) valid cell centres
    gain_lin: np.ndarray  # (C, n_su) linear path gain
    gain_db: np.ndarray  # (C, n_su)


@dataclass(frozen=True)
class SurrogateInfo:
    """What the surrogate was built for, under the names of ``central.twin.GainMaps``."""

    key: str  # "surrogate-<kind>-<twin key>": provenance of detectors learned on it
    site_name: str
    su_ids: list[str]
    su_positions_m: np.ndarray  # (n_su, 3)
    grid: PlaneSpec

    @property
    def num_su(self) -> int:
        return len(self.su_ids)


class SurrogatePredictor:
    """Per-SU path gain from an ONNX model of features [x, y, d_1 … d_n] (see :mod:`.features`)."""

    def __init__(self, manifest: SurrogateManifest, plane: PlaneSpec, onnx_model: bytes | str | Path,
                 threads: int = 1):  # fmt: skip
        import onnxruntime as ort

        self.manifest = manifest
        self.plane = plane
        self.noise_floor_dbm = float(manifest.noise_floor_dbm)
        self._noise_mw = 10.0 ** (self.noise_floor_dbm / 10.0)
        self._su = np.asarray(manifest.su_positions_m, dtype=np.float64)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)  # 1: small calls on the service's hot path; 0: all cores
        opts.inter_op_num_threads = 1
        model = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
        self._session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        try:
            probe = self.gains_for_features(tx_features(np.asarray([plane.hall_xy_m]) / 2.0, self._su, plane.height_m))
        except Exception as e:  # onnxruntime's own error types: say which model and why
            raise SurrogateError(f"the ONNX model does not take {2 + manifest.num_su} features: {e}") from None
        if probe.shape != (1, manifest.num_su):
            raise SurrogateError(f"model gives {probe.shape[1:]} gains per position, the manifest has "
                                 f"{manifest.num_su} SUs")  # fmt: skip
        self.maps = SurrogateInfo(f"surrogate-{manifest.kind}-{manifest.twin_key}", manifest.site_name,
                                  list(manifest.su_ids), self._su, plane)  # fmt: skip
        self._cells: SurrogateCellGains | None = None

    @classmethod
    def load(cls, directory: str | Path, site_hash: str | None = None, threads: int = 1) -> SurrogatePredictor:
        """Load a surrogate directory; with ``site_hash``, refuse one built for another site."""
        d = Path(directory)
        manifest = read_manifest(d)
        if site_hash is not None:
            check_site(manifest, site_hash, str(d))
        return cls(manifest, read_plane(d), d / manifest.model_file, threads)

    @property
    def num_su(self) -> int:
        return self.manifest.num_su

    @property
    def kind(self) -> str:
        return self.manifest.kind

    def gains_for_features(self, features: np.ndarray) -> np.ndarray:
        """(N, n_su) float32 gain (dB) from float32 features (N, 2 + n_su): the raw model."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.shape[0] == 0:
            return np.zeros((0, self.num_su), dtype=np.float32)
        return self._session.run(None, {self._input: x})[0]

    def lookup(self, positions_m) -> SurrogateLookup:
        """Gain (dB) from positions (..., 2 or 3 m; z ignored: the plane is fixed) to every SU."""
        pos = np.asarray(positions_m, dtype=np.float64)
        if pos.ndim < 1 or pos.shape[-1] not in (2, 3):
            raise ValueError(f"positions must be (..., 2|3), got {pos.shape}")
        shape = pos.shape[:-1]
        flat = pos.reshape(-1, pos.shape[-1])
        self.plane.check_inside(flat[:, :2])
        g = self.gains_for_features(tx_features(flat, self._su, self.plane.height_m)).astype(np.float64)
        return SurrogateLookup(g.reshape(*shape, self.num_su), self.plane.in_obstacle(flat[:, :2]).reshape(shape))

    def predict(self, tx_positions_m, tx_powers_dbm) -> np.ndarray:
        """Expected received power (dBm) at every SU: (T, 2|3) and (T,) → (n_su,), or batched
        (B, T, 2|3) and (B, T) → (B, n_su). A transmitter at −inf dBm is absent (position ignored)."""
        return received_power_dbm(lambda pos: self.lookup(pos).gain_db, tx_positions_m, tx_powers_dbm, self._noise_mw,
                                  np.asarray(self.plane.hall_xy_m) / 2.0)  # fmt: skip

    def cell_gains(self) -> SurrogateCellGains:
        """Gain matrix (valid cells × SUs) from the model at the valid cell centres (computed once)."""
        if self._cells is None:
            pts = self.plane.cell_centres_m(only_valid=True)
            g_db = self.lookup(pts).gain_db
            self._cells = SurrogateCellGains(pts, np.power(10.0, g_db / 10.0), g_db)
        return self._cells
