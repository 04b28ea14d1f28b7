"""Spectral detection benchmark (issue 16): the residual matrix against the band total, per jammer type.

Usage: python bench/spectral.py [--n 4000] [--episodes 40] [--seed 0] [--replay-hours 24] [--jobs 2] [--out docs/results]

World and twin as the headline rows of bench/detection.py: the measured side is the mismatched world
of factory-hall-a (``world:factory-hall-a-truth``: true materials, 20 unmodelled clutter objects, depth
5 with diffraction and diffuse reflection), the predicted side the product's twin (depth 5, specular)
after a simulated 40-point calibration campaign in that world. SUs at 1.5 m. Snapshots per sub-band
from :mod:`evaluation.spectral_dataset` (scheduler allocations, model error per link or common to an
SU, receiver noise-floor spread, DSP leakage, estimator scatter).

Protocol, three independent draws: **train** (normal snapshots only: the detectors' normal statistics
and thresholds), **validation** (one draw per jammer type: the spectral test's κ, the tracker's position window and the 90 % region's
σ are chosen here, on σ = 3 dB per-link error), **test** (a fresh draw per type: every figure below).
Per snapshot, ROC over the test draw's normal and jammer-installed snapshots (a duty-cycled jammer's
label is "installed"). The wideband baseline is the energy detector on each SU's band total (the sum
over sub-bands, measured and predicted), trained on the same normals.

Characterisation (σ = 3 dB per link): ``--episodes`` episodes per type of 30 snapshots (3 scheduler
slots), each fed snapshot by snapshot through :class:`central.detection.characterise.InterferenceTracker`
as the live engine does; an episode's class, sub-bands, EIRP and position are those of its last snapshot.
``type_accuracy`` is over the episodes characterised at all (the emitter seen in one snapshot at least: an
alarm that says something); ``type_accuracy_all_episodes`` counts the others as wrong.

Temporal integration (``--replay-hours``): the replay harness (:mod:`sim.replay`) on the demo's world
(factory-hall-a-truth with its clutter, impairments and per-SU offsets; readings per sub-band of the band
plan, the scheduler reallocating every second), the product's engine settings (CUSUM on), learning both
tests on 600 s of normal operation as the service does, then ``--replay-hours`` of normal operation
(split over ``--jobs`` seeds) for ``false_alarms_per_24h_spectral``, then trials of a 20 dBm wideband
jammer on in 30 % of random 0.1 s slots (``pd_duty30_10s``: raised within 10 s of switching on) and of
a 10 dBm narrowband one (``pd_narrow10_10s``), each at a random position.

Last line: one JSON object with ``auc_{spectral,wideband}_{type}_sigma{s}`` (per link; ``…_common`` for
the error common to an SU's sub-bands), ``pd01_…`` (Pd at 0.1 % FAR), ``pd1_…``, ``type_accuracy``,
``subband_precision``, ``subband_recall``, ``loc_median_m_sigma3``, ``loc_p90_m_sigma3``,
``region90_coverage``, ``eirp_err_db_median`` and ``us_per_snapshot_spectral``.

The deceptive emitter follows one transmitter's allocation, so it is silent while that transmitter
idles, and those snapshots are still labelled "installed". ``deceptive10_silent_fraction`` is their
share, ``auc_ceiling_deceptive10`` the AUC a perfect detector would reach with them (they can only tie
with the normals), ``auc_{spectral,wideband}_deceptive10_sigma{s}_radiating`` the AUCs without them, and
``auc_clairvoyant_deceptive10_sigma3{,_error_only}`` a detector told position, EIRP and sub-bands facing
the spread the allocation residual learns, or only the 3 dB per link the draw adds (a twin that matched
the world).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.detection.characterise import CharacteriseSettings, InterferenceTracker, finding_of  # noqa: E402
from central.twin import Twin  # noqa: E402
from central.twin.solvers import TWIN_FIDELITY  # noqa: E402
from detection import WORLD, calibrated_dt, load_pt_twin  # noqa: E402
from evaluation.protocol import auc_score, pd_at_far  # noqa: E402
from evaluation.spectral_dataset import JAMMERS, generate_spectral_dataset  # noqa: E402
from models.detectors import make_detector  # noqa: E402
from models.detectors.bayes import thin_cells  # noqa: E402
from models.detectors.spectral import FUSIONS, SpectralDetector, fuse_normal  # noqa: E402
from run_info import generated_line, run_info  # noqa: E402
from sim.scheduler import Scheduler, SchedulerSettings  # noqa: E402

SITE, WORLD_SITE = "factory-hall-a", WORLD + "factory-hall-a-truth"
SIGMAS = (0, 3, 6)
ERRORS = ("link", "common")
PENALTIES = (2.0, 4.0, 8.0)  # κ candidates (validation), with each of the components' fusions
# The engine's κ and fusion (central.detection.engine.EngineConfig), kept unless another pair is better on
# validation by more than TIE_AUC in mean AUC: the candidates are within a few 1e-4 of each other, which a
# new draw reorders, and the figures should be those of the settings the product runs.
ENGINE_CHOICE, TIE_AUC = (4.0, "softmax"), 0.002
REGION_SIGMAS_DB = (1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 9.0)  # the 90 % region's spread candidates (validation)
CELL_SPACING_M = 1.0  # the spectral test's candidate cells (the maps' 0.5 m cells thinned)
EPISODE_LEN = 30
LOCATE_WINDOWS = (5, 10, 20, 30)  # the tracker's position window candidates, in findings (validation)
GOALS = {"auc_spectral_wide20_sigma3": 0.999, "pd01_spectral_wide20_sigma3": 0.99, "auc_spectral_narrow10_sigma3": 0.99,
         "auc_spectral_narrow0busy_sigma3": 0.95, "auc_spectral_deceptive10_sigma3": 0.95, "type_accuracy": 0.95,
         "subband_precision": 0.95, "subband_recall": 0.95}  # fmt: skip
GOALS_BELOW = {"loc_median_m_sigma3": 2.0, "eirp_err_db_median": 3.0, "us_per_snapshot_spectral": 1000.0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def noise_dbm(plan, twin) -> np.ndarray:
    widths = np.array([b.width_hz for b in plan.grid])
    return twin.predictor.noise_floor_dbm + 10 * np.log10(widths / plan.occupied_hz)


def band_total(x_dbm: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.power(10.0, x_dbm / 10).sum(axis=-1))


class Detectors:
    """The spectral test (at one κ and fusion) and the wideband ED, fitted on one train draw."""

    def __init__(self, dt: Twin, plan, train, sigma: float, error: str, penalty: float, fusion: str):
        cg = dt.predictor.cell_gains()
        keep = thin_cells(cg.positions_m, CELL_SPACING_M)
        self.positions_m = cg.positions_m[keep]
        m, p = train.measured_dbm(sigma, error), train.predicted_dbm
        self.spectral = SpectralDetector(self.positions_m, cg.gain_lin[keep], noise_dbm(plan, dt), penalty=penalty,
                                         fusion=fusion).fit(m, p, train.groups)  # fmt: skip
        self.wide = make_detector("ed", target_far=0.01).fit(band_total(m) - band_total(p))

    def scores(self, ds, sigma: float, error: str) -> tuple[np.ndarray, np.ndarray]:
        m, p = ds.measured_dbm(sigma, error), ds.predicted_dbm
        return self.spectral.score(m, p, ds.groups), self.wide.score(band_total(m) - band_total(p))


def silent_snapshots(ds) -> np.ndarray:
    """Snapshots with the jammer installed that carry none of its power: a deceptive emitter while the
    transmitter it follows idles. No detector can tell them from normal ones."""
    return ds.installed & ~np.isfinite(ds.jammer_subband_eirp_dbm).any(axis=1)


def clairvoyant_auc(ds, sigma_link_db: float) -> float:
    """An upper bound on any per-snapshot AUC for ``ds``'s jammer: a detector told where the jammer is,
    how strong and in which sub-bands, facing only a Gaussian error of ``sigma_link_db`` per link in dB
    (the spread the allocation residual learns), has AUC Φ(‖d‖/√2) per jammer snapshot, d_j the jammer's
    rise at SU j over that spread (0.5 where it sends nothing: a deceptive emitter while its transmitter idles)."""
    from scipy.stats import norm

    legit = ds.legit_mw.sum(axis=1) + ds.noise_mw[None]
    out = []
    for i in np.flatnonzero(ds.installed):
        sb = np.flatnonzero(np.isfinite(ds.jammer_subband_eirp_dbm[i]))
        if sb.size == 0:
            out.append(0.5)
            continue
        rise_db = 10 * np.log10(1 + ds.jam_mw[i][:, sb].sum(axis=1) / legit[i][:, sb].sum(axis=1))
        out.append(float(norm.cdf(np.linalg.norm(rise_db / sigma_link_db) / math.sqrt(2))))
    return float(np.mean(out))


def characterise(det: SpectralDetector, positions_m, plan, hall_xy, ds, sigma: float, settings: CharacteriseSettings) -> list[dict]:
    """Each episode through the tracker: its last Interference and the truth."""
    m, p, groups = ds.measured_dbm(sigma, "link"), ds.predicted_dbm, ds.groups
    out = []
    for e in range(ds.n // EPISODE_LEN):
        tr = InterferenceTracker(plan, positions_m, hall_xy, settings)
        idx = range(e * EPISODE_LEN, (e + 1) * EPISODE_LEN)
        for i in idx:
            tr.add(finding_of(i, det, det.evidence(m[i], p[i], groups[i]), m[i], p[i], ds.allocations[i], ds.tx_ids))
        got = tr.interference()
        on = [i for i in idx if ds.on[i]]
        sent = ds.jammer_subbands
        if ds.jammer.kind == "sweep":
            truth_sb = sorted({b for i in on for b in sent[i]})
        elif ds.jammer.kind == "wide":
            truth_sb = list(range(plan.subbands))
        else:
            truth_sb = list(sent[on[-1]]) if on else []
        last_on = on[-1] if on else None
        sent_mw = 0.0 if last_on is None else float(np.power(10.0, ds.jammer_subband_eirp_dbm[last_on] / 10).sum())
        eirp_true = float(10 * np.log10(sent_mw)) if sent_mw > 0 else None  # nothing sent: a deceptive one while its TX idles
        out.append({"got": got, "truth_class": ds.jammer.truth_class, "truth_subbands": truth_sb,
                    "truth_xy": ds.jammer_position_m[idx[0], :2], "eirp_true_dbm": eirp_true,
                    "duty_true": len(on) / EPISODE_LEN,
                    "cost": tr.location_cost()})  # fmt: skip
    return out


def loc_errors_m(episodes: list[dict]) -> list[float]:
    """Horizontal distance (m) from each located episode's position to the emitter."""
    return [float(np.hypot(ep["got"].position_m[0] - ep["truth_xy"][0], ep["got"].position_m[1] - ep["truth_xy"][1]))
            for ep in episodes if ep["got"] is not None and ep["got"].position_m is not None]  # fmt: skip


