"""What the demo prints: figures with the precision they have."""

from __future__ import annotations

from sim.station import summary


def test_alarm_summary_rounds_the_score_and_position():
    alarm = {"id": 3, "kind": "residual", "state": "active", "affected_sus": ["su07", "su08"],
             "suspected_position_m": [10.04999, 8.96, 1.5], "peak_score": 1.5252447020078999}  # fmt: skip
    line = summary(alarm)
    assert line == "alarm 3 [residual, active]: SUs su07, su08; suspected at (10.0, 9.0) m; peak score 1.53"
    assert "position unknown; no score" in summary({**alarm, "suspected_position_m": None, "peak_score": None})
