"""The dependency rules of docs/architecture.md, read from its table and checked on every import.

The table under "## Dependency rules" is the single source of truth: one row per package, the
project modules it may import, and those it may import "only lazily" (inside a function body). Every
``import`` and ``from … import`` (module level and in functions, found with ast) of every ``.py`` file
of every listed package is checked against it; importing an underscore-private name of another
package fails too. A subprocess test then imports the production entry points and checks what
actually got loaded, and the node extra's dependency closure is checked for heavy libraries.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
HEADING = "## Dependency rules"
HEAVY = {"sionna", "sionna-rt", "torch", "scikit-learn", "tensorflow"}
HEAVY_MODULES = {"sionna", "torch", "sklearn", "tensorflow", "mitsuba", "drjit", "onnxruntime"}


# ------------------------------------------------------------------------------ the rule table


@dataclass
class Rule:
    package: str
    anything: bool = False  # "everything"
    eager: list[str] = field(default_factory=list)  # may import at module level (and lazily)
    lazy: list[str] = field(default_factory=list)  # may import only inside a function body


def _names(text: str) -> list[str]:
    return re.findall(r"`([A-Za-z_][\w.]*)`", text)


def parse_rules(markdown: str) -> dict[str, Rule]:
    """The first table after the "## Dependency rules" heading: ``| `pkg`[, `pkg`] | may import |``.

    The second cell is ``—``, ``everything``, or ``;``-separated clauses of backticked module names;
    a clause saying "only lazily" lists lazy-only modules; parenthesised remarks are ignored."""
    if HEADING not in markdown:
        raise AssertionError(f"{ARCHITECTURE}: no {HEADING!r} section")
    section = markdown.split(HEADING, 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break  # the table has ended
    if len(rows) < 3 or not re.fullmatch(r"[-: ]+", "".join(rows[1])):
        raise AssertionError(f"{ARCHITECTURE}: no rule table under {HEADING!r}")
    rules: dict[str, Rule] = {}
    for cells in rows[2:]:
        if len(cells) != 2:
            raise AssertionError(f"{ARCHITECTURE}: rule row needs 2 cells: {cells}")
        packages, allowed = cells
        pkgs = _names(packages)
        if not pkgs:
            raise AssertionError(f"{ARCHITECTURE}: no package named in row {cells}")
        for pkg in pkgs:
            rule = Rule(pkg)
            if allowed.strip().lower() == "everything":
                rule.anything = True
            elif allowed.strip() not in ("—", "-", ""):
                for clause in allowed.split(";"):
                    names = _names(re.sub(r"\([^)]*\)", "", clause))
                    if not names:
                        raise AssertionError(f"{ARCHITECTURE}: {pkg}: no module in clause {clause!r}")
                    (rule.lazy if "only lazily" in clause else rule.eager).extend(names)
            if pkg in rules:
                raise AssertionError(f"{ARCHITECTURE}: {pkg} has two rows")
            rules[pkg] = rule
    return rules


RULES = parse_rules(ARCHITECTURE.read_text())
PROJECT = set(RULES)


def _covers(prefix: str, module: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


# ------------------------------------------------------------------------------- the imports


@dataclass(frozen=True)
class Import:
    file: str
    line: int
    module: str  # the project module imported (``central.twin`` for ``from central import twin``)
    names: tuple[str, ...]  # names taken from it (from-imports), else ()
    lazy: bool  # inside a function body


def project_imports(path: Path, source: str | None = None) -> list[Import]:
    """Every absolute import of a project module in one file, with whether it sits in a function."""
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    rel = str(path.relative_to(ROOT)) if path.is_absolute() else str(path)
    out: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            lazy = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.split(".")[0] in PROJECT:
                        out.append(Import(rel, child.lineno, a.name, (), in_function))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module.split(".")[0] in PROJECT:
                    names = tuple(a.name for a in child.names)
                    # `from central import twin`: the import is of the submodule central.twin
                    subs = [f"{child.module}.{n}" for n in names if _is_module(f"{child.module}.{n}")]
                    if subs and len(subs) == len(names):
                        out.extend(Import(rel, child.lineno, s, (), in_function) for s in subs)
                    else:
                        out.append(Import(rel, child.lineno, child.module, names, in_function))
            visit(child, lazy)

    visit(tree, False)
    return out


def violations(package: str, imports: list[Import]) -> list[str]:
    """Why each import breaks the rules of ``package`` (empty: all allowed)."""
    rule = RULES[package]
    bad = []
    for imp in imports:
        if imp.module.split(".")[0] == package:
            continue
        where = f"{imp.file}:{imp.line}: "
        private = [p for p in imp.module.split(".") + list(imp.names) if p.startswith("_")]
        if private:
            bad.append(where + f"imports the private name {private[0]!r} of another package ({imp.module}); "
                       "make it public there first")
        if rule.anything:
            continue
        if any(_covers(p, imp.module) for p in rule.eager):
            continue
        if any(_covers(p, imp.module) for p in rule.lazy):
            if not imp.lazy:
                bad.append(where + f"{package} may import {imp.module} only lazily (inside a function), "
                           "not at module level (docs/architecture.md, Dependency rules)")
            continue
        allowed = ", ".join(rule.eager + [f"{m} (lazily)" for m in rule.lazy]) or "nothing of the project"
        bad.append(where + f"{package} may not import {imp.module}; it may import {allowed} "
                   "(docs/architecture.md, Dependency rules)")
    return bad


def package_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


# -------------------------------------------------------------------------------------- tests


def test_the_table_names_every_package_and_only_real_modules():
    assert {"contracts", "node", "central", "models", "calibration", "evaluation", "sim", "tests"} <= PROJECT
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"tests", "bench"}
    assert on_disk - PROJECT == set(), "packages without a row in docs/architecture.md's rule table"
    assert PROJECT - on_disk == set(), "rows for packages that do not exist"
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.rstrip("*") for p in shipped["include"]} <= PROJECT, "an installed package has no rule"
    for rule in RULES.values():
        for module in rule.eager + rule.lazy:
            assert module.split(".")[0] in PROJECT and _is_module(module), f"{rule.package}: no module {module}"
    assert not RULES["contracts"].eager and not RULES["contracts"].lazy, "contracts must stay a leaf"


@pytest.mark.parametrize("package", sorted(PROJECT))
def test_every_import_keeps_the_rules(package):
    files = package_files(package)
    assert files, f"no .py files in {package}/"
    bad = [v for f in files for v in violations(package, project_imports(f))]
    assert not bad, "dependency rules broken:\n  " + "\n  ".join(bad)


def test_the_checker_catches_what_it_should():
    src = (
        "import central\n"
        "from node.protocol import Measurement\n"
        "from sim.world import World\n"
        "def open_radio():\n"
        "    from sim.world import World\n"
        "    from central.twin.solvers import _private\n"
    )
    got = violations("node", project_imports(Path("node/x.py"), src))
    assert len(got) == 4, got
    assert "node may not import central;" in got[0]
    assert "node may not import node" not in " ".join(got)  # its own package is always allowed
    assert "only lazily" in got[1] and "x.py:3" in got[1]
    assert "private name '_private'" in got[2] and "may not import central.twin.solvers" in got[3]
    assert violations("central", project_imports(Path("central/x.py"), "from central import twin\n")) == []
    assert violations("tests", project_imports(Path("tests/x.py"), src)) == [
        "tests/x.py:6: imports the private name '_private' of another package (central.twin.solvers); "
        "make it public there first"
    ]


def test_node_and_contracts_import_no_heavy_library():
    for package in ("node", "contracts"):
        for f in package_files(package):
            tree = ast.parse(f.read_text(), filename=str(f))
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module.split(".")[0] for n in ast.walk(tree)
                      if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}  # fmt: skip
            assert not names & HEAVY_MODULES, (f, names & HEAVY_MODULES)


# Production entry points, and what importing them may load: project packages reachable through the
# rows' module-level permissions (node: contracts; central: contracts, node, models), never
# simulation, calibration or evaluation code, nor the top-level modules listed here. sim.world is
# what a simulated node loads when its radio opens: it must not bring the central unit.
ENTRY_POINTS = {
    "node": (["node.cli", "node.agent", "node.sdr.pluto", "node.sdr.soapy", "node.sdr.open"], HEAVY_MODULES),
    "central": (["central.cli", "central.service"], set()),
    "sim": (["sim.world"], {"central", "models"} | HEAVY_MODULES),
}
OFFLINE = {"sim", "calibration", "evaluation"}


def reachable(package: str) -> set[str]:
    """Top-level packages that module-level imports may reach from ``package``, by the table."""
    seen, todo = set(), [package]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(m.split(".")[0] for m in RULES[p].eager)
    return seen
LOADED = """
import json, sys
for m in sys.argv[1:]:
    __import__(m)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("package", sorted(ENTRY_POINTS))
def test_production_entry_points_load_only_what_the_rules_allow(package):
    modules, forbidden = ENTRY_POINTS[package]
    res = subprocess.run([sys.executable, "-c", LOADED, *modules], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    loaded = json.loads(res.stdout)
    allowed = reachable(package)
    stray = [m for m in loaded if m.split(".")[0] in PROJECT - allowed]
    assert not stray, f"importing {modules} loaded {stray}: {package} may load only {sorted(allowed)}"
    top = {m.split(".")[0] for m in loaded}
    assert not top & (OFFLINE - {package}), f"importing {modules} loaded {sorted(top & (OFFLINE - {package}))}"
    assert not top & forbidden, f"importing {modules} loaded {sorted(top & forbidden)}"


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
