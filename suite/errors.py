"""The one error type the CLI turns into a one-line message and a non-zero exit."""
from __future__ import annotations


class SuiteError(RuntimeError):
    """Bad input or an unrecoverable condition; the message names the problem and the fix."""
