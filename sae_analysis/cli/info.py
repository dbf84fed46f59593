"""`sae-analysis info SOURCE [NAME]`: format, shapes, activation, config and decoder-norm statistics of one SAE."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

HELP = "show an SAE checkpoint's format, shapes, config and decoder-norm statistics"
UNIT_TOL = 1e-3
"""A decoder row counts as unit norm when | ||W_dec[i]|| - 1 | <= UNIT_TOL (published gelu-1l rows drift, REPLICATION.md §3.4)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="local folder or file, 'demo', or a Hub repo id such as NeelNanda/sparse_autoencoder")
    parser.add_argument("name", nargs="?", default=None, help="file stem, alias (run1, run2) or sub-folder inside SOURCE")
    parser.add_argument("--format", default=None, help="force a format: original, saelens, sparsify, dictionary_learning")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def decoder_norm_stats(norms: torch.Tensor) -> dict[str, float]:
    """min / median / max of the decoder row norms and the fraction within UNIT_TOL of 1."""
    n = norms.double()
    return {
        "min": float(n.min()),
        "median": float(n.median()),
        "max": float(n.max()),
        "frac_unit": float(((n - 1).abs() <= UNIT_TOL).double().mean()),
    }


def summarize(sae: Any) -> dict[str, Any]:
    """The JSON-safe summary printed by `info`."""
    c = sae.cfg
    meta = {k: v for k, v in sae.meta.items() if k != "cfg"}
    return {
        "format": sae.meta.get("format"),
        "d_in": c.d_in,
        "d_sae": c.d_sae,
        "dtype": str(sae.dtype).removeprefix("torch."),
        "activation": c.activation,
        "k": c.k,
        "config": c.to_dict(),
        "source_cfg": sae.meta.get("cfg", {}),
        "provenance": meta,
        "decoder_norms": decoder_norm_stats(sae.decoder_norms()),
        "has_log10_density": sae.log10_density is not None,
    }


def _text(s: dict[str, Any]) -> str:
    dn = s["decoder_norms"]
    lines = [
        f"format      {s['format']}",
        f"source      {s['provenance'].get('repo') or s['provenance'].get('path')}  ({s['provenance'].get('filename')})",
        f"d_in        {s['d_in']}",
        f"d_sae       {s['d_sae']}",
        f"dtype       {s['dtype']}",
        f"activation  {s['activation']}" + (f" (k={s['k']})" if s["k"] else ""),
        f"decoder row norms  min {dn['min']:.4g}  median {dn['median']:.4g}  max {dn['max']:.4g}  "
        f"within {UNIT_TOL:g} of 1: {100 * dn['frac_unit']:.1f}%",
        f"log10 density stored: {'yes' if s['has_log10_density'] else 'no'}",
        "config      " + json.dumps(s["config"], sort_keys=True),
        "source cfg  " + json.dumps(s["source_cfg"], sort_keys=True, default=str),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sae_analysis import load_sae

    sae = load_sae(args.source, args.name, revision=args.revision, format=args.format)
    summary = summarize(sae)
    print(json.dumps(summary, default=str) if args.json else _text(summary))
    return 0
