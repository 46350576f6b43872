"""`suite run --engine deepspeed` with the real engine on CPU (gloo, nothing compiled)."""
from __future__ import annotations

import os

import pytest
import torch
from suite_process import run_suite
from test_run import TINY

from metaft.suite.results import load_results


def run(tmp_path, model, *extra, extra_config: str = "", env: dict | None = None):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(extra_config + TINY.format(n_test=4, ft_steps=5))
    return run_suite("run", "--model", str(model), "--config", str(cfg), "--no-progress", *map(str, extra), env=env)


# Reptile's interpolation is SGD on (init - adapted): unlike Adam, whose normalised step turns
# rounding noise in near-zero gradients into full-size updates, it makes the two engines comparable.
INTERPOLATE = 'algorithm = { outer = "interpolate", epsilon = 0.5 }\n'


def test_zero2_run_writes_rows_and_applies_the_same_updates_as_torch(tiny_models, tmp_path):
    ds = run(tmp_path, tiny_models["bert"], "--algo", "reptile", "--engine", "deepspeed", "--zero", "2",
             "--out", str(tmp_path / "ds"), "--keep-init", "--inner-lr", "0.05", extra_config=INTERPOLATE)
    assert ds.returncode == 0, ds.stderr
    assert "WARNING" not in ds.stderr
    ref = run(tmp_path, tiny_models["bert"], "--algo", "reptile", "--out", str(tmp_path / "torch"), "--keep-init",
              "--inner-lr", "0.05", "--precision", "fp32", extra_config=INTERPOLATE)  # DeepSpeed runs fp32 here
    assert ref.returncode == 0, ref.stderr
    runs, tasks = load_results(tmp_path / "ds")
    assert len(tasks) == 4 and tasks["metric"].between(0, 1).all() and runs["engine"].iloc[0] == "deepspeed"
    a = torch.load(next((tmp_path / "ds").glob("*/init.pt")), weights_only=False)["model"]
    b = torch.load(next((tmp_path / "torch").glob("*/init.pt")), weights_only=False)["model"]
    changed = 0
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_models["bert"]).state_dict()
    for k, v in pretrained.items():
        changed += not torch.allclose(a[f"backbone.{k}"], v)
    assert changed > 10  # DeepSpeed really applied the meta-updates
    _, t2 = load_results(tmp_path / "torch")
    assert tasks["metric"].tolist() == t2["metric"].tolist()


def test_zero3_serves_the_baseline(tiny_models, tmp_path):
    out = run(tmp_path, tiny_models["bert"], "--algo", "baseline", "--engine", "deepspeed", "--zero", "3",
              "--out", str(tmp_path / "z3"))
    assert out.returncode == 0, out.stderr
    assert len(load_results(tmp_path / "z3")[1]) == 4


