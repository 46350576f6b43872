"""`suite submit`: run any suite command on a Ray cluster as a Ray Job.

The job's ``runtime_env`` carries the working directory (this checkout, without results,
site, virtualenv or caches) and, where given, a requirements file. With token
authentication (``RAY_AUTH_MODE=token``, the documented default for real clusters) the
client sends ``RAY_AUTH_TOKEN`` (or the token file Ray reads) with every request.
An unauthenticated Ray dashboard or job port lets anyone who can reach it run code on
the cluster: keep those ports private and turn token auth on.
"""
from __future__ import annotations

import logging
import os
import shlex
import time
from pathlib import Path

from metaft.suite.foundation.errors import ConfigError, UnreachableError

EXCLUDES = [".venv", ".git", "results", "site", "artifacts", "__pycache__", "*.pyc", ".pytest_cache",
            "*.egg-info"]
log = logging.getLogger(__name__)
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_WAIT_S = 300.0  # how long a new head may take to register its job agent (over 120 s on a loaded 2-core machine)


def use_token_auth() -> None:
    """Token authentication is the default: with ``RAY_AUTH_MODE`` unset the client sends the
    token (``RAY_AUTH_TOKEN`` or the file ``RAY_AUTH_TOKEN_PATH`` names); ``RAY_AUTH_MODE=disabled``
    turns it off for a cluster without authentication."""
    import os

    if os.environ.get("RAY_AUTH_MODE"):
        return
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        raise ConfigError("token authentication is the default and no token is set: export RAY_AUTH_TOKEN (the "
                          "cluster's token), or RAY_AUTH_MODE=disabled for a cluster without authentication")
    os.environ["RAY_AUTH_MODE"] = "token"


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    use_token_auth()
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # connection refused, bad address, auth failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "401" in first or "auth" in first.lower() or "token" in first.lower():
            hint = "; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token"
        raise UnreachableError(f"cannot reach the Ray job server at {address}: {first}{hint}") from exc


def runtime_env(working_dir: str = ".", requirements: str | None = None, env_vars: dict | None = None) -> dict:
    env: dict = {"working_dir": str(Path(working_dir).resolve()), "excludes": EXCLUDES}
    if requirements:
        env["pip"] = str(Path(requirements).resolve())
    passed = {k: v for k, v in (env_vars or {}).items() if v is not None}
    if passed:
        env["env_vars"] = passed
    return env


def submit(address: str, entrypoint: list[str], working_dir: str = ".", requirements: str | None = None,
           submission_id: str | None = None, env_vars: dict | None = None, num_cpus: float | None = None,
           num_gpus: float | None = None) -> str:
    """Submit one job; waits out a head whose job agent has not registered yet.

    A freshly started head answers ``500: No available agent to submit job`` until its
    job agent is up (seen on a busy 2-core machine seconds after ``ray start``). That is
    transient by Ray's own wording, so it is retried for up to ``AGENT_WAIT_S``; every
    other error is raised at once."""
    c = client(address)
    command = " ".join(shlex.quote(a) for a in entrypoint)
    env = runtime_env(working_dir, requirements, env_vars)
    deadline = time.monotonic() + AGENT_WAIT_S
    waited = False
    while True:
        try:
            return c.submit_job(entrypoint=command, runtime_env=env, submission_id=submission_id,
                                entrypoint_num_cpus=num_cpus, entrypoint_num_gpus=num_gpus)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            if not waited:
                log.warning("the head at %s has no job agent yet (a head that just started); waiting up to %.0f s",
                            address, AGENT_WAIT_S)
                waited = True
            time.sleep(2.0)


def follow(address: str, job_id: str, out=None, poll: float = 1.0, timeout: float | None = None) -> str:
    """Print the job's logs as they grow until it ends; returns the final status."""
    import sys

    out = out or sys.stdout
    c = client(address)
    printed = 0
    start = time.monotonic()
    while True:
        status = str(c.get_job_status(job_id)).split(".")[-1]
        logs = c.get_job_logs(job_id)
        if len(logs) > printed:
            out.write(logs[printed:])
            out.flush()
            printed = len(logs)
        if status in TERMINAL:
            return status
        if timeout is not None and time.monotonic() - start > timeout:
            return status
        time.sleep(poll)


def forwarded_env() -> dict:
    """Settings a job on the cluster needs from here (never the auth token: the cluster has its own).

    A relative ``SUITE_DATA_DIR`` is made absolute: the job runs in its uploaded working directory,
    where the submitter's relative path would point nowhere."""
    env = {k: os.environ.get(k) for k in ("SUITE_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    if env["SUITE_DATA_DIR"]:
        env["SUITE_DATA_DIR"] = os.path.abspath(env["SUITE_DATA_DIR"])
    return env
