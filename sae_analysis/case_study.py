"""Single-latent case studies (REPLICATION.md §9.9; Neel's analysis.py, latent 12).

* `latent_activations`: one latent's activation on every token, batch by batch.
* `ulf_token_stats`: per token, the projection on the ULF mean direction and the share of ULF latents active (§9.3).
* `top_activating_contexts`: the k highest activations and where they are (sequence, position).
* `firing_stats`: per-sequence firing frequency and mean activation; the "top token" is the token at the argmax
  activation, and `frac_of_fires_are_top_token` = share of firings on that token, `frac_big_firing_on_top_token` the same
  over big firings (act > 0.2 max), `frac_of_top_token_are_fires` = share of that token's occurrences with a firing.
* `direct_logit_effect`: (d_i @ W_out) @ W_U per latent, no LayerNorm (Neel's `feature_U`); `top_bottom_tokens` picks the
  top-20 / bottom-10 tokens and `vocab_kurtosis` the excess kurtosis over the vocabulary of every latent (chunked: the full
  [d_sae, d_vocab] matrix is 3 GiB for gelu-1l).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_analysis.activations import hook_activations, token_batches
from sae_analysis.frequency import resolve_hook_name
from sae_analysis.moments import excess_kurtosis
from sae_analysis.sae import SAE

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

BIG_FIRING_FRACTION = 0.2
"""Neel's analysis.py: a 'big' firing has act > 0.2 x the latent's max activation."""


@torch.no_grad()
def latent_activations(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "n_seq pos"],
    latent: int,
    *,
    hook_name: str | None = None,
    batch_size: int = 32,
) -> Float[Tensor, "n_seq pos"]:
    """Activation of one latent on every token (the full encoder runs per batch, so TopK/JumpReLU are honoured)."""
    name = resolve_hook_name(sae, hook_name)
    parts = [
        sae.encode(hook_activations(model, b, name).to(sae.device))[..., latent].float().cpu()
        for b in token_batches(tokens, batch_size)
    ]
    return torch.cat(parts)


class ULFTokenStats(NamedTuple):
    """Per token: the activation's projection on the ULF mean encoder direction, and the share of ULF latents active."""

    rare_proj: Float[Tensor, "n_seq pos"]
    frac_rare_active: Float[Tensor, "n_seq pos"]


@torch.no_grad()
def ulf_token_stats(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "n_seq pos"],
    mean_direction: Float[Tensor, " d_in"],
    mask: Bool[Tensor, " d_sae"],
    *,
    hook_name: str | None = None,
    batch_size: int = 32,
) -> ULFTokenStats:
    """Neel's analysis.py per-token ULF view (§9.3, F11): rare_proj = mlp_acts @ mu (unnormalised mu, as there) and
    frac_rare_active = fraction of the `mask` latents with f > 0. NaN fractions when the mask is empty."""
    name = resolve_hook_name(sae, hook_name)
    mu, m = mean_direction.float().to(sae.device), mask.to(sae.device)
    proj, frac = [], []
    for b in token_batches(tokens, batch_size):
        acts = hook_activations(model, b, name).to(sae.device)
        proj.append((acts.float() @ mu).cpu())
        frac.append((sae.encode(acts)[..., m] > 0).float().mean(-1).cpu())
    return ULFTokenStats(torch.cat(proj), torch.cat(frac))


class TopContexts(NamedTuple):
    acts: Float[Tensor, " k"]
    seq: Int[Tensor, " k"]
    pos: Int[Tensor, " k"]


