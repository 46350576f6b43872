"""The one atomic write of a local file: a temporary file in the same folder, fsynced, renamed into
place, so a reader sees the old content or all of the new, never a part (also after kill -9).
`metaft.suite.storage.Location.write_bytes` uses it for local disk; object stores have their own
whole-object PUT. Also the one place that names the suite's cache folder."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write_file(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


CACHE_ENV = "SUITE_CACHE_DIR"


def cache_root() -> Path:
    """The suite's cache folder (token encodings, content keys): ``$SUITE_CACHE_DIR``, else
    ``~/.cache/metaft-suite``. Everything in it can be deleted; it is rebuilt on use."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "metaft-suite")
