"""Latent firing frequencies, streamed over tokens with O(d_sae) memory and exact integer counts (REPLICATION.md §8)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from sae_analysis.activations import hook_activations, token_batches
from sae_analysis.metrics import SPARSITY_EPS, freq_from_log10, grouped_firing_counts
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
    block_counts: Int[Tensor, "n_blocks d_sae"] | None = None
    """int32 firing counts per block of whole sequences (for bootstrap intervals, `sae_analysis.uncertainty`), or None."""
    block_tokens: Int[Tensor, " n_blocks"] | None = None
    """Tokens in each block."""


MAX_BLOCKS = 256
"""`latent_frequencies` groups the sequences into at most this many equal blocks (a bootstrap needs many units; each
block costs d_sae int32: 16 MiB for gelu-1l's 16,384 latents)."""


class _Blocks:
    """Per-block firing counts over consecutive blocks of `block_seqs` sequences, whatever the batch size."""

    def __init__(self, block_seqs: int):
        self.block_seqs, self.counts, self.tokens, self.filled = block_seqs, [], [], block_seqs

    def add(self, seq_counts: Int[Tensor, "n_seq d_sae"], seq_len: int) -> None:
        for row in seq_counts.to(torch.int32).cpu():
            if self.filled == self.block_seqs:
                self.counts.append(torch.zeros_like(row))
                self.tokens.append(0)
                self.filled = 0
            self.counts[-1] += row
            self.tokens[-1] += seq_len
            self.filled += 1

    def result(self) -> tuple[Tensor, Tensor]:
        return torch.stack(self.counts), torch.tensor(self.tokens, dtype=torch.int64)


def resolve_hook_name(sae: SAE, hook_name: str | None) -> str:
    """The hook to read: the explicit argument, else the SAE's configured hook."""
    name = hook_name or sae.cfg.hook_name
    if not name:
        raise ValueError("this SAE's config names no hook_name; pass hook_name='blocks.0.mlp.hook_post' (for example)")
    return name


@torch.no_grad()
def frequencies_from_activations(
    sae: SAE,
    activations: Iterable[Float[Tensor, "*batch d_in"]],
    *,
    source: str = "activations",
    block_seqs: int | None = None,
) -> FrequencyResult:
    """Count firings of every latent over a stream of activation batches. Memory is O(d_sae + batch * d_sae), plus
    O(d_sae) per block with `block_seqs` (batches must then be [n_seq, pos, d_in]: blocks hold whole sequences)."""
    return frequencies_of_many({"sae": sae}, activations, source=source, block_seqs=block_seqs)["sae"]


@torch.no_grad()
def frequencies_of_many(
    saes: Mapping[str, SAE],
    activations: Iterable[Float[Tensor, "*batch d_in"]],
    *,
    source: str = "activations",
    block_seqs: int | None = None,
) -> dict[str, FrequencyResult]:
    """Firing frequencies of several SAEs that read the same activations, from one pass over the stream: each batch is
    encoded by every distinct SAE (one given under two names is counted once). Memory is O(d_sae) per SAE (and per block
    with `block_seqs`) plus one batch's latents at a time; the counts equal those of separate passes exactly."""
    if not saes:
        raise ValueError("no SAEs given")
    distinct = {id(sae): sae for sae in saes.values()}
    d_ins = {sae.cfg.d_in for sae in distinct.values()}
    if len(d_ins) > 1:
        raise ValueError(f"these SAEs read activations of different widths {sorted(d_ins)}: count them separately")
    d_in = d_ins.pop()
    counts = {key: torch.zeros(sae.cfg.d_sae, dtype=torch.int64, device=sae.device) for key, sae in distinct.items()}
    blocks = {key: _Blocks(block_seqs) for key in distinct} if block_seqs is not None else None
    n_tokens = 0
    for x in activations:
        if blocks is not None and x.ndim != 3:
            raise ValueError(f"block counts need activations shaped [n_seq, pos, d_in], got {tuple(x.shape)}")
        flat = x.reshape(-1, d_in)
        group_rows = x.shape[1] if blocks is not None else flat.shape[0]  # per sequence, or the whole batch
        for key, sae in distinct.items():
            per_group = grouped_firing_counts(sae.fires(flat.to(sae.device), as_float=True), group_rows)
            counts[key] += per_group.sum(0)
            if blocks is not None:
                blocks[key].add(per_group, x.shape[1])
        n_tokens += flat.shape[0]
    if n_tokens == 0:
        raise ValueError("no activations were given: cannot estimate frequencies from zero tokens")
    out = {}
    for key, c in counts.items():
        freq = c.double() / n_tokens
        per_block = (None, None) if blocks is None else blocks[key].result()
        out[key] = FrequencyResult(freq.cpu(), c.cpu(), n_tokens, float(freq.sum()), f"{source}: {n_tokens} tokens", *per_block)
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

    Counts are exact integers, so the result does not depend on `batch_size`. Firing counts are also kept per block of
    ceil(n_seq / MAX_BLOCKS) consecutive sequences (`block_counts`), for bootstrap intervals over sequences.
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
    return frequencies_of_many(saes, acts, source="model", block_seqs=-(-tokens.shape[0] // MAX_BLOCKS))


def stored_log10_density(freq: Float[Tensor, " d_sae"]) -> Float[Tensor, " d_sae"]:
    """The per-latent log10 density a checkpoint stores (SAELens's sparsity.safetensors convention): float32
    log10(freq + SPARSITY_EPS), computed in float64 so that a dead latent is stored as exactly -10."""
    return torch.log10(freq.double() + SPARSITY_EPS).float()


def frequencies_from_log10(log10_density: Float[Tensor, " d_sae"], source: str, *, eps: float = SPARSITY_EPS) -> FrequencyResult:
    """Wrap a stored per-latent log10 density log10(freq + eps) as a FrequencyResult (eps: SAELens's and our
    sparsity.safetensors offset, 1e-10). The offset is subtracted again, so a stored dead latent (log10(eps) = -10, or
    -inf) comes back as frequency exactly 0. NaN and +inf are rejected."""
    d = log10_density.double()
    if torch.isnan(d).any() or torch.isposinf(d).any():
        raise ValueError(f"stored log10 densities from {source} contain NaN or +inf")
    freq = freq_from_log10(d, eps)
    counts = torch.full(freq.shape, -1, dtype=torch.int64)
    return FrequencyResult(freq, counts, 0, float(freq.sum()), f"stored: {source}")
