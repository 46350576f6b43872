"""One error base: every exception the suite defines for users derives from `SuiteError`, which
is what the CLI turns into one line and an exit code (and nothing else)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from metaft.suite.foundation.errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, ConfigError, NotFoundError, SuiteError

PACKAGES = ("metaft.suite", "metaft.algorithms", "metaft.tasks", "metaft.leaderboard", "metaft.cluster")


def project_exception_classes() -> list[type]:
    found = []
    for package in PACKAGES:
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, prefix=f"{package}."):
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == info.name:
                    found.append(obj)
    return found


def test_every_project_exception_derives_from_the_one_base():
    classes = project_exception_classes()
    assert len(classes) >= 10  # the walk really found the project's errors
    strays = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, SuiteError)]
    assert not strays, f"exceptions outside SuiteError: {strays}"


def test_exit_codes_and_library_compatible_bases():
    from metaft.algorithms import AlgorithmError, NonFiniteLossError
    from metaft.suite.runner import RunFailed
    from metaft.tasks import DataError, UnknownDatasetError

    assert RunFailed("x").exit_code == NonFiniteLossError("x").exit_code == EXIT_RUN_FAILED
    assert DataError("x").exit_code == AlgorithmError("x").exit_code == EXIT_BAD_INPUT
    # library callers that caught the old built-in bases keep working
    assert issubclass(AlgorithmError, ValueError) and issubclass(UnknownDatasetError, KeyError)
    assert issubclass(NonFiniteLossError, FloatingPointError) and issubclass(DataError, RuntimeError)
    assert str(NotFoundError("unknown dataset 'x'")) == "unknown dataset 'x'"  # no KeyError quotes


def test_config_errors_are_value_errors_with_the_message():
    from metaft.algorithms import get_algorithm

    with pytest.raises(ConfigError, match="inner_lr must be a positive number"):
        get_algorithm("maml", inner_lr=-1.0)


def test_usage_errors_are_one_line_and_every_comma_list_drops_empty_items(capsys):
    from metaft.suite import cli
    from metaft.suite.cli.run import comma_list

    assert comma_list(" a, ,b,") == ["a", "b"]
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--finetune-lr-grid", "1e-5,x"])
    err = capsys.readouterr().err
    assert exited.value.code == EXIT_BAD_INPUT and err.count("\n") == 1 and "comma-separated numbers" in err
    args = cli.build_parser().parse_args(["tune", "--models", "a,,b", "--algos", "reptile,", "--datasets", "ag_news,"])
    assert args.models == ["a", "b"] and args.algos == ["reptile"] and args.datasets == ["ag_news"]
    args = cli.build_parser().parse_args(["run", "--model", "minilm,", "--finetune-lr-grid", "1e-5, 3e-5"])
    assert args.models == ["minilm"] and args.finetune_lr_grid == [1e-5, 3e-5]
