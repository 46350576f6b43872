"""Memory-efficient second-order MAML: peak memory and time of a MAML meta-step with and without
the checkpointed inner loop, against plain fine-tuning on the same batches (MiniLM, 5 inner
steps; and with LoRA adapters). Built on bench_algorithms' worker (fresh process per cell,
alternated twice, faster time and larger peak kept). Targets: checkpointed second-order MAML at
5 inner steps <= 2x the peak memory of plain fine-tuning; with LoRA, <= 1.5x of full plain.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["BENCH_INNER_STEPS"] = os.environ.get("BENCH_INNER_STEPS", "5")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def cell(mode: str, peft: str, checkpoint: bool) -> dict:
    os.environ["BENCH_ALGO_ARGS"] = json.dumps({"checkpoint_inner": True} if checkpoint else {})
    from bench_algorithms import measure

    runs = [measure("maml", mode, 3, peft) for _ in range(2)]
    return min(runs, key=lambda r: r["seconds"]) | {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def main() -> None:
    from metaft.suite.table import format_table

    steps = int(os.environ["BENCH_INNER_STEPS"])
    plain = cell("plain", "none", False)
    rows, cells = [], {}
    for peft in ("none", "lora"):
        for checkpoint in (False, True):
            cells[(peft, checkpoint)] = c = cell("meta", peft, checkpoint)
            rows.append([f"maml, {peft if peft != 'none' else 'full'}, {'checkpointed' if checkpoint else 'unrolled'}",
                         f"{c['seconds']:.2f}", f"{c['peak_rss_mb']:.0f}", f"{c['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x"])
    rows.insert(0, [f"plain fine-tuning, full ({plain['steps']} steps)", f"{plain['seconds']:.2f}",
                    f"{plain['peak_rss_mb']:.0f}", "1.00x"])
    print(format_table(["work", "seconds", "peak RSS MB", "memory / plain"], rows, "lrrr"))
    full, ckpt = cells[("none", False)], cells[("none", True)]
    print(f"\ncheckpointed / unrolled at {steps} inner steps: time {ckpt['seconds'] / full['seconds']:.2f}x, "
          f"peak memory {ckpt['peak_rss_mb'] / full['peak_rss_mb']:.2f}x")
    print(f"targets: checkpointed maml <= 2x plain peak memory "
          f"({ckpt['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x); with LoRA <= 1.5x "
          f"({cells[('lora', True)]['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x)")


if __name__ == "__main__":
    main()
