"""Several `suite` commands in a row, each its own process forked from the per-worker server that
imported the stack once (tests/suite_process.py)."""
from __future__ import annotations

import os
import shlex

from suite_process import run_suite


def cli_many(commands: list[tuple[str, str]], cwd=None, env=None) -> dict[str, list]:
    """``{id: [exit code, stdout, stderr]}`` of several `suite` commands run in order; an uncaught
    exception is exit 1 with its traceback on stderr, as from the installed script."""
    env = {**os.environ, "RAY_ADDRESS": "", **(env or {})}
    out = {}
    for name, command in commands:
        proc = run_suite(*shlex.split(command), cwd=cwd, env=env)
        out[name] = [proc.returncode, proc.stdout, proc.stderr]
    return out
