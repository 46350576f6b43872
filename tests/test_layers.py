"""One-way layers, read from the source (function-level imports included), as a map from folder to layer:

    0 foundation  suite/foundation/   errors, registry
    1 library     tasks/, algorithms/ (they never import each other)
    2 core        suite/              config, settings, runner, results, storage, metering, models, ...
    3 services    cluster/, leaderboard/
    4 CLI         suite/cli/

A module's layer is that of the deepest folder in the map that holds it. A module may import its own
layer or any layer below, never one above; nothing imports the CLI. Every project import goes
through the one namespace, ``metaft``: a bare ``import suite`` from the checkout would load a second
copy of the module next to the installed one.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("suite", "algorithms", "tasks", "leaderboard", "cluster")
NAMESPACE = "metaft"
NAMES = {0: "foundation", 1: "library", 2: "core", 3: "services", 4: "CLI"}
LAYERS = {"suite/foundation": 0, "tasks": 1, "algorithms": 1, "suite": 2, "cluster": 3, "leaderboard": 3,
          "suite/cli": 4}
LIBRARY = ("tasks", "algorithms")  # the same layer, and still strangers to each other


def folder(module: str) -> str | None:
    """The folder of a project module (``metaft.suite.cli.run`` -> ``suite/cli/run``), else None."""
    parts = module.split(".")
    return "/".join(parts[1:]) if parts[0] == NAMESPACE and len(parts) > 1 else None


def layer(module: str) -> int | None:
    path = folder(module)
    if path is None:
        return None
    owners = [f for f in LAYERS if path == f or path.startswith(f + "/")]
    return LAYERS[max(owners, key=len)] if owners else None


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


def upward_imports(path: Path, module: str | None = None) -> list[str]:
    """The imports of one file that point up a layer, or across the library layer."""
    module = module or module_name(path)
    mine, out = layer(module), []
    for target, line in imported(path, module):
        theirs = layer(target)
        strangers = {folder(module).split("/")[0], (folder(target) or "").split("/")[0]} == set(LIBRARY)
        if theirs is not None and (theirs > mine or (mine == theirs == 1 and strangers)):
            out.append(f"{path.name}:{line} ({NAMES[mine]}) imports {target} ({NAMES[theirs]})")
    return out


def test_no_project_import_points_up_a_layer():
    files = [f for p in PACKAGES for f in (ROOT / p).rglob("*.py")]
    assert len(files) > 40
    upward = [u for f in files for u in upward_imports(f)]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_the_checker_sees_relative_and_function_level_imports(tmp_path):
    """The rule must be able to fail: planted upward imports are resolved, ranked by the map and reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from .cli import main\n    from metaft.leaderboard import site\n"
                     "    from .foundation import errors\n")
    found = {t for t, _ in imported(probe, "metaft.suite.runner")}
    assert found == {"metaft.suite.cli", "metaft.leaderboard", "metaft.suite.foundation"}
    assert [u.split(" imports ")[1] for u in upward_imports(probe, "metaft.suite.runner")] == [
        "metaft.suite.cli (CLI)", "metaft.leaderboard (services)"]
    assert upward_imports(probe, "metaft.suite.cli.run") == []  # the CLI may import all of them
    probe.write_text("from metaft.algorithms import get_algorithm\nfrom metaft.suite import runner\n")
    assert len(upward_imports(probe, "metaft.tasks.loading")) == 2  # a stranger in its layer, the core above
    assert layer("metaft.suite.cli.run") > layer("metaft.suite.runner") > layer("metaft.tasks.loading")
    assert layer("metaft.leaderboard") > layer("metaft.suite.runner")
    assert layer("metaft.suite.foundation.errors") < layer("metaft.tasks.loading")
    assert layer("suite.runner") is None and layer("torch.nn") is None


def test_every_project_import_goes_through_the_namespace():
    """Tests and benchmarks included: one copy of each module, whatever the working directory."""
    files = [f for p in PACKAGES + ("tests", "benchmarks") for f in (ROOT / p).rglob("*.py")]
    bare = [f"{f.relative_to(ROOT)}:{line} imports {target}" for f in files
            for target, line in imported(f) if target.split(".")[0] in PACKAGES]
    assert not bare, "imports outside the metaft namespace:\n" + "\n".join(bare)
