"""The `suite` command: one parser, subcommands from small modules, one error policy.

Bad input raises a `SuiteError` whose message names the problem and the fix; here it becomes
one line on stderr and its exit status (2 for bad input, 1 for a run that failed). Nothing else
is caught: a bug keeps its traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from ..foundation.errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, SuiteError

QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONWARNINGS": "ignore",
}


QUIET_LOGGERS = ("huggingface_hub", "datasets", "transformers", "filelock", "urllib3", "fsspec")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (argparse prints the whole usage block first); subcommands
    inherit the class."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="suite",
        description="Benchmark meta-learned fine-tuning (MAML, Reptile, ...) of language models against plain "
                    "fine-tuning: quality, time, memory and GPU-hours per task.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import cluster, leaderboard, run, tasks

    for module in (tasks, run, leaderboard, cluster):
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
        for name in QUIET_LOGGERS:  # each of their warnings came twice: their own handler and the root's
            logging.getLogger(name).setLevel(logging.ERROR)
        if "transformers" in sys.modules:  # imported before `main` (in-process use): the variables came too late
            sys.modules["transformers"].logging.set_verbosity_error()
            sys.modules["transformers"].logging.disable_progress_bar()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
            sys.modules["datasets"].logging.set_verbosity_error()


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
    except SuiteError as exc:  # only the suite's own errors: any other exception is a bug and keeps its traceback
        if args.verbose >= 2:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        prefix = "run failed" if exc.exit_code == EXIT_RUN_FAILED else "error"
        print(f"suite: {prefix}: {message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
