"""bf16 as a protocol setting: autocast in the encoder, fp32 everything else, never paired with fp32."""
from __future__ import annotations

import pytest
import torch
from suite_process import cli_many
from transformers import AutoModel

from metaft.algorithms import transformer_learner
from metaft.algorithms.transformer_learner import EpisodicTransformer, bf16_support, episode_loss
from metaft.suite.config import RunConfig
from metaft.suite.foundation.errors import SuiteError
from metaft.suite.results import load_results


def batch(n=4, length=12, labels=3):
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(5, 90, (n, length), generator=g), "attention_mask": torch.ones(n, length,
            dtype=torch.long), "labels": torch.arange(n) % labels, "task_type": "classification", "num_labels": labels}


@pytest.mark.skipif(bf16_support(torch.device("cpu")) is not None, reason="no native bf16 on this processor")
def test_bf16_runs_the_encoder_in_bf16_and_keeps_weights_and_grads_fp32(tiny_models):
    b = batch()
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]), precision=precision).eval()
        model.begin_episode([b])
        seen: list[torch.dtype] = []
        hook = model.backbone.encoder.layer[0].attention.self.query.register_forward_hook(
            lambda m, i, o, seen=seen: seen.append(o.dtype))
        loss = episode_loss(model, b)
        loss.backward()
        hook.remove()
        assert seen == [torch.bfloat16 if precision == "bf16" else torch.float32]
        assert loss.dtype == torch.float32
        assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
                   for p in model.parameters())
        losses[precision] = float(loss)
    assert losses["bf16"] == pytest.approx(losses["fp32"], abs=0.05)  # bf16 has 8 bits of mantissa


def test_bf16_without_native_support_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(transformer_learner, "_cpu_flags", lambda: {"avx2", "fma"})
    assert "avx512_bf16" in bf16_support(torch.device("cpu"))
    from metaft.suite.runner import Runner

    with pytest.raises(SuiteError, match="use --precision fp32"):
        Runner(RunConfig(algo="baseline", precision="bf16", device="cpu").validate())


def test_precision_enters_the_protocol_only_when_not_fp32():
    from metaft.suite.runner import protocol_fingerprint
    from metaft.tasks import make_benchmark

    bench = make_benchmark("cross-dataset")
    fp32, bf16 = RunConfig(), RunConfig(precision="bf16")
    assert fp32.fingerprint() != bf16.fingerprint()
    assert protocol_fingerprint(fp32, bench) != protocol_fingerprint(bf16, bench)
    legacy = fp32.to_dict()
    legacy.pop("precision")  # a config written before the setting existed has the same run id
    assert RunConfig(**legacy).fingerprint() == fp32.fingerprint()


@pytest.mark.skipif(bf16_support(torch.device("cpu")) is not None, reason="no native bf16 on this processor")
def test_bf16_and_fp32_rows_of_one_configuration_never_pair(tiny_models, tmp_path):
    from metaft.leaderboard.verdicts import verdicts

    config = tmp_path / "tiny.toml"
    config.write_text('datasets = ["sst2", "ag_news"]\nn_meta_train = 2\nn_meta_test = 4\nft_steps = 2\n'
                      'max_length = 32\nbatch_size = 8\nstride = 8\ninner_steps = 1\n'
                      '[shapes.classification]\nways = 2\nshots = 2\nqueries = 2\n')
    out = tmp_path / "r"
    got = cli_many([(f"{algo}-{precision}", f"run --algo {algo} --model {tiny_models['bert']} --config {config} "
                     f"--precision {precision} --out {out} --no-progress")
                    for algo in ("baseline", "reptile") for precision in ("fp32", "bf16")])
    assert all(code == 0 for code, _, _ in got.values()), got
    runs, tasks = load_results(out)
    assert sorted(runs["precision"]) == ["bf16", "bf16", "fp32", "fp32"]
    assert runs.groupby("precision")["protocol_fingerprint"].nunique().tolist() == [1, 1]
    assert runs["protocol_fingerprint"].nunique() == 2
    table = verdicts(tasks)
    assert sorted(table["n"].tolist()) == [4, 4]  # two comparisons of 4 pairs each, never 8
    assert any("(bf16)" in str(m) for m in table["model"])
