"""DeepSpeed as the update engine of `suite run --engine deepspeed`.

The suite's algorithms call ``zero_grad / backward / step`` on whatever applies an update
(:class:`algorithms.outer.OuterStep`); :class:`DeepSpeedStep` implements that with a
``deepspeed.initialize`` engine, so baseline and multitask fine-tuning and the outer update
of the first-order algorithms (fomaml, reptile) run through DeepSpeed (ZeRO 0-2, bf16/fp16,
offload). The engine owns the accumulation boundary (``managed_gradient_accumulation:
false``): a meta-batch's tasks call ``backward`` one by one and ``step`` applies them once.

On a machine without CUDA it uses the gloo backend and a torch optimizer handed to
DeepSpeed, so nothing is JIT-compiled and start-up takes seconds.

What is refused, and why:
* second-order MAML (and Meta-SGD, ANIL): their meta-gradient differentiates through the
  inner loop's gradients; DeepSpeed's ZeRO reduces/partitions gradients in backward hooks
  and keeps no graph through them. Use fomaml or reptile with DeepSpeed, or maml with
  ``--engine torch``;
* ZeRO-3 for the meta-learners: it partitions the parameters themselves, and the
  functional inner loop needs the full weights; ZeRO-3 serves the baseline's fine-tuning.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metaft.algorithms.outer import make_optimizer
from metaft.suite.foundation.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "deepspeed"
if not torch.cuda.is_available():  # say so before anything imports deepspeed, rather than have it warn
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
class DeepSpeedUnsupported(ConfigError):
    """The requested algorithm / ZeRO combination cannot run under DeepSpeed."""


@dataclass
class DeepSpeedSettings:
    zero: int = 2
    precision: str = "fp32"  # fp32, bf16 or fp16
    config_file: str | None = None

    def load(self) -> dict:
        path = Path(self.config_file) if self.config_file else CONFIG_DIR / f"zero{self.zero}.json"
        if not path.is_file():
            raise ConfigError(f"DeepSpeed config {path} does not exist; see {CONFIG_DIR} for examples")
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"DeepSpeed config {path} is not valid JSON: {exc}") from exc
        if not self.config_file:
            cfg["bf16"] = {"enabled": self.precision == "bf16"}
            cfg["fp16"] = {"enabled": self.precision == "fp16"}
        cfg.setdefault("train_micro_batch_size_per_gpu", 1)
        cfg.setdefault("gradient_accumulation_steps", 1)
        cfg["managed_gradient_accumulation"] = False  # meta_train and finetune own the boundary
        # DeepSpeed (0.19) clips gradients at norm 1.0 unless told otherwise; --engine torch does not clip,
        # and the two engines must apply the same update (measured: a Proto-head NER step's gradient
        # norm is ~40, so the default shrank DeepSpeed's step ~40x)
        cfg.setdefault("gradient_clipping", 0.0)
        cfg.setdefault("zero_force_ds_cpu_optimizer", False)
        cfg.setdefault("zero_allow_untested_optimizer", True)  # torch SGD for reptile interpolation
        return cfg

    @property
    def stage(self) -> int:
        return int(self.load().get("zero_optimization", {}).get("stage", 0))


def first_order_algorithms() -> list[str]:
    """Algorithms whose updates are ordinary backward passes (the class says so), plugins included."""
    from metaft.algorithms import algorithm_class, list_algorithms

    return [name for name in list_algorithms() if not algorithm_class(name).second_order]


def check_supported(algo: str, settings: DeepSpeedSettings, first_order: bool = False) -> None:
    """Decided by the algorithm class's capabilities (`second_order`, `supports_zero3`), so a plugin
    that declares itself first-order runs under DeepSpeed without any edit here."""
    from metaft.algorithms import algorithm_class, list_algorithms

    supported = first_order_algorithms()
    if algorithm_class(algo).second_order and not (algo == "maml" and first_order):
        if algo == "maml":
            raise DeepSpeedUnsupported(
                "second-order MAML cannot run under DeepSpeed: its meta-gradient differentiates through the inner "
                "loop's gradients, which ZeRO reduces in backward hooks without a graph; use --algo fomaml or "
                "reptile with --engine deepspeed, or maml with --engine torch")
        raise DeepSpeedUnsupported(f"{algo} is not supported with --engine deepspeed (it needs gradients through "
                                   f"the inner loop); supported: {', '.join(supported)}; or use --engine torch")
    if settings.stage == 3 and not algorithm_class(algo).supports_zero3:
        zero3 = [name for name in list_algorithms() if algorithm_class(name).supports_zero3]
        raise DeepSpeedUnsupported(f"ZeRO-3 partitions the weights that {algo}'s functional inner loop needs whole; "
                                   f"use --zero 2 (or 0/1) for {algo}; ZeRO-3 serves {', '.join(zero3)}")


_initialised = False


def ensure_distributed() -> None:
    """One-process defaults (or torchrun's/Ray Train's), gloo on CPU, no JIT-compiled ops."""
    global _initialised
    import logging

    import deepspeed

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING if logging.getLogger().level <= logging.INFO
                                            else logging.ERROR)

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if _initialised:
        return
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
            os.environ.setdefault(key, value)
        if "MASTER_PORT" not in os.environ:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        import atexit

        atexit.register(_shutdown)  # the group this process started; torch warns about leaks otherwise
    _initialised = True


def _shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class DeepSpeedStep:
    """An :class:`~algorithms.outer.OuterStep` backed by a DeepSpeed engine."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter], optimizer: str, lr: float, config: dict):
        import deepspeed

        ensure_distributed()
        cfg = copy.deepcopy(config)
        # DeepSpeed's default buckets hold 5e8 elements (GBs of buffers) whatever the model's size;
        # size them to the model unless the config says otherwise (measured: ZeRO-3 on a 7.7M-parameter
        # BERT peaked at 9.4 GB of CUDA memory with the defaults).
        n = sum(p.numel() for p in params)
        bucket = int(min(5e8, max(1e6, n)) + 511) // 512 * 512  # ZeRO wants a multiple of its alignment
        zero = cfg.setdefault("zero_optimization", {})
        for key in ("reduce_bucket_size", "allgather_bucket_size", "stage3_prefetch_bucket_size"):
            zero.setdefault(key, bucket)
        client_optimizer = None
        if "optimizer" not in cfg:  # a torch optimizer: same update rule as --engine torch, nothing to compile
            client_optimizer = make_optimizer(optimizer, params, lr)
        # deepspeed.initialize draws from torch's RNG; without the fork, the dropout masks of every later
        # step would differ from --engine torch's, so the two engines would not give the same numbers
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            self.engine, self.optimizer, _, _ = deepspeed.initialize(
                model=model, model_parameters=params if client_optimizer is None else None,
                optimizer=client_optimizer, config=cfg)

    def zero_grad(self) -> None:
        self.engine.zero_grad()

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        self.engine.step()


