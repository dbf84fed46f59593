"""`python -m trainers --preset NAME [--key value ...] [--out DIR] [--resume]`: the same as `sae-analysis train`."""

from __future__ import annotations

import argparse
import sys

from trainers.cli import HELP, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
