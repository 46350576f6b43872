"""Recipes (suite/recipes.py): the linear probe is scikit-learn's logistic regression on the
suite's embeddings, SetFit's pairs are setfit's own, the curve is log-spaced with a head that
never sees a query, and recipes pair only within a recipe unless the comparison is labelled."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from suite_process import cli_many

from metaft.suite import recipes
from metaft.suite.config import preset
from metaft.suite.foundation.errors import ConfigError, SuiteError


@pytest.mark.parametrize("iterations", [0, 1, 20])
def test_setfit_pairs_are_setfits_contrastive_dataset(iterations):
    from setfit.sampler import ContrastiveDataset

    labels = [c for c in range(4) for _ in range(8)]
    random.Random(iterations).shuffle(labels)  # an episode's support order, not sorted by class
    texts = [f"example {i}" for i in range(len(labels))]
    theirs = list(ContrastiveDataset(texts, labels, multilabel=False, num_iterations=iterations or None))
    ours = recipes.setfit_pairs(labels, iterations)
    assert [(texts[i], texts[j], t) for i, j, t in ours] == \
        [(p["sentence_1"], p["sentence_2"], p["label"]) for p in theirs]
    positives = sum(t for _, _, t in ours)
    assert positives == len(ours) / 2  # balanced, as SetFit's sampler
    if iterations:
        assert len(ours) == 2 * iterations * len(labels)  # 20 x 32 -> 1,280 pairs = 80 steps at batch 16
    else:  # oversampling: both sides to the larger count (384 negatives of 528 pairs with replacement)
        assert len(ours) == 2 * 384


def _episode(data_dir, index=0):
    from metaft.algorithms.transformer_learner import EpisodicTransformer
    from metaft.suite.models import load_backbone
    from metaft.suite.runner import Runner, dataset_metric, to_device
    from metaft.tasks import EncodingSettings, EpisodeEncoder, TokenCache, iter_episodes

    cfg = preset("study")
    cfg.n_meta_test = index + 1
    bench = Runner(cfg).benchmark()
    ep = list(iter_episodes(bench, 0, "meta-test", str(data_dir)))[index]
    lm = load_backbone("minilm")
    learner = EpisodicTransformer(lm.backbone, pooling=lm.pooling)
    encoder = EpisodeEncoder(lm.tokenizer, EncodingSettings(cfg.max_length, cfg.stride), TokenCache())
    device = torch.device("cpu")

    def batches(examples, size):
        return [to_device(b, device) for b in encoder.batches(ep.task_type, examples, ep.num_labels, size)]

    return ep, lm, learner, encoder, batches, dataset_metric(ep.dataset), cfg


def test_linear_probe_is_sklearn_logistic_regression_on_the_suites_embeddings(data_dir):
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    ep, lm, learner, _, batches, metric, cfg = _episode(data_dir)
    result = recipes.linear_probe(learner, batches(ep.support, 16), batches(ep.query, 64), metric, torch.device("cpu"))
    assert result.steps == 0 and result.curve[0][0] == 0
    assert result.head.flops > 0 and result.measurement.flops == result.head.flops
    # the same examples through sentence-transformers (its own tokenisation, pooling, Normalize)
    st = SentenceTransformer(lm.path, device="cpu")
    st.max_seq_length = cfg.max_length
    head = LogisticRegression().fit(st.encode([e["text"] for e in ep.support]), [e["label"] for e in ep.support])
    predictions = head.predict(st.encode([e["text"] for e in ep.query]))
    labels = np.array([e["label"] for e in ep.query])
    ours = recipes.fit_head(recipes.sentence_vectors(learner, batches(ep.support, 16)),
                            np.array([e["label"] for e in ep.support]))
    mine = ours.predict(recipes.sentence_vectors(learner, batches(ep.query, 64)))
    assert (mine == predictions).mean() >= 1 - 1 / len(labels)  # float32 sums in another order: at most 1 flip
    assert result.curve[0][1] == pytest.approx(float((mine == labels).mean()))


def test_setfit_curve_is_log_spaced_and_its_head_sees_only_the_support_set(data_dir, monkeypatch):
    ep, _, learner, encoder, batches, metric, _ = _episode(data_dir)
    seen = []
    real_fit = recipes.fit_head

    def spy(features, labels):
        seen.append((features.copy(), labels.copy()))
        return real_fit(features, labels)

    monkeypatch.setattr(recipes, "fit_head", spy)
    support = batches(ep.support, 16)
    start = {k: v.clone() for k, v in learner.state_dict().items()}

    def encode(examples):
        return encoder.encode(ep.task_type, examples, ep.num_labels)

    settings = recipes.SetFitSettings(iterations=1, lr=2e-5, batch_size=16)  # 64 pairs: 4 steps
    result = recipes.setfit(learner, list(ep.support), encode, support, batches(ep.query, 64), metric,
                            torch.device("cpu"), settings, seed=0)
    assert [k for k, *_ in result.curve] == [0, 1, 2, 4] and result.steps == 4
    support_labels = np.array([e["label"] for e in ep.support])
    assert len(seen) == 4 and all(len(f) == len(ep.support) and (y == support_labels).all() for f, y in seen)
    assert not np.allclose(seen[0][0], seen[-1][0])  # the encoder was trained between the first and last fits
    assert any(not torch.equal(v, learner.state_dict()[k]) for k, v in start.items())
    seconds = [s for _, _, s, _ in result.curve]
    assert seconds == sorted(seconds) and result.head.seconds > 0
    assert result.measurement.tokens > result.head.tokens > 0  # pairs' tokens plus the final head's


def test_recipes_refuse_what_they_do_not_serve():
    with pytest.raises(ConfigError, match="recipe 'setfit' serves classification tasks.*ner"):
        recipes.check_serves("setfit", ["classification", "ner"])
    with pytest.raises(SuiteError, match="unknown recipe 'lora'; available: finetune, linear-probe, setfit, "
                                         "finetune-lora, finetune-ia3"):
        recipes.get_recipe("lora")
    cfg = preset("study")
    cfg.recipe, cfg.eval_mode = "setfit", "own"
    with pytest.raises(SuiteError, match="eval_mode .own. applies to the finetune recipe only"):
        cfg.validate()
    finetune = preset("study")
    assert finetune.fingerprint() == preset("study").fingerprint()
    other = preset("study")
    other.recipe = "setfit"
    assert other.validate().fingerprint() != finetune.fingerprint()


@pytest.mark.slow
def test_a_start_by_recipe_run_pairs_with_the_baseline_of_its_recipe_and_never_across_unlabelled(data_dir, tmp_path):
    from metaft.leaderboard import stats
    from metaft.suite.results import load_results

    out = tmp_path / "results"
    # the study protocol, sized down (8 queries per class, length 32, 4 steps: ~75 s of runs at one
    # thread); every run takes the same protocol (meta-train tasks included), otherwise nothing pairs
    shapes = tmp_path / "shapes.toml"
    shapes.write_text("[shapes.classification]\nways = 4\nshots = 8\nqueries = 8\n")
    common = (f"run --preset study --config {shapes} --meta-train-tasks 2 --meta-test-tasks 3 --val-tasks 0 "
              f"--finetune-lr-grid 3e-5 --ft-steps 4 --max-length 32 --out {out} --data-dir {data_dir} "
              f"--precision fp32 --no-progress")
    setfit = "--recipe setfit --setfit-iterations 1"
    res = cli_many([
        ("base", f"{common} --algo baseline"),
        ("base-setfit", f"{common} --algo baseline {setfit}"),
        ("reptile-setfit", f"{common} --algo reptile {setfit}"),
        ("probe", f"{common} --algo baseline --recipe linear-probe"),
        ("compare", f"leaderboard compare --results {out} --resamples 0"),
        ("across", f"leaderboard compare --results {out} --resamples 0 --across-recipes"),
    ])
    for key in ("base", "base-setfit", "reptile-setfit", "probe", "compare", "across"):
        assert res[key][0] == 0, (key, res[key][2][-2000:])
    runs, tasks = load_results(out)
    assert set(tasks["recipe"]) == {"finetune", "setfit", "linear-probe"}
    probe = tasks[tasks["recipe"] == "linear-probe"]
    assert (probe["ft_steps"] == 0).all() and probe["finetune_lr"].isna().all()
    # the probe is step 0 of SetFit's curve: the same head on the same (pretrained) start
    sf = tasks[(tasks["recipe"] == "setfit") & (tasks["algo"] == "baseline")].sort_values("task_index")
    assert np.allclose([c[0] for c in sf["curve_metric"]], probe.sort_values("task_index")["metric"])
    # within a recipe: reptile + setfit pairs with baseline + setfit (its own model label)
    assert "reptile" in res["compare"][1] and "3 tasks" in res["compare"][1]
    assert "reptile + setfit" in res["across"][1] and "baseline + linear-probe" in res["across"][1]
    prepared = stats.prepare(tasks)
    within = stats.compare(prepared[prepared["model"].astype(str).str.endswith(" + setfit")], [("reptile", "baseline")],
                           measures=["metric"], n_resamples=0)
    assert within["n"].iloc[0] == 3
    finetune_only = prepared[~((prepared["algo"] == "baseline") & (prepared["recipe"] != "finetune"))]
    with pytest.raises(ConfigError, match="different recipes.*--across-recipes"):
        stats.compare(finetune_only, [("reptile", "baseline")], measures=["metric"], n_resamples=0)
    across = stats.compare(stats.across_recipes(tasks), [("reptile + setfit", "baseline")], measures=["metric"],
                           n_resamples=0)
    assert across["n"].iloc[0] == 3


@pytest.mark.slow
def test_the_suites_setfit_recipe_agrees_with_the_setfit_package(data_dir):
    """benchmarks/bench_setfit_parity.py, small: the package's Trainer and the suite's loop on the
    same 2 study tasks (2 pair iterations: 128 pairs, 8 steps). The two differ only in the pairs'
    order within the epoch and the dropout masks. Measured on 8 tasks at SetFit's default 20
    iterations (80 steps, docs/recipes.md): no task differs by more than 2 of its 128 queries; at
    8 steps these two tasks agree exactly. The tolerance, 4 queries per task, is twice the largest
    measured difference, so a loop that drifts from SetFit's (another loss, lr schedule, pair
    sampler or head) fails it; both must also have moved off the linear probe (step 0), or
    agreement would say nothing. The suite scores steps 0 and 8 only (``--curve-points ends``):
    scoring reads no random stream, so the final metric is the log2 curve's (both 0.820 and 0.883
    with either, 2026-12-07)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_setfit_parity import parity, summary

    rows = parity(n_tasks=2, iterations=2, data_dir=data_dir, curve_points="ends")  # 2 of the 5 curve scorings
    assert [r.index for r in rows] == [0, 1]
    for r in rows:
        assert abs(r.diff) <= 4 / 128 + 1e-9, r
    s = summary(rows)
    assert s["suite"] > s["probe"] and s["package"] > s["probe"], s


