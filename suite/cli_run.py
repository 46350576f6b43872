"""`suite run`: meta-train, fine-tune every meta-test task, meter the cost, store results.
Also `suite results` to list and summarise stored runs."""
from __future__ import annotations

import argparse

from .config import CURVE_POINTS, EVAL_MODES, PRECISIONS, PRESETS, RECIPE_NAMES, resolve_config
from .errors import SuiteError


def comma_list(value: str) -> list[str]:
    """argparse type of every comma-separated option: items stripped, empty items dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def seed_value(value: str) -> int:
    """argparse type of every seed option: an integer numpy accepts as a seed."""
    from .config import MAX_SEED

    try:
        seed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be in [0, {MAX_SEED}], got {value}")
    return seed


def comma_floats(value: str) -> list[float]:
    try:
        return [float(v) for v in comma_list(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {value!r}") from None

def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="meta-train, fine-tune every meta-test task, meter the cost, store results",
        description="Run one algorithm through the benchmark protocol: meta-train on the meta-training tasks, "
                    "fine-tune and evaluate every meta-test task, and write metered result rows. Options left "
                    "out come from the preset, then from --config.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--algo", default="reptile", help="algorithm (see `suite algorithms`)")
    p.add_argument("--model", default=None, type=comma_list,
                   help="comma-separated models: Hub ids, local folders, or 'minilm' (packaged, offline); "
                        "default: the preset's")
    p.add_argument("--preset", choices=PRESETS, default="quick", help="budget preset")
    p.add_argument("--config", default=None, help="TOML or YAML file overriding the preset (unknown keys are errors)")
    p.add_argument("--benchmark", "--protocol", dest="protocol", choices=("cross-dataset", "in-dataset"), default=None,
                   help="benchmark protocol (default: the preset's, cross-dataset)")
    p.add_argument("--datasets", default=None, type=comma_list, help="comma-separated subset of datasets")
    p.add_argument("--seed", dest="seeds", type=seed_value, nargs="+", default=None, help="one or more seeds")
    p.add_argument("--meta-train-tasks", dest="n_meta_train", type=int, default=None)
    p.add_argument("--meta-test-tasks", dest="n_meta_test", type=int, default=None)
    p.add_argument("--meta-epochs", type=int, default=None, help="passes over the meta-training tasks")
    p.add_argument("--ft-steps", type=int, default=None,
                   help="fine-tuning steps of every task (default: the preset's budget per task type)")
    p.add_argument("--val-tasks", dest="n_meta_val", type=int, default=None,
                   help="validation tasks (held-out parts of the meta-training datasets) for choosing the lr")
    p.add_argument("--finetune-lr-grid", default=None, type=comma_floats,
                   help="comma-separated fine-tuning lrs; the best per task type on the validation tasks is used")
    p.add_argument("--eval-mode", choices=EVAL_MODES, default=None,
                   help="shared: the same fine-tuning for every algorithm (primary); own: the algorithm's own "
                        "adaptation (SGD at the inner lr; head only for anil; learned step sizes for metasgd); "
                        "hindsight: the oracle bound of intermediate (every source, best on the query set)")
    p.add_argument("--recipe", choices=RECIPE_NAMES, default=None,
                   help="how each task is fine-tuned from the algorithm's start: finetune (the shared loop), "
                        "linear-probe (frozen encoder + logistic regression) or setfit (contrastive pairs + "
                        "logistic head); classification only for the last two (default: finetune)")
    p.add_argument("--setfit-iterations", type=int, default=None,
                   help="SetFit's pair iterations: 2 x iterations x support pairs (default 20; 0: SetFit's "
                        "oversampling)")
    p.add_argument("--setfit-lr-grid", default=None, type=comma_floats,
                   help="SetFit body lrs; several are chosen on the validation tasks (default 2e-5, SetFit's)")
    p.add_argument("--pooling", choices=("auto", "mean", "mean-normalized", "first", "last"), default=None,
                   help="sentence vector of the classification head (auto: what the checkpoint was trained with)")
    p.add_argument("--inner-lr", type=float, default=None)
    p.add_argument("--inner-steps", type=int, default=None)
    p.add_argument("--outer-lr", type=float, default=None)
    p.add_argument("--meta-batch-size", type=int, default=None)
    p.add_argument("--finetune-lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--head-init", choices=("proto", "zero", "random"), default=None)
    p.add_argument("--precision", dest="precision", choices=PRECISIONS, default=None,
                   help="bf16: the encoder under autocast, fp32 weights and optimizer state (needs avx512_bf16/AMX "
                        "or a CUDA GPU with bf16, refused otherwise); auto: bf16 where native, else fp32 (the quick "
                        "preset's). Part of the protocol, so bf16 and fp32 rows never pair (default: the preset's)")
    p.add_argument("--curve-points", dest="curve_points", choices=CURVE_POINTS, default=None,
                   help="where the query metric is measured while fine-tuning: log2 (0, 1, 2, 4, ... and the last "
                        "step; the curves costs and the frontier read) or ends (step 0 and the last step: the same "
                        "final metric for less compute). Part of the protocol when not log2 (default: log2)")
    add_peft_options(p)
    p.add_argument("--algo-arg", dest="algo_args", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyperparameter of the chosen algorithm's Config (repeatable; values as in TOML, "
                        "e.g. --algo-arg lr_lr=1e-3 --algo-arg outer='\"interpolate\"' or outer=interpolate)")
    p.add_argument("--first-order", action="store_true", default=None, help="first-order fallback for maml/metasgd")
    p.add_argument("--freeze-embeddings", action="store_true", default=None, help="save memory on large models")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None, help="save memory on large models")
    p.add_argument("--target", choices=("baseline", "best"), default=None,
                   help="steps-to-target quality: the baseline's final metric on the same task (when the results "
                        "folder has it) or target_fraction of this run's best")
    p.add_argument("--data-dir", default=None, help="dataset mirror folder (default $SUITE_DATA_DIR, else the Hub)")
    p.add_argument("--out", default="results", help="results folder")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    p.add_argument("--engine", choices=("torch", "deepspeed"), default=None, help="engine for training steps")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run: skip finished tasks")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run folder and start again")
    p.add_argument("--keep-init", action="store_true", help="keep the meta-learned init (init.pt) after the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    ds = p.add_argument_group("DeepSpeed (with --engine deepspeed)")
    ds.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=None, help="ZeRO stage (default 2)")
    precision = ds.add_mutually_exclusive_group()
    precision.add_argument("--bf16", dest="ds_precision", action="store_const", const="bf16", default=None)
    precision.add_argument("--fp16", dest="ds_precision", action="store_const", const="fp16")
    ds.add_argument("--deepspeed-config", default=None,
                    help="a DeepSpeed JSON config (see cluster/deepspeed/); overrides --zero and precision")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("results", help="list stored runs or summarise one")
    p.add_argument("dirs", nargs="*", default=["results"], help="results folders or run folders")
    add_skip_corrupt(p)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("algorithms", help="list algorithms and their hyperparameters")
    p.set_defaults(func=cmd_algorithms)


def add_skip_corrupt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-corrupt", action="store_true",
                   help="leave out runs whose result files are damaged (named, with a count) instead of stopping")


def add_peft_options(p: argparse.ArgumentParser) -> None:
    """The adapter flags, shared by `suite run` and `suite tune`."""
    g = p.add_argument_group("parameter-efficient fine-tuning (peft)")
    g.add_argument("--peft", choices=("none", "lora", "ia3"), default=None,
                   help="adapters on a frozen backbone; every algorithm then learns and fine-tunes the adapters "
                        "and heads only (default: none, full fine-tuning)")
    g.add_argument("--lora-r", type=int, default=None, help="LoRA rank (default 8)")
    g.add_argument("--lora-alpha", type=int, default=None, help="LoRA alpha (default 16)")
    g.add_argument("--peft-targets", default=None, type=comma_list,
                   help="comma-separated module names to adapt (default: peft's choice for the architecture)")


def peft_overrides(args) -> dict:
    out = {k: getattr(args, k) for k in ("peft", "lora_r", "lora_alpha") if getattr(args, k, None) is not None}
    if getattr(args, "peft_targets", None):
        out["peft_targets"] = args.peft_targets
    return out


OVERRIDES = ("algo", "protocol", "seeds", "n_meta_train", "n_meta_test", "n_meta_val", "eval_mode", "pooling",
             "recipe", "setfit_iterations", "setfit_lr_grid",
             "meta_epochs", "ft_steps", "inner_lr",
             "inner_steps", "outer_lr", "meta_batch_size", "finetune_lr", "batch_size", "max_length", "head_init",
             "first_order", "freeze_embeddings", "gradient_checkpointing", "target", "device", "engine", "precision",
             "curve_points")


def config_from_args(args):
    if getattr(args, "ft_steps", None) is not None and args.ft_steps < 1:
        raise SuiteError(f"--ft-steps must be >= 1, got {args.ft_steps} (leave it out for the preset's budget per "
                         f"task type)")
    if getattr(args, "datasets", None) is not None and not args.datasets:
        raise SuiteError("--datasets is empty; name at least one dataset (see `suite tasks list`) or leave it out")
    ds_flags = [flag for flag, value in (("--zero", args.zero), ("--bf16/--fp16", args.ds_precision),
                                         ("--deepspeed-config", args.deepspeed_config)) if value is not None]
    overrides = {k: getattr(args, k, None) for k in OVERRIDES}
    overrides.update(peft_overrides(args))
    if args.model:
        overrides["models"] = args.model
    if args.datasets:
        overrides["datasets"] = args.datasets
    if args.algo_args:
        overrides["algorithm"] = dict(parse_algo_args(args.algo_args))
    if args.finetune_lr_grid:
        overrides["finetune_lr_grid"] = args.finetune_lr_grid
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
    from .runner import Runner
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
        print(f"\nresults: {result.path}" + (" (already complete)" if result.skipped else ""))
    return 0


def cmd_results(args) -> int:
    from .results import load_results
    from .table import format_table

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
    import dataclasses

    from metaft.algorithms import algorithm_class, list_algorithms

    from .table import format_table

    rows = []
    for name in list_algorithms():
        cls = algorithm_class(name)
        fields = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls.Config))
        rows.append([name, (cls.__doc__ or "").strip().splitlines()[0], fields])
    print(format_table(["algorithm", "what", "hyperparameters (defaults)"], rows))
    return 0
