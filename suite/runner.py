"""The protocol of `suite run`, identical for every algorithm so comparisons are paired:

1. build the benchmark's meta-training, validation and meta-testing episodes from the seed,
   and check by content that no meta-test query text occurs on the other sides;
2. ``meta_train`` on the meta-training episodes with the preset's budget (metered);
3. where the config gives a learning-rate grid, choose the fine-tuning lr per task type on
   the validation tasks (never on meta-test data; metered, recorded in the manifest);
4. for every meta-test task: from the algorithm's init, fine-tune on the support set for the
   task type's fixed step budget (shared procedure, or the algorithm's own adaptation),
   measure the query metric at steps 0, 1, 2, 4, ... and the last (the curve is the record:
   nothing is selected on the query set), and record steps and seconds to the target;
5. write one row per task as it finishes, and one row for the run at the end.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from metaft.algorithms import Algorithm, get_algorithm
from metaft.algorithms import Episode as AlgoEpisode
from metaft.algorithms.base import NonFiniteLossError, SelectsSource, meta_parameters
from metaft.algorithms.registry import algorithm_class
from metaft.algorithms.transformer_learner import EpisodicTransformer, bf16_support, episode_loss
from metaft.tasks import (
    EncodingSettings,
    EpisodeEncoder,
    EpisodeShape,
    TokenCache,
    build_manifest,
    get_dataset_spec,
    iter_episodes,
    make_benchmark,
)
from metaft.tasks.benchmark import SIDES, BenchmarkSpec, EpisodeManifest, query_overlap
from metaft.tasks.metrics import Metric, get_metric
from metaft.tasks.pools import check_leakage

from . import __version__, recipes
from .adapters import add_adapters, save_adapter
from .config import ADAPTER_RECIPES, DEFAULT_RECIPE, RunConfig, hyperparameters, task_type_names
from .flops import flops_per_token
from .foundation.errors import FailedRunError, SuiteError
from .metering import Measurement, Meter
from .models import load_backbone
from .paths import check_writable_location
from .results import (
    RunFolder,
    atomic_write_bytes,
    atomic_write_json,
    busy_note,
    git_revision,
    hardware,
    package_versions,
)
from .storage import Location, location

log = logging.getLogger(__name__)


class RunFailed(FailedRunError):
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


def _config_fields(algo: str):
    return dataclasses.fields(algorithm_class(algo).Config)


def algorithm_kwargs(config: RunConfig) -> dict:
    """The run config's hyperparameters that the chosen algorithm accepts, plus its own settings
    (``[per_algorithm.<algo>]``, then ``[algorithm]``)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(algorithm_class(config.algo).Config)}
    candidates = {name: getattr(config, name) for name in hyperparameters("algorithm")}
    if config.first_order:
        candidates["first_order"] = True
    kwargs = {k: v for k, v in candidates.items() if k in fields}
    kwargs.update(config.algorithm_settings())
    return kwargs


@dataclass
class RunResult:
    run_id: str
    path: Location
    run_row: dict
    tasks: pd.DataFrame
    skipped: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)  # printed under the run's summary


@dataclass
class RunContext:
    """One run's state, built once by `Runner._context` and handed to every stage."""

    folder: RunFolder
    seed: int
    bench: BenchmarkSpec
    episodes: dict[str, list]
    manifest: EpisodeManifest
    learner: EpisodicTransformer
    algo: Algorithm
    encoder: EpisodeEncoder
    cache: TokenCache
    pooling: str
    trainable: int  # parameters the outer loop updates
    common: dict  # the columns every task row of the run shares


