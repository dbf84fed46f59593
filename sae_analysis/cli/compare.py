"""`sae-analysis compare A B [--model M] [--tokens N | --tokens-file F] [--json OUT]`: two SAEs (seeds or runs) side by side.

A and B are each SOURCE or SOURCE:NAME (e.g. demo:seed1, NeelNanda/sparse_autoencoder:run2). Prints the
`compare_summary` numbers (keys documented in `sae_analysis.table.COMPARE_KEYS`) as JSON: the cosine between the two ULF
mean encoder directions and the median best-match cosines (REPLICATION.md §9.4). Frequencies come from `--model` when
given, else from each checkpoint's stored densities; without them the frequency-based keys are null.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sae_analysis.cli.analyze import add_source_arguments, emit, frequencies, keys_epilog, model_and_tokens

HELP = "compare two SAEs (seeds or runs): ULF-direction cosine and best-match cosines, as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sae_analysis.table import COMPARE_KEYS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = keys_epilog(COMPARE_KEYS)
    parser.add_argument("a", help="first SAE: SOURCE or SOURCE:NAME (e.g. demo:seed1)")
    parser.add_argument("b", help="second SAE: SOURCE or SOURCE:NAME (e.g. demo:seed2)")
    add_source_arguments(parser)


def split_spec(spec: str) -> tuple[str, str | None]:
    """'SOURCE:NAME' -> (SOURCE, NAME); a spec whose part after the last ':' looks like a path, or that is an existing
    path, is a SOURCE alone (so 'C:/x' or 'runs/a:b' on disk stay intact)."""
    if Path(spec).exists() or ":" not in spec:
        return spec, None
    source, name = spec.rsplit(":", 1)
    if not source or not name or "/" in name or "\\" in name:
        return spec, None
    return source, name


def run(args: argparse.Namespace) -> int:
    """Run `compare`; returns the exit status."""
    from sae_analysis.io import load_sae
    from sae_analysis.table import compare_summary

    saes = [load_sae(*split_spec(spec), device=args.device) for spec in (args.a, args.b)]
    model, tokens = model_and_tokens(args)
    freqs = [frequencies(sae, model, tokens, args) for sae in saes]
    emit(compare_summary(saes[0], saes[1], freq_a=freqs[0], freq_b=freqs[1]), args.json)
    return 0
