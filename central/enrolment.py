"""Enrolling nodes: which sensing unit a node serves, and the rules a new node must pass.

Decision: a node is the agent on one of the site's surveyed sensing units. Its enrolled position
must be strictly inside the hall, outside every obstacle, and within :data:`SU_MATCH_M` (1 m, 3-D)
of a sensing unit of the site file; the node then serves that SU (``nodes.su_id``), which is how the
live engine maps a node's readings onto the twin's SU. A typo'd coordinate therefore fails at
enrolment instead of silently feeding readings to the wrong SU's residual. Further:

- a node whose id *is* a site SU id (``su03``) must sit at that SU, not at another;
- one active node per SU (revoke the old board first);
- an id is never reused, even after revocation: its (node_id, seq) keys are taken, and a new
  board's spool starts again at seq 0, so its records would all be "duplicates".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from central.store import Store
from central.twin.site import Site
from node.protocol import NODE_ID_RE

SU_MATCH_M = 1.0


def su_for_position(site: Site, node_id: str, position_m: Sequence[float]) -> str:
    """The id of the site SU a node at ``position_m`` serves; ValueError with the reason if none."""
    if len(position_m) != 3 or not all(math.isfinite(v) for v in position_m):
        raise ValueError(f"position must be three finite numbers x,y,z in m, got {list(position_m)}")
    pos = tuple(float(v) for v in position_m)
    size = site.hall_size_m
    if not all(0.0 < p < s for p, s in zip(pos, size)):
        raise ValueError(f"position {list(pos)} is outside the hall of site {site.name!r} "
                         f"(0..{size[0]:g}, 0..{size[1]:g}, 0..{size[2]:g} m)")  # fmt: skip
    box = site.obstacle_at(pos)  # type: ignore[arg-type]
    if box is not None:
        raise ValueError(f"position {list(pos)} is inside obstacle {box.name!r}")
    dist = {su.id: math.dist(pos, su.position_m) for su in site.sensing_units}
    nearest = min(dist, key=dist.__getitem__)
    if node_id in dist and nearest != node_id and dist[node_id] > SU_MATCH_M:
        raise ValueError(f"node {node_id!r} has the id of sensing unit {node_id!r} at "
                         f"{list(site.sensing_units[site.su_ids.index(node_id)].position_m)}, but its position "
                         f"{list(pos)} is {dist[node_id]:.2f} m away from it")  # fmt: skip
    if dist[nearest] > SU_MATCH_M:
        raise ValueError(f"position {list(pos)} is {dist[nearest]:.2f} m from the nearest sensing unit of site "
                         f"{site.name!r} ({nearest}); a node must be within {SU_MATCH_M:g} m of a surveyed SU")  # fmt: skip
    return node_id if node_id in dist and dist[node_id] <= SU_MATCH_M else nearest


def enrol_node(store: Store, site: Site, node_id: str, position_m: Sequence[float]) -> tuple[str, str]:
    """Check the rules above and enrol the node; returns (token, su_id). The token is shown once."""
    if not NODE_ID_RE.match(node_id):
        raise ValueError(f"node id must be 1-64 of letters, digits, '-', '_', '.', got {node_id!r}")
    su = su_for_position(site, node_id, position_m)
    return store.add_node(node_id, position_m, su_id=su), su


def assign_missing_sus(store: Store, site: Site) -> list[str]:
    """Fill in the SU of nodes enrolled before the store kept it (schema v1); returns warnings."""
    warnings = []
    for n in store.nodes():
        if n.su_id is None and not n.revoked:
            try:
                store.set_node_su(n.id, su_for_position(site, n.id, n.position_m))
            except ValueError as e:
                warnings.append(f"node {n.id!r}: {e}")
    return warnings
