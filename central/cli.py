"""``rftwin-central``: the central unit's command line. Subcommands import their heavy parts lazily."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def tracing_progress_bar():
    """A tqdm bar over all SU × cell work; returns (callback, close)."""
    from tqdm import tqdm

    bar = None
    seen: dict[str, int] = {}

    def update(su_id: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # created on first work, so a cache hit prints nothing
            bar = tqdm(unit="cell", desc="tracing gain maps", file=sys.stderr, dynamic_ncols=True, total=0)
        if su_id not in seen:
            bar.total = (bar.total or 0) + total
            seen[su_id] = 0
        bar.set_postfix_str(su_id)
        bar.update(done - seen[su_id])
        seen[su_id] = done

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close


def _load_twin(args, rebuild: bool = False):
    from central.twin import Twin

    update, close = tracing_progress_bar()
    try:
        return Twin.load(args.site, cache_dir=args.cache_dir, rebuild=rebuild, progress=update)
    finally:
        close()


def cmd_twin_build(args) -> int:
    twin = _load_twin(args, rebuild=args.rebuild)
    m = twin.maps
    state = "cached" if twin.from_cache else f"built in {m.build_s:.1f} s"
    print(f"site {twin.site.name}: {m.num_su} SU maps, {m.grid.nx}x{m.grid.ny} cells of {m.grid.cell_size_m} m "
          f"({m.grid.num_valid} valid), methods {sorted(set(m.methods))}, {state}")
    print(f"cache: {twin.cache_path}")
    if args.out:
        m.save(args.out)
        print(f"wrote {args.out}")
    return 0


def cmd_twin_show(args) -> int:
    from central.twin.render import render_gain_map

    twin = _load_twin(args)
    su = args.su or twin.maps.su_ids[0]
    out = render_gain_map(twin.site, twin.maps, su, args.out)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rftwin-central", description="rftwin central unit")
    sub = p.add_subparsers(dest="command", required=True)

    twin = sub.add_parser("twin", help="the digital twin: build and inspect gain maps")
    tsub = twin.add_subparsers(dest="twin_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--site", help="site file (TOML) or built-in name (default: factory-hall-a)")
    common.add_argument("--cache-dir", type=Path, help="gain-map cache (default: $RFTWIN_CACHE_DIR or ~/.cache/rftwin)")
    b = tsub.add_parser("build", parents=[common], help="ray-trace the per-SU gain maps (cached)")
    b.add_argument("--rebuild", action="store_true", help="trace again even if cached")
    b.add_argument("--out", type=Path, help="also write the maps to this .npz (e.g. a simulated world's true "
                   "maps, from --site factory-hall-a-truth)")  # fmt: skip
    b.set_defaults(func=cmd_twin_build)
    s = tsub.add_parser("show", parents=[common], help="render the hall, SUs and one gain map to PNG")
    s.add_argument("--su", help="sensing unit whose map to draw (default: the first)")
    s.add_argument("--out", type=Path, default=Path("twin.png"), help="PNG path (default: twin.png)")
    s.set_defaults(func=cmd_twin_show)
    return p


def main(argv: list[str] | None = None) -> int:
    from central.twin.site import SiteError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SiteError, ValueError) as e:
        print(f"rftwin-central: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
