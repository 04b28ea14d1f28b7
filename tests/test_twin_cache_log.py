"""A gain-map trace is never silent: a corrupt cache entry is named (with the reason) before the
minutes-long re-trace, a plain miss says it traces, and the log-based progress reporter the central
service uses puts start, progress and end lines in the journal. One real trace for the module."""

from __future__ import annotations

import logging
import re

import pytest

from central.twin import gain_maps as gm
from central.twin.progress import tracing_progress_log

TWIN_LOGGER = "rftwin.twin"


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, name: str | None = None) -> list[str]:
        return [r.getMessage() for r in self.records if name is None or r.name == name]


@pytest.fixture(scope="module")
def corrupt_then_traced(tiny_site, tiny_settings, tmp_path_factory):
    """Garbage at the very path get_gain_maps reads, then one get_gain_maps with the log reporter."""
    from central.twin.rt_runtime import sionna_version

    cache = tmp_path_factory.mktemp("maps-corrupt")
    path = cache / f"{gm.cache_key(tiny_site, tiny_settings, sionna_version())}.npz"
    path.write_bytes(b"PK\x03\x04 definitely not a gain map")
    seen = Records()
    progress_log = logging.getLogger("tests.twin_progress")
    progress_log.setLevel(logging.INFO)
    for name in (TWIN_LOGGER, progress_log.name):
        logging.getLogger(name).addHandler(seen)
    twin_logger = logging.getLogger(TWIN_LOGGER)
    old_level = twin_logger.level
    twin_logger.setLevel(logging.INFO)
    try:
        res = gm.get_gain_maps(tiny_site, tiny_settings, cache, progress=tracing_progress_log(progress_log))
    finally:
        for name in (TWIN_LOGGER, progress_log.name):
            logging.getLogger(name).removeHandler(seen)
        twin_logger.setLevel(old_level)
    return path, res, seen


@pytest.mark.raytracing
def test_a_corrupt_cache_entry_is_named_with_the_reason_before_the_retrace(corrupt_then_traced, tiny_site,
                                                                          tiny_settings):  # fmt: skip
    path, res, seen = corrupt_then_traced
    assert not res.hit and res.path == path
    warnings = [r for r in seen.records if r.name == TWIN_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, seen.lines()
    msg = warnings[0].getMessage()
    assert f"gain-map cache {path} unreadable (" in msg
    assert f"): re-tracing {tiny_site.name}, this takes a while" in msg
    # the reason is in the line (what np.load / the format check said), not just "unreadable"
    reason = msg.split(" unreadable (", 1)[1].split("): re-tracing", 1)[0]
    assert reason.split(":", 1)[0] in ("BadZipFile", "ValueError", "OSError", "EOFError", "KeyError"), msg
    # the warning comes before the first progress line: the operator knows why it traces
    first_progress = next(i for i, r in enumerate(seen.records) if r.name != TWIN_LOGGER)
    assert seen.records.index(warnings[0]) < first_progress
    # and the file is healed: the next call is a hit, silently
    assert gm.get_gain_maps(tiny_site, tiny_settings, path.parent).hit


@pytest.mark.raytracing
def test_the_progress_reporter_logs_start_progress_and_end_with_the_elapsed_time(corrupt_then_traced):
    _, res, seen = corrupt_then_traced
    lines = seen.lines("tests.twin_progress")
    total = res.maps.num_su * int(res.maps.grid.valid.sum())
    assert lines[0].startswith(f"tracing gain maps: {total} cells to trace"), lines
    # the end line names the elapsed time as a plain number of seconds (how long it takes lives in bench/)
    assert re.fullmatch(rf"tracing gain maps: done, {total} cells in \d+\.\d s", lines[-1]), lines
    assert sum("done" in line for line in lines) == 1
    assert len(lines) <= 2 + 10 + 5, lines  # every ~10 % (or every 30 s), not a line per chunk


@pytest.mark.raytracing
def test_a_plain_cache_miss_says_it_traces(tiny_site, tiny_settings, corrupt_then_traced, tmp_path, monkeypatch,
                                           caplog):  # fmt: skip
    _, res, _ = corrupt_then_traced
    monkeypatch.setattr(gm, "build_gain_maps", lambda *a, **k: res.maps)  # the trace itself was tested above
    caplog.set_level(logging.INFO, logger=TWIN_LOGGER)
    out = gm.get_gain_maps(tiny_site, tiny_settings, tmp_path / "empty")
    assert not out.hit and out.path.exists()
    msgs = [r.getMessage() for r in caplog.records if r.name == TWIN_LOGGER]
    assert msgs == [f"no gain-map cache for {tiny_site.name} at {out.path}: tracing, this takes a while"]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == TWIN_LOGGER)
    caplog.clear()
    assert gm.get_gain_maps(tiny_site, tiny_settings, tmp_path / "empty").hit
    assert [r for r in caplog.records if r.name == TWIN_LOGGER] == []  # a hit is silent


def test_the_progress_reporter_steps_by_tenths_and_restarts_on_another_build():
    log = logging.getLogger("tests.twin_progress_unit")
    seen = Records()
    log.addHandler(seen)
    log.setLevel(logging.INFO)
    try:
        report = tracing_progress_log(log, every_fraction=0.1, every_s=1e9)
        for done in range(0, 1001):
            report("su01" if done < 500 else "su02", done, 1000)
        lines = seen.lines()
        assert lines[0] == "tracing gain maps: 1000 cells to trace (su01 first); this takes a while"
        steps = [line for line in lines if " %" in line]
        assert 8 <= len(steps) <= 10, lines
        assert steps[0].startswith("tracing gain maps:  10 % (100/1000 cells, at su01)")
        assert lines[-1].startswith("tracing gain maps: done, 1000 cells in ")
        report("su01", 1000, 1000)  # a repeat of the end says nothing
        assert len(seen.lines()) == len(lines)
        report("su01", 0, 50)  # another build through the same reporter
        assert seen.lines()[-1] == "tracing gain maps: 50 cells to trace (su01 first); this takes a while"
    finally:
        log.removeHandler(seen)
