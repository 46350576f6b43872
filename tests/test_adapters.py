"""LoRA/IA3 adapters (peft): the backbone stays bit-identical, adapters and heads learn, the
second-order MAML meta-gradient through LoRA is exact, and a saved start loads in peft."""
from __future__ import annotations

import copy

import pytest
import torch
from test_algorithms_transformers import encoded
from torch import nn
from transformers import AutoModel

from metaft.algorithms import get_algorithm
from metaft.algorithms.transformer_learner import EpisodicTransformer, episode_loss
from metaft.suite.adapters import AdapterSettings, add_adapters, save_adapter
from metaft.suite.flops import flops_per_token
from metaft.suite.foundation.errors import SuiteError


def lora_learner(path, method="lora", head_init="proto", **kw):
    torch.manual_seed(0)
    return EpisodicTransformer(add_adapters(AutoModel.from_pretrained(path), AdapterSettings(method, **kw)),
                               head_init=head_init)


def split(model):
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return base, trainable


@pytest.mark.parametrize("algo,method", [("reptile", "lora"), ("maml", "lora"), ("fomaml", "ia3")])
def test_backbone_stays_bit_identical_while_adapters_and_head_learn(algo, method, tiny_models, tokenizers):
    model = lora_learner(tiny_models["bert"], method)
    base, adapters = split(model)
    assert base and adapters and all("lora_" in n or "ia3_" in n or n.startswith("qa_head") for n in adapters)
    eps = encoded(tokenizers["bert"], ["ag_news", "conll2003"], n=4)
    get_algorithm(algo, inner_lr=0.05, inner_steps=2, outer_lr=1e-2, meta_batch_size=2).meta_train(
        model, eps, episode_loss)
    adapted = get_algorithm("baseline").adapt(model, eps[0].support, episode_loss, steps=3, lr=1e-2)
    for name, value in base.items():  # every backbone weight, in the meta-learned start and after fine-tuning
        assert torch.equal(dict(model.named_parameters())[name].detach(), value), name
        assert torch.equal(dict(adapted.named_parameters())[name].detach(), value), name
    after = dict(model.named_parameters())
    moved = [n for n, v in adapters.items() if not n.startswith("qa_head") and not torch.equal(after[n].detach(), v)]
    assert len(moved) == sum(1 for n in adapters if not n.startswith("qa_head"))  # every adapter tensor learned
    tuned = dict(adapted.named_parameters())
    assert all(not torch.equal(tuned[n].detach(), after[n].detach()) for n in moved)
    start_head = copy.deepcopy(model)
    start_head.begin_episode(eps[0].support)
    assert not torch.equal(adapted.head.weight, start_head.head.weight)  # the head was fine-tuned too


def test_second_order_maml_through_lora_matches_finite_differences(tiny_models, tokenizers):
    """At adapter weights moved away from peft's init (B = 0 makes A's gradient vanish there). The
    episode head starts from a seeded random init: the Proto head is built without gradient by
    design (first-order Proto-MAML), which finite differences would see and the meta-gradient not."""
    model = lora_learner(tiny_models["bert"], head_init="random", r=2).double()
    model.eval()  # no dropout: the objective is a deterministic function of the adapters
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    ep = encoded(tokenizers["bert"], ["ag_news"], n=1)[0]
    algo = get_algorithm("maml", inner_lr=0.5, inner_steps=2)
    model.zero_grad()
    torch.manual_seed(1)
    objective, _ = algo.meta_loss(model, ep, episode_loss)
    objective.backward()
    lora = [(n, p) for n, p in model.named_parameters() if "lora_" in n]

    def value():
        torch.manual_seed(1)
        obj, _ = algo.meta_loss(model, ep, episode_loss)
        return float(obj.detach())

    rng = torch.Generator().manual_seed(0)
    checked = 0
    for name, p in lora[:4]:  # layer 0's query and value adapters, both A and B
        for i in torch.randint(0, p.numel(), (3,), generator=rng).tolist():
            flat = p.data.view(-1)
            old = float(flat[i])
            flat[i] = old + 1e-5; up = value()
            flat[i] = old - 1e-5; down = value()
            flat[i] = old
            fd = (up - down) / 2e-5
            assert p.grad.view(-1)[i].item() == pytest.approx(fd, rel=1e-4, abs=1e-9), name
            checked += 1
    assert checked == 12
    assert all(not p.requires_grad for n, p in model.named_parameters() if "base_layer" in n)


def test_a_saved_adapter_start_loads_in_peft_with_the_same_outputs(tiny_models, tokenizers, tmp_path):
    from peft import PeftModel

    model = lora_learner(tiny_models["bert"])
    eps = encoded(tokenizers["bert"], ["ag_news"], n=2)
    get_algorithm("reptile", inner_lr=0.05, inner_steps=2, outer_lr=1e-2).meta_train(model, eps, episode_loss)
    model.eval()
    folder = save_adapter(model.backbone, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    loaded = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_models["bert"]), str(folder)).eval()
    batch = eps[0].query[0]
    with torch.no_grad():
        ours = model.hidden_states(batch)
        theirs = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(ours, theirs)
    plain = AutoModel.from_pretrained(tiny_models["bert"]).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                                  .last_hidden_state, ours)  # the adapters did change the model


def test_adapter_flops_count_the_whole_forward_and_backward_through_the_layers(tiny_models):
    full = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]))
    lora = lora_learner(tiny_models["bert"])
    f_full = flops_per_token(full, [p for p in full.parameters() if p.requires_grad])
    f_lora = flops_per_token(lora, [p for p in lora.parameters() if p.requires_grad])
    # forward over every weight and backward through every layer above the first adapter; only the
    # weight-gradient term shrinks, so LoRA costs between 4/6 and 1 of full fine-tuning per token
    assert 0.6 * f_full < f_lora < f_full


def test_bad_adapter_settings_are_refused():
    with pytest.raises(SuiteError, match="peft must be one of"):
        AdapterSettings("prefix").validate()
    with pytest.raises(SuiteError, match="lora_r"):
        AdapterSettings("lora", r=0).validate()
    with pytest.raises(SuiteError, match="name the modules with --peft-targets"):
        add_adapters(nn.Sequential(nn.Linear(2, 2)), AdapterSettings("lora", targets=["nonexistent"]))
