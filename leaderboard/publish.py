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
from metaft.suite.paths import check_replaceable, replace_folder, resolved


class PublishError(SuiteError, RuntimeError):
    pass


PUBLICATION_MARKER = ".metaft-publication"  # in every folder `publish --to` wrote; only such a folder is replaced


def publish_folder(site: str | Path, to: str | Path) -> Path:
    """Copy ``site`` to ``to`` (a ready-to-push folder). ``to`` must be new, empty or an earlier
    publication; it may neither be the site, contain it nor lie inside it. The copy is written
    beside ``to`` and swapped in, so a failure leaves the earlier publication whole."""
    site_path = resolved(site)
    if not (site_path / "index.html").is_file():
        raise PublishError(f"{site} is not a built site (no index.html); run `suite leaderboard build` first")
    target = check_replaceable(to, "--to", PUBLICATION_MARKER, inputs={"--site": [site_path]})
    tmp = target.with_name(f".{target.name}.publishing-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(site_path, tmp)
    (tmp / ".nojekyll").touch()
    (tmp / PUBLICATION_MARKER).write_text("written by `suite leaderboard publish`; the next publish replaces it\n")
    replace_folder(tmp, target)
    return target


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
