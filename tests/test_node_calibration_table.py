"""dBFS → dBm: exact at the calibrated points, bilinear between them, and no guessing outside."""

from __future__ import annotations

import pytest

from node.calibration_table import CalibrationTable

TABLE = CalibrationTable((3.6e9, 3.8e9), (0.0, 40.0), ((-10.0, -50.0), (-12.0, -52.0)))


def test_exact_at_table_points():
    assert TABLE.offset_db(3.6e9, 0.0) == -10.0
    assert TABLE.offset_db(3.8e9, 40.0) == -52.0
    assert TABLE.dbfs_to_dbm(-30.0, 3.6e9, 40.0) == -80.0


def test_bilinear_between_points():
    assert TABLE.offset_db(3.7e9, 20.0) == pytest.approx(-31.0)
    assert TABLE.offset_db(3.65e9, 40.0) == pytest.approx(-50.5)


@pytest.mark.parametrize("f, g, what", [(3.5e9, 10.0, "frequency_hz"), (3.7e9, 41.0, "gain_db")])
def test_outside_the_calibrated_range_is_refused(f, g, what):
    with pytest.raises(ValueError, match=f"{what} .* outside the calibrated range"):
        TABLE.offset_db(f, g)


def test_single_point_table_is_valid_only_there():
    t = CalibrationTable.constant(-45.0, 3.7e9, 30.0)
    assert t.dbfs_to_dbm(-20.0, 3.7e9, 30.0) == -65.0
    with pytest.raises(ValueError, match="outside"):
        t.offset_db(3.7e9, 31.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (((3.8e9, 3.6e9), (0.0,), ((1.0,), (2.0,))), "strictly ascending"),
        (((3.6e9,), (0.0, 10.0), ((1.0,),)), "must be 1 rows of 2 values"),
        (((3.6e9,), (0.0,), ((float("nan"),),)), "finite"),
        (((), (0.0,), ()), "non-empty"),
    ],
)
def test_malformed_tables_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        CalibrationTable(*args)
