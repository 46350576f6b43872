"""Adam's three CPU kernels (for-loop, foreach, fused) on the packaged MiniLM's parameter shapes:
milliseconds per step and whether the weights stay bit-identical to the for-loop kernel's.

The same random gradients go into each kernel, the kernels alternate step by step, the first step
of each is not timed, and the time to make the gradients is subtracted. It decided the suite's Adam
(docs/findings/2026-12-fused-adam.md).

    python benchmarks/bench_adam_kernels.py            # torch's default thread count
    OMP_NUM_THREADS=1 python benchmarks/bench_adam_kernels.py
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

KERNELS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    import torch

    from metaft.suite.models import load_backbone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--model", default="minilm")
    args = parser.parse_args()
    shapes = [p.shape for p in load_backbone(args.model).backbone.parameters()]

    def gradients(step: int, params) -> None:
        g = torch.Generator().manual_seed(100 + step)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * 1e-2

    runs = {}
    for name, kw in KERNELS.items():
        g = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.05) for s in shapes]
        runs[name] = (params, torch.optim.Adam(params, lr=3e-5, **kw))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    making: list[float] = []
    for step in range(args.steps):
        for name, (params, opt) in runs.items():
            start = time.perf_counter()
            gradients(step, params)
            made = time.perf_counter()
            opt.step()
            if step:
                seconds[name].append(time.perf_counter() - start)
                making.append(made - start)
    make_s = sorted(making)[len(making) // 2]
    reference = runs["for-loop"][0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {sum(p.numel() for p in reference)} "
          f"parameters, {args.steps} steps (the first untimed)")
    print(f"{'kernel':9} {'ms/step':>8}  {'vs for-loop':>11}  bit-identical  max |diff|")
    base = sorted(seconds["for-loop"])[len(seconds["for-loop"]) // 2] - make_s
    for name, (params, _) in runs.items():
        ms = sorted(seconds[name])[len(seconds[name]) // 2] - make_s
        with torch.no_grad():
            same = all(torch.equal(a, b) for a, b in zip(reference, params))
            diff = max(float((a - b).abs().max()) for a, b in zip(reference, params))
        print(f"{name:9} {ms * 1e3:8.1f}  {base / ms:10.2f}x  {str(same):>13}  {diff:.1e}")


if __name__ == "__main__":
    main()
