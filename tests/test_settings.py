"""The settings schema: one declaration per run setting gives the flags, TOML validation, the run id
and the settings reference, and run ids written before the schema stay what they were."""
from __future__ import annotations

import argparse
import dataclasses

import pytest
from suite_process import run_suite

from metaft.suite.cli import build_parser
from metaft.suite.config import PRESETS, RunConfig, apply_overrides, preset, resolve_config
from metaft.suite.foundation.errors import SuiteError
from metaft.suite.settings import add_arguments, at_least, overrides_from_args, reference_rows, schema, setting

# run ids' hashes as the code before the schema computed them (measured on that code, 168 configurations
# of 3 presets x 4 algorithms x 14 variations, all equal after the change; these are a sample)
PINNED = [
    ("quick", {"algo": "baseline"}, "0825c438"),
    ("quick", {"algo": "reptile"}, "160d0f74"),
    # the powered study as stored until 2026-12-07 ran fp32; the preset is bf16 where native since
    ("study", {"algo": "multitask", "precision": "fp32"}, "eb0dfe87"),
    ("study", {"algo": "multitask", "precision": "bf16"}, "d835188c"),  # the README's bf16 study run
    ("paper", {"algo": "maml"}, "78143fec"),
    ("quick", {"algo": "reptile", "peft": "lora"}, "7ddc3b68"),
    ("quick", {"algo": "reptile", "lora_r": 16}, "160d0f74"),  # a LoRA rank without LoRA changes nothing
    ("quick", {"algo": "reptile", "recipe": "setfit"}, "7c537db2"),
    ("quick", {"algo": "reptile", "recipe": "linear-probe"}, "1b5c7286"),
    ("quick", {"algo": "baseline", "precision": "bf16"}, "90d11941"),  # the README's quick baseline run
    ("quick", {"algo": "baseline", "curve_points": "ends"}, "46317526"),
]


@pytest.mark.parametrize(("name", "overrides", "expected"), PINNED)
def test_run_ids_written_before_the_schema_are_unchanged(name, overrides, expected):
    assert resolve_config(name, None, overrides).fingerprint() == expected


@dataclasses.dataclass
class Extended(RunConfig):
    """RunConfig with one more setting, declared once, as a contributor would add it."""

    warmup_steps: int = setting(0, "linear lr warm-up steps", flag="--warmup-steps", check=at_least(0),
                                fingerprint="unless-default", group="fine-tuning")


def _parser(for_tune: bool) -> tuple[argparse.ArgumentParser, list[str]]:
    p = argparse.ArgumentParser(prog="suite run" if not for_tune else "suite tune")
    return p, add_arguments(p, Extended, {"quick": Extended()}, for_tune=for_tune)


def test_a_setting_declared_once_reaches_the_flags_toml_the_reference_and_the_run_id():
    for for_tune in (False, True):
        parser, names = _parser(for_tune)
        assert "warmup_steps" in names and "--warmup-steps" in parser.format_help()
        assert "linear lr warm-up steps (default: 0)" in " ".join(parser.format_help().split())
        args = parser.parse_args(["--warmup-steps", "7"])
        assert overrides_from_args(args, names) == {"warmup_steps": 7}
        assert overrides_from_args(parser.parse_args([]), names) == {}
    tune_names = _parser(True)[1]
    assert {"algo", "models", "seeds"}.isdisjoint(tune_names)  # suite tune's grid axes
    # TOML validation: its type, then its own check
    config = apply_overrides(Extended(), {"warmup_steps": 4}, "my.toml")
    assert config.warmup_steps == 4
    with pytest.raises(SuiteError, match="my.toml: warmup_steps must be int"):
        apply_overrides(Extended(), {"warmup_steps": "4"}, "my.toml")
    with pytest.raises(SuiteError, match="warmup_steps must be >= 0, got -1"):
        apply_overrides(Extended(), {"warmup_steps": -1}, "my.toml").validate("my.toml")
    # the reference page's row
    row = next(r for r in reference_rows(Extended, {"quick": Extended()}) if r[0] == "`warmup_steps`")
    assert row[1] == "`--warmup-steps`" and row[3] == "0" and row[5] == "when not the default"
    # the run id: unchanged at the default, changed otherwise
    assert Extended().fingerprint() == RunConfig().fingerprint()
    assert Extended(warmup_steps=3).fingerprint() != RunConfig().fingerprint()