class DeepSpeedEngine:
    """What the runner plugs in: outer steps for meta-training, steps for fine-tuning."""

    name = "deepspeed"

    def __init__(self, settings: DeepSpeedSettings):
        self.settings = settings
        self.config = settings.load()

    def outer_step(self, model: nn.Module, algo) -> DeepSpeedStep:
        optimizer, lr = algo.outer_optimizer()
        return DeepSpeedStep(model, algo.outer_parameters(model), optimizer, lr, self.config)

    def finetune_step(self, model: nn.Module, params: list, lr: float, optimizer: str) -> DeepSpeedStep:
        return DeepSpeedStep(model, params, optimizer, lr, self.config)

    def describe(self) -> dict[str, Any]:
        return {"engine": "deepspeed", "zero_stage": self.settings.stage, "precision": self.settings.precision,
                "config": self.config}


def engine_from_config(config) -> DeepSpeedEngine:
    """Build the engine from a RunConfig's ``deepspeed`` table, after checking the algorithm."""
    options = dict(config.deepspeed)
    unknown = set(options) - {"zero", "precision", "config_file"}
    if unknown:
        raise ConfigError(f"unknown deepspeed option(s) {', '.join(sorted(unknown))}; valid: zero, precision, config_file")
    settings = DeepSpeedSettings(**options)
    if settings.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"deepspeed precision must be fp32, bf16 or fp16, got {settings.precision!r}")
    if settings.zero not in (0, 1, 2, 3):
        raise ConfigError(f"--zero must be 0, 1, 2 or 3, got {settings.zero}")
    check_supported(config.algo, settings, config.first_order)
    return DeepSpeedEngine(settings)
