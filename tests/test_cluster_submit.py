"""`suite submit` against a real Ray head on 127.0.0.1 with token authentication."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SUITE = str(BIN / "suite")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head with token auth; stopped by the process ids it started, never machine-wide."""
    token = secrets.token_hex(16)
    temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port, dash = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    before = {p.pid for p in psutil.process_iter()}
    proc = subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2",
                           "--temp-dir", str(temp), "--disable-usage-stats"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    started = [p for p in psutil.process_iter(["pid", "cmdline"])
               if p.pid not in before and str(temp) in " ".join(p.info["cmdline"] or [])]
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 60
    while time.time() < deadline:  # the job server comes up after `ray start` returns
        try:
            with socket.create_connection(("127.0.0.1", dash), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    yield {"address": address, "env": env, "token": token}
    everyone = set()
    for p in started:
        try:
            everyone |= {p} | set(p.children(recursive=True))
        except psutil.Error:
            pass
    for p in everyone:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(everyone), timeout=30)
    assert started, "no Ray processes were found to stop"


def test_submit_runs_a_job_to_succeeded_and_streams_its_logs(ray_head, data_dir):
    env = {**ray_head["env"], "SUITE_DATA_DIR": str(data_dir)}
    proc = subprocess.run([SUITE, "submit", "--address", ray_head["address"], "--working-dir", str(ROOT),
                           "--submission-id", "suite-test-1", "--", "suite", "tasks", "list"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "submitted suite-test-1" in proc.stdout and "job suite-test-1: SUCCEEDED" in proc.stdout
    assert "conll2003" in proc.stdout and "train=14041" in proc.stdout  # the job's own output, streamed
    status = subprocess.run([SUITE, "submit", "--address", ray_head["address"], "status", "suite-test-1"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert status.stdout.strip() == "SUCCEEDED"
    logs = subprocess.run([SUITE, "submit", "--address", ray_head["address"], "logs", "suite-test-1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert "natural_questions" in logs.stdout
    listed = subprocess.run([SUITE, "submit", "--address", ray_head["address"], "list"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert "suite-test-1" in listed.stdout and "SUCCEEDED" in listed.stdout


def test_a_client_without_the_token_is_refused(ray_head):
    env = {k: v for k, v in ray_head["env"].items() if k != "RAY_AUTH_TOKEN"}
    env["RAY_AUTH_TOKEN"] = "wrong-token"
    proc = subprocess.run([SUITE, "submit", "--address", ray_head["address"], "list"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.count("\n") <= 2, proc.stderr[-2000:]
