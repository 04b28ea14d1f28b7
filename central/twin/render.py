"""A picture of the twin for a person: the hall floor plan, obstacles, SUs and one SU's gain map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from central.twin.gain_maps import GAIN_FLOOR_DB, GainMaps
from central.twin.site import Site


def render_gain_map(site: Site, maps: GainMaps, su_id: str, out_path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if su_id not in maps.su_ids:
        raise ValueError(f"unknown sensing unit {su_id!r}; known: {', '.join(maps.su_ids)}")
    j = maps.su_ids.index(su_id)
    L, W, _ = site.hall_size_m
    fig, ax = plt.subplots(figsize=(8, 7.2), dpi=110)
    g = np.ma.masked_invalid(maps.gain_db[j])
    reached = g.compressed()
    reached = reached[reached > GAIN_FLOOR_DB]  # cells with at least one path at the traced depth
    vmax = float(reached.max()) if reached.size else 0.0
    vmin = float(np.percentile(reached, 1)) if reached.size else vmax - 100.0
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_under("0.1")  # no path at the traced depth: near-black, off the scale
    im = ax.imshow(g, origin="lower", extent=(0, L, 0, W), cmap=cmap, vmin=vmin, vmax=vmax)
    depth = maps.settings.get("max_depth", "?")
    fig.colorbar(im, ax=ax, extend="min", label=f"path gain to {su_id} [dB] (black: no path at depth {depth})")
    for ob in site.obstacles:
        (x0, y0, _), (sx, sy, _) = ob.min_m, ob.size_m
        ax.add_patch(Rectangle((x0, y0), sx, sy, facecolor="0.55", edgecolor="k", hatch="//", lw=0.8))
        ax.text(x0 + sx / 2, y0 + sy / 2, f"{ob.name}\n{ob.material}", ha="center", va="center", fontsize=7)
    pos = np.array(site.su_positions_m)
    ax.scatter(pos[:, 0], pos[:, 1], marker="^", s=60, c="white", edgecolors="k", label="sensing units", zorder=3)
    ax.scatter(pos[j, 0], pos[j, 1], marker="^", s=140, c="red", edgecolors="k", label=su_id, zorder=4)
    for su in site.sensing_units:
        ax.annotate(su.id, su.position_m[:2], xytext=(4, 4), textcoords="offset points", fontsize=7, color="w")
    ax.add_patch(Rectangle((0, 0), L, W, fill=False, lw=2, edgecolor="k"))
    ax.set(xlim=(-0.5, L + 0.5), ylim=(-0.5, W + 0.5), xlabel="x [m]", ylabel="y [m]", aspect="equal")
    ax.set_title(
        f"{site.name}: {site.frequency_hz / 1e9:g} GHz, SU {su_id} at z={site.su_positions_m[j][2]} m, "
        f"TX plane z={site.tx_plane.height_m} m ({maps.methods[j]})",
        fontsize=9,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.08), ncol=2, fontsize=7, frameon=False)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out
