"""Material calibration by differentiable ray tracing (issue 6).

Why: the twin predicts what each SU should receive from the legitimate transmitters; wrong wall
materials bias every prediction and every residual. A commissioning campaign measures a reference
transmitter at known points; this module fits the materials so that ray tracing reproduces those
measurements, and estimates each SU's gain offset (cable, connector and antenna loss) on the way.

Model. For campaign point t (TX at x_t with EIRP P_t, dBm) and SU r, the twin predicts

    ŷ_rt = 10 log10(P_t,mW · g_rt(θ) + N_mW) + o_r   (dBm)

with g_rt = Σ_paths |a|² the wideband (incoherent) path gain from Sionna RT's PathSolver, θ the natural
logs of ε_r and σ (S/m) of the fitted materials (positive by construction, scale-free steps), o_r the
SU's offset (dB) and N the site's noise floor. Loss (dB²) over the training points' readings:

    L(θ) = mean ρ(ŷ − y) + λ Σ_materials (ln σ − ln σ_0)²,   ρ = Huber (quadratic up to huber_db)

Readings within ``floor_margin_db`` of the noise floor say only "weaker than that" and are left out;
the Huber loss bounds the pull of the few pairs where the twin finds a path the world lacks or the
reverse (≈ 5 % of TX–SU pairs in the reference hall differ by tens of dB between a point and its
0.5 m cell). The offsets are profiled out: for given θ the best o_r is the median training residual of
SU r (robust, closed form), so only θ is iterated; by the envelope theorem ∂L/∂θ at the profiled
offsets needs no derivative through them. σ is weakly identifiable from received power at 3.7 GHz
(docs/architecture.md), hence the ridge λ towards the starting value (the ITU model's σ unless given).

Optimiser: Adam on θ with exponential learning-rate decay; a deterministic PathSolver (same paths every
step, so the loss is a smooth function of θ). The points are split three ways (seeded): training
points drive the fit, validation points pick when to stop (the θ with the lowest validation Huber
loss is returned), and held-out test points, never looked at during the fit, are what the figures
quote: a test point that also chose the stopping step would flatter the result.

"Before" is the twin as built with per-SU offsets profiled on the training points, the same closed
form as during the fit: the offsets (cable loss, antenna) are something any calibration gets for
free, so before → after measures what the material fit adds. The twin as built without any offset
is kept as well (:attr:`FitResult.predicted_as_built_dbm`). Geometry does not depend on θ, only path
amplitudes do, so after the first step (kernel compilation) each step costs one traced forward and
backward pass (≈ 0.75 s for 40 points × 12 SUs on 2 cores).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from central.twin.site import Material, Site

K_DB = 10.0 / math.log(10.0)


class FitError(ValueError):
    """The campaign cannot be fitted (too few points, unknown material, …), with the reason."""


@dataclass(frozen=True)
class FitSettings:
    materials: tuple[str, ...] | None = None  # site material names to fit; None: every non-metal one used
    fit_conductivity: bool = True
    conductivity_ridge: float = 0.02  # λ, dB² per (ln σ − ln σ_0)²: a nudge (0.5 pins σ and biases ε_r)
    fit_offsets: bool = True
    huber_db: float = 3.0  # errors beyond this count linearly (a path the twin misses, a reflection off a person)
    floor_margin_db: float = 6.0  # readings below noise floor + this are noise-dominated: not used
    iterations: int = 80
    learning_rate: float = 0.06  # Adam step, in ln units (≈ 6 % per step at first)
    lr_decay: float = 0.97  # per iteration
    holdout_fraction: float = 0.25  # test points: only for the figures
    validation_fraction: float = 0.2  # for early stopping
    patience: int = 15  # iterations without a held-out improvement of min_improvement_db before stopping
    min_improvement_db2: float = 1e-4  # of the validation Huber loss
    seed: int = 0
    max_depth: int = 3
    samples_per_src: int = 10_000
    max_paths_per_target: int = 200


@dataclass
class FitStep:
    iteration: int
    loss_db2: float
    train_rmse_db: float
    validation_rmse_db: float
    validation_loss_db2: float  # Huber, the early-stopping criterion (robust to a missed path)
    materials: dict[str, tuple[float, float]]  # name → (ε_r, σ S/m)
    seconds: float


@dataclass
class FitResult:
    """Fitted materials and offsets, and everything the report needs (dB, dBm, S/m, s)."""

    materials: dict[str, tuple[float, float]]  # fitted name → (ε_r, σ S/m)
    initial_materials: dict[str, tuple[float, float]]
    offsets_db: dict[str, float]  # per SU
    su_ids: list[str]
    train: np.ndarray  # indices of the training points
    validation: np.ndarray  # indices of the points that chose the stopping step
    holdout: np.ndarray  # indices of the held-out test points (untouched by the fit)
    measured_dbm: np.ndarray  # (P, n_su), NaN = no reading
    predicted_before_dbm: np.ndarray  # the twin's materials, offsets profiled on the training points
    predicted_after_dbm: np.ndarray  # fitted materials plus offsets
    predicted_as_built_dbm: np.ndarray  # the twin's materials, no offsets at all
    history: list[FitStep] = field(default_factory=list)
    fit_s: float = 0.0
    stopped: str = ""

    def points(self, which: str) -> np.ndarray:
        """Indices of ``"train"``, ``"validation"`` or ``"holdout"`` (the test points)."""
        return {"train": self.train, "validation": self.validation, "holdout": self.holdout}[which]

    def rmse_db(self, which: str = "holdout", after: bool = True) -> float:
        idx = self.points(which)
        pred = self.predicted_after_dbm if after else self.predicted_before_dbm
        return nan_rmse(pred[idx] - self.measured_dbm[idx])

    def as_built_rmse_db(self, which: str = "holdout") -> float:
        """RMSE of the twin as built, without any offset (what an uncalibrated station would see)."""
        idx = self.points(which)
        return nan_rmse(self.predicted_as_built_dbm[idx] - self.measured_dbm[idx])

    def per_su(self, which: str = "holdout") -> dict[str, dict[str, float]]:
        """Per SU: RMSE and bias (mean of predicted − measured), dB, before and after."""
        idx = self.points(which)
        out = {}
        for j, su in enumerate(self.su_ids):
            m = self.measured_dbm[idx, j]
            rows = {}
            for tag, pred in (("before", self.predicted_before_dbm), ("after", self.predicted_after_dbm)):
                e = pred[idx, j] - m
                rows[f"rmse_{tag}_db"] = nan_rmse(e)
                rows[f"bias_{tag}_db"] = float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")
            out[su] = rows
        return out

    def calibrated_site(self, site: Site, campaign: str, date: str | None = None) -> Site:
        """The site with the fitted materials as explicit ε_r, σ and their provenance."""
        date = date or time.strftime("%Y-%m-%d", time.gmtime())
        return with_materials(site, self.materials, f"campaign {campaign}, {date}, held-out RMSE "
                              f"{self.rmse_db('holdout', False):.2f} → {self.rmse_db('holdout'):.2f} dB over {len(self.holdout)} points")  # fmt: skip


def with_materials(site: Site, materials: dict[str, tuple[float, float]], provenance: str) -> Site:
    """``site`` with ``materials`` (name → (ε_r, σ S/m)) as explicit, frequency-independent values,
    each with the provenance "calibrated: ``provenance``"."""
    import dataclasses as dc

    mats = dict(site.materials)
    for name, (eps, sigma) in materials.items():
        mats[name] = Material(name, None, round(eps, 4), round(sigma, 5), site.materials[name].thickness_m,
                              f"calibrated: {provenance}")  # fmt: skip
    return dc.replace(site, materials=mats)


def _huber(e: np.ndarray, delta_db: float) -> float:
    e = e[np.isfinite(e)]
    a = np.abs(e)
    return float(np.mean(np.where(a <= delta_db, e * e, 2 * delta_db * a - delta_db**2))) if e.size else math.nan


def nan_rmse(e: np.ndarray) -> float:
    """RMSE (dB) over the finite entries of ``e`` (NaN: no reading); NaN when there are none."""
    e = e[np.isfinite(e)]
    return float(np.sqrt(np.mean(e * e))) if e.size else float("nan")


def fit_materials(
    site: Site,
    tx_positions_m: np.ndarray,
    tx_power_dbm: np.ndarray,
    measured_dbm: np.ndarray,
    settings: FitSettings = FitSettings(),
    initial: dict[str, tuple[float, float]] | None = None,
    progress: Callable[[FitStep], None] | None = None,
) -> FitResult:
    """Fit ``settings.materials`` (and per-SU offsets) to campaign measurements.

    ``tx_positions_m`` (P, 3), ``tx_power_dbm`` (P,) EIRP, ``measured_dbm`` (P, n_su) in the site's SU
    order (NaN where a SU gave no reading). ``initial``: starting (ε_r, σ) per material; default the
    site's values at its carrier (ITU model or explicit). ``progress`` gets every :class:`FitStep`.
    """
    t_start = time.perf_counter()
    pos = np.asarray(tx_positions_m, dtype=float).reshape(-1, 3)
    power = np.broadcast_to(np.asarray(tx_power_dbm, dtype=float), (len(pos),)).copy()
    meas = np.asarray(measured_dbm, dtype=float)
    n_su = len(site.sensing_units)
    if meas.shape != (len(pos), n_su):
        raise FitError(f"measured_dbm has shape {meas.shape}, want ({len(pos)}, {n_su}) (points × SUs)")
    n_hold = max(1, int(round(settings.holdout_fraction * len(pos))))
    n_val = max(1, int(round(settings.validation_fraction * len(pos))))
    if len(pos) - n_hold - n_val < 4:
        raise FitError(f"{len(pos)} usable points: need at least {4 + n_hold + n_val} (4 to fit, {n_val} to "
                       f"validate, {n_hold} to test)")  # fmt: skip
    perm = np.random.default_rng(settings.seed).permutation(len(pos))
    holdout, validation = np.sort(perm[:n_hold]), np.sort(perm[n_hold : n_hold + n_val])
    train = np.sort(perm[n_hold + n_val :])

    model = RayTracedPowers(site, pos, power, settings)
    names = list(settings.materials) if settings.materials else model.default_materials()
    for n in names:
        if n not in model.materials:
            raise FitError(f"material {n!r} is not in the site (known: {sorted(model.materials)})")
    start = {n: model.material_values(n) for n in names}
    start.update(initial or {})
    theta = np.array([v for n in names for v in (math.log(start[n][0]), math.log(start[n][1]))])
    free = np.array([True, settings.fit_conductivity] * len(names))
    ln_sigma0 = theta[1::2].copy()

    usable = np.isfinite(meas) & (meas >= site.noise_floor_dbm + settings.floor_margin_db)
    meas = np.where(usable, meas, np.nan)
    w_train = np.zeros_like(meas, dtype=bool)
    w_train[train] = usable[train]
    for name, idx, purpose in (("held-out", holdout, "test"), ("validation", validation, "validate")):
        if not usable[idx].any():
            raise FitError(f"none of the {len(idx)} {name} points has a usable reading (all missing or within "
                           f"{settings.floor_margin_db:g} dB of the noise floor): nothing to {purpose} the fit on")  # fmt: skip
    if not w_train.any():
        raise FitError("no training point has a usable reading")
    if w_train.sum(axis=0).min() < 2 and settings.fit_offsets:
        raise FitError("every SU needs at least 2 training readings to estimate its offset")

    def unpack(th):
        return {n: (math.exp(th[2 * i]), math.exp(th[2 * i + 1])) for i, n in enumerate(names)}

    m_adam, v_adam = np.zeros_like(theta), np.zeros_like(theta)
    b1, b2, eps_adam = 0.9, 0.999, 1e-8
    history: list[FitStep] = []
    best = (math.inf, theta.copy(), None, None)
    before = as_built = None
    stale = 0
    stopped = f"{settings.iterations} iterations"
    for it in range(settings.iterations):
        t0 = time.perf_counter()
        mats = unpack(theta)
        pred, backward = model.predict(mats)
        resid = np.where(w_train, meas - pred, np.nan)
        offsets = np.nan_to_num(np.nanmedian(resid, axis=0)) if settings.fit_offsets else np.zeros(n_su)
        if before is None:
            as_built, before = pred.copy(), pred + offsets
        err = pred + offsets - meas
        train_rmse, val_rmse = nan_rmse(err[train]), nan_rmse(err[validation])
        ridge = settings.conductivity_ridge * float(np.sum((theta[1::2] - ln_sigma0) ** 2 * free[1::2]))
        hd = settings.huber_db
        huber, val_huber = _huber(err[train], hd), _huber(err[validation], hd)
        # d mean ρ(err)/d pred over the training readings; offsets held (envelope theorem)
        d_pred = np.where(w_train, 2.0 * np.clip(np.nan_to_num(err), -hd, hd) / w_train.sum(), 0.0)
        grad = backward(d_pred)  # (2·materials,) d loss / d θ
        grad[1::2] += 2.0 * settings.conductivity_ridge * (theta[1::2] - ln_sigma0)
        grad = np.where(free, grad, 0.0)
        step = FitStep(it, huber + ridge, train_rmse, val_rmse, val_huber, mats, time.perf_counter() - t0)
        history.append(step)
        if progress:
            progress(step)
        if val_huber < best[0] - settings.min_improvement_db2:
            best, stale = (val_huber, theta.copy(), pred + offsets, offsets), 0
        else:
            stale += 1
            if stale >= settings.patience:
                stopped = f"early stop at iteration {it}: validation loss not improved for {stale} iterations"
                break
        lr = settings.learning_rate * settings.lr_decay**it
        m_adam = b1 * m_adam + (1 - b1) * grad
        v_adam = b2 * v_adam + (1 - b2) * grad * grad
        mh, vh = m_adam / (1 - b1 ** (it + 1)), v_adam / (1 - b2 ** (it + 1))
        theta = theta - lr * mh / (np.sqrt(vh) + eps_adam)
    _, theta_best, pred_best, off_best = best
    return FitResult(
        materials=unpack(theta_best), initial_materials={n: start[n] for n in names},
        offsets_db={su: float(o) for su, o in zip(site.su_ids, off_best)}, su_ids=site.su_ids, train=train,
        validation=validation, holdout=holdout, measured_dbm=meas, predicted_before_dbm=before,
        predicted_after_dbm=pred_best, predicted_as_built_dbm=as_built, history=history,
        fit_s=time.perf_counter() - t_start, stopped=stopped,
    )  # fmt: skip


class RayTracedPowers:
    """Predicted SU powers (dBm) of fixed TX placements, differentiable in materials' ε_r and σ.

    One Sionna RT scene of the site with every campaign point as a transmitter and every SU as a
    receiver; one deterministic PathSolver call per evaluation (reverse-mode AD through Dr.Jit)."""

    def __init__(self, site: Site, tx_positions_m: np.ndarray, tx_power_dbm: np.ndarray, settings: FitSettings):
        from central.twin.rt_runtime import load_rt_scene, sionna_rt

        rt = sionna_rt()
        self.site = site
        self.settings = settings
        self.scene = load_rt_scene(site)
        self.materials = {name: self.scene.radio_materials[f"rm-{name}"] for name in site.materials}
        for mat in self.materials.values():  # keep ε_r, σ fixed at what we set (ITU types would reset them)
            mat.frequency_update_callback = None
        for i, p in enumerate(tx_positions_m):
            self.scene.add(rt.Transmitter(f"ref{i}", position=[float(c) for c in p]))
        for su in site.sensing_units:
            self.scene.add(rt.Receiver(f"su-{su.id}", position=[float(c) for c in su.position_m]))
        self.n_tx, self.n_su = len(tx_positions_m), len(site.sensing_units)
        self.tx_mw = np.power(10.0, np.asarray(tx_power_dbm, dtype=float) / 10.0)
        self.noise_mw = 10.0 ** (site.noise_floor_dbm / 10.0)
        self.solver = rt.PathSolver(deterministic=True)
        self.solver.loop_mode = "evaluated"  # required for reverse-mode differentiation

    def default_materials(self) -> list[str]:
        """The materials worth fitting: every one but perfect-conductor-like metal."""
        return [n for n, m in self.site.materials.items() if (m.itu_type or "") != "metal"]

    def material_values(self, name: str) -> tuple[float, float]:
        m = self.materials[name]
        return float(np.asarray(m.relative_permittivity).ravel()[0]), float(np.asarray(m.conductivity).ravel()[0])

    def predict(self, materials: dict[str, tuple[float, float]]):
        """(predicted dBm (P, n_su) without offsets, backward(d_pred) → dL/dθ) for ``materials``
        {name: (ε_r, σ)}; θ = (ln ε_r, ln σ) per material in the dict's order."""
        import drjit as dr
        import mitsuba as mi

        params = []
        for name, (eps, sigma) in materials.items():
            ln_eps, ln_sigma = mi.Float(math.log(eps)), mi.Float(math.log(sigma))
            dr.make_opaque(ln_eps, ln_sigma)  # a variable, not a literal: kernels are compiled once
            dr.enable_grad(ln_eps)
            dr.enable_grad(ln_sigma)
            self.materials[name].relative_permittivity = dr.exp(ln_eps)
            self.materials[name].conductivity = dr.exp(ln_sigma)
            params += [ln_eps, ln_sigma]
        s = self.settings
        paths = self.solver(self.scene, max_depth=s.max_depth, max_num_paths_per_src=self.n_su * s.max_paths_per_target,
                            samples_per_src=s.samples_per_src, seed=s.seed)  # fmt: skip
        a_re, a_im = paths.a  # (n_su, 1, n_tx, 1, paths)
        gain = dr.sum(dr.sum(a_re * a_re + a_im * a_im, axis=4), axis=(1, 3))  # (n_su, n_tx)
        rx_mw = gain * mi.TensorXf(self.tx_mw[None, :].astype(np.float32)) + self.noise_mw
        pred = K_DB * dr.log(rx_mw)  # dBm, (n_su, n_tx)
        value = np.array(pred, dtype=np.float64).T

        def backward(d_pred: np.ndarray) -> np.ndarray:
            seed = mi.TensorXf(np.ascontiguousarray(d_pred.T, dtype=np.float32))
            dr.backward(dr.sum(pred * seed, axis=None))
            return np.array([float(np.asarray(dr.grad(p)).ravel()[0]) for p in params])

        return value, backward
