"""The built wheel puts one name, `metaft`, into site-packages.

Tests run from the checkout cannot show this (the repository root is on sys.path), so this one
builds the wheel from a copy of the tree, installs it with ``--no-deps`` into a fresh virtual
environment and lists what landed there.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "suite", "tasks", "algorithms", "leaderboard", "cluster")
PACKAGES = {"suite", "tasks", "algorithms", "leaderboard", "cluster"}


def site_packages(env: Path) -> Path:
    found = list(env.glob("lib/python3*/site-packages"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its site-packages."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(
            ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                        if (ROOT / name).is_dir() else {}))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(work / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel, = (work / "dist").glob("metaft_suite-*.whl")
    env = work / "venv"
    venv.create(env, with_pip=True)
    before = set(p.name for p in site_packages(env).iterdir())
    done = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    site = site_packages(env)
    site.joinpath("_before.txt").write_text("\n".join(sorted(before)))
    return site


def test_only_the_metaft_namespace_lands_in_site_packages(installed):
    before = set(installed.joinpath("_before.txt").read_text().split("\n"))
    added = {p.name for p in installed.iterdir()} - before - {"_before.txt"}
    assert added == {"metaft", "metaft_suite-0.1.0.dist-info"}, added
    namespace = installed / "metaft"
    assert not (namespace / "__init__.py").exists()  # an implicit namespace package
    assert {p.name for p in namespace.iterdir()} == PACKAGES
    assert not any((installed / name).exists() for name in PACKAGES)


def test_the_wheel_carries_its_data_files_and_console_script(installed):
    namespace = installed / "metaft"
    assert (namespace / "suite" / "presets" / "quick.toml").is_file()
    assert (namespace / "leaderboard" / "templates" / "overview.html").is_file()
    assert list((namespace / "cluster" / "deepspeed").glob("*.json"))
    script = installed.parents[2] / "bin" / "suite"
    assert "from metaft.suite.cli import main" in script.read_text()
    entry_points = (installed / "metaft_suite-0.1.0.dist-info" / "entry_points.txt").read_text()
    assert "suite = metaft.suite.cli:main" in entry_points


def test_the_installed_namespace_imports_from_the_venv_not_the_checkout(installed, tmp_path):
    """The foundation modules import nothing outside the standard library, so they load without deps."""
    python = installed.parents[2] / "bin" / "python"
    probe = ("import metaft.suite.foundation.errors as e, metaft.suite.foundation.registry as r; print(e.__file__); print(r.__file__); "
             "import importlib.util as u; print(u.find_spec('suite'))")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    errors_file, registry_file, bare = out.stdout.split("\n")[:3]
    assert Path(errors_file).is_relative_to(installed) and Path(registry_file).is_relative_to(installed)
    assert bare == "None"  # no top-level `suite` module in that environment
