"""Registry, hyperparameter validation and third-party plugins of algorithms."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from metaft.algorithms import AlgorithmError, Episode, get_algorithm, list_algorithms
from metaft.algorithms.base import NonFiniteLossError

BUILTINS = ["anil", "baseline", "fomaml", "maml", "metasgd", "multitask", "reptile"]


def test_builtins_are_registered():
    assert set(BUILTINS) <= set(list_algorithms())


def test_unknown_algorithm_lists_the_valid_ones():
    with pytest.raises(AlgorithmError, match=r"unknown algorithm 'reptil' \(did you mean 'reptile'\?\); available: baseline, multitask"):
        get_algorithm("reptil")


def test_unknown_or_bad_hyperparameter_lists_the_valid_ones():
    with pytest.raises(AlgorithmError, match=r"unknown hyperparameter\(s\) inner_lrr for 'maml'; valid: .*inner_lr"):
        get_algorithm("maml", inner_lrr=1e-3)
    with pytest.raises(AlgorithmError, match="valid: finetune_lr"):
        get_algorithm("baseline", inner_lr=1e-3)
    with pytest.raises(ValueError, match="inner_lr must be a positive number"):
        get_algorithm("maml", inner_lr=-1.0)
    with pytest.raises(ValueError, match="first-order by definition"):
        get_algorithm("fomaml", first_order=False)


def test_issue_contract_signature():
    algo = get_algorithm("maml", inner_lr=1e-3, inner_steps=5, outer_lr=1e-4, first_order=False)
    assert (algo.config.inner_lr, algo.config.inner_steps, algo.config.outer_lr) == (1e-3, 5, 1e-4)
    assert algo.config.first_order is False


def test_adapt_returns_a_copy_and_leaves_the_model_unchanged():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    loss = lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1])
    adapted = get_algorithm("baseline").adapt(model, (x, y), loss, steps=5, lr=0.1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(adapted.weight, model.weight)


def test_nan_loss_stops_with_where_it_happened():
    model = torch.nn.Linear(2, 1)
    nan_loss = lambda m, b: m(b).sum() * float("nan")
    episodes = [Episode(torch.ones(2, 2), torch.ones(2, 2))]
    with pytest.raises(NonFiniteLossError, match="inner step 1"):
        get_algorithm("fomaml").meta_train(model, episodes, nan_loss)
    with pytest.raises(NonFiniteLossError, match="fine-tuning step 1"):
        get_algorithm("baseline").adapt(model, torch.ones(2, 2), nan_loss, steps=2)


PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "suite-plugin-demo"
        version = "0.0.1"
        [project.entry-points."GROUP.algorithms"]
        sgd_twice = "suite_plugin_demo:SgdTwice"
        [project.entry-points."GROUP.tasks"]
        imdb_tiny = "suite_plugin_demo:imdb_tiny"
        headlines = "suite_plugin_demo:headlines"
        [project.entry-points."GROUP.task_types"]
        headline = "suite_plugin_demo:HEADLINE"
        [project.entry-points."GROUP.recipes"]
        nearest-centroid = "suite_plugin_demo:CENTROID"
        [project.entry-points."GROUP.metrics"]
        headline_error = "suite_plugin_demo:HEADLINE_ERROR"
    """,
    "suite_plugin_demo/__init__.py": """
        from dataclasses import dataclass, replace
        import torch
        from torch.nn import functional as F
        from metaft.algorithms import Algorithm, MetaConfig, as_batches, begin_episode
        from metaft.algorithms.heads import ModelSide
        from metaft.tasks import DatasetSpec
        from metaft.tasks.task_types import CLASSIFICATION

        @dataclass
        class Config(MetaConfig):
            repeats: int = 2

        class SgdTwice(Algorithm):
            Config = Config
            def meta_loss(self, model, episode, loss_fn):
                support = as_batches(episode.support)
                begin_episode(model, support)
                loss = torch.stack([loss_fn(model, b) for b in support]).mean() * self.config.repeats
                return loss, float(loss.detach())

        def imdb_tiny():
            return DatasetSpec(name="imdb_tiny", hub_id="stanfordnlp/imdb", task_type="classification",
                               label_names=("neg", "pos"), columns={"text": "text", "label": "label"},
                               splits=("train", "test"), train_split="train", eval_split="test")

        # a task type with a model side of its own (a label-smoothed loss), its labels and its display
        @dataclass(frozen=True)
        class SmoothedLabels(ModelSide):
            smoothing: float = 0.2
            def loss(self, out, batch):
                return F.cross_entropy(out, batch["labels"], ignore_index=-100, label_smoothing=self.smoothing)

        SMOOTHED = SmoothedLabels("smoothed-labels", pooled=True, episode_head=True)

        def render(example, label_names):
            return f"<{label_names[example['label']]}> " + example["text"][:30]

        HEADLINE = replace(CLASSIFICATION, name="headline", shape=(2, 2, 3), description="a headline's topic",
                           model_side="suite_plugin_demo:SMOOTHED", render=render)

        # a recipe: the frozen start, each query to the nearest support class mean (no training)
        from metaft.suite.recipe_registry import Recipe

        CENTROID = Recipe("nearest-centroid", ("classification",), "nearest support class mean", uses_lr=False,
                          run="suite_plugin_demo:nearest_centroid")

        @torch.no_grad()
        def nearest_centroid(task):
            from metaft.suite.metering import Measurement
            from metaft.suite.recipes import RecipeResult

            model = task.start().eval()
            x, y = torch.cat([model.features(b) for b in task.support]), torch.cat([b["labels"] for b in task.support])
            means = torch.stack([x[y == c].mean(0) for c in range(int(task.support[0]["num_labels"]))])
            predictions, references = [], []
            for b in task.query:
                q = model.features(b)
                predictions += (q @ (2 * means).T - (means ** 2).sum(1)).argmax(-1).tolist()
                references += b["labels"].tolist()
            score = task.metric.compute(predictions, references)["metric"]
            return RecipeResult([(0, score, 0.0, None)], Measurement(), 0)

        # a metric where smaller is better, which the headlines dataset is scored by
        from metaft.tasks.metrics import Metric

        HEADLINE_ERROR = Metric("headline_error", lambda p, r: {"metric": sum(a != b for a, b in zip(p, r)) / len(r)},
                                higher_is_better=False)

        def headlines():
            return DatasetSpec(name="headlines", hub_id="fancyzhx/ag_news", task_type="headline",
                               label_names=("World", "Sports", "Business", "Sci/Tech"),
                               columns={"text": "text", "label": "label"}, splits=("test",), train_split=None,
                               eval_split="test", metric="headline_error",
                               protocol_sides={"cross-dataset": "meta-test"})
    """,
}


