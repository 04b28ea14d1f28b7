"""The dependency direction of ARCHITECTURE.md: calibration → central → node; central, calibration → models."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "node": {"central", "calibration", "models", "evaluation"},
    "models": {"node", "central", "calibration", "evaluation"},
    "central": {"calibration", "evaluation"},
    "evaluation": {"node", "calibration"},
}
HEAVY = {"sionna", "sionna-rt", "torch", "scikit-learn", "tensorflow"}


def imported_top_level(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_downstream(package):
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_top_level(f) & FORBIDDEN[package])
        for f in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_node_code_imports_no_heavy_library():
    heavy_modules = {"sionna", "torch", "sklearn", "tensorflow", "mitsuba", "drjit", "onnxruntime"}
    for f in (ROOT / "node").rglob("*.py"):
        assert not imported_top_level(f) & heavy_modules, f


def _name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions reachable from these requirement strings (markers for extras skipped)."""
    seen: set[str] = set()
    todo = [r for r in requirements]
    while todo:
        req = todo.pop()
        if "extra ==" in req:
            continue
        name = _name(req)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(distribution(name).requires or [])
        except PackageNotFoundError:
            pass
    return seen


def test_node_extra_pulls_no_sionna_torch_or_sklearn():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "rftwin" not in " ".join(extras["node"])  # self-references would drag other extras in
    deps = _closure(extras["node"])
    assert deps, "node extra resolved to nothing"
    assert not deps & HEAVY, deps & HEAVY
