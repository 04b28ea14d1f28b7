"""Site → Sionna RT scene files: triangle meshes (binary PLY) and a Mitsuba XML scene.

Sionna RT 2.x accepts triangle meshes only, so boxes are written as 12 triangles each, with numpy
and no Mitsuba import. Each obstacle gets its own shape id (loaded with ``merge_shapes=False``) so
that per-object names survive for calibration and for reading path interactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from central.twin.site import Material, Site

# Vertex order of a box: bottom face (z0) counter-clockwise, then top face (z1).
_BOX_FACES = np.array(
    [
        [0, 2, 1], [0, 3, 2],  # bottom (-z)
        [4, 5, 6], [4, 6, 7],  # top (+z)
        [0, 1, 5], [0, 5, 4],  # south (-y)
        [1, 2, 6], [1, 6, 5],  # east (+x)
        [2, 3, 7], [2, 7, 6],  # north (+y)
        [3, 0, 4], [3, 4, 7],  # west (-x)
    ],
    dtype=np.int32,
)  # fmt: skip


def box_mesh(min_m, max_m, inward: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (8, 3) and triangles (12, 3) of an axis-aligned box, normals outward (or inward)."""
    (x0, y0, z0), (x1, y1, z1) = min_m, max_m
    v = np.array(
        [[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
         [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]],
        dtype=np.float32,
    )  # fmt: skip
    f = _BOX_FACES[:, ::-1].copy() if inward else _BOX_FACES.copy()
    return v, f


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY with float32 vertices and uint8-counted int32 triangle lists."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    tri = np.zeros(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    tri["n"] = 3
    tri["idx"] = faces
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(np.ascontiguousarray(vertices, dtype="<f4").tobytes())
        fh.write(tri.tobytes())


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read back a PLY written by :func:`write_ply` (used by tests and the renderer)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    v = np.frombuffer(data, dtype="<f4", count=nv * 3, offset=end).reshape(nv, 3)
    tri = np.frombuffer(data, dtype=[("n", "u1"), ("idx", "<i4", (3,))], count=nf, offset=end + nv * 12)
    return v, tri["idx"]


def material_id(name: str) -> str:
    """XML id of a material. Not ``mat-<name>``: Sionna reserves ``mat-<itu name>`` for ITU types and
    refuses explicit (fitted) parameters under such an id."""
    return f"rm-{name}"


def _bsdf_xml(m: Material) -> str:
    if m.is_itu:
        return (
            f'  <bsdf type="itu-radio-material" id={quoteattr(material_id(m.name))}>\n'
            f'    <string name="type" value="{m.itu_type}"/>\n'
            f'    <float name="thickness" value="{m.thickness_m!r}"/>\n'
            "  </bsdf>\n"
        )
    return (
        f'  <bsdf type="radio-material" id={quoteattr(material_id(m.name))}>\n'
        f'    <float name="relative_permittivity" value="{m.relative_permittivity!r}"/>\n'
        f'    <float name="conductivity" value="{m.conductivity_s_per_m!r}"/>\n'
        f'    <float name="thickness" value="{m.thickness_m!r}"/>\n'
        "  </bsdf>\n"
    )


def _shape_xml(shape_id: str, material: str) -> str:
    return (
        f'  <shape type="ply" id={quoteattr(shape_id)}>\n'
        f'    <string name="filename" value={quoteattr("meshes/" + shape_id + ".ply")}/>\n'
        '    <boolean name="face_normals" value="true"/>\n'
        f'    <ref id={quoteattr(material_id(material))} name="bsdf"/>\n'
        "  </shape>\n"
    )


HALL_SHAPE_ID = "hall"


@dataclass(frozen=True)
class SceneFiles:
    xml_path: Path
    mesh_paths: dict[str, Path]


def export_scene(site: Site, out_dir: str | Path) -> SceneFiles:
    """Write ``scene.xml`` and ``meshes/*.ply`` for the site into ``out_dir``.

    The hall is one closed box whose normals face inward (floor, ceiling, four walls in one shape, as
    they share the wall material); each obstacle is its own shape named after the obstacle.
    """
    out = Path(out_dir)
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    meshes: dict[str, Path] = {}
    shapes = []

    v, f = box_mesh((0.0, 0.0, 0.0), site.hall_size_m, inward=True)
    meshes[HALL_SHAPE_ID] = out / "meshes" / f"{HALL_SHAPE_ID}.ply"
    write_ply(meshes[HALL_SHAPE_ID], v, f)
    shapes.append(_shape_xml(HALL_SHAPE_ID, site.hall_material))

    for ob in site.obstacles:
        v, f = box_mesh(ob.min_m, ob.max_m)
        meshes[ob.name] = out / "meshes" / f"{ob.name}.ply"
        write_ply(meshes[ob.name], v, f)
        shapes.append(_shape_xml(ob.name, ob.material))

    xml = (
        '<scene version="2.1.0">\n'
        f"  <!-- rftwin site {site.name!r}, content hash {site.content_hash()} -->\n"
        + "".join(_bsdf_xml(m) for m in site.used_materials())
        + "".join(shapes)
        + "</scene>\n"
    )
    xml_path = out / "scene.xml"
    xml_path.write_text(xml)
    return SceneFiles(xml_path, meshes)
