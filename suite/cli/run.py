"""`suite run`: meta-train, fine-tune every meta-test task, meter the cost, store results.
Also `suite results` to list and summarise stored runs."""
from __future__ import annotations

import argparse

from ..config import PRESETS, RunConfig, preset, resolve_config
from ..foundation.errors import SuiteError
from ..settings import HelpWithDefaults, add_arguments, comma_floats, comma_list, overrides_from_args

__all__ = ["add_parsers", "comma_floats", "comma_list", "config_from_args", "seed_value"]


def seed_value(value: str) -> int:
    """argparse type of every seed option: an integer numpy accepts as a seed."""
    from ..config import MAX_SEED

    try:
        seed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be in [0, {MAX_SEED}], got {value}")
    return seed


SETTING_TYPES = {"seeds": {"type": seed_value, "nargs": "+"}}  # argparse keywords the type hint does not give


def preset_configs() -> dict[str, RunConfig]:
    """Every preset as a run would start from it: the defaults `--help` shows."""
    return {name: preset(name) for name in PRESETS}


def add_setting_arguments(p: argparse.ArgumentParser, *, for_tune: bool = False) -> list[str]:
    """The flags of the run settings (`suite/settings.py`), shared by `suite run` and `suite tune`."""
    return add_arguments(p, RunConfig, preset_configs(), for_tune=for_tune, types=SETTING_TYPES)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="meta-train, fine-tune every meta-test task, meter the cost, store results",
        description="Run one algorithm through the benchmark protocol: meta-train on the meta-training tasks, "
                    "fine-tune and evaluate every meta-test task, and write metered result rows. Settings left "
                    "out come from the preset, then from --config; every setting is also a key of --config "
                    "(docs/reference/settings.md).", formatter_class=HelpWithDefaults)
    p.add_argument("--preset", choices=PRESETS, default="quick", help="budget preset")
    p.add_argument("--config", default=None, help="TOML or YAML file overriding the preset (unknown keys are errors)")
    p.add_argument("--algo-arg", dest="algo_args", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyperparameter of the chosen algorithm's Config (repeatable; values as in TOML, "
                        "e.g. --algo-arg lr_lr=1e-3 --algo-arg outer='\"interpolate\"' or outer=interpolate); the "
                        "same as the [algorithm] table of --config")
    p.add_argument("--data-dir", default=None, help="dataset mirror folder (default: $SUITE_DATA_DIR, else the Hub)")
    p.add_argument("--out", default="results", help="results folder or object-store URI")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run: skip finished tasks")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run folder and start again")
    p.add_argument("--keep-init", action="store_true", help="keep the meta-learned init (init.pt) after the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run, settings=add_setting_arguments(p))
    add_deepspeed_options(p)

    p = sub.add_parser("results", help="list stored runs or summarise one")
    p.add_argument("dirs", nargs="*", default=["results"], help="results folders or run folders")
    add_skip_corrupt(p)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("algorithms", help="list algorithms and the hyperparameters a run would use")
    p.add_argument("--preset", choices=PRESETS, default="quick",
                   help="show the values a run of this preset would use")
    p.add_argument("--config", default=None, help="and of this TOML/YAML file on top of the preset")
    p.set_defaults(func=cmd_algorithms)


def add_deepspeed_options(p: argparse.ArgumentParser) -> None:
    ds = p.add_argument_group("DeepSpeed (with --engine deepspeed)")
    ds.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=None, help="ZeRO stage (default 2)")
    precision = ds.add_mutually_exclusive_group()
    precision.add_argument("--bf16", dest="ds_precision", action="store_const", const="bf16", default=None)
    precision.add_argument("--fp16", dest="ds_precision", action="store_const", const="fp16")
    ds.add_argument("--deepspeed-config", default=None,
                    help="a DeepSpeed JSON config (see cluster/deepspeed/); overrides --zero and precision")


def add_skip_corrupt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-corrupt", action="store_true",
                   help="leave out runs whose result files are damaged (named, with a count) instead of stopping")


