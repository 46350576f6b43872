"""The one place where folders given by the user are checked before anything is written.

Every subcommand that writes (``suite run --out``, ``leaderboard build --out``, ``publish
--to``, ``leaderboard add --results``, ``tasks episodes --out``) asks here first, so a bad
place is one line naming the flag, the path and the fix, and a command never replaces a
folder it did not write (a site or a publication carries a marker file; anything else that is
not empty is refused).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .foundation.errors import SuiteError

if TYPE_CHECKING:
    from .storage import Location


class PathError(SuiteError, ValueError):
    """A folder or file given by the user cannot be used as asked."""


def resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def is_within(child: Path, parent: Path) -> bool:
    """``child`` is ``parent`` or lies inside it (both resolved)."""
    return child == parent or parent in child.parents


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """``path`` is a folder (or can be created as one) that this process may write into."""
    p = resolved(path)
    if p.exists() and not p.is_dir():
        raise PathError(f"{flag} {path} is a file, not a folder; give a folder path")
    base = _nearest_existing(p)
    if not base.is_dir():
        raise PathError(f"{flag} {path}: {base} is a file, so no folder can be created there; give another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PathError(f"{flag} {path}: {base} is not writable; choose a folder you can write to")
    return p


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """``path`` names a file to write (not a folder), in a folder this process may write into."""
    p = resolved(path)
    if p.is_dir() or str(path).endswith(os.sep):
        raise PathError(f"{flag} {path} is a folder; give a file name (e.g. {flag} {Path(path) / 'episodes.json'})")
    if p.exists() and not p.is_file():
        raise PathError(f"{flag} {path} is not a regular file; give a file name")
    check_writable_folder(p.parent, flag)
    return p


def check_apart(path: Path, flag: str, inputs: Mapping[str, Iterable[str | os.PathLike]]) -> None:
    """``path`` neither equals, contains nor lies inside any input (``{flag: paths}``)."""
    from .storage import is_uri

    for in_flag, items in inputs.items():
        for item in items:
            if is_uri(item):  # another filesystem: it cannot overlap a local folder
                continue
            q = resolved(item)
            if is_within(q, path) or is_within(path, q):
                relation = "is" if q == path else "contains" if is_within(q, path) else "is inside"
                raise PathError(f"{flag} {path} {relation} {in_flag} {item}; writing there could replace the "
                                f"input, choose a separate folder")


def check_replaceable(path: str | os.PathLike, flag: str, marker: str, known: Iterable[str] = (),
                      inputs: Mapping[str, Iterable[str | os.PathLike]] | None = None) -> Path:
    """A folder this command may replace as a whole: new, empty, or written by it before (it holds
    ``marker``, or only entries named in ``known``, for folders written before the marker existed)."""
    p = check_writable_folder(path, flag)
    check_apart(p, flag, inputs or {})
    if p == Path(p.anchor) or p == Path.home().resolve() or p == Path.cwd().resolve():
        raise PathError(f"{flag} {path} is {'the current folder' if p == Path.cwd().resolve() else 'a top folder'}; "
                        f"give a folder of its own (e.g. {flag} site)")
    if p.is_dir():
        entries = {e.name for e in p.iterdir()}
        if entries and marker not in entries and not entries <= set(known):
            raise PathError(f"{flag} {path} is a folder that this command did not write (no {marker} in it) and it "
                            f"is not empty; it would be replaced, so give a new or empty folder")
    return p


def replace_folder(new: Path, target: Path) -> None:
    """Swap ``new`` in at ``target``: the old folder is moved aside first, so ``target`` holds a
    whole folder (old or new) at every moment, and removed only after the swap."""
    import shutil

    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        shutil.rmtree(old)


def check_writable_location(target: "str | os.PathLike | Location", flag: str) -> str:
    """A results or state location (a folder, or an object-store URI such as ``s3://bucket/prefix``)
    this process can write; returns its canonical form (an absolute path, or the URI), which is
    what a trial or job on another node must be given."""
    from .storage import check_reachable, location

    loc = location(target)
    if loc.is_local:
        return str(check_writable_folder(target, flag))
    check_reachable(loc, flag)
    return loc.uri
