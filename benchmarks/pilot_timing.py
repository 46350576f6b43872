"""What the two batching pilots share (pilot_vmap_finetune.py, pilot_shared_base_lora.py): their
size options, a clock that waits for CUDA, and the alternating comparison of k tasks one after the
other against k tasks at once, printed as milliseconds per task-step and a ratio."""
from __future__ import annotations

import argparse
import time
from typing import Callable


def pilot_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu_check.py runs it there)")
    return parser


def clock(device) -> float:
    """Seconds, once the work queued on a CUDA device has finished (CUDA runs asynchronously)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter()


def compare(args: argparse.Namespace, device, tasks_name: str, batched_name: str,
            sequential: Callable[[str], float], batched: Callable[[str], float]) -> None:
    """A header line (versions, device, sizes), then per precision: one untimed call of each (allocation and dispatch warm-up), then ``repeats``
    alternating timed calls; each returns seconds per task-step. bf16 is skipped where the device
    lacks it natively (emulated bf16 is several times slower than fp32: nothing to learn from it)."""
    import torch

    from metaft.algorithms.transformer_learner import bf16_support

    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads; {args.tasks} {tasks_name}, "
          f"{args.steps} steps, batch {args.batch} x {args.length} tokens per task, {args.repeats} alternating repeats")
    for precision in args.precisions.split(","):
        missing = bf16_support(device) if precision == "bf16" else None
        if missing:
            print(f"bf16: skipped, {missing}")
            continue
        try:
            sequential(precision), batched(precision)
        except RuntimeError as exc:
            print(f"{precision}: the {batched_name} step fails here: {str(exc).splitlines()[0]}")
            continue
        seq, bat = [], []
        for _ in range(args.repeats):
            seq.append(sequential(precision))
            bat.append(batched(precision))
        s, b = sorted(seq)[len(seq) // 2], sorted(bat)[len(bat) // 2]
        print(f"{precision}: sequential {s * 1e3:.0f} ms per task-step, {batched_name} {b * 1e3:.0f} ms; "
              f"speed-up {s / b:.2f}x (runs: {[round(x * 1e3) for x in seq]} vs {[round(x * 1e3) for x in bat]})")
