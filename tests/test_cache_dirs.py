"""Every cache lives under one root that a service, a test run or CI can move (contracts.cache)."""

from __future__ import annotations

from pathlib import Path

from contracts.cache import cache_dir, cache_root
from tests.conftest import TEST_CACHE_ROOT


def test_rftwin_cache_dir_wins_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("RFTWIN_CACHE_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "r" and cache_dir("gain-maps") == tmp_path / "r" / "gain-maps"
    monkeypatch.delenv("RFTWIN_CACHE_DIR")
    assert cache_root() == tmp_path / "x" / "rftwin"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "rftwin"


def test_this_run_never_touches_the_users_cache():
    from central.twin.gain_maps import default_cache_dir
    from models.los.dataset import default_cache_dir as los_cache_dir

    for folder in (cache_root(), default_cache_dir(), los_cache_dir()):
        assert folder.is_relative_to(TEST_CACHE_ROOT), folder
        assert not folder.is_relative_to(Path.home() / ".cache"), folder
