"""Publish a built site: copy it to a ready-to-push folder, or commit it to a gh-pages branch.

The gh-pages commit uses git plumbing with a temporary index (``git add`` with
``--work-tree`` pointing at the site, ``write-tree``, ``commit-tree``, ``update-ref``),
so the user's working tree, index and current branch are never touched.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from metaft.suite.errors import SuiteError


class PublishError(SuiteError, RuntimeError):
    pass


def publish_folder(site: str | Path, to: str | Path) -> Path:
    site, to = Path(site), Path(to)
    if not (site / "index.html").is_file():
        raise PublishError(f"{site} is not a built site (no index.html); run `suite leaderboard build` first")
    if to.exists():
        shutil.rmtree(to)
    shutil.copytree(site, to)
    (to / ".nojekyll").touch()
    return to


def _git(args: list[str], repo: Path, env: dict | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise PublishError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return proc.stdout.strip()


def publish_gh_pages(site: str | Path, repo: str | Path = ".", branch: str = "gh-pages",
                     message: str = "Publish leaderboard") -> str:
    """Commit ``site`` as the whole tree of ``branch`` in ``repo``; returns the commit id."""
    site, repo = Path(site).resolve(), Path(repo).resolve()
    if not (site / "index.html").is_file():
        raise PublishError(f"{site} is not a built site (no index.html); run `suite leaderboard build` first")
    _git(["rev-parse", "--git-dir"], repo)
    (site / ".nojekyll").touch()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(["--work-tree", str(site), "add", "-A", "--force", "."], repo, env)
        tree = _git(["write-tree"], repo, env)
    parent = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=repo,
                            capture_output=True, text=True).stdout.strip()
    args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
    commit = _git(args, repo)
    _git(["update-ref", f"refs/heads/{branch}", commit], repo)
    return commit