def plugin_mirror(tmp_path, data_dir, datasets: dict[str, str]) -> Path:
    """A data mirror whose folders (the plugin's dataset names) link to the shared mirror's files."""
    mirror = tmp_path / "mirror"
    for name, source in datasets.items():
        (mirror / name).mkdir(parents=True)
        for split in Path(data_dir, source).glob("*.parquet"):
            (mirror / name / split.name).symlink_to(split)
    return mirror


def install_plugin(tmp_path, group: str = "metaft") -> Path:
    """pip-installs the demo plugin into a folder of its own; put it on PYTHONPATH to use it.

    ``group`` is the entry-point groups' prefix: "metaft", or the pre-namespace "suite"."""
    src = tmp_path / "src"
    for rel, text in PLUGIN.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(textwrap.dedent(text).replace("GROUP.", f"{group}."))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, timeout=300)
    return target


@pytest.mark.parametrize("group", ["metaft", "suite"])
def test_third_party_plugin_installed_with_pip_is_found(tmp_path, group):
    """The current entry-point groups, and the old `suite.*` ones with a warning naming the new group."""
    target = install_plugin(tmp_path, group)
    probe = textwrap.dedent("""
        from metaft.algorithms import get_algorithm, list_algorithms
        from metaft.tasks import list_datasets, get_dataset_spec
        algo = get_algorithm("sgd_twice", repeats=3)
        print(type(algo).__name__, algo.config.repeats, "sgd_twice" in list_algorithms())
        print(get_dataset_spec("imdb_tiny").task_type, "imdb_tiny" in list_datasets())
    """)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-W", "always::FutureWarning", "-c", probe], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["SgdTwice", "3", "True", "classification", "True"]
    migration = "old entry-point group 'suite.algorithms'; declare it under 'metaft.algorithms'"
    assert (migration in out.stderr) == (group == "suite"), out.stderr


