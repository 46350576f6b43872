"""One storage layer for results, index and published sites: ``pyarrow.fs``.

Every results folder, run folder and publication target is a `Location`: a path on a
``pyarrow.fs`` filesystem, written as a plain path (``results``, ``/data/results``), a
``file://`` URI or an object-store URI (``s3://bucket/prefix``, ``gs://bucket/prefix``). The
results store, the runner, the leaderboard and `suite tune` use only this type, so local disk
is not a second code path.

Why ``pyarrow.fs`` rather than fsspec: the results are already read as Arrow datasets, the
pyarrow wheel carries its S3, GCS and HDFS clients (no new dependency), and Ray Tune resolves
its ``storage_path`` through ``pyarrow.fs`` too, so ``--out`` and ``--storage`` on one bucket use
one client and one credential chain (``AWS_*`` variables, profiles, instance or pod roles;
``AWS_ENDPOINT_URL`` for S3-compatible servers such as MinIO).

How a write becomes visible (`Location.write_bytes`): on local disk a temporary file in the same
folder is fsynced and renamed into place; on an object store a single PUT (or a multipart upload,
completed in one call) makes the whole object visible at once and never a part of it. Object
stores have no rename, no append and no lock, so the results store relies only on whole objects
with deterministic names (see `suite/results.py`).

Credentials never enter a URI: a URI with a user part (``s3://KEY:SECRET@bucket``) is refused,
because URIs are written to logs, manifests and Tune's state.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit

from .foundation.errors import SuiteError
from .foundation.files import atomic_write_file

LOCAL_SCHEMES = ("", "file")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(SuiteError, OSError):
    """A storage location cannot be used as asked (missing bucket, rejected credentials, no route)."""


def is_uri(target: str | os.PathLike) -> bool:
    """``target`` names an object store or another non-local filesystem (``s3://``, ``gs://``, ...)."""
    match = _URI.match(str(target))
    return match is not None and match.group(1).lower() not in LOCAL_SCHEMES


_FILESYSTEMS: dict[Any, Any] = {}


def _filesystem(scheme: str, uri: str):
    """The pyarrow filesystem for ``uri``'s scheme and bucket, one client per bucket and credential
    environment (a test or a tool that changes ``AWS_*`` gets a new client)."""
    import pyarrow.fs as pafs

    netloc = urlsplit(uri).netloc
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "GOOGLE_", "GCS_"))))
    key = (scheme, netloc, env)
    if key not in _FILESYSTEMS:
        try:
            fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{netloc}")
        except (OSError, ValueError) as exc:
            raise StorageError(f"{uri}: cannot open this storage ({_first_line(exc)}); check the URI's scheme "
                               f"(s3://, gs://, hdfs://, file://) and the client settings") from None
        _FILESYSTEMS[key] = fs
    return _FILESYSTEMS[key]


def _local_fs():
    """One local filesystem object, so Arrow reads local files of many runs as one dataset."""
    if "local" not in _FILESYSTEMS:
        import pyarrow.fs as pafs

        _FILESYSTEMS["local"] = pafs.LocalFileSystem()
    return _FILESYSTEMS["local"]


def location(target: Union[str, os.PathLike, "Location"]) -> "Location":
    """``target`` (a path, a ``file://`` URI or an object-store URI) as a `Location`."""
    if isinstance(target, Location):
        return target
    text = os.fspath(target)
    match = _URI.match(text)
    scheme = match.group(1).lower() if match else ""
    if scheme in LOCAL_SCHEMES:
        local = urlsplit(text).path if scheme == "file" else text
        return Location(_local_fs(), str(Path(local).expanduser().resolve()), "", text)
    parts = urlsplit(text)
    if parts.username or parts.password or "@" in parts.netloc:
        raise StorageError(f"{scheme}://{parts.hostname or ''}/...: credentials in a URI would be written to logs "
                           f"and manifests; give them through the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, a "
                           f"pod role) and the URI without them")
    if not parts.netloc:
        raise StorageError(f"{text}: no bucket in the URI; write it as {scheme}://BUCKET/PREFIX")
    fs = _filesystem(scheme, text)
    path = posixpath.normpath(f"{parts.netloc}/{parts.path.lstrip('/')}").rstrip("/")
    return Location(fs, path, scheme, f"{scheme}://{path}")


