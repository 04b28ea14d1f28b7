"""The LoS/NLoS twin dataset: uplink channels of UEs at a ceiling gNB, labelled by the ray tracer.

One sample = one UE position at ``ue_height_m`` on a grid over the hall floor outside obstacles:

- ``h`` (N, rows·cols, n_sc) complex64: the channel frequency response from the UE's single isotropic
  antenna to the gNB's uniform planar array (uplink). Traced as the downlink (gNB as the source, one
  receiver per UE) and valid for the uplink by reciprocity. Antenna index ``r·cols + c`` (row-major):
  row 0 is the panel's top row, column c increases along the panel's horizontal axis, so
  ``h.reshape(N, rows, cols, n_sc)`` is the array's geometry. Subcarrier k is at baseband frequency
  (k − n_sc/2)·Δf; delays are relative to the UE's first path (Sionna's ``normalize_delays``), which is
  what a receiver synchronised to the first arrival sees.
- **Normalisation**: every channel is scaled to unit mean power per entry, mean over antennas and
  subcarriers of |h|² = 1, as the paper feeds the network scale-free ADCPMs. The removed scale is kept
  as ``gain_db`` = 10·log10(mean |H|²) (dB): the wideband path gain to one array element (isotropic
  antennas), the RSS feature's source; ``rx_power_dbm`` = ``ue_tx_power_dbm`` + ``gain_db``.
- ``los`` (N,) bool: the ray tracer found a path with no interaction (a line-of-sight path).
- ``ue_positions_m`` (N, 3), ``num_paths`` (N,), and ``meta`` (settings, site content hash, Sionna RT
  version, build time).

The ray tracing itself is :func:`evaluation.los_dataset.generate_los_dataset` (it needs the twin, which
``models`` may not import). Here: the settings, the record, its npz format and cache key, the
position-wise split, and the noise models used for augmentation (:func:`add_awgn`) and testing
(:func:`ls_estimate`).

Units: metres (``_m``), hertz (``_hz``), seconds (``_s``), dB, dBm.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from contracts.cache import cache_dir

FORMAT_VERSION = 1
SPEED_OF_LIGHT = 299_792_458.0


@dataclass(frozen=True)
class LosDatasetSettings:
    """Everything that changes the traced dataset; all of it is part of the cache key.

    Defaults: the paper's hall, an 8 × 16 half-wavelength UPA hanging under the 5 m ceiling at the hall
    centre, 512 subcarriers at 240 kHz (122.88 MHz, a delay bin of 8.1 ns = 2.44 m: fine enough to
    separate a hall's paths, unlike 30 kHz spacing's 20 m bins), UEs on a 0.5 m grid (≈ 5000 positions).
    """

    site: str = "factory-hall-a"  # built-in site name or site file path (resolved by the generator)
    # Array centre (m). At 4.8 m the 8-row panel (0.28 m tall at 3.7 GHz) stays below the 5 m ceiling.
    gnb_position_m: tuple[float, float, float] = (20.0, 20.0, 4.8)
    # Sionna (yaw, pitch, roll) in rad. (0, 0, 0): a vertical panel facing +x, rows along z, columns
    # along y. Not facing down: a downward panel of V-polarised elements puts a polarisation null under
    # the gNB (measured: 3.7e-11 instead of 1.8e-3 amplitude 1 m beside the nadir).
    gnb_orientation_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rows: int = 8
    cols: int = 16
    spacing_wavelengths: float = 0.5  # element spacing, both axes, in wavelengths
    num_subcarriers: int = 512
    subcarrier_spacing_hz: float = 240e3
    ue_height_m: float = 1.5
    ue_spacing_m: float = 0.5  # UE grid pitch (cell centres, as the twin's transmitter plane)
    ue_jitter_m: float = 0.25  # uniform ± offset in x and y per UE (0: exact grid)
    n_samples: int = 6000  # cap: a seeded random subset of the grid when it has more positions
    ue_tx_power_dbm: float = 23.0  # only for rx_power_dbm (3GPP UE power class 3)
    max_depth: int = 4
    samples_per_src: int = 20_000  # rays shot from the gNB per PathSolver call
    # Candidate-path buffer per UE (``max_num_paths_per_src`` = this × UEs per call). Depth 4 in the
    # default hall drops strong paths at 300 and 1000, converges at 3000 (measured, 1000 UEs per call).
    max_paths_per_ue: int = 3000
    # Specular-chain hash table slots per UE (central/twin/solvers.py explains the saturation).
    chain_hash_slots_per_ue: int = 30_000
    ues_per_call: int = 1000
    specular_reflection: bool = True
    refraction: bool = False  # through 1 cm of metal or out through the hall walls: nothing arrives
    diffraction: bool = False
    seed: int = 0

    def __post_init__(self):
        for name in ("rows", "cols", "num_subcarriers", "n_samples", "samples_per_src", "max_paths_per_ue",
                     "chain_hash_slots_per_ue", "ues_per_call"):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LosDatasetSettings.{name} must be a positive integer, got {v!r}")
        if self.num_subcarriers % 2:
            raise ValueError(f"LosDatasetSettings.num_subcarriers must be even, got {self.num_subcarriers}")
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, int) or self.max_depth < 0:
            raise ValueError(f"LosDatasetSettings.max_depth must be an integer >= 0, got {self.max_depth!r}")
        for name in ("subcarrier_spacing_hz", "ue_spacing_m", "spacing_wavelengths", "ue_height_m"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"LosDatasetSettings.{name} must be a positive number, got {v!r}")
        if not (math.isfinite(self.ue_jitter_m) and 0 <= self.ue_jitter_m <= self.ue_spacing_m / 2):
            raise ValueError(f"LosDatasetSettings.ue_jitter_m must be in [0, ue_spacing_m/2], got {self.ue_jitter_m}")
        for name in ("gnb_position_m", "gnb_orientation_rad"):
            v = getattr(self, name)
            if len(v) != 3 or not all(math.isfinite(float(c)) for c in v):
                raise ValueError(f"LosDatasetSettings.{name} must be 3 finite numbers, got {v!r}")
        # Frozen: normalise sequences to tuples of floats so that equal settings hash equally.
        object.__setattr__(self, "gnb_position_m", tuple(float(c) for c in self.gnb_position_m))
        object.__setattr__(self, "gnb_orientation_rad", tuple(float(c) for c in self.gnb_orientation_rad))

    @property
    def n_ant(self) -> int:
        return self.rows * self.cols

    @property
    def bandwidth_hz(self) -> float:
        return self.num_subcarriers * self.subcarrier_spacing_hz

    @property
    def delay_bin_s(self) -> float:
        """Delay resolution of the ADCPM: 1 / bandwidth (s)."""
        return 1.0 / self.bandwidth_hz

    @property
    def delay_bin_m(self) -> float:
        return SPEED_OF_LIGHT * self.delay_bin_s

    def subcarrier_frequencies_hz(self) -> np.ndarray:
        """Baseband subcarrier frequencies (k − n_sc/2)·Δf, k = 0 … n_sc − 1 (as ``sionna.rt``)."""
        k = np.arange(self.num_subcarriers) - self.num_subcarriers // 2
        return k * float(self.subcarrier_spacing_hz)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gnb_position_m"] = list(self.gnb_position_m)
        d["gnb_orientation_rad"] = list(self.gnb_orientation_rad)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LosDatasetSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LoS dataset settings {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class LosDataset:
    """Channels, labels and positions of one traced dataset (module docstring: shapes and conventions)."""

    h: np.ndarray  # (N, rows·cols, n_sc) complex64, unit mean power per entry
    los: np.ndarray  # (N,) bool
    ue_positions_m: np.ndarray  # (N, 3) float64
    gain_db: np.ndarray  # (N,) float32: 10·log10 mean |H|² before normalisation
    num_paths: np.ndarray  # (N,) int32: valid traced paths per UE
    settings: LosDatasetSettings
    meta: dict = field(default_factory=dict)  # site, site_hash, sionna_version, key, build_s, …

    def __post_init__(self):
        n = self.h.shape[0] if self.h.ndim == 3 else -1
        s = self.settings
        if self.h.ndim != 3 or self.h.shape[1:] != (s.n_ant, s.num_subcarriers):
            raise ValueError(f"h must be (N, {s.n_ant}, {s.num_subcarriers}), got {self.h.shape}")
        for name, want in (("los", (n,)), ("ue_positions_m", (n, 3)), ("gain_db", (n,)), ("num_paths", (n,))):
            if getattr(self, name).shape != want:
                raise ValueError(f"{name} must have shape {want}, got {getattr(self, name).shape}")

    @property
    def n(self) -> int:
        return int(self.h.shape[0])

    @property
    def rows(self) -> int:
        return self.settings.rows

    @property
    def cols(self) -> int:
        return self.settings.cols

    @property
    def rx_power_dbm(self) -> np.ndarray:
        """Received power per array element (dBm) at the UE's transmit power ``ue_tx_power_dbm``."""
        return self.settings.ue_tx_power_dbm + self.gain_db.astype(np.float64)

    @property
    def los_fraction(self) -> float:
        return float(np.mean(self.los)) if self.n else float("nan")

    def subset(self, idx) -> LosDataset:
        """The samples ``idx`` (indices or a boolean mask) as a new dataset (arrays copied)."""
        idx = np.asarray(idx)
        return LosDataset(self.h[idx], self.los[idx], self.ue_positions_m[idx], self.gain_db[idx],
                          self.num_paths[idx], self.settings, dict(self.meta))  # fmt: skip

    def save(self, path: str | Path) -> Path:
        return save_los_dataset(self, path)


