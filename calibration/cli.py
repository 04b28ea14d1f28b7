"""``rftwin-calibrate``: the calibration command line.

- ``campaign start|point|status|list|export|import|close``: a reference-transmitter campaign on a
  running central unit (its ``/api/v1/campaigns`` API, :mod:`calibration.campaign_client`);
  ``campaign simulate``: the same against the simulated world (:mod:`calibration.campaign_sim`).
- ``fit``: fit the site's materials and per-SU offsets to an exported campaign by differentiable ray
  tracing (:mod:`calibration.material_fit`); writes the calibrated site file and a report.
- ``learn``: learn the normal residual statistics on the live system (``POST /api/v1/detector/learn``).

Talking to the central unit: ``--url`` (or ``$RFTWIN_CENTRAL_URL``, default http://127.0.0.1:8080),
an operator token from ``--token-file`` (or ``$RFTWIN_OPERATOR_TOKEN``, or ``--token``, which other
users can see in the process list), ``--ca-file`` to pin the site CA for https. The token is sent in
the Authorization header only, never printed.

Exit status: 0 done; 1 the central unit refused (the reason is printed) or could not be reached, or
``campaign point`` stored the point as rejected (measure it again); 2 bad arguments or a bad local file.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from contracts.cli_args import position_arg

URL_ENV = "RFTWIN_CENTRAL_URL"
TOKEN_ENV = "RFTWIN_OPERATOR_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rftwin-calibrate", description="rftwin calibration campaigns")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("version", help="print the installed rftwin version")
    v.set_defaults(func=lambda args: print(f"rftwin {version('rftwin')}") or 0)
    _campaign_parsers(sub)
    _fit_parser(sub)
    _learn_parser(sub)
    return p


# ---------------------------------------------------------------------------------- arguments


def duration_s(text: str) -> float:
    """A duration: ``10s``, ``1.5m``, ``2min``, ``1h``, ``500ms`` or plain seconds; > 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|min|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 10s, 1.5m or 2h, got {text!r}")
    value = float(m.group(1)) * {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}[m.group(2) or "s"]
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a duration must be > 0, got {text!r}")
    return value


def time_ns(text: str) -> int:
    """UTC ns since the epoch, or an ISO 8601 time (with a zone; without one: local time)."""
    if text.strip().isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text.strip()).timestamp() * 1e9)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected UTC ns or an ISO 8601 time, got {text!r}") from None