@pytest.mark.parametrize("recipe", ["linear-probe", "setfit", "finetune-lora"])
def test_the_finetune_grid_needs_validation_tasks_only_where_the_recipe_uses_it(recipe):
    cfg = preset("study")  # its finetune_lr_grid and adapter_lr_grid hold 3 values each
    cfg.n_meta_val = 0
    with pytest.raises(SuiteError, match="finetune_lr_grid has several learning rates but n_meta_val is 0"):
        cfg.validate()
    cfg.recipe = recipe  # a finetune grid it never reads
    if recipe == "finetune-lora":  # ... but the adapter grid it does read is refused by name
        with pytest.raises(SuiteError, match="adapter_lr_grid has several learning rates but n_meta_val is 0"):
            cfg.validate()
        cfg.adapter_lr_grid = [3e-4]
    assert cfg.validate().recipe == recipe


def _recipe_task(data_dir, recipe: str, steps: int, lr: float):
    """One study task as the runner hands it to a recipe (its first 32 queries, to keep the test short)."""
    from metaft.algorithms import get_algorithm
    from metaft.suite.runner import to_device

    ep, _, learner, encoder, batches, metric, cfg = _episode(data_dir)
    cfg.recipe, cfg.adapter_steps = recipe, steps
    algo = get_algorithm("baseline")
    support = batches(ep.support, 16)
    torch.manual_seed(0)
    return recipes.RecipeTask(
        start=lambda: algo.start(learner, support), learner=learner, algo=algo, examples=list(ep.support),
        support=support, query=batches(ep.query[:32], 64),
        encode=lambda xs: to_device(encoder.encode(ep.task_type, xs, ep.num_labels), torch.device("cpu")),
        label_names=ep.label_names, metric=metric, device=torch.device("cpu"), lr=lr, steps=4, mode="shared",
        seed=0, settings=cfg.validate())


