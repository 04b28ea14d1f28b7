"""Features for LoS/NLoS identification from a channel h (N, rows·cols, n_sc): the ADCPM for the network,
hand-crafted multipath features for the classical baselines. numpy only (the central unit runs these in
front of the ONNX model), vectorised over samples and chunked to bound memory.

Conventions (antenna index r·cols + c, subcarrier k at baseband (k − n_sc/2)·Δf: :mod:`models.los.dataset`):

- **ADCPM** = |G|², G = Vᴴ H F with unitary DFTs (so Σ|G|² = Σ|H|²):
  V = V_rows ⊗ V_cols, V_M[m, i] = exp(j2π m u_i)/√M over each array axis, with spatial frequency
  u_i = (i − M//2)/M cycles per element (``fftshift``: broadside in the middle, index increasing with
  the phase step between neighbouring elements); F[k, n] = exp(+j2π k n/K)/√K over subcarriers, so
  delay bin n holds delay n/(K·Δf) s (a path at delay τ has H ∝ exp(−j2π f_k τ)). A single path of
  power |a|² whose angle and delay fall on bins puts |a|²·M·K into one ADCPM entry.
- **Down-sampling** (the paper's (128, 512) → (32, 128)): non-overlapping max-pooling on the
  (rows, cols) grid and over delay, e.g. (8, 16) by (2, 2) → (4, 8), flattened row-major to 32 angle
  bins, and 512 delay bins by 4 → 128. Max-pooling keeps each path's peak and its rough position.
- **Network input**: 10·log10 of the pooled ADCPM relative to the sample's own peak, clipped to
  −``dynamic_range_db`` and scaled to [0, 1]; (N, 1, 32, 128) float32. Scale-free, as the paper's.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

FEATURE_NAMES = (
    "rss_db",  # power of the detected multipath components (dB re the channel's scale; + gain_db)
    "max_path_power_db",  # strongest angle-delay bin's power (dB, same reference)
    "rms_delay_spread_ns",  # RMS delay spread of the detected components (ns)
    "rise_time_ns",  # delay from the first detected component to the strongest (ns)
    "aoa_spread_az_deg",  # RMS arrival-angle spread along the array's columns (horizontal axis) (deg)
    "aoa_spread_el_deg",  # RMS arrival-angle spread along the array's rows (vertical axis) (deg)
)


def _check_h(h: np.ndarray, rows: int, cols: int) -> np.ndarray:
    h = np.asarray(h)
    if h.ndim != 3:
        raise ValueError(f"h must be (N, antennas, subcarriers), got shape {h.shape}")
    if rows < 1 or cols < 1 or h.shape[1] != rows * cols:
        raise ValueError(f"h has {h.shape[1]} antennas, the array has rows × cols = {rows} × {cols}")
    if not np.iscomplexobj(h):
        raise ValueError(f"h must be complex, got {h.dtype}")
    return h


def adcpm(h: np.ndarray, rows: int, cols: int, chunk: int = 256, workers: int = -1) -> np.ndarray:
    """Angle-delay channel power matrix |Vᴴ H F|² (module docstring), float32 (N, rows, cols, n_sc).

    scipy.fft in single precision on ``workers`` threads (-1: all cores): about 0.9 ms per 128 × 512
    sample on 2 cores, half of numpy's."""
    h = _check_h(h, rows, cols)
    n, _, k = h.shape
    out = np.empty((n, rows, cols, k), dtype=np.float32)
    for s in range(0, n, chunk):
        x = h[s : s + chunk].astype(np.complex64, copy=False).reshape(-1, rows, cols, k)
        g = sfft.fftn(x, axes=(1, 2), norm="ortho", workers=workers)
        g = sfft.ifft(g, axis=3, norm="ortho", overwrite_x=True, workers=workers)
        g = np.fft.fftshift(g, axes=(1, 2))
        out[s : s + chunk] = g.real**2 + g.imag**2
    return out


