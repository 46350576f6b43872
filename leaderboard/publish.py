"""Publish a built site: copy it to a ready-to-push folder or an object-store prefix (a static
website bucket), or commit it to a gh-pages branch.

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

from metaft.suite.foundation.errors import SuiteError
from metaft.suite.paths import check_replaceable, replace_folder, resolved
from metaft.suite.storage import check_reachable, is_uri, location


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


# what a browser needs to render each file of the site from a bucket (S3 serves an object with the
# Content-Type it was uploaded with; binary/octet-stream would make index.html a download)
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": "application/json", ".csv": "text/csv; charset=utf-8",
                 ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain; charset=utf-8",
                 ".parquet": "application/vnd.apache.parquet", ".ico": "image/x-icon"}


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


def publish(site: str | Path, to: str) -> str:
    """``publish --to``: a folder, or an object-store URI (``s3://bucket/site``)."""
    return publish_object_store(site, to) if is_uri(to) else str(publish_folder(site, to))


def publish_object_store(site: str | Path, to: str) -> str:
    """Upload ``site`` under the prefix ``to`` with each file's Content-Type. The prefix must be
    empty or an earlier publication (it holds the marker object). Every object is written whole;
    ``index.html`` goes last, so a reader sees the old overview until the new pages are all there,
    and objects of the earlier publication that the new site lacks are removed at the end."""
    site_path = resolved(site)
    if not (site_path / "index.html").is_file():
        raise PublishError(f"{site} is not a built site (no index.html); run `suite leaderboard build` first")
    target = location(to)
    check_reachable(target, "--to")
    before = {loc.path for loc in target.children(recursive=True)}
    marker = target / PUBLICATION_MARKER
    if before and marker.path not in before:
        raise PublishError(f"--to {to} holds objects that `suite leaderboard publish` did not write (no "
                           f"{PUBLICATION_MARKER}); give an empty prefix or an earlier publication")
    written = {loc.path for loc in target.upload(site_path, content_type, last="index.html")}
    marker.write_text("written by `suite leaderboard publish`; the next publish replaces it\n", "text/plain")
    written.add(marker.path)
    for stale in sorted(before - written):
        loc = target.joined(os.path.relpath(stale, target.path))
        if loc.is_file():
            loc.unlink()
    return target.uri


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
