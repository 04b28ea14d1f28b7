"""Site files: the default hall is the paper's, and bad sites fail with messages that name the problem."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from central.twin.site import (
    ITU_MATERIALS,
    SiteError,
    builtin_site_path,
    load_site,
    resolve_site,
    site_from_dict,
)

PAPER_SU_XY = [(6.5, 29.5), (12.5, 29.5), (17.5, 29.5), (23.5, 29.5), (28.5, 29.5), (34.5, 29.5),
               (6.5, 11.5), (12.5, 11.5), (17.5, 11.5), (23.5, 11.5), (28.5, 11.5), (34.5, 11.5)]  # fmt: skip
PAPER_LINES_SW = [(7, 22), (18, 22), (29, 22), (7, 4), (18, 4), (29, 4)]


@pytest.mark.parametrize("name, su_height", [("factory-hall-a", 1.5), ("factory-hall-b", 4.9)])
def test_builtin_sites_are_the_papers_hall(name, su_height):
    site = resolve_site(name)
    assert site.hall_size_m == (40.0, 40.0, 5.0)
    assert site.frequency_hz == 3.7e9 and site.noise_floor_dbm == -100.0
    assert site.tx_plane.height_m == 1.5
    assert site.materials["concrete"].itu_type == "concrete" and site.hall_material == "concrete"
    assert [(b.min_m[0], b.min_m[1]) for b in site.obstacles] == PAPER_LINES_SW
    assert all(b.size_m == (4.0, 14.0, 3.0) and b.material == "metal" for b in site.obstacles)
    assert [su.position_m for su in site.sensing_units] == [(x, y, su_height) for x, y in PAPER_SU_XY]


@pytest.mark.parametrize("hall", ["factory-hall-a", "factory-hall-b"])
def test_the_simulated_worlds_truth_is_the_hall_with_other_concrete(hall):
    """Same geometry as the twin's hall, different concrete: the gap calibration has to close."""
    twin, truth = resolve_site(hall), resolve_site(f"{hall}-truth")
    assert truth.name == f"{hall}-truth"
    strip = dict(name="", description="", materials={})
    assert dataclasses.replace(truth, **strip) == dataclasses.replace(twin, **strip)
    concrete = truth.materials["concrete"]
    assert (concrete.itu_type, concrete.relative_permittivity, concrete.conductivity_s_per_m) == (None, 7.0, 0.3)
    assert concrete.thickness_m == twin.materials["concrete"].thickness_m
    assert truth.materials["metal"] == twin.materials["metal"]
    assert truth.content_hash() != twin.content_hash()


def test_default_site_is_scenario_a():
    assert resolve_site(None).name == "factory-hall-a"


def test_content_hash_ignores_name_but_not_materials():
    doc = tomllib.loads(builtin_site_path().read_text())
    base = site_from_dict(doc)
    doc["site"]["name"] = "renamed"
    assert site_from_dict(doc).content_hash() == base.content_hash()
    doc["materials"]["concrete"] = {"relative_permittivity": 7.0, "conductivity_s_per_m": 0.3}
    assert site_from_dict(doc).content_hash() != base.content_hash()


def test_itu_material_list_matches_sionna():
    from sionna.rt.radio_materials.itu import ITU_MATERIALS_PROPERTIES

    assert ITU_MATERIALS <= set(ITU_MATERIALS_PROPERTIES)


def _doc(**changes):
    doc = {
        "site": {"name": "t", "frequency_hz": 3.7e9, "noise_floor_dbm": -100.0},
        "hall": {"size_m": [10.0, 8.0, 4.0], "material": "concrete"},
        "tx_plane": {"height_m": 1.5, "cell_size_m": 0.5},
        "obstacles": [{"name": "box", "material": "metal", "min_m": [2, 2, 0], "size_m": [2, 2, 2]}],
        "sensing_units": [{"id": "su1", "position_m": [1.0, 1.0, 1.5]}],
    }
    for path, value in changes.items():
        *keys, last = path.split("__")
        node = doc
        for k in keys:
            node = node[int(k)] if k.isdigit() else node[k]
        node[int(last) if last.isdigit() else last] = value
    return doc


def test_minimal_site_is_valid():
    site = site_from_dict(_doc())
    assert site.su_ids == ["su1"] and site.obstacles[0].max_m == (4, 4, 2)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"obstacles__0__min_m": [9.0, 2, 0]}, "extends outside the hall"),
        ({"obstacles__0__size_m": [2, -1, 2]}, "every dimension must be > 0"),
        ({"hall__size_m": [10.0, 0.0, 4.0]}, "every dimension must be > 0"),
        ({"hall__size_m": [10.0, 8.0]}, "expected a list of 3 numbers"),
        ({"sensing_units__0__position_m": [3.0, 3.0, 1.0]}, "inside obstacle 'box'"),
        ({"sensing_units__0__position_m": [11.0, 3.0, 1.0]}, "not strictly inside the hall"),
        ({"sensing_units__0__position_m": [1.0, 1.0, float("nan")]}, "finite"),
        ({"sensing_units": []}, "no [[sensing_units]]"),
        ({"obstacles__0__material": "unobtainium"}, "unknown material 'unobtainium'"),
        ({"hall__material": "unobtainium"}, "unknown material 'unobtainium'"),
        ({"tx_plane__height_m": 4.5}, "tx_plane.height_m must be inside the hall"),
        ({"tx_plane__cell_size_m": 0.0}, "cell_size_m must be > 0"),
        ({"site__frequency_hz": 5.0}, "frequency_hz must be within"),
        ({"site__noise_floor_dbm": "loud"}, "expected a finite number"),
        ({"materials": {"metal": {"itu_type": "metal", "relative_permittivity": 3.0}}}, "either itu_type"),
        ({"materials": {"metal": {"relative_permittivity": 0.5, "conductivity_s_per_m": 0}}}, "must be >= 1"),
        ({"materials": {"glassy": {"itu_type": "glass"}}}, "defined but never used"),
        ({"obstacles__0__name": "../evil"}, "name must be"),
    ],
)
def test_invalid_sites_are_rejected_with_a_reason(changes, message):
    with pytest.raises(SiteError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        site_from_dict(_doc(**changes))


def test_duplicate_sensing_unit_ids_are_rejected():
    doc = _doc()
    doc["sensing_units"].append({"id": "su1", "position_m": [5.0, 5.0, 1.5]})
    with pytest.raises(SiteError, match="duplicate sensing unit id"):
        site_from_dict(doc)


def test_load_site_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nname=")
    with pytest.raises(SiteError, match="bad.toml: not valid TOML"):
        load_site(bad)
    with pytest.raises(SiteError, match="no such site file"):
        load_site(tmp_path / "missing.toml")
