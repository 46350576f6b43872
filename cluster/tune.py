"""`suite tune`: a Ray Tune study over algorithms x models x seeds and hyperparameter spaces.

One trial is one `suite run` (the same Runner, writing to the same results store), so
the leaderboard reads a study like single runs. A trial reports the running mean of its
task metric after every meta-test task, which lets ASHA stop weak trials early.
Trials run with ``resume`` semantics: a trial that is retried (``max_failures``) or a
study that is resumed (``--resume``) continues the trial's run folder, skipping the tasks
it finished, so rows are never lost or duplicated.

A trial with ``workers_per_trial > 1`` runs a Ray Train ``TorchTrainer`` inside the Tune
function trial (the Train V2 pattern) with DeepSpeed as the engine: meta-training episodes
are sharded across workers and their outer gradients all-reduced, meta-test tasks are
sharded by index. Tune's progress table shows every trial's status, metric and time.

The metric a study optimises is the mean query metric of the benchmark it runs: to keep
test numbers honest, tune on a validation benchmark (e.g. ``--benchmark in-dataset
--datasets imdb,sst2,conll2003,squad``) and then `suite run` the chosen configuration on
the test benchmark.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

from metaft.suite.config import RunConfig, apply_overrides, hyperparameters
from metaft.suite.foundation.errors import SuiteError, UnreachableError
from metaft.suite.storage import location

SEARCHABLE = set(hyperparameters())  # the RunConfig fields marked as hyperparameters
ALGORITHM_PREFIX = "algorithm."  # e.g. algorithm.method, algorithm.scale: the algorithm's own hyperparameters
DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint", "grid")


def check_algorithm_keys(spec: dict, algos: list[str], source: str = "search space") -> None:
    """Every ``algorithm.<name>`` key must be a field of every searched algorithm's `Config`
    dataclass: checked before Ray starts, not discovered when the trials fail."""
    from metaft.algorithms import algorithm_class

    for key in spec:
        if not key.startswith(ALGORITHM_PREFIX):
            continue
        name = key[len(ALGORITHM_PREFIX):]
        for algo in algos:
            fields = sorted(f.name for f in dataclasses.fields(algorithm_class(algo).Config))
            if name not in fields:
                raise SuiteError(f"{source}: {key!r} is not a hyperparameter of {algo!r} (its Config has "
                                 f"{', '.join(fields)}); search it in a study of the algorithms that have it")


def parse_search_space(spec: dict, source: str = "search space") -> dict[str, Any]:
    """``{name: {type: loguniform, low: .., high: ..}}`` -> Ray Tune search space."""
    from ray import tune

    space = {}
    for name, dist in spec.items():
        if name not in SEARCHABLE and not (name.startswith(ALGORITHM_PREFIX) and len(name) > len(ALGORITHM_PREFIX)):
            raise SuiteError(f"{source}: {name!r} cannot be searched; searchable: {', '.join(sorted(SEARCHABLE))}, "
                             f"or any algorithm hyperparameter as {ALGORITHM_PREFIX}<name> (e.g. algorithm.scale)")
        if not isinstance(dist, dict) or dist.get("type") not in DISTRIBUTIONS:
            raise SuiteError(f"{source}: {name} needs type = one of {', '.join(DISTRIBUTIONS)}")
        kind = dist["type"]
        try:
            space[name] = _distribution(tune, kind, dist)
        except KeyError as exc:
            raise SuiteError(f"{source}: {name} ({kind}) lacks {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise SuiteError(f"{source}: {name} ({kind}): {exc}") from None
    return space


def _number(dist: dict, key: str, cast) -> float:
    value = dist[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return cast(value)


def _distribution(tune, kind: str, dist: dict):
    """One Ray Tune distribution, its bounds checked here (Ray's own errors come late, from workers)."""
    if kind in ("loguniform", "uniform", "randint"):
        cast = int if kind == "randint" else float
        low, high = _number(dist, "low", cast), _number(dist, "high", cast)
        if not low < high:
            raise ValueError(f"low must be < high, got low = {low}, high = {high}")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"a log-uniform range needs low > 0, got {low}")
        return {"loguniform": tune.loguniform, "uniform": tune.uniform, "randint": tune.randint}[kind](low, high)
    values = dist["values"]
    if not isinstance(values, list) or not values:
        raise ValueError(f"values must be a non-empty list, got {values!r}")
    return tune.choice(values) if kind == "choice" else tune.grid_search(values)


