"""`python -m trainers --preset NAME [--key value ...] [--out DIR] [--resume]`: the same as `sae-analysis train` (the same
parser, and the same one-line refusals for the project's own errors)."""

from __future__ import annotations

import sys

from sae_analysis.cli import main as dispatch


def main(argv: list[str] | None = None) -> int:
    return dispatch(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
