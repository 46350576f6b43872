"""`suite` commands as their own processes, forked from a server that imported the stack once.

Every `suite run` in the tests paid 4-5 s of imports (torch, transformers, a model class, the suite)
before doing anything: about a third of `make test`'s time. Each test worker now starts one server
process that imports them, and every command runs in a fresh ``fork`` of it: its own pid, argv,
environment, working directory, stdin, stdout, stderr and exit status, through the same entry point
as the installed `suite` script (``main()``; an uncaught exception prints its traceback and exits 1;
threads are joined and atexit handlers run, then ``os._exit``: the interpreter's teardown of every
module cost 2.8 s per command in a fork of the 600 MB server, and does nothing a test can see).
Only the imports are shared.

A command whose environment differs from the server's in a variable that libraries read when they
are imported (``HF_*``, ``OMP_NUM_THREADS``, ...) runs as an ordinary subprocess instead, as does
everything when ``SUITE_TEST_NO_FORK=1`` (the way to check that the two agree);
``SUITE_TEST_FORK_TRACE=FILE`` lists the commands that ran unforked, and why.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = str(Path(sys.executable).parent / "suite")

# Variables that what the server preloads reads when imported (Hub and cache locations and offline
# mode, thread counts, Ray's constants, the module path): a command whose environment changes one of
# them runs as a plain subprocess, which imports afresh. Not TORCH*/KMP_*: libraries imported by the
# tests themselves set some of those (TORCHINDUCTOR_CACHE_DIR, KMP_INIT_AT_FORK), and no test varies them;
# not DS_*: DeepSpeed is not preloaded (its import reads DS_ACCELERATOR, which the suite sets).
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "DATASETS", "TOKENIZERS", "OMP_", "MKL_", "OPENBLAS",
                        "PYTHON", "LD_", "ACCELERATE", "RAY_", "GRPC_", "CUDA_VISIBLE")

SERVER = r"""
import json, os, sys
from metaft.suite.cli import QUIET_ENVIRONMENT
for _name, _value in QUIET_ENVIRONMENT.items():  # what `main` sets before its first import of them
    os.environ.setdefault(_name, _value)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import metaft.suite.cli.cluster, metaft.suite.cli.leaderboard, metaft.suite.cli.run, metaft.suite.cli.tasks
import metaft.suite.runner
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.models.bert import modeling_bert
from transformers.models.gpt2 import modeling_gpt2
from transformers.models.roberta import modeling_roberta
import peft, ray, ray.train, ray.tune, sklearn.linear_model, statsmodels.api
import metaft.cluster.submit, metaft.cluster.tune, metaft.leaderboard.planner, metaft.leaderboard.site
import metaft.algorithms.builtin, metaft.algorithms.transfer, metaft.suite.cli.summary, metaft.suite.storage
import metaft.tasks.builtin
import datasets, plotly, seqeval.metrics

requests, replies = os.fdopen(int(sys.argv[1]), "r"), os.fdopen(int(sys.argv[2]), "w")
replies.write(json.dumps({"ready": True}) + "\n")
replies.flush()


def serve():
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            return request
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()
    sys.exit(0)


request = serve()
# The child: a process of its own, set up as `subprocess.run` would have started it.
requests.close()
replies.close()
os.setpgid(0, 0)
os.chdir(request["cwd"])
os.environ.clear()
os.environ.update(request["env"])
for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                        (2, request["stderr"], os.O_WRONLY)):
    os.dup2(os.open(path, flags), fd)
sys.stdin = open(0, closefd=False)
sys.stdout = open(1, "w", closefd=False)
sys.stderr = open(2, "w", buffering=1, closefd=False)
sys.argv = [request["argv0"], *request["args"]]
from metaft.suite.cli import main
try:
    code = main()
except SystemExit as exc:
    code = exc.code
except BaseException:
    sys.excepthook(*sys.exc_info())
    code = 1
if code is not None and not isinstance(code, int):
    print(code, file=sys.stderr)
    code = 1
