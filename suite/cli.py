"""The `suite` command: one parser, subcommands from small modules, one error policy.

Bad input raises an error whose message names the problem and the fix; here it
becomes one line on stderr and exit status 2 (1 for failures during a run).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__

EXIT_BAD_INPUT = 2
QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONWARNINGS": "ignore",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suite",
        description="Benchmark meta-learned fine-tuning (MAML, Reptile, ...) of language models against plain "
                    "fine-tuning: quality, time, memory and GPU-hours per task.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import cli_cluster, cli_leaderboard, cli_run, cli_tasks

    for module in (cli_tasks, cli_run, cli_leaderboard, cli_cluster):
        module.add_parsers(sub)
    return parser


def _configure_logging(verbosity: int) -> None:
    """Quiet by default. Environment variables rather than library calls: they cost no import
    (`suite tune` never loads transformers in the driver) and reach Ray trial workers too."""
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbosity == 0:
        import warnings

        warnings.filterwarnings("ignore")
        for name, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        if "transformers" in sys.modules:  # imported before `main` (in-process use): the variables came too late
            sys.modules["transformers"].logging.set_verbosity_error()
            sys.modules["transformers"].logging.disable_progress_bar()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
            sys.modules["datasets"].logging.set_verbosity_error()


def bad_input_errors() -> tuple[type[BaseException], ...]:
    from algorithms.registry import AlgorithmError
    from tasks import DataError, UnknownDatasetError

    from .errors import SuiteError
    from .results import ResultsError

    return (SuiteError, DataError, UnknownDatasetError, AlgorithmError, ResultsError, ValueError,
            FileNotFoundError, ConnectionError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `suite ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted; finished work is saved (rerun with --resume where the command supports it)",
              file=sys.stderr)
        return 130
    except bad_input_errors() as exc:
        if args.verbose >= 2:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"suite: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
