"""Site → PLY meshes and Mitsuba XML that Sionna RT loads with the right objects and materials."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from central.twin.scene_export import box_mesh, export_scene, read_ply, write_ply


def _face_normals(v, f):
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


@pytest.mark.parametrize("inward", [False, True])
def test_box_mesh_is_closed_with_consistent_normals(inward):
    v, f = box_mesh((1, 2, 0), (4, 6, 3), inward=inward)
    assert v.shape == (8, 3) and f.shape == (12, 3)
    centres = v[f].mean(axis=1)
    outward = np.einsum("ij,ij->i", _face_normals(v, f), centres - v.mean(axis=0))
    assert (outward < 0).all() if inward else (outward > 0).all()
    # every edge of a closed mesh is shared by exactly two triangles
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()


def test_ply_round_trip(tmp_path):
    v, f = box_mesh((0, 0, 0), (1, 2, 3))
    write_ply(tmp_path / "b.ply", v, f)
    v2, f2 = read_ply(tmp_path / "b.ply")
    np.testing.assert_array_equal(v, v2)
    np.testing.assert_array_equal(f, f2)


def test_export_writes_one_shape_per_obstacle_and_the_materials(tiny_site, tmp_path):
    files = export_scene(tiny_site, tmp_path)
    root = ET.parse(files.xml_path).getroot()
    shapes = {s.get("id"): s for s in root.findall("shape")}
    assert set(shapes) == {"hall", "cabinet"}
    assert set(files.mesh_paths) == {"hall", "cabinet"}
    bsdfs = {b.get("id"): b for b in root.findall("bsdf")}
    assert set(bsdfs) == {"rm-concrete", "rm-metal"}
    assert bsdfs["rm-metal"].find("string").get("value") == "metal"
    assert shapes["cabinet"].find("ref").get("id") == "rm-metal"
    v, _ = read_ply(files.mesh_paths["cabinet"])
    np.testing.assert_allclose(v.min(axis=0), [3, 2, 0])
    np.testing.assert_allclose(v.max(axis=0), [5, 4, 2])


@pytest.mark.raytracing
def test_sionna_loads_the_scene_with_named_objects_and_fitted_materials(tiny_site):
    import dataclasses

    from central.twin.rt_runtime import load_rt_scene
    from central.twin.site import Material

    fitted = dataclasses.replace(
        tiny_site,
        materials={**tiny_site.materials, "concrete": Material("concrete", None, 7.0, 0.3, 0.2, "test")},
    )
    scene = load_rt_scene(fitted)
    assert set(scene.objects) == {"hall", "cabinet"}
    assert scene.frequency.numpy().item() == pytest.approx(3.7e9)
    concrete = scene.objects["hall"].radio_material
    assert concrete.relative_permittivity.numpy().item() == pytest.approx(7.0)
    assert concrete.conductivity.numpy().item() == pytest.approx(0.3)
    assert scene.objects["cabinet"].radio_material.name == "rm-metal"