@pytest.mark.parametrize("recipe, lr", [("finetune-lora", 1e-3), ("finetune-ia3", 1e-2)])
def test_adapter_recipes_train_fresh_adapters_and_the_head_only_from_where_the_start_is(data_dir, monkeypatch,
                                                                                        recipe, lr):
    """Step 0 of an adapter recipe is the finetune recipe's step 0 of the same start (peft's init:
    LoRA's B = 0, IA3's scales = 1); the curve runs to the adapters' own budget at the log2 points;
    the backbone's weights never move (the start is untouched), the adapters and the head do."""
    from metaft.algorithms import finetune as finetune_module

    trained = []
    real = finetune_module.finetune

    def spy(model, *args, **kwargs):
        trained.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(finetune_module, "finetune", spy)
    task = _recipe_task(data_dir, recipe, steps=8, lr=lr)
    before = {k: v.clone() for k, v in task.learner.state_dict().items()}
    result = recipes.adapter_task(task)
    plain = recipes.finetune_task(_recipe_task(data_dir, "finetune", steps=8, lr=3e-5))
    assert [k for k, *_ in result.curve] == [0, 1, 2, 4, 8] and result.steps == 8
    assert result.curve[0][1] == plain.curve[0][1]  # the adapters start as the identity
    assert result.measurement.flops > 0 and result.measurement.tokens > 0
    assert all(torch.equal(v, task.learner.state_dict()[k]) for k, v in before.items())  # the start is a copy
    (model,) = trained
    from metaft.suite.adapters import is_peft

    assert is_peft(model.backbone)
    moved = {name for name, p in model.named_parameters()
             if name.startswith("backbone.") and not torch.equal(p.detach(), _base_weight(before, name))}
    adapter_word = "lora_" if recipe == "finetune-lora" else "ia3_"
    assert moved and all(adapter_word in name for name in moved), sorted(moved)[:5]
    assert all(not p.requires_grad for name, p in model.named_parameters() if name.startswith("backbone.")
               and adapter_word not in name)
    assert not torch.equal(model.head.weight.detach(), torch.zeros_like(model.head.weight))