def window_ns(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected SINCE,UNTIL, got {text!r}")
    return time_ns(parts[0]), time_ns(parts[1])


def _connection() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    g = c.add_argument_group("central unit")
    g.add_argument(
        "--url", default=None, help=f"central unit base URL (default: ${URL_ENV} or {DEFAULT_URL})"
    )
    g.add_argument("--token-file", type=Path, help=f"file holding an operator token (or set ${TOKEN_ENV})")
    g.add_argument(
        "--token", help=f"operator token (visible in the process list: prefer --token-file or ${TOKEN_ENV})"
    )
    g.add_argument("--ca-file", type=Path, help="site CA certificate to pin for an https URL")
    return c


def _client(args):
    from calibration.campaign_client import CentralClient

    token = args.token
    if token is None and args.token_file is not None:
        token = args.token_file.read_text().strip()
        if not token:
            raise ValueError(f"{args.token_file}: empty token file")
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    return CentralClient(url, token, args.ca_file)


# ---------------------------------------------------------------------------------- campaigns


def _campaign_parsers(sub) -> None:
    conn = _connection()
    c = sub.add_parser("campaign", help="reference-transmitter calibration campaigns on a central unit")
    csub = c.add_subparsers(dest="campaign_command", required=True)

    st = csub.add_parser("start", parents=[conn], help="start a campaign (one open at a time)")
    st.add_argument("name", help="campaign name (letters, digits, '-', '_', '.'; never reused)")
    st.add_argument("--description", default="")
    st.set_defaults(func=_campaign_start)

    pt = csub.add_parser(
        "point", parents=[conn], help="the reference TX is in place: measure a point over the dwell"
    )
    pt.add_argument(
        "--position", required=True, type=position_arg, metavar="X,Y,Z", help="reference antenna, m"
    )
    pt.add_argument("--power-dbm", required=True, type=float, help="reference transmitter EIRP, dBm")
    when = pt.add_mutually_exclusive_group()
    when.add_argument(
        "--dwell", type=duration_s, default=10.0, help="from now, on the central unit's clock (10s)"
    )
    when.add_argument(
        "--window",
        type=window_ns,
        metavar="SINCE,UNTIL",
        help="an explicit window (UTC ns or ISO 8601 times)",
    )
    pt.add_argument(
        "--settle", type=duration_s, default=2.0, help="wait for late uploads after the window (2s)"
    )
    pt.add_argument("--min-count", type=int, default=1, help="readings every SU needs (default: 1)")
    pt.add_argument("--campaign", help="campaign name (default: the open one)")
    pt.set_defaults(func=_campaign_point)

    ss = csub.add_parser("status", parents=[conn], help="points of a campaign, accepted or rejected and why")
    ss.add_argument("name", nargs="?", help="campaign (default: the open one, else the latest)")
    ss.add_argument("--sus", action="store_true", help="also every SU's mean, spread and count per point")
    ss.set_defaults(func=_campaign_status)

    ls = csub.add_parser("list", parents=[conn], help="all campaigns")
    ls.set_defaults(func=_campaign_list)

    ex = csub.add_parser(
        "export", parents=[conn], help="write a campaign's points to CSV (calibration.points)"
    )
    ex.add_argument("name", nargs="?", help="campaign (default: the open one, else the latest)")
    ex.add_argument("--out", required=True, type=Path, help="CSV file to write")
    ex.set_defaults(func=_campaign_export)

    im = csub.add_parser("import", parents=[conn], help="add points from a CSV (robot / total-station log)")
    im.add_argument("file", type=Path, help="CSV in the campaign format (see calibration/points.py)")
    im.add_argument("--campaign", help="campaign name (default: the open one)")
    im.set_defaults(func=_campaign_import)

    cl = csub.add_parser("close", parents=[conn], help="close a campaign (no more points)")
    cl.add_argument("name", nargs="?", help="campaign (default: the open one)")
    cl.set_defaults(func=_campaign_close)

    sm = csub.add_parser("simulate", help="run a whole campaign against the simulated world")
    sm.add_argument("--points", type=int, default=40, help="reference positions (default: %(default)s)")
    sm.add_argument("--dwell", type=duration_s, default=3.0, help="time on air per point (default: 3s)")
    sm.add_argument("--gap", type=duration_s, default=0.5, help="off time between points (default: 0.5s)")
    sm.add_argument("--lead-in", type=duration_s, default=15.0, help="before the first point (default: 15s)")
    sm.add_argument(
        "--gain-db", type=float, default=10.0, help="the nodes' SDR gain, dB (default: %(default)s)"
    )
    sm.add_argument("--power-dbm", type=float, default=20.0, help="reference EIRP (default: %(default)s)")
    sm.add_argument("--seed", type=int, default=0, help="seed of the positions (default: %(default)s)")
    sm.add_argument("--site", default="factory-hall-a", help="the twin's site, name or file (%(default)s)")
    sm.add_argument(
        "--truth-site",
        help="site with the world's true materials (default: SITE-truth if built in, else SITE)",
    )
    sm.add_argument("--model-error-db", type=float, default=1.0, help="world's per-SU gain offset std, dB")
    sm.add_argument("--name", help="campaign name (default: sim-<date>T<time>)")
    sm.add_argument("--workdir", type=Path, default=Path("out/campaign-sim"), help="world and station files")
    sm.add_argument("--out", type=Path, default=Path("out/campaign-sim.csv"), help="CSV to write")
    sm.set_defaults(func=_campaign_simulate)


def _campaign_start(args) -> int:
    c = _client(args).start_campaign(args.name, args.description)
    print(f"campaign {c['name']} started by {c['created_by']} over {len(c['su_ids'])} SUs: "
          f"{', '.join(c['su_ids'])}")  # fmt: skip
    print(
        "place the reference transmitter, then: rftwin-calibrate campaign point --position X,Y,Z --power-dbm P"
    )
    return 0


def _campaign_point(args) -> int:
    from calibration.campaign_client import point_line

    client = _client(args)
    name = client.current_campaign(args.campaign, open_only=True)
    if args.window is None:
        print(f"campaign {name}: measuring for {args.dwell:g} s ...", flush=True)
    p = client.add_point(name, args.position, args.power_dbm, dwell_s=None if args.window else args.dwell,
                         window_ns=args.window, settle_s=args.settle, min_count=args.min_count)  # fmt: skip
    print(point_line(p))
    _print_readings(p)
    return 0 if p["usable"] else 1


def _print_readings(p: dict) -> None:
    for r in p["readings"]:
        if r["mean_dbm"] is None:
            print(f"    {r['su_id']:<10} no readings")
        else:
            sat = f", {r['saturated']} saturated" if r["saturated"] else ""
            print(
                f"    {r['su_id']:<10} {r['mean_dbm']:8.2f} dBm  ±{r['std_db']:.2f} dB  n={r['count']}{sat}"
            )


def _campaign_status(args) -> int:
    from calibration.campaign_client import point_line

    client = _client(args)
    c = client.campaign(client.current_campaign(args.name))
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c["created_ns"] / 1e9))
    print(f"campaign {c['name']} ({c['state']}, started {started} by {c['created_by']}): {c['n_points']} points, "
          f"{c['n_accepted']} accepted, {c['n_rejected']} rejected; {len(c['su_ids'])} SUs")  # fmt: skip
    for p in c["points"]:
        print("  " + point_line(p))
        if args.sus:
            _print_readings(p)
    return 0


