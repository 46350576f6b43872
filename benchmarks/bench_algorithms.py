"""Seconds and peak memory per meta-step of each algorithm against the same number of
plain fine-tuning steps on the same batches (MiniLM, a small BERT).

Each measurement runs in a fresh process (so peak RSS belongs to that work alone), the
plain and meta runs of one algorithm back to back, twice in alternating order; the
faster of the two is kept. Ratios are what to read; absolute seconds depend on the machine.
Targets: fomaml and reptile <= 1.10x plain; maml <= 3x fomaml at equal inner steps.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ALGOS = ["fomaml", "reptile", "maml", "anil", "metasgd", "multitask"]
INNER_STEPS = int(os.environ.get("BENCH_INNER_STEPS", "3"))
EXTRA_ARGS = json.loads(os.environ.get("BENCH_ALGO_ARGS", "{}"))  # e.g. {"checkpoint_inner": true}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def minilm_episodes(n: int):
    """(the packaged MiniLM, ``n`` 4-way 4-shot AG News episodes: one support batch of 16 x 64
    tokens, one query batch), seeded; shared by the benchmarks that time MiniLM meta-steps."""
    import torch

    from metaft.algorithms import Episode
    from metaft.suite.models import load_backbone
    from metaft.tasks import EncodingSettings, EpisodeEncoder, EpisodeShape, iter_episodes, make_benchmark

    torch.manual_seed(0)
    lm = load_backbone("minilm")
    enc = EpisodeEncoder(lm.tokenizer, EncodingSettings(64, 16))
    bench = make_benchmark("in-dataset", datasets=["ag_news"], n_meta_train=n, n_meta_test=1,
                           shapes={"classification": EpisodeShape(4, 4, 4)})
    return lm, [Episode(enc.batches("classification", e.support, 4, 16), enc.batches("classification", e.query, 4, 16))
                for e in iter_episodes(bench, 0, "meta-train")]


def worker(algo_name: str, mode: str, repeats: int, peft: str = "none") -> dict:
    from metaft.algorithms import get_algorithm
    from metaft.algorithms.finetune import finetune
    from metaft.algorithms.transformer_learner import EpisodicTransformer, episode_loss

    lm, eps = minilm_episodes(repeats + 1)
    from metaft.suite.adapters import AdapterSettings, add_adapters

    model = EpisodicTransformer(add_adapters(lm.backbone, AdapterSettings(peft)))
    kwargs = dict(lr=1e-4, meta_batch_size=1) if algo_name == "multitask" else \
        dict(inner_steps=INNER_STEPS, meta_batch_size=1, **EXTRA_ARGS)
    algo = get_algorithm(algo_name, **kwargs)

    def plain_batches(ep):  # what the meta-step computes gradients on, as plain steps
        if algo_name == "reptile":
            return [ep.support[0]] * INNER_STEPS
        if algo_name == "multitask":
            return ep.support + ep.query
        return [ep.support[0]] * INNER_STEPS + ep.query

    def run(ep):
        if mode == "plain":
            model.begin_episode(ep.support)
            batches = plain_batches(ep)
            finetune(model, batches, episode_loss, len(batches), lr=1e-4,
                     params=model.meta_parameters() + model.episode_parameters())
        else:
            algo.meta_train(model, [ep], episode_loss)

    run(eps[0])  # warm-up: allocator, kernels, optimizer state
    base_rss = _rss_mb()
    times = []
    for ep in eps[1:]:
        t = time.perf_counter()
        run(ep)
        times.append(time.perf_counter() - t)
    return {"seconds": min(times), "peak_rss_mb": _rss_mb(), "rss_growth_mb": _rss_mb() - base_rss,
            "steps": len(plain_batches(eps[0]))}


def measure(algo: str, mode: str, repeats: int, peft: str = "none") -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", algo, mode, str(repeats), peft], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from metaft.suite.table import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=4, metavar=("ALGO", "MODE", "REPEATS", "PEFT"), help=argparse.SUPPRESS)
    parser.add_argument("--algos", default=",".join(ALGOS))
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]), args.worker[3])))
        return
    results = {}
    for algo in args.algos.split(","):
        runs = {"plain": [], "meta": []}
        for order in (("plain", "meta"), ("meta", "plain")):
            for mode in order:
                runs[mode].append(measure(algo, mode, args.repeats))
        results[algo] = {m: min(r, key=lambda x: x["seconds"]) | {"peak_rss_mb": max(x["peak_rss_mb"] for x in r)}
                         for m, r in runs.items()}
    rows = []
    for algo, r in results.items():
        p, m = r["plain"], r["meta"]
        rows.append([algo, p["steps"], f"{m['seconds']:.2f}", f"{p['seconds']:.2f}", f"{m['seconds'] / p['seconds']:.2f}x",
                     f"{m['peak_rss_mb']:.0f}", f"{p['peak_rss_mb']:.0f}", f"{m['peak_rss_mb'] / p['peak_rss_mb']:.2f}x"])
    print(format_table(["algorithm", "plain steps", "meta-step s", "plain s", "time ratio", "meta peak MB",
                        "plain peak MB", "memory ratio"], rows, "lrrrrrrr"))
    if "maml" in results and "fomaml" in results:
        ratio = results["maml"]["meta"]["seconds"] / results["fomaml"]["meta"]["seconds"]
        mem = results["maml"]["meta"]["peak_rss_mb"] / results["fomaml"]["meta"]["peak_rss_mb"]
        print(f"\nmaml / fomaml at {INNER_STEPS} inner steps: time {ratio:.2f}x, peak memory {mem:.2f}x")
    print("targets: fomaml, reptile <= 1.10x plain; maml <= 3x fomaml")


if __name__ == "__main__":
    main()
