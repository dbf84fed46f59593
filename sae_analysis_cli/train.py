"""`sae-analysis train`: the subcommand module; the implementation lives in `trainers.cli`."""

from __future__ import annotations

from trainers.cli import HELP, add_arguments, run

__all__ = ["HELP", "add_arguments", "run"]