def _base_weight(before: dict, name: str) -> torch.Tensor:
    """The start's weight under a peft-wrapped name (backbone.base_model.model.X[.base_layer].W ->
    backbone.X.W); an adapter's own tensor has none, and compares against an empty tensor."""
    plain = name.replace("base_model.model.", "").replace(".base_layer", "")
    return before.get(plain, torch.empty(0))


def test_adapter_recipe_rows_pair_within_the_recipe_and_with_finetune_only_across_recipes():
    """The protocol key of an adapter recipe holds its budget, grid and adapters: reptile's and the
    baseline's rows pair; another budget, rank or method does not; plain fine-tuning pairs with it
    only through ``protocol_base`` (the labelled cross-recipe view)."""
    import dataclasses

    from metaft.suite.runner import Runner, protocol_fingerprint

    def key(**changes):
        cfg = dataclasses.replace(preset("study"), **changes).validate()
        return protocol_fingerprint(cfg, Runner(cfg).benchmark())

    lora = key(recipe="finetune-lora")
    assert key(recipe="finetune-lora", algo="baseline") == key(recipe="finetune-lora", algo="reptile") == lora
    assert len({lora, key(), key(recipe="finetune-ia3"), key(recipe="finetune-lora", adapter_steps=64),
                key(recipe="finetune-lora", lora_r=4), key(recipe="finetune-lora", adapter_lr_grid=[7e-4])}) == 6
    from metaft.suite.config import ADAPTER_LRS

    # an empty grid means the method's default lr, resolved before the key is made
    assert key(recipe="finetune-lora", adapter_lr_grid=[]) == key(recipe="finetune-lora",
                                                                   adapter_lr_grid=[ADAPTER_LRS["lora"]]) != lora
    assert key(recipe="finetune", adapter_steps=64) == key()  # a setting that does not apply changes nothing
    assert key(recipe="finetune", lora_r=4) == key()
    with pytest.raises(SuiteError, match="peft is 'lora': the start already has adapters"):
        dataclasses.replace(preset("study"), recipe="finetune-lora", peft="lora").validate()