def test_a_task_type_from_one_file_runs_its_own_head_loss_evaluation_and_display(tmp_path, tiny_models, data_dir):
    """A pip-installed task type that brings its own model side: the model's forward pass, the loss
    (its own, label-smoothed), evaluation with the type's decoder and metric, label validation on
    load, and `suite tasks show` with its own rendering; nothing in the suite is edited."""
    target = install_plugin(tmp_path)
    mirror = plugin_mirror(tmp_path, data_dir, {"headlines": "ag_news"})
    probe = textwrap.dedent(f"""
        import numpy as np, torch
        from torch.nn import functional as F
        from transformers import AutoModel, AutoTokenizer
        from metaft.algorithms.transformer_learner import EpisodicTransformer, episode_loss
        from metaft.suite.evaluate import evaluate
        from metaft.tasks.episodes import sample_episode
        from metaft.tasks.loading import load_split
        from metaft.tasks.benchmark import default_shapes
        from metaft.tasks.tokenize import EncodingSettings, EpisodeEncoder
        torch.manual_seed(0)
        loaded = load_split("headlines", "test", {str(mirror)!r})
        episode = sample_episode(loaded, default_shapes()["headline"], np.random.default_rng(0))
        path = {str(tiny_models["bert"])!r}
        encoder = EpisodeEncoder(AutoTokenizer.from_pretrained(path), EncodingSettings(max_length=32, stride=8))
        support = encoder.encode("headline", episode.support, 2)
        query = encoder.encode("headline", episode.query, 2)
        model = EpisodicTransformer(AutoModel.from_pretrained(path)).eval()  # no dropout: two passes agree
        model.begin_episode([support])
        logits = model(support)
        loss = episode_loss(model, support)
        assert torch.allclose(loss, F.cross_entropy(logits, support["labels"], label_smoothing=0.2))
        assert not torch.allclose(loss, F.cross_entropy(logits, support["labels"]))
        loss.backward()
        assert model.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0
        print(support["model_side"], tuple(logits.shape), evaluate(model, [query], episode.label_names)["metric"])
    """)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    side, *shape, metric = out.stdout.split()
    assert side == "suite_plugin_demo:SMOOTHED" and shape == ["(4,", "2)"] and 0 <= float(metric) <= 1
    show = subprocess.run([str(Path(sys.executable).parent / "suite"), "tasks", "show", "headlines", "--data-dir",
                           str(mirror)], capture_output=True, text=True, env=env, timeout=300)
    assert show.returncode == 0, show.stderr
    assert show.stdout.count("\n  <") >= 7 and "task_type    headline" in show.stdout  # 4 support + 6 query lines
    # label validation comes from the type's `labels`: a label outside the dataset's label names is refused
    (mirror / "bad").mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(Path(data_dir) / "ag_news" / "test.parquet")
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label",
                                    pa.array([7] * table.num_rows)), mirror / "bad" / "test.parquet")
    (mirror / "headlines" / "test.parquet").unlink()
    (mirror / "headlines" / "test.parquet").symlink_to(mirror / "bad" / "test.parquet")
    bad = subprocess.run([str(Path(sys.executable).parent / "suite"), "tasks", "show", "headlines", "--data-dir",
                          str(mirror)], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "outside 0..3" in bad.stderr, bad.stderr


def test_a_recipe_from_one_file_runs_through_suite_run(tmp_path, tiny_models):
    """A pip-installed recipe is chosen with --recipe, validated, run on every task and recorded; its
    nearest class mean equals the finetune recipe's step 0 (the prototype head is the same rule)."""
    target = install_plugin(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(target)}
    suite = str(Path(sys.executable).parent / "suite")
    from test_run import TINY

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(n_test=4, ft_steps=2).replace('"conll2003", "ontonotes5"', '"imdb"'))
    out = tmp_path / "results"
    common = ["--model", str(tiny_models["bert"]), "--config", str(cfg), "--out", str(out), "--no-progress"]
    runs = {recipe: subprocess.run([suite, "run", "--algo", "baseline", "--recipe", recipe, *common],
                                   capture_output=True, text=True, env=env, timeout=600)
            for recipe in ("nearest-centroid", "finetune")}
    assert all(p.returncode == 0 for p in runs.values()), {k: p.stderr[-2000:] for k, p in runs.items()}
    from metaft.suite.results import load_results

    _, tasks = load_results(out)
    mine = tasks[tasks["recipe"] == "nearest-centroid"].sort_values("task_index")
    shared = tasks[tasks["recipe"] == "finetune"].sort_values("task_index")
    assert len(mine) == len(shared) > 0 and mine["finetune_lr"].isna().all()
    assert mine["metric"].tolist() == shared["metric_at_0"].tolist()
    unknown = subprocess.run([suite, "run", "--algo", "baseline", "--recipe", "nearest-centroidd", *common],
                             capture_output=True, text=True, env=env, timeout=300)
    assert unknown.returncode == 2 and "must be a registered recipe" in unknown.stderr