def config_from_args(args):
    """The run's config: the preset, then --config, then the settings given as flags."""
    if getattr(args, "ft_steps", None) is not None and args.ft_steps < 1:
        raise SuiteError(f"--ft-steps must be >= 1, got {args.ft_steps} (leave it out for the preset's budget per "
                         f"task type)")
    if getattr(args, "datasets", None) is not None and not args.datasets:
        raise SuiteError("--datasets is empty; name at least one dataset (see `suite tasks list`) or leave it out")
    ds_flags = [flag for flag, value in (("--zero", args.zero), ("--bf16/--fp16", args.ds_precision),
                                         ("--deepspeed-config", args.deepspeed_config)) if value is not None]
    overrides = overrides_from_args(args, args.settings)
    if args.algo_args:
        overrides["algorithm"] = dict(parse_algo_args(args.algo_args))
    ds = {k: v for k, v in (("zero", args.zero), ("precision", args.ds_precision),
                            ("config_file", args.deepspeed_config)) if v is not None}
    config = resolve_config(args.preset, args.config, overrides)
    if ds_flags and config.engine != "deepspeed":
        raise SuiteError(f"{', '.join(ds_flags)} needs --engine deepspeed (the torch engine ignores it)")
    if ds:
        config.deepspeed = {**config.deepspeed, **ds}
    return config


def parse_algo_args(items: list[str]) -> list[tuple[str, object]]:
    """``KEY=VALUE`` pairs; a value is read as a TOML literal (numbers, booleans, quoted strings)
    and otherwise kept as a plain string."""
    import tomllib

    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SuiteError(f"--algo-arg {item!r} is not KEY=VALUE, e.g. --algo-arg lr_lr=1e-3")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        out.append((key.strip(), parsed))
    return out


def cmd_run(args) -> int:
    from ..runner import Runner
    from .summary import format_summary

    config = config_from_args(args)
    engine = None
    if config.engine == "deepspeed":
        from metaft.cluster.deepspeed_engine import engine_from_config

        engine = engine_from_config(config)
    runner = Runner(config, args.out, args.data_dir, resume=args.resume, overwrite=args.overwrite,
                    keep_init=args.keep_init, progress=not args.no_progress, engine=engine)
    for result in runner.run_all():  # a RunFailed reaches `suite.cli.main`: one line, exit 1
        print(format_summary(result.tasks, result.run_row))
        for note in result.notes:
            print(f"\nnote: {note}")
        print(f"\nresults: {result.path}" + (" (already complete)" if result.skipped else ""))
    return 0


def cmd_results(args) -> int:
    from ..results import load_results
    from ..table import format_table

    runs, tasks = load_results(*args.dirs, skip_corrupt=args.skip_corrupt)
    if runs.empty:
        print("no complete runs found")
        return 0
    rows = [[r.run_id, r.algo, r.model, r.seed, r.n_tasks, f"{r.mean_metric:.3f}", f"{r.meta_wall_seconds:.1f}",
             f"{r.total_ft_seconds:.1f}", f"{r.total_gpu_hours:.5f}"] for r in runs.itertuples()]
    print(format_table(["run", "algo", "model", "seed", "tasks", "mean metric", "meta-train s", "fine-tune s",
                        "GPU-h"], rows, "llllrrrrr"))
    return 0


def cmd_algorithms(args) -> int:
    """Each algorithm's hyperparameters as a run of ``--preset`` (and ``--config``) would pass them:
    the run settings it accepts, its per-algorithm table, then [algorithm]; a value that differs
    from the algorithm's own Config default says so."""
    import dataclasses

    from metaft.algorithms import algorithm_class, list_algorithms

    from ..runner import algorithm_kwargs
    from ..settings import default_of
    from ..table import format_table

    rows = []
    for name in list_algorithms():
        cls = algorithm_class(name)
        config = resolve_config(args.preset, args.config, {"algo": name})
        used = algorithm_kwargs(config)
        # the runner hands every adaptation the run's step budget, so the Config's own default is never used
        budget = (f"{config.ft_steps} per task" if config.ft_steps else
                  ", ".join(f"{t} {n}" for t, n in config.budgets.items()) or f"{config.finetune_epochs} epochs")
        shown = []
        for f in dataclasses.fields(cls.Config):
            value, own = used.get(f.name, default_of(f)), default_of(f)
            if f.name == "finetune_steps":
                shown.append(f"finetune_steps=the run's budget ({budget})")
                continue
            shown.append(f"{f.name}={value}" + (f" (Config default {own})" if value != own else ""))
        rows.append([name, (cls.__doc__ or "").strip().splitlines()[0], ", ".join(shown)])
    where = f"the {args.preset} preset" + (f" with {args.config}" if args.config else "")
    print(format_table(["algorithm", "what", f"hyperparameters as a run of {where} uses them"], rows))
    return 0
