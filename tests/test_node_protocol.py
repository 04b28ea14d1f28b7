"""The measurement record: round-trips, and refuses what cannot be a measurement with the field named."""

from __future__ import annotations

import pytest

from node.protocol import MIN_T_NS, Measurement, ProtocolError

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


@pytest.mark.parametrize("t_ns", [1, 10**9, MIN_T_NS - 1])
def test_a_reading_from_before_2020_is_refused_as_a_node_without_a_clock(t_ns):
    with pytest.raises(ProtocolError, match=rf"node clock not set\? t_ns {t_ns} is before 2020-01-01"):
        Measurement.from_dict({**GOOD, "t_ns": t_ns})
    assert Measurement.from_dict({**GOOD, "t_ns": MIN_T_NS}).t_ns == MIN_T_NS


def test_min_t_ns_is_2020_utc():
    from datetime import UTC, datetime

    assert datetime.fromtimestamp(MIN_T_NS / 1e9, UTC) == datetime(2020, 1, 1, tzinfo=UTC)


def test_the_spool_refuses_a_reading_from_a_node_without_a_clock(tmp_path):
    """Refused before storing: a 1970 record never enters (and never blocks) the replay queue."""
    import dataclasses

    from node.spool import Spool

    sp = Spool(tmp_path / "s.db")
    with pytest.raises(ProtocolError, match="node clock not set"):
        sp.append(dataclasses.replace(Measurement.from_dict(GOOD), t_ns=1))
    assert len(sp) == 0
    sp.close()


SPOOL = {"full": True, "dropped": 3, "refused": 1, "free_bytes": 4096}


def _batch(**extra) -> dict:
    return {"protocol": 1, "node_id": "su01", "records": [GOOD], **extra}


def test_a_batch_carries_the_spool_state_in_its_header_and_round_trips():
    from node.protocol import IngestBatch, SpoolState

    b = IngestBatch.from_dict(_batch(spool=SPOOL))
    assert b.spool == SpoolState(full=True, dropped=3, refused=1, free_bytes=4096)
    assert b.to_dict()["spool"] == SPOOL and IngestBatch.from_dict(b.to_dict()) == b
    assert SpoolState.from_dict(b.spool.to_dict()) == b.spool


def test_the_spool_state_is_optional_so_protocol_1_batches_without_it_stay_valid():
    from node.protocol import IngestBatch

    b = IngestBatch.from_dict(_batch())
    assert b.spool is None and "spool" not in b.to_dict()  # not sent at all: what older central units accept
    assert IngestBatch.from_dict(_batch(spool=None)).spool is None


@pytest.mark.parametrize(
    "spool, message",
    [
        ({**SPOOL, "full": 1}, "spool: full must be true or false"),
        ({**SPOOL, "full": "true"}, "spool: full must be true or false"),
        ({**SPOOL, "dropped": -1}, "spool: dropped must be an integer"),
        ({**SPOOL, "dropped": 1.5}, "spool: dropped must be an integer"),
        ({**SPOOL, "refused": True}, "spool: refused must be an integer"),
        ({**SPOOL, "refused": "3"}, "spool: refused must be an integer"),
        ({**SPOOL, "free_bytes": 2**63}, "spool: free_bytes must be an integer"),
        ({k: v for k, v in SPOOL.items() if k != "free_bytes"}, r"spool: missing fields \['free_bytes'\]"),
        ({**SPOOL, "lost": 2}, r"spool: unknown fields \['lost'\]"),
        ([True, 3, 1, 4096], "spool must be an object"),
    ],
)
def test_a_bad_spool_header_refuses_the_batch_naming_the_field(spool, message):
    from node.protocol import IngestBatch

    with pytest.raises(ProtocolError, match=message):
        IngestBatch.from_dict(_batch(spool=spool))
