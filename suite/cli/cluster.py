"""`suite tune` (Ray Tune studies) and `suite submit` (Ray Jobs on a cluster)."""
from __future__ import annotations

import argparse
import sys

from ..config import PRESETS
from ..foundation.errors import ConfigError
from ..paths import check_writable_location
from ..settings import HelpWithDefaults
from .run import add_setting_arguments, comma_list, seed_value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="a Ray Tune study over algorithms x models x seeds and hyperparameter spaces",
                       formatter_class=HelpWithDefaults)
    p.add_argument("--name", default="study", help="study name (its folder under --storage)")
    p.add_argument("--algos", default="baseline,reptile", type=comma_list, help="comma-separated algorithms (a grid)")
    p.add_argument("--models", default=None, type=comma_list, help="comma-separated models (a grid); default: the preset's")
    p.add_argument("--seeds", type=seed_value, nargs="+", default=[0], help="seeds (a grid)")
    p.add_argument("--search", default=None,
                   help="TOML file: [search.<param>] type = loguniform|uniform|randint|choice|grid and its range")
    p.add_argument("--num-samples", type=int, default=1, help="samples of the search space per grid point")
    p.add_argument("--preset", choices=PRESETS, default="quick")
    p.add_argument("--config", default=None, help="TOML/YAML overriding the preset for every trial")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--workers-per-trial", type=int, default=1,
                   help="> 1: a Ray Train TorchTrainer with DeepSpeed inside each trial")
    p.add_argument("--max-concurrent", type=int, default=0, help="max concurrent trials (0: as resources allow)")
    p.add_argument("--max-failures", type=int, default=1, help="retries of a failed trial")
    p.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                   help="asha stops weak trials early on the running mean metric")
    p.add_argument("--storage", default="ray_results",
                   help="where Tune keeps the study's state and checkpoints (for --resume): a folder every node "
                        "mounts, or an object-store URI such as s3://bucket/tune (Tune's storage_path)")
    p.add_argument("--out", default="results",
                   help="results folder the trials write to: a folder every node mounts, or an object-store URI "
                        "such as s3://bucket/results")
    p.add_argument("--data-dir", default=None, help="dataset mirror folder (default $SUITE_DATA_DIR)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    p.add_argument("--resume", action="store_true", help="resume an interrupted study of the same --name")
    # every run setting except the grid axes above (algo, models, seeds), for every trial
    p.set_defaults(func=cmd_tune, settings=add_setting_arguments(p, for_tune=True))
    p.add_argument_group("DeepSpeed (with --engine deepspeed)").add_argument(
        "--zero", type=int, choices=(0, 1, 2, 3), default=None, help="ZeRO stage (default 2)")

    s = sub.add_parser("submit", help="run a suite command on a Ray cluster as a Ray Job, and manage jobs",
                       description="suite submit --address http://HEAD:8265 -- suite tune ...   (or: status, logs, "
                                   "stop, list). With RAY_AUTH_MODE=token set, RAY_AUTH_TOKEN is sent with every "
                                   "request. Never expose an unauthenticated dashboard/job port: anyone who "
                                   "reaches it can run code on the cluster.")
    s.add_argument("--address", default=None, help="job server, e.g. http://HEAD:8265 (default $RAY_ADDRESS)")
    s.add_argument("--working-dir", default=".", help="uploaded as the job's working directory")
    s.add_argument("--requirements", default=None, help="requirements file installed for the job")
    s.add_argument("--submission-id", default=None)
    s.add_argument("--no-wait", action="store_true", help="submit and return the job id without following logs")
    s.add_argument("--timeout", type=float, default=None, help="stop following after this many seconds")
    s.add_argument("rest", nargs=argparse.REMAINDER, metavar="-- COMMAND... | status ID | logs ID | stop ID | list",
                   help="the command to run after --, or a job action")
    s.set_defaults(func=cmd_submit)


def cmd_tune(args) -> int:
    import os
    from pathlib import Path

    from metaft.cluster.tune import (
        StudySpec,
        check_algorithm_keys,
        load_search_file,
        parse_search_space,
        run_study,
        schedule_order,
        summarize_study,
    )
    from metaft.suite.config import resolve_config
    from metaft.suite.settings import overrides_from_args
    from metaft.suite.table import format_table

    check_tune_args(args)
    base = resolve_config(args.preset, args.config, overrides_from_args(args, args.settings))
    if args.zero is not None:
        base.deepspeed = {**base.deepspeed, "zero": args.zero}
    algos = list(dict.fromkeys(args.algos))
    if not algos:
        raise ConfigError("--algos is empty; name at least one algorithm (see `suite algorithms`)")
    from metaft.suite.models import check_available

    check_available(args.models or list(base.models))  # else every trial fails the same way, loudly
    data_dir = args.data_dir or os.environ.get("SUITE_DATA_DIR") or None
    search = load_search_file(args.search)
    parse_search_space(search, args.search or "search space")
    check_algorithm_keys(search, algos, args.search or "search space")
    spec = StudySpec(
        name=args.name, algos=schedule_order(algos),
        models=args.models or list(base.models),
        seeds=list(args.seeds), base=base.to_dict(), out=check_writable_location(args.out, "--out"),
        data_dir=str(Path(data_dir).resolve()) if data_dir else None, search=search,
        num_samples=args.num_samples, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        workers_per_trial=args.workers_per_trial, max_concurrent=args.max_concurrent,
        max_failures=args.max_failures, scheduler=args.scheduler,
        storage=check_writable_location(args.storage, "--storage"))
    results = run_study(spec, resume=args.resume, address=args.address, num_cpus=args.num_cpus)
    rows, errors = summarize_study(results, algos)
    print(format_table(["status", "algo", "model", "seed", "mean metric", "tasks", "run"], rows))
    print(f"\nresults: {spec.out} (build the leaderboard with `suite leaderboard build --results {args.out}`)")
    if errors:
        print(f"\n{len(errors)} trial(s) failed after {args.max_failures} retries:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


def check_tune_args(args) -> None:
    """What Ray would reject late (or hang on) is refused before Ray starts."""
    import re

    if args.num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1 (samples per grid point), got {args.num_samples}")
    if args.num_samples > 10_000:
        raise ConfigError(f"--num-samples {args.num_samples} is more than 10,000 trials per grid point; give fewer")
    if not args.cpus_per_trial > 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial}")
    if args.gpus_per_trial < 0 or args.workers_per_trial < 1 or args.max_concurrent < 0 or args.max_failures < 0:
        raise ConfigError("--gpus-per-trial, --max-concurrent and --max-failures must be >= 0, --workers-per-trial >= 1")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name) or ".." in args.name:
        raise ConfigError(f"--name {args.name!r} must be a plain folder name (letters, digits, '_', '-', '.'); it is "
                          f"created under --storage")
    if args.zero is not None and args.engine != "deepspeed":
        raise ConfigError("--zero needs --engine deepspeed (the torch engine ignores it)")
    check_writable_location(args.out, "--out")
    check_writable_location(args.storage, "--storage")


