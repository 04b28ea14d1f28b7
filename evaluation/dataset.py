"""Detection datasets from the twin: the paper's reference scenario (docs/architecture.md, issue 5).

One *realisation* = 3 legitimate transmitters uniform over the TX plane outside obstacles (20 dBm), plus
with probability 0.5 a jammer with the same properties. Per realisation:

- ``pt_dbm`` (N, n_su): the *physical twin*: the twin's prediction from the TRUE positions of all
  transmitters, jammer included (as the paper, where PT is ray tracing at the true positions). With
  ``pt_twin`` another twin (e.g. ``factory-hall-a-truth``'s maps) plays the physical world.
- ``dt_dbm`` (N, n_su): the *digital twin*: the twin's prediction from the legitimate transmitters'
  positions with a localisation error (radial magnitude N(0, loc_error_std_m), uniform angle, clipped
  into the hall). The DT does not know the jammer.
- ``delta_db[σ]`` = PT − DT + ε, ε = σ·z with z ~ N(0, 1) per SU and realisation, the same z for every σ
  (common random numbers: the σ columns differ only in the model error's scale).

Everything is drawn from one ``numpy.random.default_rng(seed)`` in a fixed order, vectorised over
realisations (one batched :meth:`Predictor.predict` per twin), so a seed reproduces a dataset exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from central.twin.positions import sample_positions
from central.twin.site import Site

DEFAULT_SIGMAS_DB = (0.0, 3.0, 6.0)
FORMAT_VERSION = 1


@dataclass
class DetectionDataset:
    site: str
    seed: int
    sigmas_db: tuple[float, ...]
    su_ids: list[str]
    su_positions_m: np.ndarray  # (n_su, 3)
    tx_positions_m: np.ndarray  # (N, T, 3) true legitimate TX positions
    tx_est_positions_m: np.ndarray  # (N, T, 3) positions the DT uses (with localisation error)
    tx_power_dbm: float
    jammer: np.ndarray  # (N,) bool
    jammer_position_m: np.ndarray  # (N, 3); NaN where there is no jammer
    jammer_power_dbm: float
    pt_dbm: np.ndarray  # (N, n_su)
    dt_dbm: np.ndarray  # (N, n_su)
    eps_unit: np.ndarray  # (N, n_su) z ~ N(0, 1); ε = σ·z
    loc_error_std_m: float
    noise_floor_dbm: float
    meta: dict = field(default_factory=dict)
    jammer_on: np.ndarray | None = None  # (N,) the jammer transmits in this window; None: = jammer

    def __post_init__(self):
        if self.jammer_on is None:
            self.jammer_on = self.jammer

    @property
    def n(self) -> int:
        return int(self.jammer.shape[0])

    @property
    def n_su(self) -> int:
        return int(self.pt_dbm.shape[1])

    def delta_db(self, sigma_db: float) -> np.ndarray:
        """Residual snapshots Δ = PT − DT + σ·z (N, n_su), for any σ (not only the stored ones)."""
        return self.pt_dbm - self.dt_dbm + float(sigma_db) * self.eps_unit

    def save(self, path: str | Path) -> Path:
        """npz (no pickle): every array, Δ per stored σ as ``delta_sigma{σ:g}``, metadata as JSON."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_VERSION, "site": self.site, "seed": self.seed, "sigmas_db": list(self.sigmas_db),
            "su_ids": self.su_ids, "tx_power_dbm": self.tx_power_dbm, "jammer_power_dbm": self.jammer_power_dbm,
            "loc_error_std_m": self.loc_error_std_m, "noise_floor_dbm": self.noise_floor_dbm, **self.meta,
        }  # fmt: skip
        arrays = {
            "su_positions_m": self.su_positions_m, "tx_positions_m": self.tx_positions_m,
            "tx_est_positions_m": self.tx_est_positions_m, "jammer": self.jammer,
            "jammer_position_m": self.jammer_position_m, "pt_dbm": self.pt_dbm, "dt_dbm": self.dt_dbm,
            "eps_unit": self.eps_unit, "seed": np.int64(self.seed), "sigmas_db": np.asarray(self.sigmas_db),
            "jammer_on": self.jammer_on,
        }  # fmt: skip
        for s in self.sigmas_db:
            arrays[f"delta_sigma{s:g}"] = self.delta_db(s)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta_json=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)
        return path