def test_every_field_is_a_declared_setting_and_every_flag_belongs_to_one():
    assert set(schema(RunConfig)) == {f.name for f in dataclasses.fields(RunConfig)}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("run", "tune"):
        p = sub.choices[command]
        declared = p.get_default("settings")
        assert declared and all(schema(RunConfig)[n][1].flag for n in declared)
        flags = {a.dest for a in p._actions}
        assert set(declared) <= flags


def test_help_shows_real_defaults_never_none():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("run", "tune"):
        text = " ".join(sub.choices[command].format_help().split())
        assert "(default: None)" not in text and "(default: [])" not in text
    text = " ".join(sub.choices["run"].format_help().split())
    n_test = {name: preset(name).n_meta_test for name in PRESETS}
    assert f"meta-test tasks (default: quick {n_test['quick']}, study {n_test['study']}, paper {n_test['paper']})" \
        in text
    assert "LoRA rank (default: 8)" in text


def test_suite_algorithms_prints_what_a_run_of_the_preset_uses():
    out = run_suite("algorithms", "--preset", "quick", timeout=300)
    assert out.returncode == 0, out.stderr
    maml = next(line for line in out.stdout.splitlines() if line.startswith("maml "))
    used = resolve_config("quick", None, {"algo": "maml"}).inner_steps
    assert f"inner_steps={used} (Config default 5)" in maml  # the quick preset's 3, not the class's 5
    assert "finetune_steps=the run's budget (classification 32, ner 32, qa 32)" in maml
    study = run_suite("algorithms", "--preset", "study", timeout=300)
    multitask = next(line for line in study.stdout.splitlines() if line.startswith("multitask "))
    assert "lr=0.0002" in multitask  # the study preset's [per_algorithm.multitask] table


def test_one_route_per_algorithm_hyperparameter(tmp_path):
    """A run setting forwarded to the algorithms (inner_lr, ...) is set as a run setting; [algorithm] and
    --algo-arg carry the algorithm's own fields; a preset's per-algorithm table may still tune either."""
    path = tmp_path / "twice.toml"
    path.write_text("[algorithm]\ninner_lr = 1e-2\n")
    with pytest.raises(SuiteError, match=r"algorithm.inner_lr is the run setting inner_lr: give it once, as the "
                                         r"top-level key `inner_lr = ...` \(on the command line --inner-lr\)"):
        resolve_config("quick", str(path), {"algo": "maml"})
    out = run_suite("run", "--algo", "maml", "--algo-arg", "inner_steps=2", timeout=120)
    assert out.returncode == 2 and "--inner-steps" in out.stderr and out.stderr.count("\n") == 1
    assert resolve_config("quick", None, {"algo": "maml", "algorithm": {"checkpoint_inner": True}}) is not None
    path.write_text("[per_algorithm.reptile]\ninner_lr = 1e-2\n")
    from metaft.suite.runner import algorithm_kwargs

    assert algorithm_kwargs(resolve_config("quick", str(path), {"algo": "reptile"}))["inner_lr"] == 1e-2


def test_choices_copied_from_lower_layers_agree_with_them():
    """The schema keeps its own copy of choices that torch-importing modules own (so `--help` stays light)."""
    from metaft.algorithms.transformer_learner import HEAD_INITS, POOLINGS
    from metaft.suite import config
    from metaft.tasks.benchmark import PROTOCOLS

    assert (config.POOLINGS, config.HEAD_INITS, config.PROTOCOLS) == (POOLINGS, HEAD_INITS, PROTOCOLS)
