"""The one atomic write of a local file: a temporary file in the same folder, fsynced, renamed into
place, so a reader sees the old content or all of the new, never a part (also after kill -9).
`metaft.suite.storage.Location.write_bytes` uses it for local disk; object stores have their own
whole-object PUT."""
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