# What the interpreter does at exit, without its teardown of every module (2.8 s of touching the
# server's 600 MB copy-on-write, for nothing a test could see): join threads, run atexit handlers.
import atexit, threading
threading._shutdown()
atexit._run_exitfuncs()
sys.stdout.flush()
sys.stderr.flush()
os._exit((code or 0) & 0xFF)
"""


class _Server:
    def __init__(self) -> None:
        self.env = dict(os.environ)
        to_server_r, self._to_server = os.pipe()
        self._from_server, from_server_w = os.pipe()
        self.log = tempfile.NamedTemporaryFile(prefix="suite-fork-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(to_server_r), str(from_server_w)],
                                     pass_fds=(to_server_r, from_server_w), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, env=self.env)
        os.close(to_server_r)
        os.close(from_server_w)
        self._pending = b""
        if "ready" not in self._reply(timeout=300):
            raise RuntimeError(f"the suite fork server did not start: {Path(self.log.name).read_text()[-2000:]}")

    def _reply(self, timeout: float | None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._from_server], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(self._from_server, 65536)
            if not chunk:
                raise RuntimeError(f"the suite fork server died: {Path(self.log.name).read_text()[-2000:]}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def run(self, args: list[str], env: dict[str, str], cwd: str, timeout: float | None) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="suite-cmd-") as tmp:
            stdout, stderr = Path(tmp) / "stdout", Path(tmp) / "stderr"
            stdout.touch()
            stderr.touch()
            request = {"args": args, "env": env, "cwd": cwd, "argv0": SUITE, "stdout": str(stdout),
                       "stderr": str(stderr)}
            try:
                os.write(self._to_server, (json.dumps(request) + "\n").encode())
                pid = self._reply(timeout=60)["pid"]
                try:
                    returncode = self._reply(timeout)["returncode"]
                except TimeoutError:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:  # not yet its own group leader
                        os.kill(pid, signal.SIGKILL)
                    self._reply(timeout=60)
                    raise subprocess.TimeoutExpired([SUITE, *args], timeout, stdout.read_text(),
                                                    stderr.read_text()) from None
            except subprocess.TimeoutExpired:
                raise
            except BaseException:  # interrupted mid-command: the next command gets a fresh server
                self.proc.kill()
                raise
            return subprocess.CompletedProcess([SUITE, *args], returncode, stdout.read_text(), stderr.read_text())

    def close(self) -> None:
        os.close(self._to_server)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.unlink(self.log.name)


_server: _Server | None = None


def _as_main_sets_it(env: dict[str, str]) -> dict[str, str]:
    """The environment as `main` and the imports leave it (a test that called `main` or imported Ray in
    its own process has these set already; the server sets them before or by its imports)."""
    from metaft.suite.cli import QUIET_ENVIRONMENT

    return {**QUIET_ENVIRONMENT, "TOKENIZERS_PARALLELISM": "false", "RAY_CLIENT_MODE": "0", **env}


def _forkable(env: dict[str, str]) -> bool:
    if os.environ.get("SUITE_TEST_NO_FORK") == "1" or not hasattr(os, "fork"):
        return False
    env, base = _as_main_sets_it(env), _as_main_sets_it(_server.env if _server else dict(os.environ))
    changed = sorted(name for name in set(env) | set(base)
                     if name.startswith(IMPORT_TIME_PREFIXES) and (env.get(name) or "") != (base.get(name) or ""))
    if changed and os.environ.get("SUITE_TEST_FORK_TRACE"):  # which commands ran unforked, and why
        with open(os.environ["SUITE_TEST_FORK_TRACE"], "a") as trace:
            trace.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')}: {', '.join(changed)}\n")
    return not changed


def run_suite(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
              timeout: float | None = 600) -> subprocess.CompletedProcess:
    """``subprocess.run([suite, *args], capture_output=True, text=True, ...)``, without the imports."""
    global _server
    env = dict(os.environ if env is None else env)
    cwd = str(cwd or os.getcwd())
    if not _forkable(env):
        return subprocess.run([SUITE, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if _server is None or _server.proc.poll() is not None:
        _server = _Server()
        atexit.register(_server.close)
    return _server.run(list(args), env, cwd, timeout)


def cli_many(commands: list[tuple[str, str]], cwd=None, env=None) -> dict[str, list]:
    """``{id: [exit code, stdout, stderr]}`` of several `suite` commands run in order, each its own
    forked process; an uncaught exception is exit 1 with its traceback on stderr, as from the
    installed script. ``RAY_ADDRESS`` is cleared so no command joins a cluster left by another test."""
    env = {**os.environ, "RAY_ADDRESS": "", **(env or {})}
    out = {}
    for name, command in commands:
        proc = run_suite(*shlex.split(command), cwd=cwd, env=env)
        out[name] = [proc.returncode, proc.stdout, proc.stderr]
    return out