def _campaign_list(args) -> int:
    camps = _client(args).campaigns()
    if not camps:
        print("no campaigns")
    for c in camps:
        print(f"{c['name']:<24} {c['state']:<7} {c['n_points']:>4} points ({c['n_accepted']} accepted)")
    return 0


def _campaign_export(args) -> int:
    from calibration.campaign_client import to_points
    from calibration.points import write_points_csv

    client = _client(args)
    c = client.campaign(client.current_campaign(args.name))
    points = to_points(c["points"])
    path = write_points_csv(points, args.out)
    print(
        f"wrote {len(points)} points ({sum(p.usable for p in points)} usable) of campaign {c['name']} to {path}"
    )
    return 0


def _campaign_import(args) -> int:
    from calibration.points import read_points_csv

    points = read_points_csv(args.file)  # PointsError: exit 2 with the file's problem
    if not points:
        raise ValueError(f"{args.file}: no points")
    client = _client(args)
    name = client.current_campaign(args.campaign, open_only=True)
    out = client.import_points(name, points)
    print(f"campaign {name}: imported {out['imported']} points from {args.file}: {out['accepted']} accepted, "
          f"{out['rejected']} rejected")  # fmt: skip
    for p in out["points"]:
        if p["rejected"]:
            print(f"  point {p['index']}: rejected: {p['rejected']}")
    return 0


def _campaign_close(args) -> int:
    client = _client(args)
    c = client.close_campaign(client.current_campaign(args.name, open_only=True))
    print(f"campaign {c['name']} closed: {c['n_points']} points, {c['n_accepted']} accepted")
    return 0


def _campaign_simulate(args) -> int:
    from calibration.campaign_sim import SimSettings, simulate_campaign
    from central.twin.progress import tracing_progress_bar
    from central.twin.site import BUILTIN_SITES, builtin_site_path, resolve_site

    if args.points < 1:
        raise ValueError("--points must be at least 1")
    site = resolve_site(args.site)
    site_file = builtin_site_path(args.site) if args.site in BUILTIN_SITES else Path(args.site)
    truth_ref = args.truth_site or (
        f"{args.site}-truth" if f"{args.site}-truth" in BUILTIN_SITES else args.site
    )
    if truth_ref == args.site:
        print(f"note: the world uses the twin's own materials ({args.site}); give --truth-site for a gap")
    truth = resolve_site(truth_ref)
    name = args.name or time.strftime("sim-%Y%m%dT%H%M%S")
    s = SimSettings(points=args.points, dwell_s=args.dwell, gap_s=args.gap, lead_in_s=args.lead_in,
                    power_dbm=args.power_dbm, seed=args.seed, model_error_db=args.model_error_db,
                    gain_db=args.gain_db)  # fmt: skip
    update, close = tracing_progress_bar()
    try:
        result = simulate_campaign(args.workdir, site, site_file, truth, args.out, name, s,
                                   say=lambda m: print(m, flush=True), progress=update)  # fmt: skip
    finally:
        close()
    print(f"campaign {result.campaign}: {result.accepted} of {len(result.points)} points accepted")
    print(result.csv_path)
    return 0


# ------------------------------------------------------------------------------------- learning


def _learn_parser(sub) -> None:
    lp = sub.add_parser(
        "learn", parents=[_connection()], help="learn the normal residual statistics on the live system"
    )
    lp.add_argument(
        "--duration", type=duration_s, default=60.0, help="normal period ending now (default: 60s)"
    )
    lp.add_argument("--detector", help="detector kind (default: the central unit's configured one)")
    lp.add_argument("--target-far", type=float, help="false-alarm rate per snapshot for the threshold")
    lp.add_argument("--contamination", type=float, default=0.0, help="fraction of outliers to drop (0)")
    lp.set_defaults(func=_learn)


