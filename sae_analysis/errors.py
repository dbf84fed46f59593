"""The project's own error types: the `sae-analysis` command turns these into one line on stderr and exit code 2.

Anything else that escapes a command (a `TypeError`, an `AttributeError`, a plain `ValueError` from a library) is a bug and
keeps its traceback. Every class here is also a `ValueError`, so callers that caught `ValueError` before still work.
"""

from __future__ import annotations


class ProjectError(ValueError):
    """Base class of every error the project raises on purpose for bad input, with a message naming the fix."""


class UsageError(ProjectError):
    """A command-line flag, a configuration value or an input file's contents cannot be used as given."""


__all__ = ["ProjectError", "UsageError"]