@dataclasses.dataclass
class StudySpec:
    """Everything a study needs; serialisable so trials on other nodes rebuild the same config."""

    name: str
    algos: list[str]
    models: list[str]
    seeds: list[int]
    base: dict  # RunConfig as a dict (preset + --config + options)
    out: str
    data_dir: str | None
    search: dict = dataclasses.field(default_factory=dict)
    num_samples: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1
    max_concurrent: int = 0
    max_failures: int = 1
    scheduler: str = "fifo"
    storage: str = ""

    def trial_config(self, params: dict) -> RunConfig:
        config = RunConfig(**self.base)
        # Trials run concurrently, so a trial cannot count on the baseline's rows being there:
        # steps-to-target uses a fraction of the trial's own best, which keeps every row deterministic.
        overrides = {"algo": params["algo"], "models": [params["model"]], "seeds": [int(params["seed"])],
                     "target": "best"}
        overrides.update({k: params[k] for k in SEARCHABLE if k in params})
        algorithm = {k[len(ALGORITHM_PREFIX):]: v for k, v in params.items() if k.startswith(ALGORITHM_PREFIX)}
        if algorithm:
            overrides["algorithm"] = algorithm
        return apply_overrides(config, overrides, f"trial {params}").validate()


def run_trial(params: dict, study: dict) -> None:
    """The Tune function trainable: one `suite run` in this worker process."""
    from ray import tune

    spec = StudySpec(**study)
    config = spec.trial_config(params)
    if spec.workers_per_trial > 1:
        _run_distributed_trial(spec, config, params)
        return
    metrics: list[float] = []

    def report(row: dict) -> None:
        metrics.append(float(row["metric"]))
        tune.report({"mean_metric": sum(metrics) / len(metrics), "tasks_done": len(metrics)})

    result = _runner(spec, config, on_task=report).run_all()[0]
    tune.report({"mean_metric": float(result.tasks["metric"].mean()), "tasks_done": len(result.tasks),
                 "run_id": result.run_id, "done": True})


def _runner(spec: StudySpec, config: RunConfig, on_task=None):
    from metaft.suite.runner import Runner

    engine = None
    if config.engine == "deepspeed":
        from .deepspeed_engine import engine_from_config

        engine = engine_from_config(config)
    return Runner(config, spec.out, spec.data_dir, resume=True, progress=False, engine=engine, on_task=on_task)


