"""Latent firing frequencies, streamed over tokens with O(d_sae) memory and exact integer counts (REPLICATION.md §8)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from sae_analysis.activations import hook_activations, token_batches
from sae_analysis.metrics import firing_counts
from sae_analysis.sae import SAE

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


class FrequencyResult(NamedTuple):
    """Per-latent firing frequency (fraction of tokens with f > 0) and where it came from."""

    freq: Float[Tensor, " d_sae"]
    """float64 frequencies."""
    counts: Int[Tensor, " d_sae"]
    """Exact int64 firing counts; -1 everywhere when the frequencies were read from a stored log10 density."""
    n_tokens: int
    """Tokens counted (0 when read from a stored density)."""
    l0: float
    """Mean active latents per token = sum of frequencies."""
    source: str
    """Human-readable provenance, e.g. 'model: 65536 tokens' or 'stored: sparsity.safetensors'."""


def resolve_hook_name(sae: SAE, hook_name: str | None) -> str:
    """The hook to read: the explicit argument, else the SAE's configured hook."""
    name = hook_name or sae.cfg.hook_name
    if not name:
        raise ValueError("this SAE's config names no hook_name; pass hook_name='blocks.0.mlp.hook_post' (for example)")
    return name


@torch.no_grad()
def frequencies_from_activations(
    sae: SAE, activations: Iterable[Float[Tensor, "batch d_in"]], *, source: str = "activations"
) -> FrequencyResult:
    """Count firings of every latent over a stream of activation batches. Memory is O(d_sae + batch * d_sae)."""
    return frequencies_of_many({"sae": sae}, activations, source=source)["sae"]


@torch.no_grad()
def frequencies_of_many(
    saes: Mapping[str, SAE], activations: Iterable[Float[Tensor, "batch d_in"]], *, source: str = "activations"
) -> dict[str, FrequencyResult]:
    """Firing frequencies of several SAEs that read the same activations, from one pass over the stream: each batch is
    encoded by every distinct SAE (one given under two names is counted once). Memory is O(d_sae) per SAE plus one
    batch's latents at a time; the counts equal those of separate passes exactly."""
    if not saes:
        raise ValueError("no SAEs given")
    distinct = {id(sae): sae for sae in saes.values()}
    d_ins = {sae.cfg.d_in for sae in distinct.values()}
    if len(d_ins) > 1:
        raise ValueError(f"these SAEs read activations of different widths {sorted(d_ins)}: count them separately")
    d_in = d_ins.pop()
    counts = {key: torch.zeros(sae.cfg.d_sae, dtype=torch.int64, device=sae.device) for key, sae in distinct.items()}
    n_tokens = 0
    for x in activations:
        x = x.reshape(-1, d_in)
        for key, sae in distinct.items():
            counts[key] += firing_counts(sae.encode(x.to(sae.device)))
        n_tokens += x.shape[0]
    if n_tokens == 0:
        raise ValueError("no activations were given: cannot estimate frequencies from zero tokens")
    out = {}
    for key, c in counts.items():
        freq = c.double() / n_tokens
        out[key] = FrequencyResult(freq.cpu(), c.cpu(), n_tokens, float(freq.sum()), f"{source}: {n_tokens} tokens")
    return {name: out[id(sae)] for name, sae in saes.items()}


def latent_frequencies(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "n_seq pos"],
    *,
    hook_name: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> FrequencyResult:
    """Frequencies of every latent over `tokens`, running the model batch by batch (fp32, no autocast, as Neel's get_freqs).

    Counts are exact integers, so the result does not depend on `batch_size`.
    """
    return latent_frequencies_many(model, {"sae": sae}, tokens, hook_name=hook_name, batch_size=batch_size, progress=progress)[
        "sae"
    ]


def latent_frequencies_many(
    model: HookedTransformer,
    saes: Mapping[str, SAE],
    tokens: Int[Tensor, "n_seq pos"],
    *,
    hook_name: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, FrequencyResult]:
    """`latent_frequencies` of several SAEs on the same hook and tokens with one model forward per batch (each batch's
    activations computed once, then encoded by every SAE: `frequencies_of_many`)."""
    if not saes:
        raise ValueError("no SAEs given")
    names = {resolve_hook_name(sae, hook_name) for sae in saes.values()}
    if len(names) != 1:
        raise ValueError(f"these SAEs read different hooks {sorted(names)}: count them separately")
    hook = names.pop()
    batches = token_batches(tokens, batch_size)
    if progress:
        batches = tqdm(batches, total=-(-tokens.shape[0] // batch_size), desc=f"frequencies ({len(saes)} SAEs)", unit="batch")
    acts = (hook_activations(model, b, hook) for b in batches)
    return frequencies_of_many(saes, acts, source="model")


def frequencies_from_log10(log10_density: Float[Tensor, " d_sae"], source: str) -> FrequencyResult:
    """Wrap a stored per-latent log10 density (SAELens sparsity.safetensors, or a training snapshot) as a FrequencyResult.

    Dead latents stored as -inf (or very negative) become frequency 0. Non-finite values other than -inf are rejected.
    """
    d = log10_density.double()
    if torch.isnan(d).any() or torch.isposinf(d).any():
        raise ValueError(f"stored log10 densities from {source} contain NaN or +inf")
    freq = torch.pow(10.0, d)
    counts = torch.full(freq.shape, -1, dtype=torch.int64)
    return FrequencyResult(freq, counts, 0, float(freq.sum()), f"stored: {source}")
