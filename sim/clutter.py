"""Unmodelled clutter: what a real hall holds that its site file does not.

A site file describes what the plant engineer surveyed: walls, production lines, racks. The hall
itself also holds pallets of stacked goods, carts, machines parked for service and cabinets, which
move from week to week and which no twin models. They shadow and reflect like everything else, so
the simulated world places some of them (boxes of wood, metal or concrete, drawn per seed) and
the twin never learns about them: part of the gap between a twin and its hall, besides materials,
fidelity, per-SU offsets and drift.

Clutter keeps off the sensing units and off the transmitters' routes (``keep_clear_m``: AGV
loops, fixed emitters), as a plant keeps its aisles free; it may stand anywhere else on the floor,
not inside or against the surveyed obstacles.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from central.twin.site import Box, Site, site_from_dict, site_to_toml


@dataclass(frozen=True)
class ClutterKind:
    """A kind of object, its material (a name in the site, or an ITU-R P.2040 type) and size ranges (m)."""

    name: str
    material: str
    footprint_m: tuple[tuple[float, float], tuple[float, float]]  # (x range, y range) before a 90° turn
    height_m: tuple[float, float]


KINDS: tuple[ClutterKind, ...] = (
    ClutterKind("pallet", "wood", ((1.2, 1.2), (0.8, 0.8)), (0.3, 1.8)),  # stacked goods on a Euro pallet
    ClutterKind("goods", "chipboard", ((1.0, 2.4), (0.8, 1.2)), (1.0, 2.2)),  # boxed stock, stacked
    ClutterKind("cart", "metal", ((0.8, 1.6), (0.5, 0.8)), (0.9, 1.2)),
    ClutterKind("machine", "metal", ((1.2, 3.0), (1.2, 2.5)), (1.2, 2.6)),
    ClutterKind("cabinet", "metal", ((0.6, 1.2), (0.4, 0.6)), (1.8, 2.2)),
    ClutterKind("plinth", "concrete", ((1.0, 2.0), (1.0, 2.0)), (0.4, 1.2)),  # a machine foundation
)
GAP_M = 0.3  # between clutter and surveyed obstacles or walls (a forklift's clearance)


class ClutterError(ValueError):
    """The hall has no room for the clutter asked for (the message says how much fitted)."""


def draw_clutter(site: Site, rng: np.random.Generator, count: int, keep_clear_m: Sequence[Sequence[float]] = (),
                 clearance_m: float = 1.0, max_tries: int = 200) -> tuple[Box, ...]:  # fmt: skip
    """``count`` clutter boxes placed at random (kinds uniformly), none overlapping a surveyed
    obstacle, a wall or each other (``GAP_M`` apart), and none within ``clearance_m`` (horizontally)
    of a sensing unit or a ``keep_clear_m`` point. :class:`ClutterError` if they do not fit."""
    hall_x, hall_y, hall_z = site.hall_size_m
    clear = np.array([p[:2] for p in keep_clear_m] + [su.position_m[:2] for su in site.sensing_units], dtype=float)
    placed: list[Box] = []
    for i in range(count):
        for _ in range(max_tries):
            kind = KINDS[int(rng.integers(len(KINDS)))]
            sx, sy = (float(rng.uniform(*r)) for r in kind.footprint_m)
            if rng.random() < 0.5:
                sx, sy = sy, sx
            sz = min(float(rng.uniform(*kind.height_m)), hall_z - 0.5)
            x = float(rng.uniform(GAP_M, hall_x - GAP_M - sx))
            y = float(rng.uniform(GAP_M, hall_y - GAP_M - sy))
            box = Box(f"clutter-{i + 1:02d}-{kind.name}", kind.material, (round(x, 2), round(y, 2), 0.0),
                      (round(sx, 2), round(sy, 2), round(sz, 2)))  # fmt: skip
            if _fits(box, [*site.obstacles, *placed], clear, clearance_m):
                placed.append(box)
                break
        else:
            raise ClutterError(f"{site.name}: only {len(placed)} of {count} clutter objects fit in {max_tries} tries "
                               f"each (clearance {clearance_m:g} m around SUs and routes)")  # fmt: skip
    return tuple(placed)


def _fits(box: Box, others: Sequence[Box], clear_xy: np.ndarray, clearance_m: float) -> bool:
    lo, hi = np.array(box.min_m[:2]), np.array(box.max_m[:2])
    for o in others:
        if all(box.min_m[k] < o.max_m[k] + GAP_M and o.min_m[k] < box.max_m[k] + GAP_M for k in (0, 1)):
            return False
    if len(clear_xy):
        # distance from each point to the footprint rectangle
        d = np.linalg.norm(np.maximum(np.maximum(lo - clear_xy, clear_xy - hi), 0.0), axis=1)
        if d.min() < clearance_m:
            return False
    return True


def with_clutter(site: Site, clutter: Sequence[Box], name: str | None = None) -> Site:
    """The site plus ``clutter``, validated as any site file is (its TOML round trip): materials the
    clutter names are taken from the site when it has them (the world's true concrete), else ITU."""
    doc = tomllib.loads(site_to_toml(site))
    doc["obstacles"] = [*doc.get("obstacles", []), *({"name": b.name, "material": b.material,
                                                     "min_m": list(b.min_m), "size_m": list(b.size_m)}
                                                    for b in clutter)]  # fmt: skip
    doc["site"]["name"] = name or f"{site.name}-clutter"
    doc["site"]["description"] = f"{site.description} With {len(clutter)} unmodelled clutter objects.".strip()
    return site_from_dict(doc)


def clutter_to_dicts(clutter: Sequence[Box]) -> list[dict]:
    """JSON-ready boxes (for the world file's metadata)."""
    return [dataclasses.asdict(b) for b in clutter]
