"""The measurement record: round-trips, and refuses what cannot be a measurement with the field named."""

from __future__ import annotations

import pytest

from node.protocol import Measurement, ProtocolError

GOOD = {
    "node_id": "su01", "seq": 7, "t_ns": 1_764_000_000_000_000_000, "f_center_hz": 3.7e9,
    "bandwidth_hz": 20e6, "power_dbm": -61.5, "subband_powers_dbm": [-64.0, -65.1],
    "saturated": False, "clip_fraction": 0.0, "gain_db": 40.0,
}  # fmt: skip


def test_round_trip():
    m = Measurement.from_dict(GOOD)
    assert m.subband_powers_dbm == (-64.0, -65.1)
    assert Measurement.from_dict(m.to_dict()) == m


def test_optional_fields_default():
    m = Measurement.from_dict({k: GOOD[k] for k in ("node_id", "seq", "t_ns", "f_center_hz", "bandwidth_hz", "power_dbm")})
    assert m.subband_powers_dbm == () and not m.saturated and m.clip_fraction == 0.0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"node_id": "../x"}, "node_id"),
        ({"seq": -1}, "seq"),
        ({"seq": 1.5}, "seq"),
        ({"seq": True}, "seq"),
        ({"t_ns": 0}, "t_ns"),
        ({"power_dbm": float("nan")}, "power_dbm"),
        ({"power_dbm": float("inf")}, "power_dbm"),
        ({"power_dbm": 400.0}, "power_dbm"),
        ({"power_dbm": "-60"}, "power_dbm"),
        ({"f_center_hz": 0.0}, "f_center_hz"),
        ({"bandwidth_hz": 5e9}, "bandwidth_hz"),
        ({"subband_powers_dbm": [-60.0, None]}, "subband_powers_dbm"),
        ({"subband_powers_dbm": "loud"}, "subband_powers_dbm"),
        ({"saturated": "yes"}, "saturated"),
        ({"clip_fraction": 1.5}, "clip_fraction"),
        ({"gain_db": 1e6}, "gain_db"),
        ({"extra": 1}, "unknown fields"),
    ],
)
def test_bad_records_are_refused_naming_the_field(change, field):
    with pytest.raises(ProtocolError, match=field):
        Measurement.from_dict({**GOOD, **change})


def test_missing_fields_are_named():
    d = dict(GOOD)
    del d["power_dbm"]
    with pytest.raises(ProtocolError, match=r"missing fields \['power_dbm'\]"):
        Measurement.from_dict(d)
    with pytest.raises(ProtocolError, match="must be an object"):
        Measurement.from_dict([1, 2])