class Runner:
    def __init__(self, config: RunConfig, out: str | Path = "results", data_dir: str | None = None, *,
                 resume: bool = False, overwrite: bool = False, keep_init: bool = False, progress: bool = True,
                 engine=None, on_task: Callable[[dict], None] | None = None):
        self.config = config
        self.out = location(out)  # a folder or an object-store prefix (suite/storage.py)
        self.data_dir = data_dir
        if resume and overwrite:
            raise SuiteError("--resume and --overwrite contradict each other: --resume continues a run, --overwrite "
                             "deletes it and starts again; pass one of them")
        self.resume, self.overwrite, self.keep_init = resume, overwrite, keep_init
        self.progress = progress
        # None: torch optimizers; else an object with outer_step(model, algo) and
        # finetune_step(model, params, lr, optimizer), e.g. cluster.deepspeed_engine.DeepSpeedEngine
        self.engine = engine
        self.on_task = on_task  # called with each finished task row (e.g. to report to Ray Tune)
        self._notes: dict[str, list[str]] = {}  # per run id, for its RunResult
        # Under torch.distributed (several workers of one trial) meta-training episodes are sharded
        # across ranks when an engine all-reduces the outer gradients (DeepSpeed), and meta-test tasks
        # are sharded by index; each task is fine-tuned on one rank with torch, because tasks are
        # independent and a data-parallel engine would mix them.
        self.rank, self.world = rank_and_world()
        self.device = resolve_device(config.device)
        if config.precision == "auto":  # resolved here, so run ids and the protocol name what really runs
            # (DeepSpeed runs take its own --bf16, so auto is fp32 for them)
            why = None if config.engine == "deepspeed" else bf16_support(self.device)
            bf16 = config.engine != "deepspeed" and why is None
            config = self.config = dataclasses.replace(config, precision="bf16" if bf16 else "fp32")
            if why:  # a stated fallback, recorded in every row's precision; not a warning on every run of
                # a machine without bf16 (it would precede every one-line error there)
                log.info("precision auto: %s, so this run is fp32 (it will not pair with bf16 runs)", why)
        if config.precision == "bf16":
            why = bf16_support(self.device)
            if why:
                raise SuiteError(f"precision bf16 needs native bf16 support and {why}; use --precision fp32")
            if config.engine == "deepspeed":
                raise SuiteError("--precision bf16 is the torch engine's autocast; with --engine deepspeed use "
                                 "--bf16 (DeepSpeed's own bf16)")
        algo = get_algorithm(config.algo, **algorithm_kwargs(config))  # validate before any work
        if config.first_order and "first_order" not in {f.name for f in _config_fields(config.algo)}:
            raise SuiteError(f"--first-order applies to second-order algorithms (maml, metasgd); {config.algo!r} "
                             f"has no first-order variant, drop the flag")
        if algo.meta_learns and (config.meta_epochs == 0 or config.n_meta_train == 0):
            raise SuiteError(f"{config.algo!r} meta-learns, but meta_epochs is {config.meta_epochs} and n_meta_train "
                             f"{config.n_meta_train}: the pretrained start would be stored as a {config.algo} "
                             f"result; give it meta-training tasks and epochs, or use --algo baseline")
        if config.eval_mode == "own" and not algo.has_own_adaptation():
            raise SuiteError(f"algorithm {config.algo!r} has no own adaptation (it is a reference); "
                             f"evaluate it with eval_mode = 'shared'")
        if config.eval_mode == "hindsight" and not isinstance(algo, SelectsSource):
            raise SuiteError(f"eval_mode 'hindsight' needs an algorithm that chooses among candidate starts "
                             f"(intermediate); {config.algo!r} has none")

    # ------------------------------------------------------------------ set-up
    def benchmark(self):
        shapes = {k: EpisodeShape(**v) for k, v in self.config.shapes.items()}
        bench = make_benchmark(self.config.protocol, datasets=self.config.datasets or None,
                              n_meta_train=self.config.n_meta_train, n_meta_test=self.config.n_meta_test,
                              n_meta_val=self.config.n_meta_val, shapes=shapes, val_fraction=self.config.val_fraction)
        for dataset in bench.meta_test_datasets + bench.meta_train_datasets:
            dataset_metric(dataset)  # an unknown metric name fails here, before anything is written
        recipes.check_serves(self.config.recipe, [get_dataset_spec(d).task_type for d in bench.meta_test_datasets])
        check_ways(bench)
        return bench

    def run_id(self, model: str, seed: int, bench) -> str:
        return f"{self.config.algo}-{model_slug(model)}-{bench.key}-seed{seed}-{self.config.fingerprint()}"

    def run_all(self) -> list[RunResult]:
        return [self.run_one(model, seed) for model in self.config.models for seed in self.config.seeds]

    # ------------------------------------------------------------------ one run
    def run_one(self, model_name: str, seed: int) -> RunResult:
        bench = self.benchmark()
        # the model first: a bad model or max_length fails before the data is loaded or anything is written
        lm = self._load_model(model_name, seed)
        # sampled once: the manifest records exactly the episodes that are trained and tested on
        episodes = {side: list(iter_episodes(bench, seed, side, self.data_dir)) for side in SIDES}
        leakage = check_leakage(episodes["meta-test"], episodes["meta-train"] + episodes["meta-val"])
        manifest = build_manifest(bench, seed, self.data_dir, episodes=[e for side in SIDES for e in episodes[side]])
        run_id = self.run_id(model_name, seed, bench)
        folder = RunFolder(self.out, run_id)
        if self.rank != 0:
            return self._run_locked(folder, lm, seed, bench, episodes, leakage, manifest)
        check_writable_location(self.out, "--out")
        with folder.lock():  # one writer per run folder: a second `suite run` of it is refused
            return self._run_locked(folder, lm, seed, bench, episodes, leakage, manifest)

    def _load_model(self, model_name: str, seed: int):
        cfg = self.config
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        lm = load_backbone(model_name)
        lm.backbone = add_adapters(lm.backbone, cfg.adapter_settings())  # seeded: LoRA's A is random
        positions = getattr(lm.backbone.config, "max_position_embeddings", None) or \
            getattr(lm.backbone.config, "n_positions", None)
        if positions and getattr(lm.backbone.config, "model_type", "") in ("roberta", "xlm-roberta"):
            positions -= 2  # RoBERTa's position ids start after the padding index
        if positions and cfg.max_length > positions:
            raise SuiteError(f"max_length {cfg.max_length} exceeds the {positions} positions of model {model_name!r}; "
                             f"pass --max-length {positions} or less")
        return lm

    def _run_locked(self, folder: RunFolder, lm, seed: int, bench, episodes: dict, leakage,
                    manifest) -> RunResult:
        """The stages of one run, in order; each reads and writes through the run's context."""
        done = self._prepare_folder(folder, lm.name, seed, bench, leakage, manifest)
        if done is not None:
            return done
        ctx = self._context(folder, lm, seed, bench, episodes, manifest)
        meta, meta_stats = self._meta_train(ctx)
        lrs, selection, sel_cost = self._select_lrs(ctx)
        if self.rank == 0 and selection is not None:
            folder.write_manifest(dict(folder.read_manifest(), lr_selection=selection))
        # evaluate_on = "meta-val" scores the validation tasks instead (hyperparameter search, e.g. `suite tune`)
        self._meta_test(ctx, episodes[self.config.evaluate_on], lrs)
        return self._finish(ctx, meta, meta_stats, sel_cost)

    def _prepare_folder(self, folder: RunFolder, model_name: str, seed: int, bench, leakage,
                        manifest) -> RunResult | None:
        """Stage 1: overwrite, refuse or resume the run folder and write its manifest; the stored
        result when a resumed run is already complete."""
        cfg, run_id = self.config, folder.run_id
        previous = None
        if self.rank == 0 and folder.path.exists():
            if self.overwrite:
                folder.path.remove_tree()
            elif not self.resume:
                raise SuiteError(f"{folder.path} already exists; pass --resume to continue it or --overwrite "
                                 f"to start it again")
            elif (folder.path / "manifest.json").is_file():
                previous = folder.read_manifest()
                check_resumable(previous, manifest, folder.path)
        barrier()
        if self.resume and folder.is_complete():
            log.warning("%s is complete; nothing to resume", run_id)
            return RunResult(run_id, folder.path, folder.read_run(), folder.read_tasks(), skipped=True)
        folder.path.mkdir(parents=True, exist_ok=True)
        machine = hardware() if self.rank == 0 else {}
        if self.rank == 0 and previous is not None:  # a resume keeps the manifest it started with
            resumes = previous.get("resumes", []) + [{"git_revision": git_revision(), "hardware": machine,
                                                      "packages": package_versions(), "workers": self.world}]
            folder.write_manifest(dict(previous, resumes=resumes))
        elif self.rank == 0:
            atomic_write_bytes(folder.path / "episodes.json", json.dumps(manifest.to_dict(), indent=1).encode())
            run_config = dict(cfg.to_dict(), models=[model_name], seeds=[seed])
            folder.write_manifest({
                "run_id": run_id, "config": run_config, "config_fingerprint": cfg.fingerprint(),
                "suite_version": __version__, "git_revision": git_revision(), "packages": package_versions(),
                "hardware": machine, "device": str(self.device), "workers": self.world,
                "benchmark": bench.to_dict(), "episodes_fingerprint": manifest.fingerprint,
                "protocol_fingerprint": protocol_fingerprint(cfg, bench),
                "data_fingerprints": manifest.data, "data_dir": str(self.data_dir) if self.data_dir else None,
                "pools": manifest.pools, "leakage_check": leakage, "query_overlap": query_overlap(manifest.tasks),
                "engine": self.engine.describe() if self.engine else {"engine": "torch"},
            })
        if self.device.type == "cpu" and (note := busy_note(machine)):  # beside the seconds it qualifies,
            self._notes[run_id] = [note]  # on stdout: stderr stays one line for an error
            log.info("%s: %s", run_id, note)
        return None

    def _context(self, folder: RunFolder, lm, seed: int, bench, episodes: dict, manifest) -> RunContext:
        """Stage 2: the learner on its device, the encoder, the algorithm and the rows' shared columns."""
        cfg = self.config
        pooling = lm.pooling if cfg.pooling == "auto" and lm.pooling else cfg.pooling
        learner = EpisodicTransformer(lm.backbone, head_init=cfg.head_init, freeze_embeddings=cfg.freeze_embeddings,
                                      gradient_checkpointing=cfg.gradient_checkpointing, pooling=pooling,
                                      precision=cfg.precision).to(self.device)
        cache = TokenCache()
        encoder = EpisodeEncoder(lm.tokenizer, EncodingSettings(cfg.max_length, cfg.stride), cache)
        common = {"run_id": folder.run_id, "algo": cfg.algo, "model": lm.name, "seed": seed, "benchmark": bench.key,
                  "episodes_fingerprint": manifest.fingerprint, "protocol_fingerprint": protocol_fingerprint(cfg, bench),
                  "eval_mode": cfg.eval_mode, "peft": cfg.peft, "precision": cfg.precision, "recipe": cfg.recipe,
                  "protocol_base": protocol_fingerprint(dataclasses.replace(cfg, recipe=DEFAULT_RECIPE), bench)}
        trainable = sum(p.numel() for p in learner.meta_parameters())
        return RunContext(folder, seed, bench, episodes, manifest, learner,
                          get_algorithm(cfg.algo, **algorithm_kwargs(cfg)), encoder, cache, pooling, trainable, common)

    def _finish(self, ctx: RunContext, meta: Measurement, meta_stats: dict, sel_cost: Measurement) -> RunResult:
        """Last stage: the run row (its presence marks the run complete), the init kept or dropped."""
        cfg, folder = self.config, ctx.folder
        ctx.cache.flush()
        barrier()  # every rank's tasks are written
        tasks = folder.read_tasks()
        run_row = dict(ctx.common, protocol=ctx.bench.protocol, config_fingerprint=cfg.fingerprint(),
                       suite_version=__version__, git_revision=git_revision(), device=str(self.device),
                       engine=cfg.engine, trainable_parameters=ctx.trainable, pooling=ctx.pooling,
                       **meta_stats, **meta.to_dict("meta_"), **sel_cost.to_dict("selection_"),
                       n_tasks=len(tasks), mean_metric=float(tasks["metric"].mean()),
                       total_ft_seconds=float(tasks["ft_seconds"].sum()),
                       total_ft_gpu_hours=float(tasks["ft_gpu_hours"].sum()),
                       total_gpu_hours=float(tasks["ft_gpu_hours"].sum() + meta.gpu_hours))
        if self.rank == 0:
            folder.write_run(run_row)
            init = folder.path / "init.pt"
            if not self.keep_init:
                init.unlink()
            else:  # the meta-learned adapter start in peft's format, beside init.pt
                with tempfile.TemporaryDirectory() as tmp:
                    if save_adapter(ctx.learner.backbone, Path(tmp) / "adapter"):
                        (folder.path / "adapter").upload(Path(tmp) / "adapter")
        barrier()
        return RunResult(folder.run_id, folder.path, run_row, tasks, notes=self._notes.pop(folder.run_id, []))

    # ------------------------------------------------------------------ meta-training
    def _shard_meta_episodes(self, algo) -> bool:
        """Shard meta-training episodes across ranks only when an engine all-reduces outer updates;
        per-source methods need every source's episodes on one rank."""
        return self.world > 1 and self.engine is not None and algo.uses_outer_step

    def _meta_episodes(self, ctx: RunContext, shard: bool = False) -> Iterator[AlgoEpisode]:
        cfg, encoder, seed, episodes = self.config, ctx.encoder, ctx.seed, ctx.episodes["meta-train"]
        for epoch in range(cfg.meta_epochs):
            order = np.random.default_rng([seed, epoch, 7]).permutation(len(episodes))
            if shard:  # equal shares, so every rank takes the same number of outer steps
                order = order[: len(order) - len(order) % self.world][self.rank::self.world]
            for i in order:
                ep = episodes[i]
                yield AlgoEpisode(
                    [to_device(b, self.device) for b in encoder.batches(ep.task_type, ep.support, ep.num_labels, cfg.batch_size)],
                    [to_device(b, self.device) for b in encoder.batches(ep.task_type, ep.query, ep.num_labels, cfg.batch_size)],
                    source=ep.dataset)

    def _meta_train(self, ctx: RunContext):
        """Stage 3: the algorithm's meta-training (or the stored init of an interrupted run), metered."""
        cfg, folder, learner, algo, episodes = self.config, ctx.folder, ctx.learner, ctx.algo, ctx.episodes["meta-train"]
        init = folder.path / "init.pt"
        if self.resume and init.is_file():
            state = torch.load(io.BytesIO(init.read_bytes()), map_location=self.device, weights_only=False)
            learner.load_state_dict(state["model"], strict=False)
            algo.load_state_dict(state["algorithm"])
            log.info("resumed the meta-learned init from %s", init)
            return Measurement(**state["measurement"]), state["stats"]
        n_episodes = len(episodes) * cfg.meta_epochs if algo.meta_learns else 0
        if n_episodes and self._shard_meta_episodes(algo):
            n_episodes = (len(episodes) // self.world) * cfg.meta_epochs
        total_steps = algo.meta_steps(n_episodes, cfg.meta_batch_size, len({ep.dataset for ep in episodes}))
        bar = _bar(total_steps, f"meta-train {cfg.algo}", self.progress, unit="step")
        engine = None
        if self.engine and algo.meta_learns and algo.uses_outer_step:
            engine = self.engine.outer_step(learner, algo)
        elif self.engine and algo.meta_learns and self.world == 1:  # meta-training is plain fine-tuning
            algo.step_factory = self.engine.finetune_step
        meter = Meter(self.device, flops_per_token(learner, meta_parameters(learner)), num_gpus=self.world)

        def progress(info: dict) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{info['loss']:.3f}")

        try:
            with meter:
                stats = algo.meta_train(learner, self._meta_episodes(ctx, self._shard_meta_episodes(algo))
                                        if n_episodes else [],
                                        meter.count_loss(episode_loss), meta_batch_size=cfg.meta_batch_size,
                                        callbacks=[progress],
                                        engine=engine)
        except NonFiniteLossError as exc:
            raise RunFailed(f"{folder.run_id}: meta-training stopped: {exc}") from exc
        except torch.OutOfMemoryError as exc:
            raise RunFailed(_oom_message("meta-training")) from exc
        finally:
            bar.close()
        meta_stats = {"meta_steps": stats.steps, "meta_episodes": stats.episodes,
                      "meta_final_loss": stats.losses[-1] if stats.losses else None}
        if stats.memory_fallback_step is not None and self.rank == 0:  # the run says how it was trained
            folder.write_manifest(dict(folder.read_manifest(), memory_fallback={
                "meta_step": stats.memory_fallback_step, "path": "checkpointed inner loop (checkpoint_inner)"}))
        state = {"model": {k: v for k, v in learner.state_dict().items() if not k.startswith("head.")},
                 "algorithm": algo.state_dict(), "measurement": meter.result.to_dict(), "stats": meta_stats}
        if self.rank == 0:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write_bytes(init, buffer.getvalue())
        return meter.result, meta_stats

    # ------------------------------------------------------------------ meta-testing
    def _meta_test(self, ctx: RunContext, episodes: list, lrs: dict) -> None:
        """Stage 5: fine-tune and score every task of this rank not yet finished, one row each."""
        cfg, folder, common = self.config, ctx.folder, ctx.common
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
                    row = self._test_task(ctx, ep, lrs.get(ep.task_type, cfg.finetune_lr), targets.get(ep.index))
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

    def _finetune(self, ctx: RunContext, ep, lr: float, mode: str) -> recipes.RecipeResult:
        """Fine-tune one task from the algorithm's start with the run's recipe. The curve holds
        (step, metric, seconds, exact match) at the evaluation steps."""
        cfg, device = self.config, self.device
        task_rng_seed = task_seed(ctx.seed, ep.index)
        torch.manual_seed(task_rng_seed)  # each task's result is independent of the others
        support = [to_device(b, device) for b in ctx.encoder.batches(ep.task_type, ep.support, ep.num_labels,
                                                                     cfg.batch_size)]
        query = [to_device(b, device) for b in ctx.encoder.batches(ep.task_type, ep.query, ep.num_labels,
                                                                   cfg.eval_batch_size)]

        def encode(examples: list[dict]) -> dict:
            return to_device(ctx.encoder.encode(ep.task_type, examples, ep.num_labels), device)

        task = recipes.RecipeTask(
            start=lambda: ctx.algo.start(ctx.learner, support), learner=ctx.learner, algo=ctx.algo,
            examples=list(ep.support), support=support, query=query, encode=encode, label_names=ep.label_names,
            metric=dataset_metric(ep.dataset), device=device, lr=lr, steps=cfg.ft_budget(ep.task_type, len(support)),
            mode=mode, seed=task_rng_seed, settings=cfg,
            step_factory=self.engine.finetune_step if self.engine and self.world == 1 and mode == "shared" else None)
        return recipes.get_recipe(cfg.recipe).resolve()(task)

    def _hindsight(self, ctx: RunContext, ep, lr: float):
        """The oracle bound of a selecting algorithm: fine-tune from every candidate start, keep
        the best on the query set. Its cost is the sum over all candidates."""
        algo = ctx.algo
        assert isinstance(algo, SelectsSource)  # checked before the run started
        results = {}
        for source in algo.candidate_sources():
            with algo.forcing_source(source):
                results[source] = self._finetune(ctx, ep, lr, "shared")
        metric = dataset_metric(ep.dataset)
        best = max(results, key=lambda s: metric.oriented(results[s].curve[-1][1]))
        total = Measurement()
        for r in results.values():
            total = total.plus(r.measurement)
        info = {"source": best, "final_metric": {s: float(r.curve[-1][1]) for s, r in results.items()}}
        return recipes.RecipeResult(results[best].curve, total, results[best].steps), info

    def _test_task(self, ctx: RunContext, ep, lr: float, baseline_target: float | None) -> dict:
        cfg = self.config
        if cfg.eval_mode == "hindsight":
            result, info = self._hindsight(ctx, ep, lr)
        else:
            result = self._finetune(ctx, ep, lr, cfg.eval_mode)
            info = ctx.algo.adaptation_info()
        steps, measurement = result.steps, result.measurement
        steps_k, metrics, seconds, em = zip(*result.curve)
        final = metrics[-1]
        if cfg.target == "baseline" and cfg.algo == "baseline":
            baseline_target = final  # the baseline's own final metric is the target by definition
        metric = dataset_metric(ep.dataset)
        if baseline_target is not None:
            target, source = baseline_target, "baseline"
        elif metric.higher_is_better:
            target, source = cfg.target_fraction * max(metrics), "best"
        else:  # lower is better (a loss, an error rate): within 1/fraction of the best
            target, source = min(metrics) / cfg.target_fraction, "best"
        reached = next((i for i, m in enumerate(metrics)
                        if metric.oriented(m) >= metric.oriented(target) - 1e-12), None)
        return {
            "task_index": ep.index, "task_id": ep.task_id, "dataset": ep.dataset, "task_type": ep.task_type,
            "metric_name": metric.name,
            "metric": float(final), "metric_at_0": float(metrics[0]),
            "exact_match": None if em[-1] is None else float(em[-1]),
            "finetune_lr": float(lr) if cfg.eval_mode != "own" and recipes.get_recipe(cfg.recipe).uses_lr else None,
            "adapt_info": json.dumps(info, sort_keys=True) if info else None,
            "ft_steps": steps, **_ft_columns(measurement),
            "head_seconds": result.head.seconds, "head_flops": result.head.flops,
            "curve_steps": list(steps_k), "curve_metric": [float(m) for m in metrics],
            "curve_seconds": [float(s) for s in seconds],
            "target": float(target), "target_source": source,
            "steps_to_target": None if reached is None else int(steps_k[reached]),
            "seconds_to_target": None if reached is None else float(seconds[reached]),
        }

    # ------------------------------------------------------------------ validation
    def _select_lrs(self, ctx: RunContext):
        """Stage 4: the fine-tuning lr per task type, chosen on validation tasks from the grid by the
        mean final validation metric ({}, None, zero cost when there is nothing to choose)."""
        cfg, folder, episodes = self.config, ctx.folder, ctx.episodes
        grid = cfg.lr_grid()
        if len(grid) == 1:
            return {t: grid[0] for t in task_type_names()}, None, Measurement()
        if len(grid) < 2 or cfg.eval_mode == "own":
            return {}, None, Measurement()
        saved = folder.path / "selection.json"
        if self.resume and saved.is_file():
            state = json.loads(saved.read_text())
            return state["chosen"], state, Measurement(**state["cost"])
        need = {ep.task_type for ep in episodes["meta-test"]}
        val = [ep for ep in episodes["meta-val"] if ep.task_type in need]
        scores: dict[str, dict[str, list[float]]] = {}
        cost = Measurement()
        bar = _bar(len(val) * len(grid), f"select lr {cfg.algo}", self.progress, unit="task")
        try:
            for lr in grid:
                for ep in val:
                    r = self._finetune(ctx, ep, lr, "shared")
                    scores.setdefault(ep.task_type, {}).setdefault(repr(lr), []).append(r.curve[-1][1])
                    cost = cost.plus(r.measurement)
                    bar.update(1)
        except NonFiniteLossError:
            raise RunFailed(f"{folder.run_id}: a validation fine-tuning diverged; drop the largest learning rate "
                            f"from its learning-rate grid ({cfg.lr_grid_setting()})") from None
        finally:
            bar.close()
        means = {t: {lr: float(np.mean(v)) for lr, v in by_lr.items()} for t, by_lr in scores.items()}
        chosen = {t: float(max(by_lr, key=lambda lr: (by_lr[lr], -float(lr)))) for t, by_lr in means.items()}
        state = {"grid": grid, "validation_tasks": {t: sum(1 for e in val if e.task_type == t) for t in means},
                 "mean_final_metric": means, "chosen": chosen,
                 "fallback": {t: cfg.finetune_lr for t in need - set(chosen)}, "cost": cost.to_dict()}
        if self.rank == 0:
            atomic_write_json(saved, state)
        return chosen, state, cost

    def _baseline_targets(self, common: dict) -> dict[int, float]:
        """Final baseline metric per task index from runs of the same model and episodes in ``out``."""
        targets: dict[int, float] = {}
        for path in sorted(self.out.glob("baseline-*/manifest.json")):
            tasks = RunFolder(self.out, path.parent.name).read_tasks()
            same = tasks[(tasks["model"] == common["model"]) &
                         (tasks["episodes_fingerprint"] == common["episodes_fingerprint"])]
            targets.update({int(i): float(m) for i, m in zip(same["task_index"], same["metric"])})
        return targets


def check_ways(bench) -> None:
    """``ways`` caps at a dataset's classes (2-class SST-2 beside 5-class Yelp in one protocol), but
    a ``ways`` above every dataset's count would be recorded as a shape no task has (and such a
    run would never pair with its twin written with the real number)."""
    names = dict.fromkeys(bench.meta_test_datasets + bench.meta_train_datasets)
    classes = {n: get_dataset_spec(n).num_labels for n in names if get_dataset_spec(n).task_type == "classification"}
    shape = bench.shapes.get("classification")
    if classes and shape is not None and shape.ways > max(classes.values()):
        most = max(classes, key=lambda name: classes[name])
        raise SuiteError(f"shapes.classification.ways is {shape.ways} but no dataset of this benchmark has that many "
                         f"classes (the most: {classes[most]}, {most}); use ways <= {classes[most]}")


def check_resumable(previous: dict, manifest, path: Location) -> None:
    """A resume continues the run it started: the same episodes from the same data. Anything else
    would mix rows of two samples under one run id, so it is refused before anything is written."""
    before, now = previous.get("episodes_fingerprint"), manifest.fingerprint
    if before is not None and before != now:
        old_data, new_data = previous.get("data_fingerprints", {}), manifest.data
        changed = sorted(k for k in set(old_data) | set(new_data) if old_data.get(k) != new_data.get(k))
        why = f"data changed: {', '.join(changed)}" if changed else "the episodes differ"
        raise SuiteError(f"cannot resume {path}: it was started on other episodes ({why}; episodes fingerprint "
                         f"{before}, now {now}); resume with the data it started on (its manifest names the "
                         f"data_dir), or start again with --overwrite")


def protocol_fingerprint(cfg: RunConfig, bench) -> str:
    """What must match for two rows to be a fair pair: benchmark (with version) and its tasks'
    shapes, budgets, the learning-rate grid, the evaluation schedule, max length and what is
    trained. The seed and task index pair rows; the algorithm, its evaluation mode and its
    chosen lr belong to the candidate, not to this key."""
    key = {"benchmark": bench.to_dict(), "budgets": cfg.budgets, "ft_steps": cfg.ft_steps,
           "finetune_epochs": cfg.finetune_epochs if not (cfg.ft_steps or cfg.budgets) else None,
           "grid": sorted(set(cfg.finetune_lr_grid)) or [cfg.finetune_lr], "schedule": cfg.curve_points,
           "max_length": cfg.max_length, "stride": cfg.stride, "batch_size": cfg.batch_size,
           "evaluate_on": cfg.evaluate_on,
           "trainable": {"freeze_embeddings": cfg.freeze_embeddings, "pooling": cfg.pooling,
                         "head_init": cfg.head_init}}
    if cfg.peft != "none":  # only then, so fingerprints of full fine-tuning stay what they were
        key["trainable"]["adapters"] = cfg.adapter_settings().describe()
    if cfg.precision != "fp32":  # likewise: fp32 rows keep their fingerprints, bf16 rows never pair with them
        key["precision"] = cfg.precision
    if cfg.recipe != DEFAULT_RECIPE:  # and so are finetune rows; another recipe is another protocol
        key["recipe"] = {"name": cfg.recipe}
        if cfg.recipe == "setfit":  # its budget follows the pairs, its grid is its own
            key["recipe"].update(iterations=cfg.setfit_iterations, grid=sorted(set(cfg.setfit_lr_grid)))
        elif cfg.recipe in ADAPTER_RECIPES:  # its own budget, grid and adapters
            key["recipe"].update(steps=cfg.adapter_steps, grid=sorted(cfg.lr_grid()),
                                 adapters=cfg.recipe_adapter_settings().describe())
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _ft_columns(m: Measurement) -> dict:
    return {"ft_seconds": m.wall_seconds, "ft_cpu_seconds": m.cpu_seconds, "ft_gpu_seconds": m.gpu_seconds,
            "ft_gpu_hours": m.gpu_hours, "ft_peak_rss_mb": m.peak_rss_mb, "ft_peak_cuda_mb": m.peak_cuda_mb,
            "ft_tokens": m.tokens, "ft_flops": m.flops}


def dataset_metric(dataset: str) -> Metric:
    """The registered metric a dataset's spec names (checked before a run starts)."""
    return get_metric(get_dataset_spec(dataset).metric)


def _oom_message(where: str) -> str:
    return (f"out of memory during {where}; lower --batch-size or --max-length, add --gradient-checkpointing "
            f"or --freeze-embeddings, or use a first-order algorithm (fomaml, reptile)")


def _bar(total: int, desc: str, enabled: bool, unit: str):
    from tqdm.auto import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled and total else True, leave=True,
                dynamic_ncols=True)
