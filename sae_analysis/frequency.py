"""Latent firing frequencies, streamed over tokens with O(d_sae) memory and exact integer counts (REPLICATION.md §8)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from sae_analysis.activations import hook_activations, token_batches
from sae_analysis.metrics import SPARSITY_EPS, firing_counts, freq_from_log10
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
    counts = torch.zeros(sae.cfg.d_sae, dtype=torch.int64, device=sae.device)
    n_tokens = 0
    for x in activations:
        x = x.reshape(-1, sae.cfg.d_in).to(sae.device)
        counts += firing_counts(sae.encode(x))
        n_tokens += x.shape[0]
    if n_tokens == 0:
        raise ValueError("no activations were given: cannot estimate frequencies from zero tokens")
    freq = counts.double() / n_tokens
    return FrequencyResult(freq.cpu(), counts.cpu(), n_tokens, float(freq.sum()), f"{source}: {n_tokens} tokens")


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
    name = resolve_hook_name(sae, hook_name)
    batches = token_batches(tokens, batch_size)
    if progress:
        batches = tqdm(batches, total=-(-tokens.shape[0] // batch_size), desc="frequencies", unit="batch")
    acts = (hook_activations(model, b, name) for b in batches)
    return frequencies_from_activations(sae, acts, source="model")


def stored_log10_density(freq: Float[Tensor, " d_sae"]) -> Float[Tensor, " d_sae"]:
    """The per-latent log10 density a checkpoint stores (SAELens's sparsity.safetensors convention): float32
    log10(freq + SPARSITY_EPS), computed in float64 so that a dead latent is stored as exactly -10."""
    return torch.log10(freq.double() + SPARSITY_EPS).float()


def frequencies_from_log10(
    log10_density: Float[Tensor, " d_sae"], source: str, *, eps: float = SPARSITY_EPS
) -> FrequencyResult:
    """Wrap a stored per-latent log10 density log10(freq + eps) as a FrequencyResult (eps: SAELens's and our
    sparsity.safetensors offset, 1e-10). The offset is subtracted again, so a stored dead latent (log10(eps) = -10, or
    -inf) comes back as frequency exactly 0. NaN and +inf are rejected."""
    d = log10_density.double()
    if torch.isnan(d).any() or torch.isposinf(d).any():
        raise ValueError(f"stored log10 densities from {source} contain NaN or +inf")
    freq = freq_from_log10(d, eps)
    counts = torch.full(freq.shape, -1, dtype=torch.int64)
    return FrequencyResult(freq, counts, 0, float(freq.sum()), f"stored: {source}")
