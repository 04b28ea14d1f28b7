"""``make demo``: the main job, as far as it exists today.

Builds (or loads from cache) the default twin of the paper's factory hall, renders one SU's gain map,
and prints what each SU should receive from three legitimate transmitters. The live monitoring
station (simulated nodes, a jammer appearing, the alarm on the dashboard) arrives with issue #4.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from central.cli import tracing_progress_bar
from central.twin import Twin
from central.twin.render import render_gain_map
from central.twin.verify import sample_tx_positions

OUT = Path("out")


def main() -> int:
    update, close = tracing_progress_bar()
    try:
        twin = Twin.load(None, progress=update)
    finally:
        close()
    m = twin.maps
    how = "from cache" if twin.from_cache else f"ray-traced in {m.build_s:.0f} s"
    print(f"twin of {twin.site.name}: {m.num_su} SU gain maps over {m.grid.num_valid} cells, {how}")
    png = render_gain_map(twin.site, m, m.su_ids[0], OUT / f"twin-{m.su_ids[0]}.png")
    print(f"gain map of {m.su_ids[0]} rendered to {png}")

    tx = sample_tx_positions(twin.site, 3, np.random.default_rng(7))
    power_dbm = np.full(3, 20.0)
    predicted = twin.predictor.predict(tx, power_dbm)
    print("legitimate transmitters (20 dBm): " + ", ".join(f"({x:.1f}, {y:.1f}) m" for x, y, _ in tx))
    for su, p in zip(m.su_ids, predicted):
        print(f"  {su}: expected {p:7.1f} dBm")
    print("The live monitoring station (simulated nodes, jammer, alarm, dashboard) arrives with issue #4.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