def test_unsupported_combinations_are_refused_with_the_reason(tiny_models, tmp_path):
    out = run(tmp_path, tiny_models["bert"], "--algo", "maml", "--engine", "deepspeed", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "second-order MAML cannot run under DeepSpeed" in out.stderr
    assert "use --algo fomaml or reptile" in out.stderr and not (tmp_path / "x").exists()
    out = run(tmp_path, tiny_models["bert"], "--algo", "reptile", "--engine", "deepspeed", "--zero", "3",
              "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "ZeRO-3" in out.stderr


def test_a_first_order_plugin_runs_under_deepspeed_without_an_edit_to_the_suite(tiny_models, tmp_path):
    """The plugin (an entry point in a pip-installed test package) declares nothing but the base
    class's default, first order; the engine reads that from the class, not from a list of names."""
    from test_algorithms_contract import install_plugin

    env = {**os.environ, "PYTHONPATH": str(install_plugin(tmp_path))}
    out = run(tmp_path, tiny_models["bert"], "--algo", "sgd_twice", "--engine", "deepspeed", "--zero", "2",
              "--out", str(tmp_path / "p"), env=env)
    assert out.returncode == 0, out.stderr
    runs, tasks = load_results(tmp_path / "p")
    assert runs["algo"].iloc[0] == "sgd_twice" and runs["engine"].iloc[0] == "deepspeed" and len(tasks) == 4
    assert runs["meta_steps"].iloc[0] > 0  # it really meta-trained through the engine
    out = run(tmp_path, tiny_models["bert"], "--algo", "sgd_twice", "--engine", "deepspeed", "--zero", "3",
              "--out", str(tmp_path / "z3"), env=env)
    assert out.returncode == 2 and "ZeRO-3 serves baseline" in out.stderr


@pytest.fixture
def restored_environment():
    """The in-process group sets MASTER_PORT and friends; later tests' subprocesses must not
    inherit its port, which this process's store keeps listening on."""
    before = dict(os.environ)
    yield
    for key in set(os.environ) - set(before):
        del os.environ[key]


def test_buckets_sized_to_the_model_respect_zero_alignment(restored_environment):
    """Buckets follow the model's size (DeepSpeed's 5e8 default wasted GBs on small models, seen on
    an H100) and stay a multiple of ZeRO's alignment for any parameter count."""
    from metaft.cluster.deepspeed_engine import DeepSpeedSettings, DeepSpeedStep

    model = torch.nn.Embedding(1_000_003, 1)  # an odd number of parameters, above the 1e6 floor
    step = DeepSpeedStep(model, list(model.parameters()), "sgd", 0.1, DeepSpeedSettings(zero=2).load())
    before = model.weight.detach().clone()
    step.zero_grad()
    step.backward(model(torch.tensor([[3, 5]])).sum())
    step.step()
    assert step.engine.zero_optimization_stage() == 2
    assert not torch.equal(before, model.weight.detach())


def test_merge_fine_tunes_each_source_through_deepspeed_like_torch(tiny_models, tmp_path):
    """merge's meta-training is plain fine-tuning per source: each copy gets its own engine."""
    # SGD: Adam's normalised first step turns rounding noise in near-zero gradients into full-size
    # updates, which would make the engines differ in elements that carry no signal
    common = ("--algo", "merge", "--keep-init", "--algo-arg", "source_lr=0.05", "--algo-arg", "source_optimizer=sgd")
    ds = run(tmp_path, tiny_models["bert"], *common, "--engine", "deepspeed", "--zero", "2", "--out", str(tmp_path / "ds"))
    assert ds.returncode == 0, ds.stderr
    ref = run(tmp_path, tiny_models["bert"], *common, "--precision", "fp32", "--out", str(tmp_path / "torch"))
    assert ref.returncode == 0, ref.stderr
    a = torch.load(next((tmp_path / "ds").glob("*/init.pt")), weights_only=False)["model"]
    b = torch.load(next((tmp_path / "torch").glob("*/init.pt")), weights_only=False)["model"]
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_models["bert"]).state_dict()
    assert sum(not torch.allclose(b[f"backbone.{k}"], v) for k, v in pretrained.items()) > 10
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    runs, _ = load_results(tmp_path / "ds")
    assert runs["engine"].iloc[0] == "deepspeed" and runs["meta_steps"].iloc[0] == 4


def test_lora_adapters_train_through_deepspeed_and_leave_the_backbone_alone(tiny_models, tmp_path):
    """`--peft lora` under the DeepSpeed engine: first-order meta-training and fine-tuning update the
    adapters only (the engine gets the trainable parameters), and rows record the adapters."""
    out = run(tmp_path, tiny_models["bert"], "--algo", "reptile", "--engine", "deepspeed", "--zero", "2",
              "--peft", "lora", "--out", str(tmp_path / "l"), "--keep-init")
    assert out.returncode == 0, out.stderr
    runs, tasks = load_results(tmp_path / "l")
    assert runs["engine"].iloc[0] == "deepspeed" and (tasks["peft"] == "lora").all() and len(tasks) == 4
    state = torch.load(next((tmp_path / "l").glob("*/init.pt")), weights_only=False)["model"]
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_models["bert"]).state_dict()
    lora = [k for k in state if "lora_B" in k]
    assert lora and any(state[k].abs().sum() > 0 for k in lora)  # B starts at 0: meta-training moved it
    checked = 0
    for k, v in pretrained.items():
        match = [s for s in state if s.endswith(k.replace(".weight", ".base_layer.weight"))
                 or s.endswith(k) and "lora" not in s]
        if match:
            assert torch.equal(state[match[0]], v), k  # the frozen backbone is bit-identical
            checked += 1
    assert checked > 10
