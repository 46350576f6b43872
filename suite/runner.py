"""The protocol of `suite run`, identical for every algorithm so comparisons are paired:

1. build the benchmark's meta-training and meta-testing episodes from the seed;
2. ``meta_train`` on the meta-training episodes with the preset's budget (metered);
3. for every meta-test task: from the algorithm's init, fine-tune on the support set with
   the shared procedure (Adam, preset lr, batch size, epochs or --ft-steps), measure the
   query metric at steps 0, 1, 2, 4, ... and the last, and record steps and seconds to
   reach the target quality;
4. write one row per task as it finishes, and one row for the run at the end.
"""
from __future__ import annotations

import logging
import math
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from algorithms import Episode as AlgoEpisode
from algorithms import get_algorithm
from algorithms.base import NonFiniteLossError
from algorithms.registry import algorithm_class
from algorithms.transformer_learner import EpisodicTransformer, episode_loss
from tasks import (EncodingSettings, EpisodeEncoder, EpisodeShape, TokenCache, build_manifest, iter_episodes,
                   make_benchmark)
from tasks.benchmark import SIDES

from . import __version__
from .config import RunConfig
from .errors import SuiteError
from .evaluate import eval_schedule, evaluate
from .metering import Measurement, Meter
from .models import load_backbone
from .results import RunFolder, git_revision, hardware, package_versions

log = logging.getLogger(__name__)


class RunFailed(SuiteError):
    """A run stopped part-way; finished rows are kept and --resume continues it."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SuiteError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def model_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.rstrip("/").split("/")[-1] if Path(name).exists() else name)[-40:]


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) under torch.distributed (e.g. a Ray Train worker), else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def barrier() -> None:
    if rank_and_world()[1] > 1:
        torch.distributed.barrier()


def task_seed(seed: int, index: int) -> int:
    return zlib.crc32(f"{seed}/{index}".encode())


def algorithm_kwargs(config: RunConfig) -> dict:
    """The run config's hyperparameters that the chosen algorithm accepts, plus ``[algorithm]`` extras."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(algorithm_class(config.algo).Config)}
    candidates = {"inner_lr": config.inner_lr, "inner_steps": config.inner_steps, "outer_lr": config.outer_lr,
                  "meta_batch_size": config.meta_batch_size, "finetune_lr": config.finetune_lr}
    if config.first_order:
        candidates["first_order"] = True
    kwargs = {k: v for k, v in candidates.items() if k in fields}
    kwargs.update(config.algorithm)
    return kwargs


@dataclass
class RunResult:
    run_id: str
    path: Path
    run_row: dict
    tasks: pd.DataFrame
    skipped: bool = False