def test_a_plugin_algorithm_task_type_dataset_and_metric_run_together_through_suite_run(tmp_path, tiny_models,
                                                                                       data_dir):
    """One `suite run` of the plugin's algorithm, meta-trained on a built-in dataset and meta-tested on
    the plugin's dataset (cross-dataset side from its spec) of the plugin's task type (its own loss),
    scored by the plugin's metric; then `leaderboard compare` reads the rows by that metric's direction."""
    target = install_plugin(tmp_path)
    mirror = plugin_mirror(tmp_path, data_dir, {"sst2": "sst2", "headlines": "ag_news"})
    cfg = tmp_path / "plugins.toml"
    cfg.write_text('datasets = ["sst2", "headlines"]\nn_meta_train = 2\nn_meta_test = 6\nft_steps = 2\n'
                   'max_length = 32\nbatch_size = 8\n[shapes.classification]\nways = 2\nshots = 2\nqueries = 2\n')
    env = {**os.environ, "PYTHONPATH": str(target)}
    suite, out = str(Path(sys.executable).parent / "suite"), tmp_path / "results"
    for algo in ("sgd_twice", "baseline"):
        proc = subprocess.run([suite, "run", "--algo", algo, "--model", str(tiny_models["bert"]), "--config", str(cfg),
                               "--data-dir", str(mirror), "--out", str(out), "--no-progress"],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    from metaft.suite.results import load_results

    runs, tasks = load_results(out)
    mine = tasks[tasks["algo"] == "sgd_twice"]
    assert len(mine) == 6 and set(mine["dataset"]) == {"headlines"} and set(mine["task_type"]) == {"headline"}
    assert set(mine["metric_name"]) == {"headline_error"} and runs.set_index("algo").loc["sgd_twice", "meta_steps"] > 0
    manifest = json.loads(next(out.glob("sgd_twice-*/manifest.json")).read_text())
    assert (manifest["benchmark"]["meta_train_datasets"], manifest["benchmark"]["meta_test_datasets"]) == (
        ["sst2"], ["headlines"])
    compare = subprocess.run([suite, "leaderboard", "compare", "--results", str(out), "--resamples", "99"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert compare.returncode == 0, compare.stderr
    assert "headline_error" in compare.stdout and "sgd_twice" in compare.stdout
