"""`sae-analysis analyze SOURCE [NAME] [--model M] [--tokens N | --tokens-file F] [--json OUT] [--table CSV]`.

Prints the `summarize` numbers (keys documented in `sae_analysis.table.KEYS`) as JSON. Frequencies come from the model
when `--model` is given (counted over the tokens), else from the checkpoint's stored densities when it has them
(`frequency_source` says which); reconstruction and W_out null-space numbers need `--model`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sae_analysis.errors import UsageError

HELP = "headline analysis numbers of one SAE (sparsity classes, kurtosis, frequencies, ULF cluster, reconstruction) as JSON"
DEFAULT_TOKENS = 32_768
"""Neel's analysis.py runs on all_tokens[:256] x 128 positions = 32,768 tokens."""
DEMO_SEQ_LEN = 128


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, token and output options shared by `analyze` and `compare`."""
    parser.add_argument("--model", default=None, help="model for frequencies and losses: 'demo', a saved folder, or 'gelu-1l'")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help=f"tokens to run (default {DEFAULT_TOKENS})")
    parser.add_argument("--tokens-file", type=Path, default=None,
                        help=".npy or .pt int array [n_seq, seq_len] (needed with --model, except --model demo)")  # fmt: skip
    parser.add_argument("--hook-name", default=None, help="hook to read (default: the SAE's configured hook)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per model forward")
    parser.add_argument("--device", default="cpu", help="torch device for model and SAE")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON object to this file")
    parser.add_argument("--progress", action="store_true", help="show progress bars")


def keys_epilog(keys: dict[str, str]) -> str:
    """The documented JSON keys, one per line, for --help (the same KEYS dict the README documents)."""
    return "JSON keys (null when undefined):\n" + "\n".join(f"  {k:<34s} {v}" for k, v in keys.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sae_analysis.table import KEYS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = keys_epilog(KEYS)
    parser.add_argument("source", help="local folder or file, 'demo', or a Hub repo id such as NeelNanda/sparse_autoencoder")
    parser.add_argument("name", nargs="?", default=None, help="file stem, alias (run1, run2) or sub-folder inside SOURCE")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    add_source_arguments(parser)
    parser.add_argument("--table", type=Path, default=None, help="write the per-latent feature table to this CSV file")


def load_tokens(args: argparse.Namespace, n_ctx: int) -> torch.Tensor:
    """The first ceil(--tokens / seq_len) sequences of --tokens-file, or of the demo corpus's eval split for --model demo."""
    if args.tokens_file is not None:
        from sae_analysis.io.tokens import load_token_file

        toks = load_token_file(args.tokens_file)
    elif args.model == "demo":
        from sae_analysis.io.demo import demo_tokens

        seq_len = min(DEMO_SEQ_LEN, n_ctx)
        toks = demo_tokens("eval", n=-(-args.tokens // seq_len), seq_len=seq_len)
    else:
        raise UsageError(f"--model {args.model} needs --tokens-file (an int array [n_seq, seq_len])")
    if args.tokens <= 0:
        raise UsageError(f"--tokens must be positive, got {args.tokens}")
    return toks[: -(-args.tokens // toks.shape[1])]


def model_and_tokens(args: argparse.Namespace) -> tuple[Any, Any]:
    """(model, tokens) for --model, or (None, None) without it."""
    if args.model is None:
        return None, None
    from sae_analysis.io import load_model

    model = load_model(args.model, device=args.device)  # keeps TransformerLens's progress prints off stdout
    return model, load_tokens(args, model.cfg.n_ctx)


def frequencies(sae: Any, model: Any, tokens: Any, args: argparse.Namespace) -> Any:
    """FrequencyResult counted with the model when given, else stored with the checkpoint, else None."""
    from sae_analysis.frequency import latent_frequencies
    from sae_analysis.table import stored_frequencies

    if model is None:
        return stored_frequencies(sae)
    return latent_frequencies(model, sae, tokens, hook_name=args.hook_name, batch_size=args.batch_size, progress=args.progress)


def json_safe(d: dict[str, Any]) -> dict[str, Any]:
    """NaN / inf -> None (JSON null); numpy / torch scalars -> Python numbers."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, (np.generic, torch.Tensor)):
            v = v.item()
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out


def emit(result: dict[str, Any], path: Path | None) -> None:
    """Print the JSON object and, with `path`, write it atomically."""
    text = json.dumps(json_safe(result), indent=2, allow_nan=False)
    if path is not None:
        from sae_analysis.io.readers import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    sys.stdout.write(text + "\n")


def write_table(df: Any, path: Path) -> None:
    from sae_analysis.io.readers import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: df.to_csv(tmp))


def run(args: argparse.Namespace) -> int:
    """Run `analyze`; returns the exit status."""
    from sae_analysis.activations import hook_layer
    from sae_analysis.frequency import resolve_hook_name
    from sae_analysis.io import load_sae
    from sae_analysis.reconstruction import reconstruction_losses
    from sae_analysis.table import feature_table, summarize

    sae = load_sae(args.source, args.name, revision=args.revision, device=args.device)
    model, tokens = model_and_tokens(args)
    freq = frequencies(sae, model, tokens, args)
    W_out = recon = W_U = None
    if model is not None:
        hook = resolve_hook_name(sae, args.hook_name)
        if hook.endswith("mlp.hook_post") and model.cfg.d_mlp == sae.cfg.d_in:  # W_out reads exactly this activation
            W_out, W_U = model.W_out[hook_layer(hook)].detach(), model.W_U.detach()
        recon = reconstruction_losses(model, sae, tokens, hook_name=hook, batch_size=args.batch_size, progress=args.progress)
    emit(summarize(sae, freq=freq, W_out=W_out, recon=recon), args.json)
    if args.table is not None:
        write_table(feature_table(sae, freq=freq, W_out=W_out, W_U=W_U), args.table)
    return 0
