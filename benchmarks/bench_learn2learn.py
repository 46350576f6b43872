"""This suite's MAML against learn2learn 0.2.0's, side by side on the same model, batches and seeds.

Workloads (the numbers of issue #15):
  sinusoid  Finn et al. 2017: MLP 1-40-40-1, K=10 support points, one inner SGD step at 0.01, outer
            Adam 1e-3, meta-batch 25; `--iterations` meta-steps (2000 in the paper protocol).
            Paths: learn2learn MAML (second order), this suite's `maml` task by task, and with
            `batched_tasks=True` (the meta-batch's inner loops under torch.func.vmap).
  minilm    the packaged MiniLM encoder, 4-way 4-shot AG News (one support batch of 16 x 64
            tokens), 5 inner SGD steps at 1e-3 + the query pass, second order: s per meta-step and
            peak RSS. (Batching does not apply: every episode builds its own prototype head.)

Every cell runs in a fresh process, twice in alternating order; the faster time (and larger peak)
is kept. learn2learn's three pure-Python files come from its source distribution, downloaded from
PyPI on first use (benchmarks/learn2learn_source.py). Numerics: the final weights of each suite
path against learn2learn's after the same meta-steps (max abs difference; float32, so sums in
another order differ in the last bits) and the post-adaptation MSE on 100 unseen tasks.

    python benchmarks/bench_learn2learn.py [--iterations 2000] [--workloads sinusoid,minilm]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the sinusoid task of the test suite
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
META_BATCH = 25


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sinusoid_worker(path: str, iterations: int, out: str) -> dict:
    import torch
    from sinusoid import episodes, mlp, mse, post_adaptation_loss

    from metaft.algorithms import get_algorithm

    tasks = list(episodes(iterations * META_BATCH, seed=0))
    model = mlp(0)
    algo = get_algorithm("maml", inner_lr=0.01, inner_steps=1, outer_lr=1e-3, meta_batch_size=META_BATCH,
                         batched_tasks=path == "suite-batched")
    if path == "learn2learn":
        from learn2learn_source import load_learn2learn

        maml = load_learn2learn().algorithms.MAML(model, lr=0.01, first_order=False)
        opt = torch.optim.Adam(maml.parameters(), 1e-3)
        start = time.perf_counter()
        for it in range(iterations):
            opt.zero_grad()
            for ep in tasks[it * META_BATCH:(it + 1) * META_BATCH]:
                learner = maml.clone()
                learner.adapt(mse(learner, ep.support))
                (mse(learner, ep.query) / META_BATCH).backward()
            opt.step()
    else:
        outer = algo.make_outer_step(model)  # the optimizer is built before the clock starts, as above
        start = time.perf_counter()
        algo.meta_train(model, tasks, mse, engine=outer)
    seconds = time.perf_counter() - start
    torch.save(model.state_dict(), out)
    return {"seconds": seconds, "post_mse": post_adaptation_loss(algo, model, steps=1, lr=0.01)}


def minilm_worker(path: str, repeats: int) -> dict:
    import torch
    from bench_algorithms import minilm_episodes

    from metaft.algorithms import get_algorithm
    from metaft.algorithms.transformer_learner import EpisodicTransformer, episode_loss

    lm, eps = minilm_episodes(repeats + 1)
    model = EpisodicTransformer(lm.backbone)
    algo = get_algorithm("maml", inner_lr=1e-3, inner_steps=5, outer_lr=1e-4, meta_batch_size=1)
    if path == "learn2learn":
        from learn2learn_source import load_learn2learn

        maml = load_learn2learn().algorithms.MAML(model, lr=1e-3, first_order=False, allow_unused=True)
        opt = torch.optim.Adam(model.meta_parameters(), 1e-4)

        def step(ep):
            opt.zero_grad()
            model.begin_episode(ep.support)
            learner = maml.clone()
            for k in range(5):
                learner.adapt(episode_loss(learner.module, ep.support[k % len(ep.support)]))
            torch.stack([episode_loss(learner.module, b) for b in ep.query]).mean().backward()
            opt.step()
    else:
        def step(ep):
            algo.meta_train(model, [ep], episode_loss)
    step(eps[0])  # warm-up: allocator, kernels, optimizer state
    times = []
    for ep in eps[1:]:
        start = time.perf_counter()
        step(ep)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_rss_mb": _rss_mb()}


def _spawn(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _best(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["seconds"])
    return best | ({"peak_rss_mb": max(r["peak_rss_mb"] for r in runs)} if "peak_rss_mb" in best else {})


def sinusoid(iterations: int, tmp: Path) -> list[str]:
    import torch

    from metaft.suite.table import format_table

    paths = ("learn2learn", "suite", "suite-batched")
    runs: dict[str, list] = {p: [] for p in paths}
    for order in (paths, tuple(reversed(paths))):
        for p in order:
            runs[p].append(_spawn("sinusoid", p, str(iterations), str(tmp / f"{p}.pt")))
    cells = {p: _best(r) for p, r in runs.items()}
    ref = torch.load(tmp / "learn2learn.pt")
    rows = []
    for p in paths:
        weights = torch.load(tmp / f"{p}.pt")
        diff = max(float((weights[k] - ref[k]).abs().max()) for k in ref)
        c = cells[p]
        rows.append([p, f"{c['seconds']:.2f}", f"{iterations * META_BATCH / c['seconds']:.0f}",
                     f"{cells['learn2learn']['seconds'] / c['seconds']:.2f}x", f"{diff:.1e}", f"{c['post_mse']:.4f}"])
    lines = [f"sinusoid: {iterations} meta-steps x {META_BATCH} tasks, 1 inner step, second order",
             format_table(["path", "seconds", "tasks/s", "throughput vs l2l", "max |w - w_l2l|", "post-adapt MSE"],
                          rows, "lrrrrr")]
    seq = cells["learn2learn"]["seconds"] / cells["suite"]["seconds"]
    bat = cells["learn2learn"]["seconds"] / cells["suite-batched"]["seconds"]
    lines.append(f"targets: task by task at or below learn2learn's time ({'met' if seq >= 1 else 'NOT met'}: "
                 f"{seq:.2f}x its throughput); batched >= 1.5x learn2learn's throughput "
                 f"({'met' if bat >= 1.5 else 'NOT met'}: {bat:.2f}x)")
    return lines


def minilm(repeats: int) -> list[str]:
    from metaft.suite.table import format_table

    paths = ("learn2learn", "suite")
    runs: dict[str, list] = {p: [] for p in paths}
    for order in (paths, tuple(reversed(paths))):
        for p in order:
            runs[p].append(_spawn("minilm", p, str(repeats)))
    cells = {p: _best(r) for p, r in runs.items()}
    rows = [[p, f"{c['seconds']:.2f}", f"{c['peak_rss_mb']:.0f}",
             f"{c['seconds'] / cells['learn2learn']['seconds']:.2f}x"] for p, c in cells.items()]
    ratio = cells["suite"]["seconds"] / cells["learn2learn"]["seconds"]
    return ["MiniLM: 4-way 4-shot AG News, batch 16 x 64, 5 inner SGD steps at 1e-3, second order, per meta-step",
            format_table(["path", "s per meta-step", "peak RSS MB", "time vs l2l"], rows, "lrrr"),
            f"target: at or below learn2learn's time ({'met' if ratio <= 1 else 'NOT met'}: {ratio:.2f}x)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="sinusoid meta-steps")
    parser.add_argument("--repeats", type=int, default=3, help="MiniLM meta-steps timed (after one warm-up)")
    parser.add_argument("--workloads", default="sinusoid,minilm")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", args.threads)))
    if args.worker:
        kind, path, *rest = args.worker
        result = sinusoid_worker(path, int(rest[0]), rest[1]) if kind == "sinusoid" else minilm_worker(path, int(rest[0]))
        print(json.dumps(result))
        return
    import tempfile

    os.environ["BENCH_THREADS"] = str(args.threads)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s) per worker")
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.workloads.split(","):
            lines = sinusoid(args.iterations, Path(tmp)) if workload == "sinusoid" else minilm(args.repeats)
            print("\n" + "\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