class Runner:
    def __init__(self, config: RunConfig, out: str | Path = "results", data_dir: str | None = None, *,
                 resume: bool = False, overwrite: bool = False, keep_init: bool = False, progress: bool = True,
                 engine=None, on_task: Callable[[dict], None] | None = None):
        self.config = config
        self.out = Path(out)
        self.data_dir = data_dir
        self.resume, self.overwrite, self.keep_init = resume, overwrite, keep_init
        self.progress = progress
        # None: torch optimizers; else an object with outer_step(model, algo) and
        # finetune_step(model, params, lr, optimizer), e.g. cluster.deepspeed_engine.DeepSpeedEngine
        self.engine = engine
        self.on_task = on_task  # called with each finished task row (e.g. to report to Ray Tune)
        # Under torch.distributed (several workers of one trial) meta-training episodes are sharded
        # across ranks when an engine all-reduces the outer gradients (DeepSpeed), and meta-test tasks
        # are sharded by index; each task is fine-tuned on one rank with torch, because tasks are
        # independent and a data-parallel engine would mix them.
        self.rank, self.world = rank_and_world()
        self.device = resolve_device(config.device)
        get_algorithm(config.algo, **algorithm_kwargs(config))  # validate before any work

    # ------------------------------------------------------------------ set-up
    def benchmark(self):
        shapes = {k: EpisodeShape(**v) for k, v in self.config.shapes.items()}
        return make_benchmark(self.config.protocol, datasets=self.config.datasets or None,
                              n_meta_train=self.config.n_meta_train, n_meta_test=self.config.n_meta_test,
                              shapes=shapes)

    def run_id(self, model: str, seed: int, bench) -> str:
        return f"{self.config.algo}-{model_slug(model)}-{bench.key}-seed{seed}-{self.config.fingerprint()}"

    def run_all(self) -> list[RunResult]:
        return [self.run_one(model, seed) for model in self.config.models for seed in self.config.seeds]

    # ------------------------------------------------------------------ one run
    def run_one(self, model_name: str, seed: int) -> RunResult:
        cfg = self.config
        bench = self.benchmark()
        # sampled once: the manifest records exactly the episodes that are trained and tested on
        episodes = {side: list(iter_episodes(bench, seed, side, self.data_dir)) for side in SIDES}
        manifest = build_manifest(bench, seed, self.data_dir, episodes=episodes["meta-train"] + episodes["meta-test"])
        run_id = self.run_id(model_name, seed, bench)
        folder = RunFolder(self.out, run_id)
        if self.rank == 0 and folder.path.exists():
            if self.overwrite:
                shutil.rmtree(folder.path)
            elif not self.resume:
                raise SuiteError(f"{folder.path} already exists; pass --resume to continue it or --overwrite "
                                 f"to start it again")
        barrier()
        if self.resume and folder.is_complete():
            log.warning("%s is complete; nothing to resume", run_id)
            return RunResult(run_id, folder.path, pd.read_parquet(folder.path / "run.parquet").iloc[0].to_dict(),
                             folder.read_tasks(), skipped=True)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        lm = load_backbone(model_name)  # before anything is written: a bad model leaves no folder
        folder.path.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            manifest.write(folder.path / "episodes.json")
            run_config = dict(cfg.to_dict(), models=[model_name], seeds=[seed])
            folder.write_manifest({
                "run_id": run_id, "config": run_config, "config_fingerprint": cfg.fingerprint(),
                "suite_version": __version__, "git_revision": git_revision(), "packages": package_versions(),
                "hardware": hardware(), "device": str(self.device), "workers": self.world,
                "benchmark": bench.to_dict(), "episodes_fingerprint": manifest.fingerprint,
                "data_fingerprints": manifest.data, "data_dir": str(self.data_dir) if self.data_dir else None,
                "engine": self.engine.describe() if self.engine else {"engine": "torch"},
            })

        learner = EpisodicTransformer(lm.backbone, head_init=cfg.head_init, freeze_embeddings=cfg.freeze_embeddings,
                                      gradient_checkpointing=cfg.gradient_checkpointing).to(self.device)
        trainable = sum(p.numel() for p in learner.meta_parameters())
        cache = TokenCache()
        encoder = EpisodeEncoder(lm.tokenizer, EncodingSettings(cfg.max_length, cfg.stride), cache)
        algo = get_algorithm(cfg.algo, **algorithm_kwargs(cfg))
        common = {"run_id": run_id, "algo": cfg.algo, "model": model_name, "seed": seed, "benchmark": bench.key,
                  "episodes_fingerprint": manifest.fingerprint}

        meta, meta_stats = self._meta_train(folder, learner, algo, encoder, episodes["meta-train"], seed, trainable)
        self._meta_test(folder, learner, algo, encoder, episodes["meta-test"], seed, trainable, common)
        cache.flush()
        barrier()  # every rank's tasks are written
        tasks = folder.read_tasks()
        run_row = dict(common, protocol=bench.protocol, config_fingerprint=cfg.fingerprint(),
                       suite_version=__version__, git_revision=git_revision(), device=str(self.device),
                       engine=cfg.engine, trainable_parameters=trainable, **meta_stats, **meta.to_dict("meta_"),
                       n_tasks=len(tasks), mean_metric=float(tasks["metric"].mean()),
                       total_ft_seconds=float(tasks["ft_seconds"].sum()),
                       total_ft_gpu_hours=float(tasks["ft_gpu_hours"].sum()),
                       total_gpu_hours=float(tasks["ft_gpu_hours"].sum() + meta.gpu_hours))
        if self.rank == 0:
            folder.write_run(run_row)
            init = folder.path / "init.pt"
            if init.exists() and not self.keep_init:
                init.unlink()
        barrier()
        return RunResult(run_id, folder.path, run_row, tasks)

    # ------------------------------------------------------------------ meta-training
    def _meta_episodes(self, encoder, episodes: list, seed: int) -> Iterator[AlgoEpisode]:
        cfg = self.config
        shard = self.world > 1 and self.engine is not None
        for epoch in range(cfg.meta_epochs):
            order = np.random.default_rng([seed, epoch, 7]).permutation(len(episodes))
            if shard:  # equal shares, so every rank takes the same number of outer steps
                order = order[: len(order) - len(order) % self.world][self.rank::self.world]
            for i in order:
                ep = episodes[i]
                yield AlgoEpisode(
                    [to_device(b, self.device) for b in encoder.batches(ep.task_type, ep.support, ep.num_labels, cfg.batch_size)],
                    [to_device(b, self.device) for b in encoder.batches(ep.task_type, ep.query, ep.num_labels, cfg.batch_size)])

    def _meta_train(self, folder: RunFolder, learner, algo, encoder, episodes: list, seed: int, trainable: int):
        cfg = self.config
        init = folder.path / "init.pt"
        if self.resume and init.is_file():
            state = torch.load(init, map_location=self.device, weights_only=False)
            learner.load_state_dict(state["model"], strict=False)
            algo.load_state_dict(state["algorithm"])
            log.info("resumed the meta-learned init from %s", init)
            return Measurement(**state["measurement"]), state["stats"]
        n_episodes = len(episodes) * cfg.meta_epochs if algo.meta_learns else 0
        if n_episodes and self.world > 1 and self.engine is not None:
            n_episodes = (len(episodes) // self.world) * cfg.meta_epochs
        total_steps = math.ceil(n_episodes / cfg.meta_batch_size) if n_episodes else 0
        bar = _bar(total_steps, f"meta-train {cfg.algo}", self.progress, unit="step")
        engine = self.engine.outer_step(learner, algo) if (self.engine and algo.meta_learns) else None
        meter = Meter(self.device, trainable, num_gpus=self.world)
        try:
            with meter:
                stats = algo.meta_train(learner, self._meta_episodes(encoder, episodes, seed) if n_episodes else [],
                                        meter.count_loss(episode_loss), meta_batch_size=cfg.meta_batch_size,
                                        callbacks=[lambda info: (bar.update(1), bar.set_postfix(loss=f"{info['loss']:.3f}"))],
                                        engine=engine)
        except NonFiniteLossError as exc:
            raise RunFailed(f"{folder.run_id}: meta-training stopped: {exc}") from exc
        except torch.OutOfMemoryError as exc:
            raise RunFailed(_oom_message("meta-training")) from exc
        finally:
            bar.close()
        meta_stats = {"meta_steps": stats.steps, "meta_episodes": stats.episodes,
                      "meta_final_loss": stats.losses[-1] if stats.losses else None}
        state = {"model": {k: v for k, v in learner.state_dict().items() if not k.startswith("head.")},
                 "algorithm": algo.state_dict(), "measurement": meter.result.to_dict(), "stats": meta_stats}
        if self.rank == 0:
            tmp = init.with_name(".init.pt.tmp")
            torch.save(state, tmp)
            tmp.replace(init)
        return meter.result, meta_stats

    # ------------------------------------------------------------------ meta-testing
    def _meta_test(self, folder: RunFolder, learner, algo, encoder, episodes: list, seed, trainable, common) -> None:
        cfg = self.config
        finished = folder.finished_tasks() if self.resume else set()
        mine = {ep.index for ep in episodes if ep.index % self.world == self.rank}
        targets = self._baseline_targets(common) if cfg.target == "baseline" else {}
        todo = len(mine - finished)
        bar = _bar(todo, f"meta-test {cfg.algo}", self.progress, unit="task")
        try:
            for ep in episodes:
                if ep.index in finished or ep.index not in mine:
                    continue
                try:
                    row = self._test_task(ep, learner, algo, encoder, trainable, targets.get(ep.index), seed)
                except NonFiniteLossError as exc:
                    raise RunFailed(f"{folder.run_id}: task {ep.task_id} stopped: {exc}; finished tasks are kept "
                                    f"in {folder.path}, rerun with --resume") from exc
                except torch.OutOfMemoryError as exc:
                    raise RunFailed(_oom_message(f"fine-tuning task {ep.task_id}")) from exc
                folder.write_task(ep.index, dict(common, **row))
                if self.on_task is not None:
                    self.on_task(dict(common, **row))
                bar.update(1)
                bar.set_postfix(metric=f"{row['metric']:.3f}")
        finally:
            bar.close()

    def _test_task(self, ep, learner, algo, encoder, trainable: int, baseline_target: float | None,
                   seed: int) -> dict:
        cfg = self.config
        torch.manual_seed(task_seed(seed, ep.index))  # each task's result is independent of the others
        support = [to_device(b, self.device) for b in encoder.batches(ep.task_type, ep.support, ep.num_labels, cfg.batch_size)]
        query = [to_device(b, self.device) for b in encoder.batches(ep.task_type, ep.query, ep.num_labels, cfg.eval_batch_size)]
        steps = cfg.ft_steps or cfg.finetune_epochs * len(support)
        schedule = set(eval_schedule(steps))
        meter = Meter(self.device, trainable)
        curve: list[tuple[int, float, float, float | None]] = []

        def on_step(k, model, loss):
            if k in schedule:
                with meter.pause():
                    scores = evaluate(model, query, ep.label_names)
                curve.append((k, scores["metric"], meter.elapsed(), scores["exact_match"]))

        with meter:
            algo.adapt(learner, support, meter.count_loss(episode_loss), steps=steps, lr=cfg.finetune_lr,
                       on_step=on_step,
                       step_factory=self.engine.finetune_step if self.engine and self.world == 1 else None)
        steps_k, metrics, seconds, em = zip(*curve)
        final = metrics[-1]
        if cfg.target == "baseline" and cfg.algo == "baseline":
            baseline_target = final  # the baseline's own final metric is the target by definition
        if baseline_target is not None:
            target, source = baseline_target, "baseline"
        else:
            target, source = cfg.target_fraction * max(metrics), "best"
        reached = next((i for i, m in enumerate(metrics) if m >= target - 1e-12), None)
        return {
            "task_index": ep.index, "task_id": ep.task_id, "dataset": ep.dataset, "task_type": ep.task_type,
            "metric_name": "accuracy" if ep.task_type == "classification" else "f1",
            "metric": float(final), "metric_at_0": float(metrics[0]),
            "exact_match": None if em[-1] is None else float(em[-1]),
            "ft_steps": steps, **_ft_columns(meter.result),
            "curve_steps": list(steps_k), "curve_metric": [float(m) for m in metrics],
            "curve_seconds": [float(s) for s in seconds],
            "target": float(target), "target_source": source,
            "steps_to_target": None if reached is None else int(steps_k[reached]),
            "seconds_to_target": None if reached is None else float(seconds[reached]),
        }

    def _baseline_targets(self, common: dict) -> dict[int, float]:
        """Final baseline metric per task index from runs of the same model and episodes in ``out``."""
        targets: dict[int, float] = {}
        for path in sorted(self.out.glob("baseline-*/manifest.json")):
            tasks = RunFolder(self.out, path.parent.name).read_tasks()
            same = tasks[(tasks["model"] == common["model"]) &
                         (tasks["episodes_fingerprint"] == common["episodes_fingerprint"])]
            targets.update({int(i): float(m) for i, m in zip(same["task_index"], same["metric"])})
        return targets


def _ft_columns(m: Measurement) -> dict:
    return {"ft_seconds": m.wall_seconds, "ft_cpu_seconds": m.cpu_seconds, "ft_gpu_seconds": m.gpu_seconds,
            "ft_gpu_hours": m.gpu_hours, "ft_peak_rss_mb": m.peak_rss_mb, "ft_peak_cuda_mb": m.peak_cuda_mb,
            "ft_tokens": m.tokens, "ft_flops": m.flops}


def _oom_message(where: str) -> str:
    return (f"out of memory during {where}; lower --batch-size or --max-length, add --gradient-checkpointing "
            f"or --freeze-embeddings, or use a first-order algorithm (fomaml, reptile)")


def _bar(total: int, desc: str, enabled: bool, unit: str):
    from tqdm.auto import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled and total else True, leave=True,
                dynamic_ncols=True)