def _train_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker (torch.distributed is set up by Ray Train)."""
    import ray.train

    spec = StudySpec(**loop_config["study"])
    config = RunConfig(**loop_config["config"])
    result = _runner(spec, config).run_all()[0]
    ray.train.report({"mean_metric": float(result.tasks["metric"].mean()), "tasks_done": len(result.tasks),
                      "run_id": result.run_id, "done": True})


def _run_distributed_trial(spec: StudySpec, config: RunConfig, params: dict) -> None:
    from ray.train import RunConfig as TrainRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    if config.engine != "deepspeed":
        config.engine = "deepspeed"  # the outer gradients of several workers must be all-reduced
    use_gpu = spec.gpus_per_trial > 0
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"study": dataclasses.asdict(spec), "config": dataclasses.asdict(config)},
        scaling_config=ScalingConfig(num_workers=spec.workers_per_trial, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": max(1.0, spec.cpus_per_trial / spec.workers_per_trial)}
                                     | ({"GPU": spec.gpus_per_trial / spec.workers_per_trial} if use_gpu else {})),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=TrainRunConfig(name=f"{spec.name}-train-{abs(hash(json.dumps(params, default=str, sort_keys=True)))}",
                                  storage_path=spec.storage or None,
                                  callbacks=[TuneReportCallback()]),  # type: ignore[list-item]  # Ray's own pairing
    )
    trainer.fit()


def build_tuner(spec: StudySpec, resume: bool = False):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    param_space: dict[str, Any] = {
        "algo": tune.grid_search(spec.algos), "model": tune.grid_search(spec.models),
        "seed": tune.grid_search(spec.seeds),
    }
    param_space.update(parse_search_space(spec.search))
    resources: dict[str, float]
    if spec.workers_per_trial > 1:
        # the trial itself only coordinates; its workers hold the CPUs/GPUs
        resources = {"cpu": 1}
    else:
        resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, study=dataclasses.asdict(spec)), resources)
    # a local folder or an object-store URI (Ray resolves it with pyarrow.fs, as suite/storage.py does)
    storage = location(spec.storage).uri
    path = f"{storage.rstrip('/')}/{spec.name}"
    if resume:
        if not tune.Tuner.can_restore(path):
            raise SuiteError(f"no study to resume at {path}; start it without --resume")
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=True)
    scheduler: ASHAScheduler | FIFOScheduler
    if spec.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="tasks_done", max_t=max(1, spec.base["n_meta_test"]), grace_period=1,
                                  reduction_factor=2)
    else:
        scheduler = FIFOScheduler()
    reporter = tune.CLIReporter(metric_columns=["mean_metric", "tasks_done"],
                                parameter_columns=["algo", "model", "seed"] + sorted(spec.search),
                                max_report_frequency=10)
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(metric="mean_metric", mode="max", num_samples=spec.num_samples,
                                    max_concurrent_trials=spec.max_concurrent or None, scheduler=scheduler,
                                    reuse_actors=True),  # a trial process imports torch etc. once
        run_config=tune.RunConfig(name=spec.name, storage_path=storage, progress_reporter=reporter,
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures), verbose=1),
    )


def schedule_order(algos: list[str]) -> list[str]:
    """``algos`` checked against the registry and put meta-learners first.

    Meta-learners meta-train on top of the baseline's fine-tuning, so their trials are longer; a
    long trial that starts last leaves the other trial slots idle at the end of a study. Tune
    generates a grid with its first key (``algo``) varying fastest, so this order reaches the slots.
    """
    from metaft.algorithms import algorithm_class

    learns = {a: algorithm_class(a).meta_learns for a in algos}
    return sorted(algos, key=lambda a: not learns[a])


def run_study(spec: StudySpec, resume: bool = False, address: str | None = None, num_cpus: int | None = None):
    """Run (or resume) a study; returns Tune's ResultGrid.

    Without ``address`` or ``RAY_ADDRESS`` a new local Ray starts (``address="local"``): Ray's
    own default would attach to whatever its current-cluster file names, and after a head
    died without `ray stop` that file names a dead address that captures the study."""

    import ray

    if not ray.is_initialized():
        target = address or os.environ.get("RAY_ADDRESS") or "local"
        if target not in ("local", "auto"):
            check_reachable(target)
        ray.init(address=target, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False,  # a local Ray only on the loopback, not on every interface
                 **({"_node_ip_address": "127.0.0.1"} if target == "local" else {}))  # type: ignore[arg-type]
    return build_tuner(spec, resume).fit()


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries a dead GCS address for minutes, printing warnings; one TCP connect says at once."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port or (10001 if parts.scheme == "ray" else 6379)
    except ValueError:
        raise UnreachableError(f"--address {address!r} is not HOST:PORT (or ray://HOST:PORT)") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise UnreachableError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                               f"`ray start --head`, fix --address / RAY_ADDRESS, or leave both out for a local "
                               f"Ray") from None


def summarize_study(results, algos: list[str] | None = None) -> tuple[list[list], list[str]]:
    """Rows of (status, algo, model, seed, metric, run_id), in ``algos`` order, and the errors of failed trials."""
    rows, errors = [], []
    rank = {a: i for i, a in enumerate(algos or [])}

    def key(r) -> tuple:
        cfg = r.config or {}
        return rank.get(str(cfg.get("algo")), len(rank)), str(cfg.get("model")), int(cfg.get("seed") or 0)

    for r in sorted(results, key=key):
        cfg = r.config or {}
        status = "ERROR" if r.error else ("TERMINATED" if (r.metrics or {}).get("done") else "STOPPED")
        metrics = r.metrics or {}
        rows.append([status, cfg.get("algo"), cfg.get("model"), cfg.get("seed"),
                     None if "mean_metric" not in metrics else round(float(metrics["mean_metric"]), 4),
                     metrics.get("tasks_done"), metrics.get("run_id", "")])
        if r.error:
            errors.append(f"{cfg.get('algo')}/{cfg.get('model')}/seed {cfg.get('seed')}: "
                          f"{str(r.error).strip().splitlines()[-1]}")
    return rows, errors


def load_search_file(path: str | None) -> dict:
    if not path:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SuiteError(f"cannot read search space {path}: {exc}") from exc
    return data.get("search", data)