def angle_bins(m: int) -> np.ndarray:
    """Spatial frequency (cycles per element) of each of the m angle bins of one array axis."""
    return (np.arange(m) - m // 2) / m


def _pool_factors(rows: int, cols: int, n_angle: int) -> tuple[int, int]:
    """(pr, pc) dividing (rows, cols) with (rows/pr)·(cols/pc) = n_angle; the most square pool wins."""
    cands = [(pr, pc) for pr in range(1, rows + 1) for pc in range(1, cols + 1)
             if rows % pr == 0 and cols % pc == 0 and (rows // pr) * (cols // pc) == n_angle]  # fmt: skip
    if not cands:
        raise ValueError(f"cannot max-pool a {rows} × {cols} array to {n_angle} angle bins "
                         f"(needs an integer pool per axis; pooling never up-samples)")  # fmt: skip
    return min(cands, key=lambda p: (abs(np.log(p[0] / p[1])), -p[0]))


def downsample_max(adcpm_: np.ndarray, out: tuple[int, int] = (32, 128), pool: tuple[int, int] | None = None,
                   rows: int | None = None, cols: int | None = None) -> np.ndarray:  # fmt: skip
    """Non-overlapping max-pooling of an ADCPM to ``out`` = (angle bins, delay bins); (N, *out) float32.

    ``adcpm_``: (N, rows, cols, n_sc) from :func:`adcpm`, or (N, rows·cols, n_sc) with ``rows``/``cols``.
    The (rows, cols) grid is pooled by (pr, pc) (``pool``, or the most square factors that give
    ``out[0]`` bins: (8, 16) → (2, 2)) and flattened row-major; delay by n_sc / ``out[1]`` (512 → 4).
    """
    x = np.asarray(adcpm_)
    if x.ndim == 3:
        if rows is None or cols is None or x.shape[1] != rows * cols:
            raise ValueError(f"a (N, antennas, n_sc) ADCPM needs rows and cols with rows·cols = {x.shape[1]}")
        x = x.reshape(x.shape[0], rows, cols, x.shape[2])
    if x.ndim != 4:
        raise ValueError(f"ADCPM must be (N, rows, cols, n_sc), got shape {x.shape}")
    n, r, c, k = x.shape
    n_angle, n_delay = out
    if n_delay < 1 or k % n_delay:
        raise ValueError(f"{k} delay bins cannot be max-pooled to {n_delay} (needs a divisor)")
    if pool is None:
        pr, pc = _pool_factors(r, c, n_angle)
    else:
        pr, pc = pool
        if r % pr or c % pc or (r // pr) * (c // pc) != n_angle:
            raise ValueError(f"pool {pool} does not take a {r} × {c} array to {n_angle} angle bins")
    y = _max_pool_axis(x, 3, k // n_delay)  # delay first: the contiguous axis shrinks the most
    y = _max_pool_axis(y, 1, pr)
    y = _max_pool_axis(y, 2, pc)
    return y.reshape(n, n_angle, n_delay).astype(np.float32, copy=False)


def _max_pool_axis(x: np.ndarray, axis: int, p: int) -> np.ndarray:
    """Non-overlapping max over windows of p along ``axis`` (length divisible by p), as element-wise
    maxima of p strided views: several times faster than ``reshape(...).max(axis=...)``."""
    if p == 1:
        return x
    view = [slice(None)] * x.ndim
    view[axis] = slice(0, None, p)
    out = x[tuple(view)].copy()
    for i in range(1, p):
        view[axis] = slice(i, None, p)
        np.maximum(out, x[tuple(view)], out=out)
    return out


def log_normalise(x: np.ndarray, dynamic_range_db: float = 60.0) -> np.ndarray:
    """Network input from a (pooled) ADCPM (N, A, D): dB relative to each sample's peak, clipped at
    −``dynamic_range_db``, mapped linearly to [0, 1] (peak = 1). (N, 1, A, D) float32; an all-zero
    sample gives zeros."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected (N, angle, delay) powers, got shape {x.shape}")
    if not dynamic_range_db > 0:
        raise ValueError(f"dynamic_range_db must be > 0, got {dynamic_range_db}")
    peak = x.reshape(len(x), -1).max(axis=1) if x.size else np.zeros(len(x), np.float32)
    tiny = np.float32(1e-30)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(np.maximum(x, tiny) / np.maximum(peak, tiny)[:, None, None])
    y = 1.0 + np.clip(db, -dynamic_range_db, 0.0) / dynamic_range_db
    y[peak <= 0] = 0.0
    return y[:, None].astype(np.float32)


def network_input(h: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(N, 1, 32, 128) float32 network input from channels h (N, rows·cols, n_sc): the ADCPM, max-pooled,
    log-normalised. The one pipeline training, the benchmark and the served ONNX model all use."""
    return log_normalise(downsample_max(adcpm(h, rows, cols)))


def power_delay_profile(h: np.ndarray) -> np.ndarray:
    """PDP (N, n_sc): mean over antennas of |IDFT_k(h)|² with numpy's 1/K scaling, so that the bins sum
    to the mean per-entry power mean |h|² and an on-grid path of power |a|² fills one bin with |a|²."""
    h = np.asarray(h)
    if h.ndim != 3:
        raise ValueError(f"h must be (N, antennas, subcarriers), got shape {h.shape}")
    g = np.fft.ifft(h.astype(np.complex64, copy=False), axis=2)
    return np.mean(g.real**2 + g.imag**2, axis=1, dtype=np.float64)


def _weighted_spread(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """RMS spread of ``values`` (B,) under weights w (N, B), per row."""
    tot = w.sum(axis=1)
    mean = (w * values).sum(axis=1) / tot
    var = (w * values**2).sum(axis=1) / tot - mean**2
    return np.sqrt(np.maximum(var, 0.0))


def handcrafted_features(
    h: np.ndarray,
    rows: int,
    cols: int,
    *,
    subcarrier_spacing_hz: float = 240e3,
    gain_db: np.ndarray | float | None = None,
    spacing_wavelengths: float = 0.5,
    dynamic_range_db: float = 25.0,
    noise_margin_db: float = 6.0,
    chunk: int = 256,
) -> np.ndarray:
    """The paper's high-resolution features, estimated from the channel itself: (N, 6) float64 in the
    order of :data:`FEATURE_NAMES`.

    *Detected components*: delay bins of the power delay profile (:func:`power_delay_profile`) within the
    first half of the delay window (0 … n_sc/(2·bandwidth), 2.1 µs = 625 m of excess path by default;
    the second half holds only wrapped side-lobes) whose power is at least max(peak − ``dynamic_range_db``,
    noise + ``noise_margin_db``), the noise level being the median bin power (multipath fills a few bins,
    noise all of them).

    - RSS (dB): power of the detected components; ``gain_db`` (scalar or (N,)) is added, e.g. the dataset's
      ``gain_db`` for normalised channels, so that RSS is the absolute path gain. Without it RSS is relative
      to the channel's own scale (constant for normalised, noise-free channels).
    - Max path power (dB, same reference): the largest ADCPM entry / (antennas · subcarriers), which is the
      power of the strongest path when it is resolved in angle and delay.
    - RMS delay spread (ns) and rise time (ns: first detected bin to the strongest bin) over detected bins,
      delays n/(n_sc·``subcarrier_spacing_hz``).
    - AoA spreads (deg): RMS spread of the arrival angle arcsin(u / spacing_wavelengths) along each array
      axis, u the spatial frequency of the angle bin, weighted by the ADCPM summed over detected bins.
    """
    h = _check_h(h, rows, cols)
    n, _, k = h.shape
    if not subcarrier_spacing_hz > 0:
        raise ValueError(f"subcarrier_spacing_hz must be > 0, got {subcarrier_spacing_hz}")
    offset = np.zeros(n) if gain_db is None else np.broadcast_to(np.asarray(gain_db, dtype=np.float64), (n,))
    delay_ns = np.arange(k // 2) / (k * subcarrier_spacing_hz) * 1e9
    ang_r = np.degrees(np.arcsin(np.clip(angle_bins(rows) / spacing_wavelengths, -1.0, 1.0)))
    ang_c = np.degrees(np.arcsin(np.clip(angle_bins(cols) / spacing_wavelengths, -1.0, 1.0)))
    feats = np.empty((n, len(FEATURE_NAMES)))
    tiny = 1e-30
    for s in range(0, n, chunk):
        hc = h[s : s + chunk]
        pdp = power_delay_profile(hc)
        noise = np.median(pdp, axis=1)
        win = pdp[:, : k // 2]
        peak = win.max(axis=1)
        thr = np.maximum(peak * 10 ** (-dynamic_range_db / 10), noise * 10 ** (noise_margin_db / 10))
        det = win >= thr[:, None]  # the peak bin always passes unless the sample is pure noise
        det[~det.any(axis=1), 0] = True
        w = np.where(det, win, 0.0)
        first = np.argmax(det, axis=1)
        strongest = np.argmax(win, axis=1)
        g = adcpm(hc, rows, cols).astype(np.float64)  # (b, rows, cols, K)
        aps = np.einsum("brck,bk->brc", g[..., : k // 2], det.astype(np.float64))
        sl = slice(s, s + len(hc))
        feats[sl, 0] = 10 * np.log10(np.maximum(w.sum(axis=1), tiny)) + offset[sl]
        feats[sl, 1] = 10 * np.log10(np.maximum(g.reshape(len(hc), -1).max(axis=1) / (rows * cols * k), tiny)) + offset[sl]
        feats[sl, 2] = _weighted_spread(delay_ns, w)
        feats[sl, 3] = (strongest - first) * delay_ns[1] if k > 2 else 0.0
        feats[sl, 4] = _weighted_spread(ang_c, aps.sum(axis=1))
        feats[sl, 5] = _weighted_spread(ang_r, aps.sum(axis=2))
    return feats
