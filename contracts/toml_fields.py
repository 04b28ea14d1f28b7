"""Typed, bounded reads from a parsed TOML table, with errors that name the file and the key.

A node is configured once and then runs unattended for months: a typo'd key or a gain in the wrong
unit must fail at start-up with a message that says exactly where, not hours later. Unknown keys
are errors for the same reason (``sampel_rate_hz`` silently ignored is a wrong default in use).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot run; the message starts with ``<file>: <key>:``."""


def read_toml(path: str | Path) -> tuple[dict, str, Path]:
    """A TOML file's table, its name for messages, and its directory (relative paths resolve there)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return tomllib.loads(text), str(path), path.resolve().parent
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


class Fields:
    def __init__(self, table: Any, where: str, source: str, base_dir: Path | None = None):
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {where or 'top level'}: expected a table, got {type(table).__name__}")
        self.table, self.where, self.source = table, where, source
        self.base_dir = base_dir
        self._seen: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        path = f"{self.where}.{key}" if self.where else key
        return ConfigError(f"{self.source}: {path}: {message}")

    def has(self, key: str) -> bool:
        return key in self.table

    def raw(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        return self.table.get(key, default)

    def sub(self, key: str, required: bool = False) -> "Fields":
        if required and key not in self.table:
            raise self.error(key, "missing table")
        path = f"{self.where}.{key}" if self.where else key
        return Fields(self.raw(key, {}), path, self.source, self.base_dir)

    def subs(self, key: str) -> list["Fields"]:
        items = self.raw(key, [])
        if not isinstance(items, list):
            raise self.error(key, "expected an array of tables")
        path = f"{self.where}.{key}" if self.where else key
        return [Fields(t, f"{path}[{i}]", self.source, self.base_dir) for i, t in enumerate(items)]

    def real(self, key: str, lo: float = -math.inf, hi: float = math.inf, default: float | None = None) -> float:
        v = self.raw(key, default)
        if v is None:
            raise self.error(key, "missing")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.error(key, f"expected a finite number, got {v!r}")
        if not lo <= v <= hi:
            raise self.error(key, f"{v:g} is outside {lo:g}..{hi:g}")
        return float(v)

    def integer(self, key: str, lo: int, hi: int, default: int | None = None) -> int:
        v = self.raw(key, default)
        if v is None:
            raise self.error(key, "missing")
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, f"expected an integer, got {v!r}")
        if not lo <= v <= hi:
            raise self.error(key, f"{v} is outside {lo}..{hi}")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.error(key, f"expected true or false, got {v!r}")
        return v

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str:
        v = self.raw(key, default)
        if v is None:
            raise self.error(key, "missing")
        if not isinstance(v, str) or not v:
            raise self.error(key, f"expected a non-empty string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.error(key, f"{v!r} is not one of {', '.join(choices)}")
        return v

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.table else self.raw(key)

    def path(self, key: str, default: str | None = None) -> Path | None:
        """A path; relative paths are relative to the config file's directory."""
        v = self.raw(key, default)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise self.error(key, f"expected a path string, got {v!r}")
        p = Path(v).expanduser()
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p

    def vector(self, key: str, length: int) -> tuple[float, ...]:
        v = self.raw(key)
        if v is None:
            raise self.error(key, "missing")
        if not isinstance(v, list) or len(v) != length:
            raise self.error(key, f"expected {length} numbers, got {v!r}")
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) for x in v):
            raise self.error(key, f"expected {length} finite numbers, got {v!r}")
        return tuple(float(x) for x in v)

    def reject_unknown(self, allowed_extra: tuple[str, ...] = ()) -> None:
        """Call after reading every key: anything left over is a typo or a misplaced setting."""
        unknown = sorted(set(self.table) - self._seen - set(allowed_extra))
        if unknown:
            raise self.error(unknown[0], f"unknown key (known here: {', '.join(sorted(self._seen)) or 'none'})")