def top_activating_contexts(acts: Float[Tensor, "n_seq pos"], *, k: int = 20) -> TopContexts:
    """The k largest activations (descending) with their (sequence, position); fewer if there are fewer tokens."""
    values, flat = acts.flatten().topk(min(k, acts.numel()))
    return TopContexts(values, flat // acts.shape[1], flat % acts.shape[1])


def context_window(
    tokens: Int[Tensor, "n_seq pos"], seq: int, pos: int, *, before: int = 10, after: int = 3
) -> Int[Tensor, " window"]:
    """Tokens of sequence `seq` from pos - before to pos + after (clipped to the sequence)."""
    return tokens[seq, max(0, pos - before) : pos + after + 1]


class FiringStats(NamedTuple):
    """Neel's per-latent summary statistics (§9.9); NaN where undefined (e.g. a latent that never fires)."""

    freq_per_seq: Float[Tensor, " n_seq"]
    mean_act_per_seq: Float[Tensor, " n_seq"]
    mean_act_when_firing_per_seq: Float[Tensor, " n_seq"]
    top_token: int
    frac_of_fires_are_top_token: float
    frac_big_firing_on_top_token: float
    frac_of_top_token_are_fires: float
    n_top_token: int
    """Occurrences of the top token in the sample (the sample size of frac_of_top_token_are_fires)."""


def firing_stats(
    acts: Float[Tensor, "n_seq pos"], tokens: Int[Tensor, "n_seq pos"], *, big_fraction: float = BIG_FIRING_FRACTION
) -> FiringStats:
    """Per-sequence and top-token firing statistics of one latent, from its activations on `tokens`."""
    acts, tokens = acts.double(), tokens.to(acts.device)
    fires = acts > 0
    n_fires = fires.sum(-1)
    per_seq = (fires.double().mean(-1), acts.mean(-1), torch.where(n_fires > 0, acts.sum(-1) / n_fires, torch.nan))
    top = int(tokens.flatten()[acts.flatten().argmax()])
    on_top = tokens == top
    big = acts > big_fraction * acts.max()
    return FiringStats(
        *(t.float() for t in per_seq),
        top_token=top,
        frac_of_fires_are_top_token=_share(on_top, fires),
        frac_big_firing_on_top_token=_share(on_top, big & fires),
        frac_of_top_token_are_fires=_share(fires, on_top),
        n_top_token=int(on_top.sum()),
    )


def _share(event: Tensor, given: Tensor) -> float:
    n = int(given.sum())
    return float((event & given).sum()) / n if n else float("nan")


def direct_logit_effect(
    W_dec: Float[Tensor, "n d_mlp"], W_out: Float[Tensor, "d_mlp d_model"], W_U: Float[Tensor, "d_model d_vocab"]
) -> Float[Tensor, "n d_vocab"]:
    """(W_dec @ W_out) @ W_U: each latent's direct effect on the logits through the MLP output, ignoring LayerNorm."""
    return (W_dec.float() @ W_out.float()) @ W_U.float()


class TokenEffects(NamedTuple):
    top_tokens: Int[Tensor, " k_top"]
    top_values: Float[Tensor, " k_top"]
    bottom_tokens: Int[Tensor, " k_bottom"]
    bottom_values: Float[Tensor, " k_bottom"]
    """Most negative first."""


def top_bottom_tokens(effect: Float[Tensor, " d_vocab"], *, k_top: int = 20, k_bottom: int = 10) -> TokenEffects:
    """The tokens a latent's direct logit effect promotes most and suppresses most (Neel: top 20, bottom 10)."""
    top = effect.topk(min(k_top, effect.numel()))
    bottom = effect.topk(min(k_bottom, effect.numel()), largest=False)
    return TokenEffects(top.indices, top.values, bottom.indices, bottom.values)


def vocab_kurtosis(
    W_dec: Float[Tensor, "d_sae d_mlp"],
    W_out: Float[Tensor, "d_mlp d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    *,
    chunk_size: int = 512,
) -> Float[Tensor, " d_sae"]:
    """Excess kurtosis of each latent's direct logit effect over the vocabulary (§9.2, §9.9), `chunk_size` latents at a time."""
    proj = W_dec.float() @ W_out.float()
    parts = [excess_kurtosis(proj[s : s + chunk_size] @ W_U.float()) for s in range(0, proj.shape[0], chunk_size)]
    return torch.cat(parts)


__all__ = [
    "BIG_FIRING_FRACTION",
    "latent_activations",
    "ULFTokenStats",
    "ulf_token_stats",
    "TopContexts",
    "top_activating_contexts",
    "context_window",
    "FiringStats",
    "firing_stats",
    "direct_logit_effect",
    "TokenEffects",
    "top_bottom_tokens",
    "vocab_kurtosis",
]