ACTIONS = ("status", "logs", "stop", "list")


def cmd_submit(args) -> int:
    import os

    from metaft.cluster import submit as jobs
    from metaft.suite.table import format_table

    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError("no Ray job server given; pass --address http://HEAD:8265 (or set RAY_ADDRESS)")
    rest = list(args.rest)
    action = job_id = None
    if rest and rest[0] in ACTIONS:
        action, job_id = rest[0], (rest[1] if len(rest) > 1 else None)
        entry: list[str] = []
    else:
        entry = rest[1:] if rest[:1] == ["--"] else rest
    if action == "list":
        rows = [[j.submission_id, str(j.status).split(".")[-1], j.entrypoint[:60]]
                for j in jobs.client(address).list_jobs()]
        print(format_table(["job", "status", "entrypoint"], rows))
        return 0
    if action is not None:
        if not job_id:
            raise ConfigError(f"`suite submit {action}` needs a job id (see `suite submit list`)")
        c = jobs.client(address)
        if action == "status":
            print(str(c.get_job_status(job_id)).split(".")[-1])
        elif action == "logs":
            print(c.get_job_logs(job_id), end="")
        else:
            print("stopped" if c.stop_job(job_id) else "not running")
        return 0
    if not entry:
        raise ConfigError("nothing to submit; give the command after --, e.g. suite submit --address URL -- suite tune")
    job_id = jobs.submit(address, entry, args.working_dir, args.requirements, args.submission_id,
                         jobs.forwarded_env())
    print(f"submitted {job_id}", flush=True)
    if args.no_wait:
        return 0
    status = jobs.follow(address, job_id, timeout=args.timeout)
    print(f"job {job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1
