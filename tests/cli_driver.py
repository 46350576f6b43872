"""Several `suite` commands in one Python process: one import of torch, transformers and the
suite instead of one per command (a subprocess per command costs seconds each)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

DRIVER = r"""
import contextlib, io, json, logging, shlex, sys
from metaft.suite.cli import main
out = {}
for pid, cmd in json.loads(sys.stdin.read()):
    err, std = io.StringIO(), io.StringIO()
    logging.getLogger().handlers.clear()  # each command logs to its own captured stderr
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            code = main(shlex.split(cmd))
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:
            code, err = "traceback", io.StringIO(f"{type(exc).__name__}: {exc}")
    out[pid] = [code, std.getvalue(), err.getvalue()]
print(json.dumps(out))
"""


def cli_many(commands: list[tuple[str, str]], cwd=None, env=None) -> dict[str, list]:
    """``{id: [exit code, stdout, stderr]}`` of several `suite` commands run in one process, in order
    (one import of the stack instead of one per command)."""
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(commands), capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, "RAY_ADDRESS": "", **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