class Location:
    """A file or folder on one filesystem: the subset of `pathlib.Path` the suite uses, the same
    on local disk and on object stores. Local locations are also ``os.PathLike``."""

    def __init__(self, fs, path: str, scheme: str, shown: str | None = None) -> None:
        self.fs, self.path, self.scheme = fs, path, scheme
        self._shown = shown if shown is not None else (path if not scheme else f"{scheme}://{path}")

    # ---------------------------------------------------------------- naming
    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def uri(self) -> str:
        """The canonical name: an absolute path on local disk, ``scheme://bucket/key`` elsewhere."""
        return self.path if self.is_local else f"{self.scheme}://{self.path}"

    def __str__(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __fspath__(self) -> str:
        if not self.is_local:
            raise TypeError(f"{self.uri} is not on local disk")
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.scheme, self.path) == (other.scheme, other.path)

    def __lt__(self, other: "Location") -> bool:
        return (self.scheme, self.path) < (other.scheme, other.path)

    def __hash__(self) -> int:
        return hash((self.scheme, self.path))

    def __truediv__(self, name: str) -> "Location":
        shown = self._shown.rstrip("/") + "/" + name if self._shown else name
        return Location(self.fs, posixpath.join(self.path, name), self.scheme, shown)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> "Location":
        shown = self._shown.rstrip("/").rsplit("/", 1)[0] if "/" in self._shown.rstrip("/") else "."
        return Location(self.fs, posixpath.dirname(self.path), self.scheme, shown)

    def is_within(self, other: "Location") -> bool:
        """This location is ``other`` or lies inside it (same filesystem)."""
        return self.scheme == other.scheme and (self.path == other.path or self.path.startswith(other.path + "/"))

    def local_path(self) -> Path:
        if not self.is_local:
            raise TypeError(f"{self.uri} is not on local disk")
        return Path(self.path)

    # ---------------------------------------------------------------- reading
    def _info(self):
        import pyarrow.fs as pafs

        with self._errors():
            info = self.fs.get_file_info(self.path)
        return info.type, info, pafs.FileType

    def exists(self) -> bool:
        kind, _, types = self._info()
        return kind != types.NotFound

    def is_file(self) -> bool:
        kind, _, types = self._info()
        return kind == types.File

    def is_dir(self) -> bool:
        kind, _, types = self._info()
        return kind == types.Directory

    def stamp(self) -> list[int]:
        """``[mtime_ns, size]``: changes when the object is rewritten (every write replaces it whole)."""
        kind, info, types = self._info()
        if kind == types.NotFound:
            raise FileNotFoundError(self.uri)
        return [int(info.mtime_ns or 0), int(info.size or 0)]

    def read_bytes(self) -> bytes:
        with self._errors():
            with self.fs.open_input_stream(self.path) as fh:
                return fh.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def _list(self, recursive: bool) -> list[tuple["Location", bool]]:
        import pyarrow.fs as pafs

        with self._errors():
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive))
        found = [(self.joined(posixpath.relpath(i.path, self.path)), i.type == pafs.FileType.Directory) for i in infos]
        return sorted(found, key=lambda pair: pair[0].path)

    def children(self, recursive: bool = False) -> list["Location"]:
        """What lies under this folder (files and folders; all levels with ``recursive``), sorted;
        nothing when it does not exist."""
        return [loc for loc, _ in self._list(recursive)]

    def joined(self, relative: str) -> "Location":
        """``self / "a" / "b"`` for ``"a/b"``."""
        loc = self
        for part in relative.split("/"):
            loc = loc / part
        return loc

    def iterdir(self) -> Iterator["Location"]:
        return iter(self.children())

    def glob(self, pattern: str) -> list["Location"]:
        """Files matching ``pattern`` (``*.parquet``, ``*/manifest.json``: one name per level), sorted."""
        depth = pattern.count("/") + 1
        out = []
        for loc, is_dir in self._list(recursive=depth > 1):
            rel = posixpath.relpath(loc.path, self.path)
            if not is_dir and rel.count("/") + 1 == depth and fnmatch.fnmatchcase(rel, pattern):
                out.append(loc)
        return out

    # ---------------------------------------------------------------- writing
    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """A folder on local disk; nothing on an object store (prefixes exist with their objects)."""
        if self.is_local:
            Path(self.path).mkdir(parents=parents, exist_ok=exist_ok)

    def write_bytes(self, data: bytes, content_type: str | None = None) -> None:
        """Write the whole object, visible at once or not at all (see the module docstring)."""
        if self.is_local:
            atomic_write_file(self.path, data)
            return
        with self._errors():
            with self.fs.open_output_stream(self.path, metadata={"Content-Type": content_type}
                                            if content_type else None) as fh:
                fh.write(data)

    def write_text(self, text: str, content_type: str | None = None) -> None:
        self.write_bytes(text.encode(), content_type)

    def unlink(self, missing_ok: bool = True) -> None:
        if missing_ok and not self.exists():
            return
        with self._errors():
            self.fs.delete_file(self.path)

    def remove_tree(self) -> None:
        """This folder and everything under it (nothing when it does not exist, also when another
        writer removes it at the same time)."""
        if not self.exists():
            return
        with contextlib.suppress(FileNotFoundError), self._errors():
            self.fs.delete_dir(self.path)

    def upload(self, local_folder: str | os.PathLike, content_type=None, last: str | None = None) -> list["Location"]:
        """Copy a local folder's files here, each written whole; ``content_type(name)`` gives
        each object's Content-Type on object stores; files named ``last`` go after the rest (a
        site's index.html, so readers switch to the new pages once they are all there). Returns
        what was written."""
        root = Path(local_folder)
        written = []
        for file in sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: (p.name == last, str(p))):
            rel = file.relative_to(root).as_posix()
            written.append(self.joined(rel))
            written[-1].write_bytes(file.read_bytes(), content_type(rel) if content_type else None)
        return written

    # ---------------------------------------------------------------- errors
    def _errors(self):
        return _translate(self)


