"""One-way layers, read from the source (function-level imports included):

    0 foundation  metaft.suite.errors, metaft.suite.registry (and the package's version)
    1 library     metaft.tasks.*, metaft.algorithms.*
    2 core        metaft.suite.* (config, runner, results, metering, models, evaluate, adapters, flops, table)
    3 services    metaft.cluster.*, metaft.leaderboard.*
    4 CLI         metaft.suite.cli*, metaft.suite.summary

A module may import its own layer or any layer below, never one above; nothing imports the CLI.
Every project import goes through the one namespace, ``metaft``: a bare ``import suite`` from
the checkout would load a second copy of the module next to the installed one.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("suite", "algorithms", "tasks", "leaderboard", "cluster")
NAMESPACE = "metaft"
NAMES = {0: "foundation", 1: "library", 2: "core", 3: "services", 4: "CLI"}


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != NAMESPACE or len(parts) < 2:
        return None  # not the project's
    top, leaf = parts[1], (parts[2] if len(parts) > 2 else "")
    if module in ("metaft.suite", "metaft.suite.errors", "metaft.suite.registry"):
        return 0
    if top in ("tasks", "algorithms"):
        return 1
    if top in ("cluster", "leaderboard"):
        return 3
    if top == "suite":
        return 4 if leaf.startswith("cli") or leaf == "summary" else 2
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join([NAMESPACE] + (parts[:-1] if parts[-1] == "__init__" else parts))


def imported(path: Path, module: str | None = None) -> list[tuple[str, int]]:
    """(module, line) of every import in the file, relative ones resolved against ``module``."""
    module = module or module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            out += [(n, node.lineno) for n in names]
    return out


def test_no_project_import_points_up_a_layer():
    files = [f for p in PACKAGES for f in (ROOT / p).rglob("*.py")]
    assert len(files) > 40
    upward = []
    for f in files:
        mine = layer(module_name(f))
        for target, line in imported(f):
            theirs = layer(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{f.relative_to(ROOT)}:{line} ({NAMES[mine]}) imports {target} ({NAMES[theirs]})")
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_the_checker_sees_relative_and_function_level_imports(tmp_path):
    """The rule must be able to fail: planted upward imports in a core module are resolved and ranked."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from .cli import main\n    from metaft.leaderboard import site\n    from . import errors\n")
    found = {t for t, _ in imported(probe, "metaft.suite.runner")}
    assert found == {"metaft.suite.cli", "metaft.leaderboard", "metaft.suite.errors"}
    assert layer("metaft.suite.cli") > layer("metaft.suite.runner") > layer("metaft.tasks.loading")
    assert layer("metaft.leaderboard") > layer("metaft.suite.runner")
    assert layer("metaft.suite.errors") < layer("metaft.tasks.loading")
    assert layer("suite.runner") is None and layer("torch.nn") is None


def test_every_project_import_goes_through_the_namespace():
    """Tests and benchmarks included: one copy of each module, whatever the working directory."""
    files = [f for p in PACKAGES + ("tests", "benchmarks") for f in (ROOT / p).rglob("*.py")]
    bare = [f"{f.relative_to(ROOT)}:{line} imports {target}" for f in files
            for target, line in imported(f) if target.split(".")[0] in PACKAGES]
    assert not bare, "imports outside the metaft namespace:\n" + "\n".join(bare)