def load_dataset(path: str | Path) -> DetectionDataset:
    with np.load(path, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    meta = json.loads(str(a.pop("meta_json")))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: dataset format {meta.get('format')!r}, this code reads {FORMAT_VERSION}")
    known = {"format", "site", "seed", "sigmas_db", "su_ids", "tx_power_dbm", "jammer_power_dbm",
             "loc_error_std_m", "noise_floor_dbm"}  # fmt: skip
    return DetectionDataset(
        site=meta["site"], seed=int(meta["seed"]), sigmas_db=tuple(meta["sigmas_db"]), su_ids=meta["su_ids"],
        su_positions_m=a["su_positions_m"], tx_positions_m=a["tx_positions_m"],
        tx_est_positions_m=a["tx_est_positions_m"], tx_power_dbm=meta["tx_power_dbm"], jammer=a["jammer"],
        jammer_position_m=a["jammer_position_m"], jammer_power_dbm=meta["jammer_power_dbm"],
        pt_dbm=a["pt_dbm"], dt_dbm=a["dt_dbm"], eps_unit=a["eps_unit"], jammer_on=a.get("jammer_on"),
        loc_error_std_m=meta["loc_error_std_m"], noise_floor_dbm=meta["noise_floor_dbm"],
        meta={k: v for k, v in meta.items() if k not in known},
    )  # fmt: skip


def perturb_positions(site: Site, pos: np.ndarray, std_m: float, rng: np.random.Generator) -> np.ndarray:
    """Localisation error: radial magnitude ~ N(0, std_m), angle uniform; x, y clipped into the hall."""
    r = rng.normal(0.0, std_m, size=pos.shape[:-1])
    phi = rng.uniform(0.0, 2.0 * np.pi, size=pos.shape[:-1])
    out = pos.copy()
    L, W, _ = site.hall_size_m
    out[..., 0] = np.clip(pos[..., 0] + r * np.cos(phi), 0.0, L)
    out[..., 1] = np.clip(pos[..., 1] + r * np.sin(phi), 0.0, W)
    return out


def generate_dataset(
    twin,
    n: int = 5000,
    seed: int = 0,
    *,
    sigmas_db=DEFAULT_SIGMAS_DB,
    n_legit: int = 3,
    tx_power_dbm: float = 20.0,
    jammer_prob: float = 0.5,
    jammer_power_dbm: float | None = None,
    loc_error_std_m: float = 0.37,
    pt_twin=None,
    jammer_twin=None,
    jammer_duty: float = 1.0,
    dt_predictor=None,
) -> DetectionDataset:
    """``n`` realisations of the reference scenario on ``twin`` (a :class:`central.twin.Twin`).

    ``pt_twin``: the twin whose prediction plays the physical world (default: ``twin`` itself). It must
    have the same SUs. ``jammer_power_dbm`` defaults to ``tx_power_dbm`` (the paper's jammer).
    Jammer types the detectors never trained on: ``jammer_twin`` gives the jammer's path gains (e.g. maps
    of a TX plane at another height; default ``pt_twin``); ``jammer_duty`` < 1 makes an installed jammer
    transmit in only that fraction of the windows (``jammer_on``; the label ``jammer`` stays "installed").
    Neither changes the draws of the default scenario, so a seed still reproduces the paper's dataset.
    ``dt_predictor``: what plays the digital twin (default ``twin.predictor``), e.g. a
    ``models.surrogate.SurrogatePredictor``: the paper's "random-forest surrogate as the twin", DT = the
    surrogate at the erroneous positions while PT stays the ray-traced maps at the true ones. Same draws.
    """
    if not 0.0 <= jammer_duty <= 1.0:
        raise ValueError(f"jammer_duty must be in [0, 1], got {jammer_duty}")
    site: Site = twin.site
    jammer_power_dbm = tx_power_dbm if jammer_power_dbm is None else float(jammer_power_dbm)
    pt_twin = twin if pt_twin is None else pt_twin
    dt_key = getattr(getattr(dt_predictor, "maps", None), "key", "")
    extra_meta = {} if dt_predictor is None else {"dt_predictor": str(dt_key)}
    dt_predictor = twin.predictor if dt_predictor is None else dt_predictor
    if dt_predictor.num_su != len(site.sensing_units):
        raise ValueError(f"dt_predictor has {dt_predictor.num_su} SUs, the twin {len(site.sensing_units)}")
    if pt_twin.site.su_positions_m != site.su_positions_m:
        raise ValueError("pt_twin has other SUs than the twin")
    rng = np.random.default_rng(seed)
    # Fixed draw order: positions, jammer flag, jammer positions, localisation error, model error.
    # Transmitters stand where the *world* has room: a world with clutter the twin lacks has less
    # (with the twin's geometry, as the default, the draws are the same).
    world = pt_twin.site
    tx = sample_positions(world, n * n_legit, rng).reshape(n, n_legit, 3)
    jam = rng.random(n) < jammer_prob
    jam_pos = sample_positions(world, n, rng)
    tx_est = perturb_positions(site, tx, loc_error_std_m, rng)
    z = rng.standard_normal((n, len(site.sensing_units)))
    on = jam & (rng.random(n) < jammer_duty) if jammer_duty < 1.0 else jam

    if jammer_twin is None:
        all_pos = np.concatenate([tx, jam_pos[:, None, :]], axis=1)  # (n, T+1, 3)
        p = np.full((n, n_legit + 1), float(tx_power_dbm))
        p[:, -1] = np.where(on, jammer_power_dbm, -np.inf)
        pt = pt_twin.predictor.predict(all_pos, p)
    else:
        if jammer_twin.site.su_positions_m != site.su_positions_m:
            raise ValueError("jammer_twin has other SUs than the twin")
        legit_mw = np.power(
            10.0, pt_twin.predictor.predict(tx, np.full((n, n_legit), float(tx_power_dbm))) / 10
        )
        jam_dbm = jammer_twin.predictor.predict(
            jam_pos[:, None, :], np.where(on, jammer_power_dbm, -np.inf)[:, None]
        )
        noise_mw = 10.0 ** (jammer_twin.site.noise_floor_dbm / 10)
        jam_pos[:, 2] = jammer_twin.site.tx_plane.height_m
        pt = 10.0 * np.log10(legit_mw + np.power(10.0, jam_dbm / 10) - noise_mw)
    dt = dt_predictor.predict(tx_est, np.full((n, n_legit), float(tx_power_dbm)))
    jam_pos = np.where(jam[:, None], jam_pos, np.nan)
    return DetectionDataset(
        site=site.name, seed=int(seed), sigmas_db=tuple(float(s) for s in sigmas_db), su_ids=site.su_ids,
        su_positions_m=np.asarray(site.su_positions_m, dtype=float), tx_positions_m=tx,
        tx_est_positions_m=tx_est, tx_power_dbm=float(tx_power_dbm), jammer=jam, jammer_position_m=jam_pos,
        jammer_power_dbm=jammer_power_dbm, pt_dbm=pt, dt_dbm=dt, eps_unit=z,
        loc_error_std_m=float(loc_error_std_m), noise_floor_dbm=float(site.noise_floor_dbm), jammer_on=on,
        meta={"pt_site": pt_twin.site.name, "n_legit": n_legit, "jammer_prob": jammer_prob,
              "jammer_duty": jammer_duty, "jammer_site": (jammer_twin or pt_twin).site.name,
              "twin_cache": str(getattr(twin, "cache_path", "")),
              "pt_twin_cache": str(getattr(pt_twin, "cache_path", "")), **extra_meta},
    )  # fmt: skip