@contextlib.contextmanager
def _translate(loc: Location) -> Iterator[None]:
    """Turn an object store's error into one line naming the URI and the fix; local errors and a
    missing object (FileNotFoundError, PermissionError, ...) pass through for their callers."""
    try:
        yield
    except (StorageError, FileNotFoundError):
        raise
    except OSError as exc:
        if loc.is_local:
            raise
        raise storage_error(loc, exc) from None


def storage_error(loc: Location, exc: BaseException) -> StorageError:
    text = _first_line(exc)
    bucket = loc.path.split("/", 1)[0]
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if "NO_SUCH_BUCKET" in text or "bucket does not exist" in text.lower():
        return StorageError(f"{loc.uri}: the bucket {bucket!r} does not exist; create it (e.g. `aws s3 mb "
                            f"{loc.scheme}://{bucket}`) or fix the URI")
    if any(code in text for code in CREDENTIAL_ERRORS):
        return StorageError(f"{loc.uri}: the storage refused these credentials ({_aws_code(text)}); set valid "
                            f"ones in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a "
                            f"role) with access to {bucket!r}")
    if any(code in text for code in ("NETWORK_CONNECTION", "curlCode", "Could not connect", "Couldn't connect",
                                     "Timeout", "timed out")):
        where = f" at {endpoint}" if endpoint else ""
        return StorageError(f"{loc.uri}: cannot reach the storage endpoint{where}; check the network, or "
                            f"AWS_ENDPOINT_URL for an S3-compatible server")
    return StorageError(f"{loc.uri}: {text}")


# how S3 (pyarrow's AWS error names and S3's own codes) and GCS say "not these credentials"
CREDENTIAL_ERRORS = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "EXPIRED_TOKEN",
                     "InvalidAccessKeyId", "AccessDenied", "SignatureDoesNotMatch", "ExpiredToken",
                     "PERMISSION_DENIED", "UNAUTHENTICATED")


def _aws_code(text: str) -> str:
    match = re.search(r"AWS Error ([A-Z_]+)", text)
    return match.group(1) if match else text[:80]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_reachable(loc: Location, flag: str) -> None:
    """An object-store location can be written: its bucket exists and the credentials are
    accepted. One request, before anything is computed."""
    if loc.is_local:
        return
    import pyarrow.fs as pafs

    try:
        with loc._errors():
            kind = loc.fs.get_file_info(loc.path.split("/", 1)[0]).type
    except StorageError as exc:
        raise StorageError(f"{flag} {exc}") from None
    if kind == pafs.FileType.NotFound:
        raise StorageError(f"{flag} {storage_error(loc, OSError('NO_SUCH_BUCKET'))}")