def _learn(args) -> int:
    client = _client(args)
    r = client.learn(args.duration, args.detector, args.target_far, args.contamination)
    span = (r["until_ns"] - r["since_ns"]) / 1e9
    print(f"learned {r['detector']} on {r['n_snapshots']} snapshots of {span:g} s: threshold {r['threshold']:.4g}; "
          f"model {r['model_id']} is active")  # fmt: skip
    prov = client.model(r["model_id"])["provenance"]
    for key in sorted(prov):
        print(f"  {key}: {prov[key]}")
    return 0


def _fit_parser(sub) -> None:
    f = sub.add_parser("fit", help="fit the site's materials (and SU offsets) to an exported campaign CSV")
    f.add_argument("points", help="campaign CSV (campaign export / campaign simulate)")
    f.add_argument("--site", default="factory-hall-a", help="built-in site name or site file (default: %(default)s)")
    f.add_argument("--out", required=True, help="calibrated site file to write (TOML)")
    f.add_argument("--report-dir", default=None, help="report directory (default: next to --out)")
    f.add_argument("--campaign", default=None, help="campaign name for the provenance (default: the CSV's stem)")
    f.add_argument("--iterations", type=int, default=None, help="Adam iterations (default: FitSettings)")
    f.add_argument("--no-offsets", action="store_true", help="do not estimate per-SU gain offsets")
    f.set_defaults(func=_fit)


def _fit(args) -> int:
    import dataclasses as dc
    from pathlib import Path

    from calibration.material_fit import FitSettings, fit_materials
    from calibration.points import measurement_matrix, read_points_csv
    from calibration.report import write_report
    from central.twin import resolve_site
    from central.twin.site import site_to_toml

    site = resolve_site(args.site)
    pos, power, meas = measurement_matrix(read_points_csv(args.points), site.su_ids)
    settings = FitSettings(fit_offsets=not args.no_offsets)
    if args.iterations:
        settings = dc.replace(settings, iterations=args.iterations)

    def show(step) -> None:
        mats = ", ".join(f"{n} ε_r {e:.3f} σ {c:.4f}" for n, (e, c) in step.materials.items())
        print(f"  step {step.iteration:3d}/{settings.iterations}: train RMSE {step.train_rmse_db:.3f} dB, validation "
              f"loss {step.validation_loss_db2:.3f} dB²; {mats}", file=sys.stderr, flush=True)  # fmt: skip

    print(f"fitting {len(pos)} points × {len(site.su_ids)} SUs on {site.name} …", file=sys.stderr)
    res = fit_materials(site, pos, power, meas, settings, progress=show)
    campaign = args.campaign or Path(args.points).stem
    cal = res.calibrated_site(site, campaign)
    out = Path(args.out)
    offsets = ", ".join(f"{su} {o:+.2f} dB" for su, o in res.offsets_db.items())
    out.write_text(site_to_toml(cal, header=f"Calibrated from campaign {campaign} by rftwin-calibrate fit.\n"
                                            f"Per-SU gain offsets (apply in the nodes' calibration tables): {offsets}"))  # fmt: skip
    paths = write_report(res, Path(args.report_dir) if args.report_dir else out.parent, f"{out.stem}-report", site,
                         command=f"rftwin-calibrate fit {args.points} --site {args.site} --out {args.out}")  # fmt: skip
    for name, (eps, sigma) in res.materials.items():
        print(f"{name}: ε_r {res.initial_materials[name][0]:.3f} → {eps:.3f}, σ {res.initial_materials[name][1]:.4f} → "
              f"{sigma:.4f} S/m")  # fmt: skip
    print(f"held-out test RMSE {res.rmse_db('holdout', False):.2f} → {res.rmse_db('holdout'):.2f} dB (before: offsets "
          f"profiled on the training points); {res.stopped}; "
          f"{res.fit_s:.1f} s\nwrote {out} and {', '.join(str(p) for p in paths)}\n"
          f"next: rftwin-central twin build --site {out}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    from calibration.campaign_client import CentralError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CentralError as e:
        hint = ""
        if e.status == 401:
            hint = f" (give an operator token: --token-file FILE or ${TOKEN_ENV})"
        print(f"rftwin-calibrate: error: {e.detail}{hint}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:  # PointsError is a ValueError
        print(f"rftwin-calibrate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