# --------------------------------------------------------------------------------------------------
# Cache key and file format


def los_cache_key(settings: LosDatasetSettings, site_hash: str, rt_version: str) -> str:
    """Hash of the settings, the site's content hash (geometry and materials, not its name or path) and
    the Sionna RT version: change any and the dataset is traced again."""
    d = settings.to_dict()
    d.pop("site")  # the site enters through its content hash
    blob = json.dumps({"settings": d, "site": site_hash, "rt": rt_version, "format": FORMAT_VERSION},
                      sort_keys=True)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    """``los`` under the cache root (:func:`contracts.cache.cache_root`)."""
    return cache_dir("los")


def save_los_dataset(ds: LosDataset, path: str | Path) -> Path:
    """npz without pickle and uncompressed (complex channels do not compress; 2.6 GB for the default
    5000 × 128 × 512 would take minutes through zlib). Atomic: written to ``*.tmp``, then renamed, so a
    crash never leaves a truncated cache entry."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**ds.meta, "format": FORMAT_VERSION, "settings": ds.settings.to_dict()}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, meta_json=np.array(json.dumps(meta, default=str)), h=ds.h, los=ds.los,
                 ue_positions_m=ds.ue_positions_m, gain_db=ds.gain_db, num_paths=ds.num_paths)  # fmt: skip
    tmp.replace(path)
    return path


def load_los_dataset(path: str | Path) -> LosDataset:
    """Read a file written by :func:`save_los_dataset`; a wrong format version is a ``ValueError``."""
    with np.load(path, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    meta = json.loads(str(a.pop("meta_json")))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: LoS dataset format {meta.get('format')!r}, this code reads {FORMAT_VERSION}")
    settings = LosDatasetSettings.from_dict(meta.pop("settings"))
    return LosDataset(h=a["h"], los=a["los"].astype(bool), ue_positions_m=a["ue_positions_m"],
                      gain_db=a["gain_db"], num_paths=a["num_paths"], settings=settings, meta=meta)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# From traced paths to normalised channels (numpy; the tracer in evaluation.los_dataset calls these)


def channels_from_paths(a: np.ndarray, tau_s: np.ndarray, frequencies_hz: np.ndarray,
                        valid: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Channel frequency response H[n, ant, k] = Σ_p a[n, ant, p] · exp(−j2π f_k τ[n, p]).

    ``a`` (N, n_ant, P) complex baseband path coefficients (carrier phase included), ``tau_s`` (N, P)
    delays (s), ``frequencies_hz`` (K,) baseband, ``valid`` (N, P) the paths to sum (default all). One
    matrix product per UE over its valid paths only (the solver pads every UE to the batch's largest
    path count), phases in float32 (< 1e-5 rad error for delays of microseconds). complex64 (N, n_ant, K).
    """
    a = np.asarray(a)
    tau_s = np.asarray(tau_s, dtype=np.float64)
    f = np.asarray(frequencies_hz, dtype=np.float64)
    if a.ndim != 3 or tau_s.shape != (a.shape[0], a.shape[2]) or f.ndim != 1:
        raise ValueError(f"a (N, n_ant, P), tau (N, P), f (K,) expected, got {a.shape}, {tau_s.shape}, {f.shape}")
    valid = np.ones(tau_s.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != tau_s.shape:
        raise ValueError(f"valid must have the shape of tau {tau_s.shape}, got {valid.shape}")
    out = np.zeros((a.shape[0], a.shape[1], f.size), dtype=np.complex64)
    for i in range(a.shape[0]):
        v = valid[i]
        if not v.any():
            continue
        phase = ((-2.0 * np.pi) * tau_s[i, v, None] * f[None, :]).astype(np.float32)
        e = np.empty(phase.shape, dtype=np.complex64)
        e.real, e.imag = np.cos(phase), np.sin(phase)
        out[i] = a[i][:, v].astype(np.complex64) @ e
    return out


def channel_power(h: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Mean |h|² over antennas and subcarriers per sample (N,) float64, in chunks (no N-sized temporaries)."""
    if h.ndim != 3:
        raise ValueError(f"h must be (N, antennas, subcarriers), got shape {h.shape}")
    p = np.empty(h.shape[0])
    for s in range(0, h.shape[0], chunk):
        x = h[s : s + chunk]
        p[s : s + chunk] = np.mean(x.real.astype(np.float64) ** 2 + x.imag.astype(np.float64) ** 2, axis=(1, 2))
    return p


def normalise_channels(h: np.ndarray, inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(h / sqrt(P), 10·log10 P) per sample, P = mean over antennas and subcarriers of |h|² (the dataset's
    normalisation). ``inplace`` divides ``h`` itself (complex64), saving a copy of a multi-GB array.
    A channel with no power cannot be normalised and raises: drop it before (no path at all)."""
    p = channel_power(h)
    if np.any(p <= 0) or not np.all(np.isfinite(p)):
        raise ValueError(f"{int(np.sum(~(p > 0)))} channels have zero or non-finite power")
    out = h if inplace else np.array(h, dtype=np.complex64)
    if out.dtype != np.complex64:
        raise ValueError(f"in-place normalisation needs complex64, got {out.dtype}")
    scale = (1.0 / np.sqrt(p)).astype(np.float32)
    for s in range(0, len(out), 256):
        out[s : s + 256] *= scale[s : s + 256, None, None]
    return out, (10.0 * np.log10(p)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Train/test split by position


def split_by_position(ds_or_positions, holdout_fraction: float = 0.25, seed: int = 0, block_m: float = 4.0,
                      labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(train, test) sample indices (sorted), the test set being whole ``block_m`` × ``block_m`` squares.

    Why blocks, not random samples: grid neighbours 0.5 m apart see the same paths with slightly other
    phases, so a random split puts a near-copy of every test channel in the training set and measures
    memory, not generalisation. Holding out whole squares of a few metres (larger than the distance over
    which the dominant paths and the LoS state stay the same) tests on positions the model never saw
    nearby, as the base station meets new UE positions. Squares are drawn in a seeded random order
    until ``holdout_fraction`` of the samples is reached, so the test set is spread over the hall.

    With ``labels`` (LoS flags; taken from the dataset when one is given) the squares are drawn per
    stratum, mostly-LoS and mostly-NLoS squares separately, so that the test set's LoS fraction follows
    the whole set's (unstratified, it swung between 28 % and 45 % over seeds on the default hall).

    ``ds_or_positions``: a :class:`LosDataset` or UE positions (N, 2 or 3) in metres.
    """
    if isinstance(ds_or_positions, LosDataset):
        pos = ds_or_positions.ue_positions_m
        labels = ds_or_positions.los if labels is None else labels
    else:
        pos = ds_or_positions
    pos = np.asarray(pos, dtype=float)
    if pos.ndim != 2 or pos.shape[1] < 2 or not np.isfinite(pos[:, :2]).all():
        raise ValueError(f"positions must be finite (N, 2 or 3), got shape {pos.shape}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if not block_m > 0:
        raise ValueError(f"block_m must be > 0, got {block_m}")
    cells = np.floor(pos[:, :2] / block_m).astype(np.int64)
    blocks, block_of = np.unique(cells, axis=0, return_inverse=True)
    block_of = block_of.reshape(-1)
    if len(blocks) < 2:
        raise ValueError(f"all {len(pos)} positions fall in one {block_m} m block: use smaller blocks")
    counts = np.bincount(block_of, minlength=len(blocks))
    if labels is None:
        stratum = np.zeros(len(blocks), dtype=int)
    else:
        labels = np.asarray(labels, dtype=bool)
        if labels.shape != (len(pos),):
            raise ValueError(f"labels must be ({len(pos)},), got {labels.shape}")
        stratum = (np.bincount(block_of, weights=labels, minlength=len(blocks)) / counts >= 0.5).astype(int)
    rng = np.random.default_rng(seed)
    test_block = np.zeros(len(blocks), dtype=bool)
    for st in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == st))
        target = holdout_fraction * counts[members].sum()
        take = int(np.searchsorted(np.cumsum(counts[members]), target) + 1)
        take = min(take, max(len(members) - 1, 1))  # keep every stratum in the training set if possible
        test_block[members[:take]] = True
    if test_block.all():  # never hold out everything
        test_block[rng.choice(np.flatnonzero(test_block))] = False
    is_test = test_block[block_of]
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


# --------------------------------------------------------------------------------------------------
# Noise: AWGN augmentation and least-squares pilot estimates


def _noise_std(h: np.ndarray, snr_db) -> np.ndarray:
    """Per-sample complex noise standard deviation sqrt(P/SNR), shape (N, 1, 1); +inf dB → 0."""
    if h.ndim != 3:
        raise ValueError(f"h must be (N, antennas, subcarriers), got shape {h.shape}")
    snr_db = np.broadcast_to(np.asarray(snr_db, dtype=np.float64), (h.shape[0],))
    if np.isnan(snr_db).any():
        raise ValueError("snr_db must not be NaN")
    p = channel_power(h)
    var = p * np.where(np.isposinf(snr_db), 0.0, 10.0 ** (-np.where(np.isposinf(snr_db), 0.0, snr_db) / 10.0))
    return np.sqrt(var)[:, None, None]


def _cn(shape, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance circular complex Gaussian: E|z|² = 1."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * np.sqrt(0.5)


def add_awgn(h: np.ndarray, snr_db, rng: np.random.Generator) -> np.ndarray:
    """H + N, N ~ CN(0, P/SNR) i.i.d. per entry, P = the sample's mean |H|² over antennas and subcarriers.

    SNR (dB) is therefore the per-antenna, per-subcarrier signal-to-noise ratio of that sample (the
    paper fixes the SNR across samples, so every sample gets the same SNR whatever its path gain).
    ``snr_db``: a scalar or one value per sample (N,); ``+inf`` leaves a sample clean. complex64 out.
    """
    h = np.asarray(h)
    std = _noise_std(h, snr_db)
    return (h + std * _cn(h.shape, rng)).astype(np.complex64)


def ls_estimate(h: np.ndarray, snr_db, rng: np.random.Generator) -> np.ndarray:
    """Least-squares channel estimate from one OFDM pilot symbol per antenna at SNR ``snr_db``.

    The UE sends unit-modulus QPSK pilots x_k on every subcarrier; antenna m receives
    y_mk = H_mk·x_k + n_mk with n ~ CN(0, σ²), σ² = P/SNR (SNR as in :func:`add_awgn`); the LS estimate
    per subcarrier is Ĥ_mk = y_mk / x_k = H_mk + n_mk / x_k, i.e. the true channel plus white noise of
    the same variance (|x_k| = 1). complex64 (N, antennas, subcarriers).
    """
    h = np.asarray(h)
    std = _noise_std(h, snr_db)
    x = np.exp(1j * (np.pi / 4) * (2 * rng.integers(0, 4, size=(h.shape[0], 1, h.shape[2])) + 1))
    y = h * x + std * _cn(h.shape, rng)
    return (y / x).astype(np.complex64)
