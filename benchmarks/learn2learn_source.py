"""learn2learn 0.2.0's pure-Python MAML, for side-by-side benchmarks only.

The package does not build on Python 3.11 (Cython extensions), but its MAML needs only three
pure-Python files. They are read from the source distribution, downloaded from PyPI into a
cache folder on first use (never committed here), and imported as a minimal `learn2learn`
package.
"""
from __future__ import annotations

import hashlib
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "0.2.0"
SHA256 = "69f1d7cb0d0a6be7a2c6ad8e83e2ebbe70fb05e51d61e45e63078b40c75ea419"
FILES = ("algorithms/maml.py", "algorithms/base_learner.py", "utils/__init__.py")
CACHE = Path.home() / ".cache" / "metaft-bench" / f"learn2learn-{VERSION}"


def _download(target: Path) -> None:
    index = urllib.request.urlopen("https://pypi.org/simple/learn2learn/", timeout=60).read().decode()
    url = re.search(rf'href="([^"#]+learn2learn-{re.escape(VERSION)}\.tar\.gz)', index)
    if url is None:
        raise SystemExit(f"learn2learn {VERSION} source distribution not found on PyPI")
    data = urllib.request.urlopen(url.group(1), timeout=300).read()
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise SystemExit("learn2learn source distribution: checksum mismatch")
    target.write_bytes(data)


def load_learn2learn():
    """The `learn2learn` module with `algorithms.MAML` (and `utils.clone_module`)."""
    package = CACHE / "pkg"
    if not all((package / "learn2learn" / f).is_file() for f in FILES):
        CACHE.mkdir(parents=True, exist_ok=True)
        archive = CACHE / f"learn2learn-{VERSION}.tar.gz"
        if not archive.is_file():
            _download(archive)
        with tarfile.open(archive) as tar:
            for rel in FILES:
                member = tar.extractfile(f"learn2learn-{VERSION}/learn2learn/{rel}")
                out = package / "learn2learn" / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(member.read())
        for init in ("__init__.py", "algorithms/__init__.py"):  # minimal packages: only what MAML needs
            (package / "learn2learn" / init).write_text(
                "from learn2learn.algorithms.maml import MAML\n" if init.startswith("algorithms") else "")
    if str(package) not in sys.path:
        sys.path.insert(0, str(package))
    import learn2learn
    import learn2learn.algorithms

    return learn2learn
