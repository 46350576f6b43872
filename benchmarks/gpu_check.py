"""The checks to run whenever a CUDA machine is at hand (about 8 minutes on one H100/H200).

1. Step time and peak CUDA memory at the paper preset's shapes (a randomly initialised
   bert-base-sized encoder, batch 16 x length 128): a plain fine-tuning step, a reptile meta-step,
   second-order MAML unrolled and with checkpointed inner steps (5 inner steps each), fp32 and bf16.
2. Tasks per hour of the shared recipe on MiniLM, fp32 against bf16 (`bench_throughput.py`).
3. One DeepSpeed ZeRO-2 bf16 run (fomaml, quick preset, 4 meta-test tasks).
4. The quick study (baseline and reptile) on the GPU, with its verdicts.
5. The two pilots of fine-tuning several tasks at once (docs/findings/2026-12-vmap-pilot.md), at 8
   tasks: stacked weights under `vmap`, and LoRA tasks batched over the shared frozen backbone.
   Both were slower than one task at a time on 2 CPU cores; on a GPU they decide whether the
   runner should batch tasks.

    python benchmarks/gpu_check.py --device cuda            # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --smoke     # the same code paths, tiny, on a CPU

Nothing in CI runs this: the README keeps its last output with the date and hardware.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
SUITE = str(Path(sys.executable).parent / "suite")


def step_table(device: str, smoke: bool) -> list[list[str]]:
    import torch
    from transformers import BertConfig, BertModel

    from metaft.algorithms import Episode, get_algorithm
    from metaft.algorithms.finetune import finetune
    from metaft.algorithms.transformer_learner import EpisodicTransformer, episode_loss

    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if smoke else \
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    length, batch, inner = (32, 4, 2) if smoke else (128, 16, 5)
    dev = torch.device(device)

    def episode(seed: int) -> Episode:
        g = torch.Generator().manual_seed(seed)

        def one():
            return {"input_ids": torch.randint(1000, 30000, (batch, length), generator=g).to(dev),
                    "attention_mask": torch.ones(batch, length, dtype=torch.long, device=dev),
                    "labels": (torch.arange(batch) % 4).to(dev), "task_type": "classification", "num_labels": 4}
        return Episode([one()], [one()])

    rows = []
    cases = [("plain fine-tuning step", None, {}), ("reptile meta-step", "reptile", {"inner_steps": inner}),
             ("maml, unrolled", "maml", {"inner_steps": inner}),
             ("maml, checkpoint_inner", "maml", {"inner_steps": inner, "checkpoint_inner": True})]
    for precision in ("fp32", "bf16"):
        for label, algo_name, kwargs in cases:
            torch.manual_seed(0)
            model = EpisodicTransformer(BertModel(BertConfig(vocab_size=30522, max_position_embeddings=512, **size)),
                                        precision=precision).to(dev)
            algo = get_algorithm(algo_name, meta_batch_size=1, **kwargs) if algo_name else None
            times = []
            for i in range(4):  # the first is warm-up (allocator, kernels, optimizer state)
                ep = episode(i)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t = time.perf_counter()
                if algo is None:
                    model.begin_episode(ep.support)
                    finetune(model, ep.support, episode_loss, 1, lr=5e-5,
                             params=model.meta_parameters() + model.episode_parameters())
                else:
                    algo.meta_train(model, [ep], episode_loss)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")
            rows.append([label, precision, f"{statistics.median(times[1:]):.3f}", f"{peak:.0f}"])
            del model, algo
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def run(cmd: list[str], timeout: int = 600) -> str:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
    return f"$ {' '.join(cmd)}\n(exit {proc.returncode}, {time.perf_counter() - t:.0f} s)\n" + "\n".join(tail)


def main() -> None:
    import torch

    from metaft.suite.table import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code paths, not the hardware")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: steps,throughput,deepspeed,quick,pilots")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    print(f"{time.strftime('%Y-%m-%d')}: {name}, torch {torch.__version__}, cuda {torch.version.cuda}", flush=True)
    if "steps" not in skip:
        print("\n== step time and peak memory at the paper preset's shapes" + (" (smoke sizes)" if args.smoke else ""))
        print(format_table(["what", "precision", "s per step", "peak CUDA MiB"], step_table(args.device, args.smoke),
                           "llrr"), flush=True)
    tasks = "2" if args.smoke else "16"
    if "throughput" not in skip:
        print("\n== tasks per hour, MiniLM, shared recipe")
        print(run([sys.executable, str(HERE / "bench_throughput.py"), "--tasks", tasks, "--device", args.device]),
              flush=True)
    with tempfile.TemporaryDirectory() as out:
        common = ["--preset", "quick", "--device", args.device, "--no-progress", "--out", out]
        if "deepspeed" not in skip and args.device.startswith("cuda"):
            print("\n== DeepSpeed ZeRO-2 bf16")
            print(run([SUITE, "run", "--algo", "fomaml", "--engine", "deepspeed", "--zero", "2", "--bf16",
                       "--precision", "fp32", "--meta-test-tasks", "4", *common]), flush=True)
        if "quick" not in skip:
            print("\n== the quick study")
            extra = ["--meta-test-tasks", "2", "--meta-train-tasks", "2"] if args.smoke else []
            for algo in ("baseline", "reptile"):
                print(run([SUITE, "run", "--algo", algo, *extra, *common]), flush=True)
            print(run([SUITE, "leaderboard", "compare", "--results", out]), flush=True)
    if "pilots" not in skip:
        print("\n== several tasks at once: the two pilots")
        size = ["--tasks", "2", "--steps", "1", "--repeats", "1", "--batch", "2", "--length", "16"] if args.smoke \
            else ["--tasks", "8", "--steps", "3", "--repeats", "2"]
        for pilot in ("pilot_vmap_finetune.py", "pilot_shared_base_lora.py"):
            print(run([sys.executable, str(HERE / pilot), *size, "--device", args.device]), flush=True)


if __name__ == "__main__":
    main()
