"""Metering of one piece of work: wall, CPU and GPU seconds, peak memory, tokens, FLOPs.

* wall seconds: ``time.perf_counter``; on CUDA the device is synchronised at both ends,
  so queued kernels are counted where they ran;
* CPU seconds: ``time.process_time`` (all threads of this process);
* GPU seconds: wall seconds of the metered work while it ran on a GPU (0 on CPU);
  GPU-hours = GPU seconds x GPUs used / 3600;
* peak RSS: the largest resident set size sampled every 20 ms during the work;
* peak CUDA memory: ``torch.cuda.max_memory_allocated`` after a reset at the start;
* tokens: non-padding tokens of every batch passed to the training loss;
* FLOPs: FLOPs per training token (:mod:`suite.flops`: forward over every weight, backward
  through the layers it traverses) x training tokens. Evaluation is not metered;
  second-order MAML's extra backward-of-backward is not in the estimate (it under-counts MAML).

The meter can be paused so that evaluation inside fine-tuning does not count as
fine-tuning time.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import psutil
import torch


@dataclass
class Measurement:
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    gpu_hours: float = 0.0
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float = 0.0
    tokens: int = 0
    flops: float = 0.0

    def to_dict(self, prefix: str = "") -> dict:
        return {prefix + k: v for k, v in asdict(self).items()}

    def plus(self, other: "Measurement") -> "Measurement":
        """Two pieces of work one after the other: times, tokens and FLOPs add, peaks take the max."""
        a, b = asdict(self), asdict(other)
        peaks = ("peak_rss_mb", "peak_cuda_mb")
        return Measurement(**{k: max(a[k], b[k]) if k in peaks else a[k] + b[k] for k in a})


class _RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, self.process.memory_info().rss)
        return self.peak


class Meter:
    """``with Meter(device, trainable_params) as m: ...``; ``m.pause()`` excludes evaluation."""

    def __init__(self, device: torch.device | str = "cpu", flops_per_token: float = 0.0, num_gpus: int = 1):
        self.device = torch.device(device)
        self.on_gpu = self.device.type == "cuda"
        self.flops_per_token = flops_per_token  # may be set once the trained parameters are known
        self.num_gpus = num_gpus if self.on_gpu else 0
        self.tokens = 0
        self.result = Measurement()
        self._wall = self._cpu = 0.0
        self._paused_wall = self._paused_cpu = 0.0
        self._sampler: _RssSampler | None = None

    def _sync(self) -> None:
        if self.on_gpu:
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> "Meter":
        if self.on_gpu:
            torch.cuda.reset_peak_memory_stats(self.device)
        self._sampler = _RssSampler()
        self._sampler.start()
        self._sync()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        wall = time.perf_counter() - self._wall - self._paused_wall
        cpu = time.process_time() - self._cpu - self._paused_cpu
        peak = self._sampler.stop() if self._sampler else 0
        r = self.result
        r.wall_seconds, r.cpu_seconds = wall, cpu
        r.gpu_seconds = wall if self.on_gpu else 0.0
        r.gpu_hours = r.gpu_seconds * self.num_gpus / 3600
        r.peak_rss_mb = peak / 2**20
        r.peak_cuda_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.on_gpu else 0.0
        r.tokens = self.tokens
        r.flops = self.flops_per_token * self.tokens

    def elapsed(self) -> float:
        """Metered wall seconds so far (excluding pauses)."""
        self._sync()
        return time.perf_counter() - self._wall - self._paused_wall

    def pause(self) -> "_Pause":
        return _Pause(self)

    def count_loss(self, loss_fn):
        """Wrap a loss function so every training batch's tokens are counted."""
        def counted(model, batch):
            mask = batch.get("attention_mask") if isinstance(batch, dict) else None
            if mask is not None:
                self.tokens += int(mask.sum())
            return loss_fn(model, batch)
        return counted


class _Pause:
    def __init__(self, meter: Meter):
        self.meter = meter

    def __enter__(self):
        self.meter._sync()
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc):
        self.meter._sync()
        self.meter._paused_wall += time.perf_counter() - self._wall
        self.meter._paused_cpu += time.process_time() - self._cpu