def region_coverage(episodes: list[dict], cell_m: float) -> float:
    hits = [min(np.hypot(x - ep["truth_xy"][0], y - ep["truth_xy"][1]) for x, y in ep["got"].region_m) <= cell_m * 0.75
            for ep in episodes if ep["got"] is not None and ep["got"].region_m]  # fmt: skip
    return float(np.mean(hits)) if hits else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="snapshots per draw and jammer type (default: %(default)s)")
    ap.add_argument("--n-train", type=int, default=4000, help="normal snapshots to train on (default: %(default)s)")
    ap.add_argument("--episodes", type=int, default=40, help="characterisation episodes per type (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replay-hours", type=float, default=24.0, help="simulated hours of normal operation (0: skip)")
    ap.add_argument("--trials", type=int, default=40, help="replay trials per jammer type (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="replay seeds in parallel (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    twin = Twin.load(SITE, TWIN_FIDELITY)
    world = load_pt_twin(WORLD_SITE)
    dt = calibrated_dt(twin, world, args.seed)
    plan = dt.site.band_plan
    hall_xy = tuple(dt.site.hall_size_m[:2])
    log(f"twins ready ({time.perf_counter() - t_start:.0f} s); band plan: {plan.subbands} sub-bands")

    def gen(n, seed, jammer=None, **kw):
        sched = lambda p, ids: Scheduler(p, ids, SchedulerSettings(seed=seed))  # noqa: E731
        return generate_spectral_dataset(dt, world, plan, n, seed, jammer=jammer, scheduler=sched, **kw)
    train = gen(args.n_train, args.seed * 1000 + 1)
    val = {j.key: gen(args.n, args.seed * 1000 + 10 + i, j) for i, j in enumerate(JAMMERS)}
    test = {j.key: gen(args.n, args.seed * 1000 + 100 + i, j) for i, j in enumerate(JAMMERS)}
    log(f"datasets drawn ({time.perf_counter() - t_start:.0f} s)")

    figures: dict = {"n": args.n, "n_train": args.n_train, "episodes": args.episodes, "seed": args.seed,
                     "subbands": plan.subbands}  # fmt: skip
    # κ and the components' fusion on validation: the mean AUC over jammer types at σ = 3 dB, per-link error
    val_auc = {}
    for k in PENALTIES:
        det = Detectors(dt, plan, train, 3, "link", k, FUSIONS[0]).spectral
        comps = {key: det.component_scores(ds.measured_dbm(3, "link"), ds.predicted_dbm, ds.groups) for key, ds in val.items()}
        for fu in FUSIONS:
            val_auc[(k, fu)] = float(np.mean([auc_score(val[key].installed, fuse_normal(*c, fu)) for key, c in comps.items()]))
    best = max(val_auc, key=val_auc.get)
    penalty, fusion = best if val_auc[best] > val_auc[ENGINE_CHOICE] + TIE_AUC else ENGINE_CHOICE
    figures["penalty_chosen"], figures["fusion_chosen"] = penalty, fusion
    figures["validation_mean_auc"] = {f"{k:g}/{fu}": round(v, 4) for (k, fu), v in val_auc.items()}
    log(f"κ = {penalty:g}, fusion {fusion} chosen on validation (the engine's unless another is {TIE_AUC} better): "
        f"{figures['validation_mean_auc']}")
    fitted = {(s, e): Detectors(dt, plan, train, s, e, penalty, fusion) for s in SIGMAS for e in ERRORS}
    log(f"detectors fitted ({time.perf_counter() - t_start:.0f} s)")

    for s in SIGMAS:
        for e in ERRORS:
            suffix = "" if e == "link" else "_common"
            for key, ds in test.items():
                spec_s, wide_s = fitted[(s, e)].scores(ds, s, e)
                for name, scores in (("spectral", spec_s), ("wideband", wide_s)):
                    ok = np.isfinite(scores)
                    lab, sc = ds.installed[ok], scores[ok]
                    tag = f"{name}_{key}_sigma{s}{suffix}"
                    figures[f"auc_{tag}"] = round(auc_score(lab, sc), 4)
                    figures[f"pd01_{tag}"] = round(pd_at_far(lab, sc, 0.001), 4)
                    figures[f"pd1_{tag}"] = round(pd_at_far(lab, sc, 0.01), 4)
                    if key == "deceptive10":
                        heard = ok & ~silent_snapshots(ds)
                        figures[f"auc_{tag}_radiating"] = round(auc_score(ds.installed[heard], scores[heard]), 4)
            log(f"σ = {s} dB, {e}: " + ", ".join(f"{k} {figures[f'auc_spectral_{k}_sigma{s}{suffix}']:.3f}/"
                                                 f"{figures[f'auc_wideband_{k}_sigma{s}{suffix}']:.3f}" for k in test))  # fmt: skip

    # Characterisation at σ = 3 dB per link: the region's σ on validation episodes, figures on test episodes
    det3 = fitted[(3, "link")].spectral
    sigma_link = float(np.median(det3.allocation_stats.sigma_db[..., 1]))
    figures["auc_clairvoyant_deceptive10_sigma3"] = round(clairvoyant_auc(test["deceptive10"], sigma_link), 4)
    figures["auc_clairvoyant_deceptive10_sigma3_error_only"] = round(clairvoyant_auc(test["deceptive10"], 3.0), 4)
    silent = float(silent_snapshots(test["deceptive10"]).sum() / test["deceptive10"].installed.sum())
    figures["deceptive10_silent_fraction"] = round(silent, 4)
    figures["auc_ceiling_deceptive10"] = round(1.0 - silent / 2, 4)  # the silent ones tie with the normals
    figures["allocation_residual_sigma_db_sigma3"] = round(sigma_link, 2)
    positions = fitted[(3, "link")].positions_m
    ep_gen = lambda seed_base, j, i: gen(args.episodes * EPISODE_LEN, seed_base + i, j, jammer_prob=1.0, episode_len=EPISODE_LEN)  # noqa: E731
    val_ds = [ep_gen(args.seed * 1000 + 300, j, i) for i, j in enumerate(JAMMERS)]
    # the tracker's window (findings whose misfits are averaged for the position): the lowest validation median error
    val_loc = {w: [ep for ds in val_ds for ep in characterise(det3, positions, plan, hall_xy, ds, 3, CharacteriseSettings(locate_window=w))]
               for w in LOCATE_WINDOWS}  # fmt: skip
    val_loc_median = {w: float(np.median(loc_errors_m(v))) for w, v in val_loc.items()}
    window = min(val_loc_median, key=val_loc_median.get)
    figures["locate_window_chosen"] = window
    figures["validation_loc_median_m_by_window"] = {str(w): round(v, 2) for w, v in val_loc_median.items()}
    val_eps = val_loc[window]
    cover = {}
    for rs in REGION_SIGMAS_DB:
        st = CharacteriseSettings(region_sigma_db=rs, locate_window=window)
        # the region depends only on the last finding's misfit: recompute it from the stored Interference's inputs
        cover[rs] = region_coverage([ep for ep in _with_region(val_eps, positions, st)], CELL_SPACING_M)
    region_sigma = min((rs for rs in REGION_SIGMAS_DB if cover[rs] >= 0.9), default=max(REGION_SIGMAS_DB))
    figures["region_sigma_db_chosen"] = region_sigma
    figures["validation_region90_coverage_by_sigma"] = {f"{k:g}": round(v, 3) for k, v in cover.items()}
    settings = CharacteriseSettings(region_sigma_db=region_sigma, locate_window=window)
    eps = {j.key: characterise(det3, positions, plan, hall_xy, ep_gen(args.seed * 1000 + 400, j, i), 3, settings)
           for i, j in enumerate(JAMMERS)}  # fmt: skip
    all_eps = [ep for v in eps.values() for ep in v]
    correct, correct_all, tp, n_pred, n_true, loc, eirp_err = [], [], 0, 0, 0, [], []
    for key, v in eps.items():
        # the class an alarm gives, over the episodes that were characterised (the emitter seen at least once);
        # an emitter never seen is a miss, which the AUC and Pd figures count, not a wrong class
        acc = [ep["got"].interference_class == ep["truth_class"] for ep in v if ep["got"] is not None]
        figures[f"type_accuracy_{key}"] = round(float(np.mean(acc)), 3) if acc else None
        figures[f"characterised_{key}"] = round(len(acc) / len(v), 3)
        correct += acc
        correct_all += acc + [False] * (len(v) - len(acc))
        for ep in v:
            got = ep["got"]
            if got is None:
                continue
            a, t = set(got.subbands), set(ep["truth_subbands"])
            tp, n_pred, n_true = tp + len(a & t), n_pred + len(a), n_true + len(t)
            if got.eirp_dbm is not None and ep["eirp_true_dbm"] is not None:
                eirp_err.append(abs(got.eirp_dbm - ep["eirp_true_dbm"]))
        errs = loc_errors_m(v)
        loc += errs
        figures[f"loc_median_m_{key}"] = round(float(np.median(errs)), 2) if errs else None
        found = [ep["got"] for ep in v if ep["got"] is not None]
        figures[f"classes_{key}"] = {c: sum(g.interference_class == c for g in found) for c in sorted({g.interference_class for g in found})}
        if key == "duty30":
            duty_est = [g.duty for g in found]
            figures["duty30_estimated_duty_median"] = round(float(np.median(duty_est)), 3) if duty_est else None
            figures["duty30_time_pattern_duty_cycled"] = round(float(np.mean([g.time_pattern == "duty-cycled" for g in found])), 3) if found else None
    figures["type_accuracy"] = round(float(np.mean(correct)), 4) if correct else None
    figures["type_accuracy_all_episodes"] = round(float(np.mean(correct_all)), 4)  # an uncharacterised episode counted wrong
    figures["subband_precision"] = round(tp / n_pred, 4) if n_pred else None
    figures["subband_recall"] = round(tp / n_true, 4) if n_true else None
    figures["loc_median_m_sigma3"] = round(float(np.median(loc)), 2) if loc else None
    figures["loc_p90_m_sigma3"] = round(float(np.percentile(loc, 90)), 2) if loc else None
    figures["region90_coverage"] = round(region_coverage(all_eps, CELL_SPACING_M), 3)
    figures["region90_cells_median"] = int(np.median([len(ep["got"].region_m) for ep in all_eps if ep["got"] is not None]))
    figures["eirp_err_db_median"] = round(float(np.median(eirp_err)), 2) if eirp_err else None

    # µs per snapshot: one snapshot per call (12 SUs × 16 sub-bands), as the live engine calls it
    ds = test["narrow10"]
    m, p, g = ds.measured_dbm(3, "link"), ds.predicted_dbm, ds.groups
    times = []
    for i in range(1000):  # a thousand snapshots, ~1 s: the median rides out a moment of a shared machine's load
        t0 = time.perf_counter()
        det3.evidence(m[i % ds.n], p[i % ds.n], g[i % ds.n])  # a draw smaller than 1000 (--n) goes round again
        times.append(time.perf_counter() - t0)
    figures["us_per_snapshot_spectral"] = round(float(np.median(times)) * 1e6, 1)
    figures["cells"] = int(positions.shape[0])
    info = run_info()
    figures["run"] = info
    if args.replay_hours > 0:  # the figures so far are written first: the replay is the long part
        (out / "spectral.json").write_text(json.dumps(figures, indent=1) + "\n")
        figures.update(replay_figures(args))
    figures["wall_s"] = round(time.perf_counter() - t_start, 1)
    (out / "spectral.json").write_text(json.dumps(figures, indent=1) + "\n")
    write_markdown(figures, out / "spectral.md", info)
    print(json.dumps(figures))
    return 0


REPLAY_LEARN_S = 600.0
REPLAY_ON_S, REPLAY_GAP_S = 30.0, 30.0


def replay_seed(seed: int, hours: float, trials: int) -> dict:
    """One replay seed (a process of its own): learn, ``hours`` normal, ``trials`` trials per jammer type."""
    import tempfile
    from types import SimpleNamespace

    from central.config import DetectionConfig
    from central.detection.live import engine_config
    from central.twin.site import resolve_site
    from sim.replay import ReadingModel, Replay, ReplaySettings
    from sim.world import World
    from sim.world_builder import TRUTH_SITE, SpectralDemo, WorldRecipe, demo_scenario_toml, make_world

    with tempfile.TemporaryDirectory(prefix="rftwin-spectral-replay-") as tmp:
        never = 1e8  # the scenario's own jammers are dropped by the replay: only their band plan and scheduler matter
        text = demo_scenario_toml(resolve_site(TRUTH_SITE), never, (36.0, 8.0), spectral=SpectralDemo(never, never + 1, never + 2))
        files = make_world(Path(tmp), TRUTH_SITE, WorldRecipe(), scenario_toml=text)
        world = World.load(files.maps_path, files.scenario_path)
    twin = Twin.load(SITE, TWIN_FIDELITY)
    plan = world.scenario.band_plan
    cfg = engine_config(SimpleNamespace(detection=DetectionConfig()))
    rep = Replay(world, twin.predictor, cfg, ReplaySettings(readings=ReadingModel.for_plan(plan)), seed=seed)
    learned = rep.learn(REPLAY_LEARN_S)
    log(f"replay seed {seed}: learned {learned}")
    t0, false_alarms, per_hour = time.perf_counter(), [], []
    for h in range(math.ceil(hours)):
        fa, _ = rep.run_normal(min(3600.0, hours * 3600 - h * 3600))
        false_alarms += fa
        per_hour.append(len(fa))
        log(f"replay seed {seed}: {h + 1} h normal, {len(false_alarms)} false alarms, "
            f"{rep.stats['ticks'] / (time.perf_counter() - t0):.0f} ticks/s")  # fmt: skip
    rng = np.random.default_rng(seed + 7)
    kinds = {"duty30": (20.0, {"bandwidth_hz": plan.occupied_hz, "random_duty": 0.3, "random_slot_s": 0.1})}
    out_trials: dict = {k: [] for k in ("duty30", "narrow10")}
    for _ in range(trials):
        b = plan.grid[int(rng.integers(plan.subbands))]
        kinds["narrow10"] = (10.0, {"offset_hz": b.center_hz - plan.center_hz, "bandwidth_hz": b.width_hz})
        for key, (power, signal) in kinds.items():
            r = rep.trial(power, REPLAY_ON_S, REPLAY_GAP_S, signal=signal)
            out_trials[key].append({"ttd_s": r["ttd_s"], "raised_outside": r["raised_outside"]})
    return {"seed": seed, "hours": hours, "false_alarms": len(false_alarms), "per_hour": per_hour,
            "fa_kinds": [e.kind for e in false_alarms], "trials": out_trials, "learned": learned,
            "ticks": rep.stats["ticks"], "wall_s": rep.sim_wall_s}  # fmt: skip


def replay_figures(args) -> dict:
    """``false_alarms_per_24h_spectral``, ``pd_duty30_10s``, ``pd_narrow10_10s`` over ``args.jobs`` seeds."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = max(1, args.jobs)
    hours, trials = args.replay_hours / jobs, math.ceil(args.trials / jobs)
    with ProcessPoolExecutor(jobs) as ex:
        runs = list(ex.map(replay_seed, [args.seed + 100 + i for i in range(jobs)], [hours] * jobs, [trials] * jobs))
    total_h = sum(r["hours"] for r in runs)
    n_fa = sum(r["false_alarms"] for r in runs)
    out = {"replay_simulated_hours": round(total_h, 2), "replay_false_alarms": n_fa,
           "false_alarms_per_24h_spectral": round(n_fa / total_h * 24, 2) if total_h else None,
           "replay_ticks_per_s": round(sum(r["ticks"] for r in runs) / max(sum(r["wall_s"] for r in runs), 1e-9), 1),
           "replay_learned": [r["learned"] for r in runs]}  # fmt: skip
    for key in ("duty30", "narrow10"):
        ttd = [t["ttd_s"] for r in runs for t in r["trials"][key]]
        out[f"pd_{key}_10s"] = round(float(np.mean([t is not None and t <= 10.0 for t in ttd])), 3)
        det = [t for t in ttd if t is not None]
        out[f"ttd_p50_s_{key}_detected"] = round(float(np.median(det)), 2) if det else None
        out[f"replay_trials_{key}"] = len(ttd)
        out[f"replay_raised_outside_{key}"] = sum(t["raised_outside"] for r in runs for t in r["trials"][key])
    return out


def _with_region(episodes: list[dict], positions_m, settings: CharacteriseSettings) -> list[dict]:
    """The episodes with their region recomputed at another σ (the tracker kept the last misfit)."""
    from central.detection.characterise import likelihood_region

    out = []
    for ep in episodes:
        got = ep["got"]
        if got is None or ep.get("cost") is None:
            out.append(ep)
            continue
        _, mask = likelihood_region(ep["cost"], settings.region_sigma_db, settings.region_mass)
        region = tuple((float(x), float(y)) for x, y in positions_m[mask][:, :2])
        out.append({**ep, "got": dataclasses.replace(got, region_m=region)})
    return out


def write_markdown(f: dict, path: Path, info: dict) -> None:
    keys = [j.key for j in JAMMERS]
    lines = ["# Spectral detection: the residual matrix against the band total", "", generated_line(info), "",
             "Measured side: the mismatched world of factory-hall-a (true materials, 20 clutter objects, depth 5 with "
             "diffraction and diffuse reflection); predicted side: the product's twin after a simulated calibration "
             "campaign. Allocations from the simulated scheduler (load 20–90 %, idle gaps), model error per link "
             "(and, in the second table, common to an SU's sub-bands), receiver noise-floor spread 1 dB, DSP leakage "
             "−25 dB into neighbours, estimator scatter. Train / validation / test are independent draws; κ "
             f"(= {f['penalty_chosen']:g}), the components' fusion (= {f['fusion_chosen']}) and the 90 % region's σ (= {f['region_sigma_db_chosen']:g} dB) and the tracker's position window (= {f['locate_window_chosen']} findings; validation medians {f['validation_loc_median_m_by_window']} m) were chosen on "
             f"validation (κ and fusion: the engine's {ENGINE_CHOICE[0]:g}/{ENGINE_CHOICE[1]} unless another pair is more than "
             f"{TIE_AUC} better in mean AUC; validation means {f['validation_mean_auc']}); every figure is on test.", ""]  # fmt: skip
    for suffix, title in (("", "model error per link"), ("_common", "model error common to an SU's sub-bands")):
        lines += [f"## AUC, spectral / wideband ({title})", "", "| jammer | " + " | ".join(f"σ = {s} dB" for s in SIGMAS) +
                  " | Pd@0.1 % σ = 3 | Pd@1 % σ = 3 |", "|---|" + "---|" * (len(SIGMAS) + 2)]  # fmt: skip
        for k in keys:
            cells = [f"{f[f'auc_spectral_{k}_sigma{s}{suffix}']:.3f} / {f[f'auc_wideband_{k}_sigma{s}{suffix}']:.3f}" for s in SIGMAS]
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {f[f'pd01_spectral_{k}_sigma3{suffix}']:.3f} / "
                         f"{f[f'pd01_wideband_{k}_sigma3{suffix}']:.3f} | {f[f'pd1_spectral_{k}_sigma3{suffix}']:.3f} / "
                         f"{f[f'pd1_wideband_{k}_sigma3{suffix}']:.3f} |")  # fmt: skip
        lines.append("")
    lines += ["## Characterised alarms (σ = 3 dB per link, episodes of 30 snapshots)", "",
              "Type accuracy is over the characterised episodes (the emitter seen in at least one snapshot); "
              "`characterised` is their share, and `type_accuracy_all_episodes` counts the others as wrong.", "",
              "| jammer | characterised | type accuracy | localisation median (m) | classes given |", "|---|---|---|---|---|"]  # fmt: skip
    for k in keys:
        lines.append(f"| {k} | {f[f'characterised_{k}']:.3f} | {f[f'type_accuracy_{k}']} | {f[f'loc_median_m_{k}']} | {f[f'classes_{k}']} |")
    lines += ["", "| figure | value | goal |", "|---|---|---|"]
    for k in ("type_accuracy", "type_accuracy_all_episodes", "subband_precision", "subband_recall", "loc_median_m_sigma3", "loc_p90_m_sigma3",
              "region90_coverage", "region90_cells_median", "eirp_err_db_median", "duty30_estimated_duty_median",
              "us_per_snapshot_spectral"):  # fmt: skip
        goal = f"≥ {GOALS[k]}" if k in GOALS else f"≤ {GOALS_BELOW[k]}" if k in GOALS_BELOW else ""
        lines.append(f"| {k} | {f.get(k)} | {goal} |")
    lines += ["", "## Goals at σ = 3 dB, per-link error", ""]
    for k, g in {**GOALS, **GOALS_BELOW}.items():
        v = f.get(k)
        met = v is not None and (v >= g if k in GOALS else v <= g)
        lines.append(f"- `{k}` = {v} (goal {'≥' if k in GOALS else '≤'} {g}): {'met' if met else '**not met**'}")
    lines += [f"- `deceptive10`: a clairvoyant detector (told the jammer's position, EIRP and sub-bands; Gaussian "
              f"error of {f['allocation_residual_sigma_db_sigma3']} dB per link, the spread the allocation residual learns) "
              f"would reach AUC {f['auc_clairvoyant_deceptive10_sigma3']} on this test draw, "
              f"{f['auc_clairvoyant_deceptive10_sigma3_error_only']} against the draw's 3 dB per link alone (a twin "
              f"that matched the world). In {100 * f['deceptive10_silent_fraction']:.1f} % of the snapshots labelled "
              f"jammed the emitter is silent (the transmitter it follows idles), so no detector can pass AUC "
              f"{f['auc_ceiling_deceptive10']}; without those snapshots the spectral test reaches "
              f"{f['auc_spectral_deceptive10_sigma3_radiating']} (wideband {f['auc_wideband_deceptive10_sigma3_radiating']})"]  # fmt: skip
    if "pd_duty30_10s" in f:
        lines += [f"- `pd_duty30_10s` = {f['pd_duty30_10s']} (goal ≥ 0.95) at `false_alarms_per_24h_spectral` = "
                  f"{f['false_alarms_per_24h_spectral']} (goal ≤ 1), replay of {f['replay_simulated_hours']} simulated hours; "
                  f"`pd_narrow10_10s` = {f['pd_narrow10_10s']}"]  # fmt: skip
    else:
        lines += ["- `pd_duty30_10s`, `false_alarms_per_24h_spectral`: not measured in this run (`--replay-hours 0`)"]
    lines += ["", "```json", json.dumps(f, indent=1), "```", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
