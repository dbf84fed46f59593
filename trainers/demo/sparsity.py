"""Held-out latent frequencies of the demo SAEs, stored beside them (issue #13).

Each exported seed gets `sparsity.safetensors` (SAELens's convention: log10(freq + 1e-10), `stored_log10_density`) measured
on the *whole* eval split of the demo corpus (3,236,224 tokens for Python 3.11.7's stdlib, so frequencies resolve down to
1 / 3,236,224 ≈ 3.1e-7), and the manifest records, per seed, how many tokens that was (`saes.<seed>.sparsity`). Readers
(`paper_figures.py --source demo`) use these frequencies instead of counting on a small sample: on 65,536 tokens anything
rarer than ~1.5e-5 looks dead.

`sae-analysis demo sparsity` re-measures an existing suite (no training) and rewrites the files and the manifest.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from sae_analysis.frequency import FrequencyResult, latent_frequencies, stored_log10_density
from sae_analysis.io import load_model, load_sae
from sae_analysis.io.native import write_log10_density
from sae_analysis.io.readers import write_json
from sae_analysis.metrics import RARE_FREQ, frequency_fractions

log = logging.getLogger(__name__)

SPARSITY_SPLIT = "eval"
"""The demo corpus split the stored frequencies are counted on (the SAEs never train on it)."""
MIN_SPARSITY_TOKENS = 2**20
"""The stored frequencies must rest on at least this many tokens (1,048,576: resolves 9.5e-7 < 1e-6)."""


def sparsity_record(freq: FrequencyResult, split: str = SPARSITY_SPLIT) -> dict[str, Any]:
    """What the manifest says about stored frequencies: token count, smallest resolvable frequency, fractions."""
    return {"split": split, "n_tokens": freq.n_tokens, "min_resolvable_freq": 1 / freq.n_tokens, "l0": freq.l0,
            **frequency_fractions(freq.freq), "frac_below_1e-4": float((freq.freq < RARE_FREQ).double().mean())}


def measure_and_store(model: Any, folder: Path, tokens: torch.Tensor, *, batch_size: int = 64,
                      min_tokens: int = MIN_SPARSITY_TOKENS) -> dict[str, Any]:
    """Count every latent of the SAE in `folder` on `tokens` (fp32), write its sparsity.safetensors, return the record.
    Refuses fewer than `min_tokens` tokens (the quick CI build passes a smaller minimum)."""
    if tokens.numel() < min_tokens:
        raise ValueError(f"stored frequencies need >= {min_tokens:,} tokens, got {tokens.numel():,}")
    sae = load_sae(folder, dtype=torch.float32)
    freq = latent_frequencies(model, sae, tokens, batch_size=batch_size)
    write_log10_density(folder, stored_log10_density(freq.freq))
    record = sparsity_record(freq)
    log.info("%s: %s held-out tokens, dead %.4f, below 1e-6 %.4f", folder.name, f"{freq.n_tokens:,}", record["frac_dead"],
             record["frac_below_1e-6"])
    return record


def heldout_tokens(seq_len: int) -> torch.Tensor:
    """The whole eval split of the demo corpus."""
    from sae_analysis.io.demo import demo_tokens

    return demo_tokens(SPARSITY_SPLIT, seq_len=seq_len)


def remeasure_suite(out: Path) -> dict[str, Any]:
    """Re-measure the stored frequencies of every seed of the suite in `out` and update its manifest; returns it."""
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model = load_model(out / "model")
    tokens = heldout_tokens(int(manifest["corpus"]["seq_len"]))
    for name, entry in manifest["saes"].items():
        entry["sparsity"] = measure_and_store(model, out / name, tokens)
    manifest["headline"].update(headline_sparsity(manifest["saes"]))
    write_json(manifest_path, manifest)
    return manifest


def headline_sparsity(saes: dict[str, Any]) -> dict[str, Any]:
    """Mean dead / below-1e-6 fractions over seeds from the stored frequencies, with their token count."""
    recs = [s["sparsity"] for s in saes.values()]
    return {"sae_mean_frac_dead": round(sum(r["frac_dead"] for r in recs) / len(recs), 4),
            "sae_mean_frac_below_1e-6": round(sum(r["frac_below_1e-6"] for r in recs) / len(recs), 4),
            "sparsity_tokens": min(r["n_tokens"] for r in recs)}
