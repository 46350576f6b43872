"""The suite's one error base. The CLI catches `SuiteError` only and exits with its `exit_code`;
anything else is a bug and keeps its traceback.

This module imports nothing from the project, so every layer (tasks and algorithms at the
bottom included) may raise these errors without an upward import.
"""
from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1


class SuiteError(Exception):
    """Bad input or an unrecoverable condition; the message names the problem and the fix."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(SuiteError, ValueError):
    """A config value, option or hyperparameter is invalid (also a `ValueError` for library callers)."""


class NotFoundError(SuiteError, KeyError):
    """A name (algorithm, dataset, metric, task type) is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its message; a user should not see the quotes
        return str(self.args[0]) if self.args else ""


class UnreachableError(SuiteError, ConnectionError):
    """A service (the Hugging Face Hub, a Ray cluster) cannot be reached."""


class FailedRunError(SuiteError):
    """A run started but could not finish (a NaN loss, out of memory); finished work is kept."""

    exit_code = EXIT_RUN_FAILED
