"""`sae-analysis` console script: an argparse subcommand registry.

The library's own subcommands (`info`, `analyze`, `compare`) are listed in `BUILTIN`. Other installed packages add theirs
through the entry-point group `sae_analysis.commands` (the trainer registers `train` and `demo` in this project's
`pyproject.toml`), so the library never imports them and the import direction `trainers → sae_analysis` stays one-way.

A subcommand is a module exposing `HELP: str`, `add_arguments(parser)` and `run(args) -> int`; it is imported only when it
runs (or to show its help line in `--help`). The project's own errors (`sae_analysis.errors.ProjectError`: `SAELoadError`,
`UsageError`, the trainer's `ConfigError`; and `OSError` for missing or unreadable files) become one line on stderr
and exit code 2; any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

from sae_analysis.errors import ProjectError

BUILTIN = {
    "info": "sae_analysis.cli.info",
    "analyze": "sae_analysis.cli.analyze",
    "compare": "sae_analysis.cli.compare",
}
ENTRY_POINT_GROUP = "sae_analysis.commands"
EXIT_ERROR = 2


def subcommands() -> dict[str, str]:
    """Subcommand name → module path: the built-in ones, then those other installed packages register."""
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return {**BUILTIN, **{k: v for k, v in sorted(found.items()) if k not in BUILTIN}}


def _module(modname: str) -> ModuleType | None:
    """The subcommand's module, or None when it is not installed (the module does not exist)."""
    try:
        if importlib.util.find_spec(modname) is None:
            return None
    except ModuleNotFoundError:  # its parent package is missing
        return None
    return importlib.import_module(modname)


def _help_line(modname: str) -> str:
    try:
        mod = _module(modname)
    except Exception as e:  # another package's module failing to import must not break `--help`
        return f"(failed to import: {type(e).__name__})"
    return "(not installed)" if mod is None else str(getattr(mod, "HELP", ""))


def build_parser(selected: str | None, commands: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """Top-level parser. Only `selected`'s module is imported for its arguments; without one (e.g. `--help`), every
    module is imported for its help line."""
    commands = subcommands() if commands is None else commands
    parser = argparse.ArgumentParser(
        prog="sae-analysis",
        description="Load, inspect, analyse and train sparse autoencoders on gelu-1l's MLP neurons.",
        epilog="Run `sae-analysis COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in commands.items():
        if selected is None:
            sub.add_parser(name, help=_help_line(modname))
        elif name == selected:
            mod = _module(modname)
            sp = sub.add_parser(name, help=getattr(mod, "HELP", ""), description=getattr(mod, "HELP", None))
            if mod is not None:
                mod.add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sae-analysis` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = subcommands()
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected is not None and selected not in commands:
        selected = None  # argparse reports the invalid choice
    parser = build_parser(selected, commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    mod = _module(commands[args.command])
    if mod is None:
        print(f"sae-analysis: the {args.command!r} command is not installed ({commands[args.command]})", file=sys.stderr)
        return EXIT_ERROR
    try:
        return int(mod.run(args) or 0)
    except (ProjectError, OSError) as e:  # the project's own errors (SAELoadError, UsageError, ...) and missing files
        print(f"sae-analysis {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "subcommands", "main", "build_parser"]
