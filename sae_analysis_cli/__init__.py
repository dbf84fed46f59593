"""`sae-analysis` console script: an argparse subcommand registry.

Each subcommand lives in its own module, listed in `SUBCOMMANDS`, exposing `HELP: str`, `add_arguments(parser)` and
`run(args) -> int`. A module is imported only when its subcommand runs (or to show its help line in `--help`); a
listed module that does not exist yet shows as "(not installed)". Library errors (`SAELoadError`, `OSError`,
`ValueError`) become a one-line message on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

SUBCOMMANDS = {
    "info": "sae_analysis_cli.info",
    "analyze": "sae_analysis_cli.analyze",
    "compare": "sae_analysis_cli.compare",
    "train": "sae_analysis_cli.train",
    "demo": "sae_analysis_cli.demo",
}
EXIT_ERROR = 2


def _module(name: str) -> ModuleType | None:
    """The subcommand's module, or None when it is not installed (the file does not exist)."""
    modname = SUBCOMMANDS[name]
    if importlib.util.find_spec(modname) is None:
        return None
    return importlib.import_module(modname)


def _help_line(name: str) -> str:
    try:
        mod = _module(name)
    except Exception as e:  # another owner's module failing to import must not break `--help`
        return f"(failed to import: {type(e).__name__})"
    return "(not installed)" if mod is None else str(getattr(mod, "HELP", ""))


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """Top-level parser. Only `selected`'s module is imported for its arguments; without one (e.g. `--help`), every
    module is imported for its help line."""
    parser = argparse.ArgumentParser(
        prog="sae-analysis",
        description="Load, inspect, analyse and train sparse autoencoders on gelu-1l's MLP neurons.",
        epilog="Run `sae-analysis COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        if selected is None:
            sub.add_parser(name, help=_help_line(name))
        elif name == selected:
            mod = _module(name)
            sp = sub.add_parser(name, help=getattr(mod, "HELP", ""), description=getattr(mod, "HELP", None))
            if mod is not None:
                mod.add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sae-analysis` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected is not None and selected not in SUBCOMMANDS:
        selected = None  # argparse reports the invalid choice
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    mod = _module(args.command)
    if mod is None:
        print(f"sae-analysis: the {args.command!r} command is not installed ({SUBCOMMANDS[args.command]})", file=sys.stderr)
        return EXIT_ERROR
    try:
        return int(mod.run(args) or 0)
    except (ValueError, OSError) as e:  # SAELoadError is a ValueError
        print(f"sae-analysis {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


__all__ = ["SUBCOMMANDS", "main", "build_parser"]
