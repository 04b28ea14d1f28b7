"""Site description: the hall, its obstacles, the sensing units and the transmitter plane.

A site file (TOML) is the single source of truth for the twin's geometry. Everything here is plain
data and validation, with no ray tracer import, so that a bad site file fails in milliseconds with a
message that names the offending entry, before any mesh is written or any kernel compiled.

Units: metres (``_m``), hertz (``_hz``), dBm, siemens per metre (``_s_per_m``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from contracts.band_plan import BandPlan, BandPlanError

# ITU-R P.2040 materials known to Sionna RT (``sionna.rt.radio_materials.itu``). Kept here as data so
# that validating a site needs no ray tracer; a test checks the list against the installed Sionna.
ITU_MATERIALS = frozenset(
    {
        "vacuum", "concrete", "brick", "plasterboard", "wood", "glass", "ceiling_board", "chipboard",
        "plywood", "marble", "floorboard", "metal", "very_dry_ground", "medium_dry_ground", "wet_ground",
    }
)  # fmt: skip

# Obstacle names become mesh file names and Mitsuba ids.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

DEFAULT_THICKNESS_M = {"concrete": 0.2, "metal": 0.01}
FALLBACK_THICKNESS_M = 0.1


class SiteError(ValueError):
    """A site description that cannot describe a real hall. The message names the offending entry."""


@dataclass(frozen=True)
class Material:
    """A radio material: an ITU-R P.2040 type, or explicit ε_r and σ (e.g. fitted by calibration).

    With explicit parameters the material is frequency-independent, which is what a calibration at
    the site's carrier wants; ITU types follow the recommendation's frequency model.
    """

    name: str
    itu_type: str | None = None
    relative_permittivity: float | None = None
    conductivity_s_per_m: float | None = None
    thickness_m: float = FALLBACK_THICKNESS_M
    provenance: str = ""

    @property
    def is_itu(self) -> bool:
        return self.itu_type is not None


@dataclass(frozen=True)
class Box:
    """An axis-aligned box obstacle (a production line, a rack, a machine)."""

    name: str
    material: str
    min_m: tuple[float, float, float]
    size_m: tuple[float, float, float]

    @property
    def max_m(self) -> tuple[float, float, float]:
        return tuple(a + s for a, s in zip(self.min_m, self.size_m))  # type: ignore[return-value]

    def contains(self, point_m: tuple[float, float, float]) -> bool:
        return all(lo <= p <= hi for lo, p, hi in zip(self.min_m, point_m, self.max_m))


@dataclass(frozen=True)
class SensingUnit:
    """A sensing unit (SDR node) at a fixed, surveyed position."""

    id: str
    position_m: tuple[float, float, float]


@dataclass(frozen=True)
class TxPlane:
    """The horizontal plane in which transmitters (UEs, robots, jammers) move, and its grid."""

    height_m: float
    cell_size_m: float


@dataclass(frozen=True)
class Site:
    name: str
    frequency_hz: float
    noise_floor_dbm: float
    hall_size_m: tuple[float, float, float]
    hall_material: str
    tx_plane: TxPlane
    obstacles: tuple[Box, ...]
    sensing_units: tuple[SensingUnit, ...]
    materials: dict[str, Material] = field(default_factory=dict)
    description: str = ""
    band_plan: BandPlan | None = None  # the monitored band ([band]); None: a 100 MHz carrier at frequency_hz

    def __post_init__(self):
        if self.band_plan is None:
            object.__setattr__(self, "band_plan", BandPlan(self.frequency_hz))

    @property
    def su_ids(self) -> list[str]:
        return [su.id for su in self.sensing_units]

    @property
    def su_positions_m(self) -> list[tuple[float, float, float]]:
        return [su.position_m for su in self.sensing_units]

    def used_materials(self) -> list[Material]:
        names = [self.hall_material] + [ob.material for ob in self.obstacles]
        return [self.materials[n] for n in dict.fromkeys(names)]

    def obstacle_at(self, point_m: tuple[float, float, float]) -> Box | None:
        return next((ob for ob in self.obstacles if ob.contains(point_m)), None)

    def to_dict(self) -> dict:
        return asdict(self)

    def content_hash(self) -> str:
        """Hash of everything that changes what the ray tracer computes (not the name or description)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("description")
        d.pop("band_plan")  # the monitored sub-band grid does not change a traced gain
        for m in d["materials"].values():
            m.pop("provenance")
        blob = json.dumps(d, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Loading


def _vec(value, where: str, n: int = 3) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise SiteError(f"{where}: expected a list of {n} numbers, got {value!r}")
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise SiteError(f"{where}: expected numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise SiteError(f"{where}: values must be finite, got {value!r}")
    return out


def _num(table: dict, key: str, where: str, default: float | None = None) -> float:
    if key not in table:
        if default is None:
            raise SiteError(f"{where}: missing '{key}'")
        return default
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SiteError(f"{where}.{key}: expected a finite number, got {v!r}")
    return float(v)


def _material(name: str, table: dict) -> Material:
    where = f"materials.{name}"
    unknown = set(table) - {"itu_type", "relative_permittivity", "conductivity_s_per_m", "thickness_m",
                            "provenance"}  # fmt: skip
    if unknown:
        raise SiteError(f"{where}: unknown keys {sorted(unknown)}")
    itu = table.get("itu_type")
    eps = table.get("relative_permittivity")
    sigma = table.get("conductivity_s_per_m")
    if itu is not None and (eps is not None or sigma is not None):
        raise SiteError(f"{where}: give either itu_type or relative_permittivity/conductivity_s_per_m")
    if itu is None and (eps is None or sigma is None):
        raise SiteError(f"{where}: needs itu_type, or both relative_permittivity and conductivity_s_per_m")
    if itu is not None and itu not in ITU_MATERIALS:
        raise SiteError(f"{where}.itu_type: unknown ITU material {itu!r}; known: {sorted(ITU_MATERIALS)}")
    if eps is not None:
        eps = _num(table, "relative_permittivity", where)
        sigma = _num(table, "conductivity_s_per_m", where)
        if eps < 1.0:
            raise SiteError(f"{where}.relative_permittivity must be >= 1, got {eps}")
        if sigma < 0.0:
            raise SiteError(f"{where}.conductivity_s_per_m must be >= 0, got {sigma}")
    thickness = _num(table, "thickness_m", where, DEFAULT_THICKNESS_M.get(itu or "", FALLBACK_THICKNESS_M))
    if thickness <= 0:
        raise SiteError(f"{where}.thickness_m must be > 0, got {thickness}")
    return Material(name, itu, eps, sigma, thickness, str(table.get("provenance", "")))


def site_from_dict(doc: dict) -> Site:
    """Build and validate a :class:`Site` from the parsed TOML document."""
    for section in ("site", "hall", "tx_plane"):
        if not isinstance(doc.get(section), dict):
            raise SiteError(f"missing [{section}] table")
    s, h, p = doc["site"], doc["hall"], doc["tx_plane"]

    materials = {name: _material(name, t) for name, t in doc.get("materials", {}).items()}

    def material_ref(name, where: str) -> str:
        if not isinstance(name, str):
            raise SiteError(f"{where}: material must be a name, got {name!r}")
        if name not in materials:
            if name not in ITU_MATERIALS:
                raise SiteError(
                    f"{where}: unknown material {name!r}; use an ITU name ({', '.join(sorted(ITU_MATERIALS))})"
                    " or define it under [materials]"
                )
            materials[name] = _material(name, {"itu_type": name})
        return name

    size = _vec(h.get("size_m"), "hall.size_m")
    if min(size) <= 0:
        raise SiteError(f"hall.size_m: every dimension must be > 0, got {list(size)}")
    hall_material = material_ref(h.get("material", "concrete"), "hall.material")

    freq = _num(s, "frequency_hz", "site")
    if not 1e8 <= freq <= 1e11:
        raise SiteError(f"site.frequency_hz must be within 100 MHz..100 GHz, got {freq}")
    noise = _num(s, "noise_floor_dbm", "site")
    if not -200 <= noise <= 0:
        raise SiteError(f"site.noise_floor_dbm must be within -200..0 dBm, got {noise}")

    plane = TxPlane(_num(p, "height_m", "tx_plane"), _num(p, "cell_size_m", "tx_plane", 0.5))
    if not 0 < plane.height_m < size[2]:
        raise SiteError(f"tx_plane.height_m must be inside the hall (0, {size[2]}), got {plane.height_m}")
    if not 0 < plane.cell_size_m <= min(size[:2]) / 2:
        raise SiteError(f"tx_plane.cell_size_m must be > 0 and allow at least 2 cells, got {plane.cell_size_m}")

    obstacles = []
    for i, o in enumerate(doc.get("obstacles", [])):
        name = str(o.get("name", f"obstacle{i}"))
        where = f"obstacles[{i}] ({name})"
        if not _NAME_RE.match(name) or name == "hall":
            raise SiteError(f"{where}: name must be letters, digits, '-', '_' or '.' (not 'hall'), got {name!r}")
        lo = _vec(o.get("min_m"), f"{where}.min_m")
        sz = _vec(o.get("size_m"), f"{where}.size_m")
        if min(sz) <= 0:
            raise SiteError(f"{where}.size_m: every dimension must be > 0, got {list(sz)}")
        box = Box(name, material_ref(o.get("material", "metal"), f"{where}.material"), lo, sz)
        if min(lo) < 0 or any(hi > lim + 1e-9 for hi, lim in zip(box.max_m, size)):
            raise SiteError(f"{where}: extends outside the hall (0..{list(size)}): {list(lo)} .. {list(box.max_m)}")
        if any(b.name == name for b in obstacles):
            raise SiteError(f"{where}: duplicate obstacle name")
        obstacles.append(box)

    sus = []
    for i, u in enumerate(doc.get("sensing_units", [])):
        sid = u.get("id")
        if not isinstance(sid, str) or not sid:
            raise SiteError(f"sensing_units[{i}]: missing id")
        where = f"sensing_units[{i}] ({sid})"
        pos = _vec(u.get("position_m"), f"{where}.position_m")
        if not all(0 < c < lim for c, lim in zip(pos, size)):
            raise SiteError(f"{where}: position {list(pos)} is not strictly inside the hall {list(size)}")
        hit = next((b for b in obstacles if b.contains(pos)), None)
        if hit is not None:
            raise SiteError(f"{where}: position {list(pos)} is inside obstacle {hit.name!r}")
        if any(x.id == sid for x in sus):
            raise SiteError(f"{where}: duplicate sensing unit id")
        sus.append(SensingUnit(sid, pos))
    if not sus:
        raise SiteError("site has no [[sensing_units]]")

    unused = set(materials) - {hall_material} - {b.material for b in obstacles}
    if unused:
        raise SiteError(f"materials defined but never used: {sorted(unused)}")

    try:
        band_plan = BandPlan.from_dict(doc.get("band", {}), default_center_hz=freq)
    except BandPlanError as e:
        raise SiteError(str(e)) from None

    return Site(
        band_plan=band_plan,
        name=str(s.get("name", "site")),
        description=str(s.get("description", "")),
        frequency_hz=freq,
        noise_floor_dbm=noise,
        hall_size_m=size,
        hall_material=hall_material,
        tx_plane=plane,
        obstacles=tuple(obstacles),
        sensing_units=tuple(sus),
        materials=materials,
    )


def load_site(path: str | Path) -> Site:
    """Load a site file; errors name the file and the offending entry."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SiteError(f"{path}: no such site file") from None
    except tomllib.TOMLDecodeError as e:
        raise SiteError(f"{path}: not valid TOML: {e}") from None
    try:
        return site_from_dict(doc)
    except SiteError as e:
        raise SiteError(f"{path}: {e}") from None


BUILTIN_SITES = {
    "factory-hall-a": "factory_hall_a.toml",
    "factory-hall-b": "factory_hall_b.toml",
    "factory-hall-a-truth": "factory_hall_a_truth.toml",  # the simulated world's materials, not the twin's
    "factory-hall-b-truth": "factory_hall_b_truth.toml",
}
DEFAULT_SITE = "factory-hall-a"


def builtin_site_path(name: str = DEFAULT_SITE) -> Path:
    if name not in BUILTIN_SITES:
        raise SiteError(f"unknown built-in site {name!r}; known: {sorted(BUILTIN_SITES)}")
    return Path(str(resources.files("central.twin") / "sites" / BUILTIN_SITES[name]))


def resolve_site(ref: str | Path | None) -> Site:
    """A site from a file path or a built-in name (default: the paper's hall, scenario A)."""
    if ref is None:
        return load_site(builtin_site_path())
    if str(ref) in BUILTIN_SITES:
        return load_site(builtin_site_path(str(ref)))
    return load_site(ref)


# --------------------------------------------------------------------------------------------------
# Writing


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def site_to_toml(site: Site, header: str = "") -> str:
    """The site as a TOML document that :func:`load_site` reads back to an equal :class:`Site` (used to
    write calibrated site files). ``header``: comment lines placed on top."""
    out = [f"# {line}" for line in header.splitlines()]

    def table(name: str, items: dict) -> None:
        out.extend(["", f"[{name}]"])
        out.extend(f"{k} = {_toml_value(v)}" for k, v in items.items() if v is not None)

    table("site", {"name": site.name, "description": site.description, "frequency_hz": site.frequency_hz,
                   "noise_floor_dbm": site.noise_floor_dbm})  # fmt: skip
    table("hall", {"size_m": list(site.hall_size_m), "material": site.hall_material})
    table("tx_plane", {"height_m": site.tx_plane.height_m, "cell_size_m": site.tx_plane.cell_size_m})
    table("band", site.band_plan.to_dict())
    for name, m in site.materials.items():
        table(f"materials.{json.dumps(name)}",
              {"itu_type": m.itu_type, "relative_permittivity": m.relative_permittivity,
               "conductivity_s_per_m": m.conductivity_s_per_m, "thickness_m": m.thickness_m,
               "provenance": m.provenance or None})  # fmt: skip
    for b in site.obstacles:
        out.extend(["", "[[obstacles]]"])
        out.extend(f"{k} = {_toml_value(v)}" for k, v in
                   {"name": b.name, "material": b.material, "min_m": list(b.min_m), "size_m": list(b.size_m)}.items())  # fmt: skip
    for u in site.sensing_units:
        out.extend(["", "[[sensing_units]]", f"id = {_toml_value(u.id)}", f"position_m = {_toml_value(list(u.position_m))}"])
    return "\n".join(out).lstrip("\n") + "\n"
