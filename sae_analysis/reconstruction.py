"""Next-token loss with the SAE spliced into the model: the reconstruction score ("CE loss recovered", REPLICATION.md §8)
and the loss-vs-frequency-floor curve (§9.7)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from sae_analysis.activations import token_batches
from sae_analysis.frequency import resolve_hook_name
from sae_analysis.sae import SAE

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

NEEL_FLOORS = (-6.5, -5, -4.5, -4.4, -4.3, -4.2, -4.1, -4, -3, -2.5, -2, -1.5, -1, 0)
"""log10 frequency floors of Neel's analysis.py loss-vs-floor cell (REPLICATION.md §9.7)."""

Hook = Callable[[Tensor], Tensor]


class ReconstructionLosses(NamedTuple):
    """Mean next-token cross-entropy under each intervention, and the two recovery scores."""

    clean: float
    recon: float
    zero: float
    mean: float
    score_zero: float
    """(zero - recon) / (zero - clean): the score Neel logs."""
    score_mean: float
    """(mean - recon) / (mean - clean): the mean-ablation variant; <= score_zero when mean <= zero."""
    n_tokens: int
    """Predicted tokens the losses average over."""
    per_seq: dict[str, Tensor] | None = None
    """Each sequence's summed next-token loss under 'clean', 'recon', 'zero', 'mean' (float64 [n_seq]), for bootstrap
    intervals over sequences (`sae_analysis.uncertainty.recovered_interval`); every sequence predicts pos - 1 tokens."""


def recovered_fraction(clean: float, recon: float, ablated: float) -> float:
    """(ablated - recon) / (ablated - clean); NaN when the ablation does not change the loss."""
    denom = ablated - clean
    return float("nan") if denom == 0 else (ablated - recon) / denom


def reconstruct(sae: SAE, act: Float[Tensor, "... d_in"], latent_mask: Bool[Tensor, " d_sae"] | None = None) -> Tensor:
    """x_hat for model activations of any leading shape, optionally keeping only the latents in `latent_mask`."""
    f = sae.encode(act.reshape(-1, act.shape[-1]))
    if latent_mask is not None:
        f = f * latent_mask.to(f.dtype)
    return sae.decode(f).reshape(act.shape).to(act.dtype)


def zero_ablate(act: Tensor) -> Tensor:
    """The activation set to 0 (the MLP still adds b_out: REPLICATION.md §14.8)."""
    return torch.zeros_like(act)


def mean_ablate(act: Tensor) -> Tensor:
    """The activation replaced by its mean over batch and position of the same batch."""
    return act.mean(dim=(0, 1), keepdim=True).expand_as(act)


def _batch_loss(model: HookedTransformer, batch: Tensor, hook_name: str, fn: Hook | None) -> float:
    """Mean next-token loss of one batch with `fn` applied at `hook_name` (None = clean): one full forward."""
    fwd = [] if fn is None else [(hook_name, lambda act, hook: fn(act))]
    return float(model.run_with_hooks(batch, return_type="loss", fwd_hooks=fwd))


def _sequence_losses(model: HookedTransformer, batch: Tensor, hook_name: str, fn: Hook | None) -> tuple[float, Tensor]:
    """With `fn` applied at `hook_name`: the batch's mean next-token loss (as `_batch_loss`, the model's own reduction)
    and each sequence's summed loss (float64 [batch]): one full forward."""
    fwd = [] if fn is None else [(hook_name, lambda act, hook: fn(act))]
    per_token = model.run_with_hooks(batch, return_type="loss", loss_per_token=True, fwd_hooks=fwd)
    return float(per_token.mean()), per_token.double().sum(-1).cpu()


def _mlp_post_layer(model: HookedTransformer, hook_name: str) -> int | None:
    """The layer whose standard MLP `hook_name` is the post-activation of, when the rest of the forward can be rerun
    from `resid_mid` (resid_post = resid_mid + post @ W_out + b_out); None otherwise (the slow path is used)."""
    m = re.fullmatch(r"blocks\.(\d+)\.mlp\.hook_post", hook_name)
    if m is None:
        return None
    cfg, layer = model.cfg, int(m.group(1))
    plain = not (cfg.parallel_attn_mlp or cfg.use_normalization_before_and_after or getattr(cfg, "output_logits_soft_cap", 0) > 0)
    return layer if plain and type(model.blocks[layer].mlp).__name__ == "MLP" else None


def batch_losses(
    model: HookedTransformer, batch: Tensor, hook_name: str, hooks: dict[str, Hook | None]
) -> dict[str, tuple[float, Tensor]]:
    """Mean next-token loss of one batch, and each sequence's summed loss (float64 [batch]), for each intervention on
    `hook_name` (None = clean). For an MLP's hook_post the clean forward runs once up to that MLP (resid_mid and hook_post
    kept); each intervention then reruns only the rest: MLP-out, later blocks, final LN and unembedding (TransformerLens's
    own `start_at_layer`), the same operations as a full forward. Other hooks: one full forward per intervention."""
    layer = _mlp_post_layer(model, hook_name)
    if layer is None:
        return {key: _sequence_losses(model, batch, hook_name, fn) for key, fn in hooks.items()}
    from transformer_lens.utilities.addmm import batch_addmm

    mid = f"blocks.{layer}.hook_resid_mid"
    _, cache = model.run_with_cache(batch, names_filter=[mid, hook_name], stop_at_layer=layer + 1)
    resid_mid, post, mlp = cache[mid], cache[hook_name], model.blocks[layer].mlp
    out = {}
    for key, fn in hooks.items():
        resid_post = resid_mid + batch_addmm(mlp.b_out, mlp.W_out, post if fn is None else fn(post))
        per_token = tail_losses(model, resid_post, layer, batch)
        out[key] = (float(per_token.mean()), per_token.double().sum(-1).cpu())
    return out


TAIL_CHUNK_TOKENS = 1024
"""Predicted positions unembedded at once by `tail_losses`: [1024, d_vocab] logits (198 MB for gelu-1l's 48,262-token
vocabulary) instead of a whole batch's [batch, pos, d_vocab]."""


def tail_losses(model: HookedTransformer, resid_post: Tensor, layer: int, tokens: Tensor) -> Float[Tensor, "batch pos_1"]:
    """Next-token loss per predicted position [batch, pos - 1] from the residual stream after block `layer`: the later
    blocks (TransformerLens's own), the final LayerNorm, then the unembedding and log-softmax in chunks of
    TAIL_CHUNK_TOKENS positions. The last position predicts nothing and is never unembedded. Same operations as
    TransformerLens's `loss_per_token` forward, without ever holding the whole batch's logits."""
    resid = resid_post
    if layer + 1 < model.cfg.n_layers:
        resid = model(resid_post, start_at_layer=layer + 1, stop_at_layer=model.cfg.n_layers, tokens=tokens)
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    x, targets = resid[:, :-1].reshape(-1, resid.shape[-1]), tokens[:, 1:].reshape(-1, 1).to(resid.device)
    W_U, b_U = model.unembed.W_U, model.unembed.b_U
    losses = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(0, x.shape[0], TAIL_CHUNK_TOKENS):
        logits = torch.addmm(b_U, x[i : i + TAIL_CHUNK_TOKENS], W_U)
        target_logit = logits.gather(-1, targets[i : i + TAIL_CHUNK_TOKENS])[:, 0]
        losses[i : i + TAIL_CHUNK_TOKENS] = torch.logsumexp(logits, -1) - target_logit
    return losses.reshape(tokens.shape[0], tokens.shape[1] - 1)


def _batches(tokens: Tensor, batch_size: int, progress: bool, desc: str):
    batches = token_batches(tokens, batch_size)
    return tqdm(batches, total=-(-tokens.shape[0] // batch_size), desc=desc, unit="batch") if progress else batches


def _average(totals: dict[str, float], n_pred: int) -> dict[str, float]:
    if n_pred == 0:
        raise ValueError("no tokens to score: pass at least one sequence of length >= 2")
    return {k: v / n_pred for k, v in totals.items()}


@torch.no_grad()
def spliced_losses(
    model: HookedTransformer,
    tokens: Int[Tensor, "n_seq pos"],
    hook_name: str,
    hooks: dict[str, Hook | None],
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[dict[str, float], int, dict[str, Tensor]]:
    """Mean next-token loss for each named intervention at `hook_name` (None = clean), averaged over all predicted tokens;
    the number of predicted tokens; and each sequence's summed loss per intervention (float64 [n_seq])."""
    totals = dict.fromkeys(hooks, 0.0)
    per_seq: dict[str, list[Tensor]] = {k: [] for k in hooks}
    n_pred = 0
    for batch in _batches(tokens, batch_size, progress, "losses"):
        batch = batch.to(model.cfg.device)
        n = batch.shape[0] * (batch.shape[1] - 1)
        for key, (mean, sums) in batch_losses(model, batch, hook_name, hooks).items():
            totals[key] += mean * n
            per_seq[key].append(sums)
        n_pred += n
    return _average(totals, n_pred), n_pred, {k: torch.cat(v) for k, v in per_seq.items() if v}


def reconstruction_losses(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "n_seq pos"],
    *,
    hook_name: str | None = None,
    batch_size: int = 32,
    latent_mask: Bool[Tensor, " d_sae"] | None = None,
    progress: bool = False,
) -> ReconstructionLosses:
    """Clean, reconstructed (b_dec included), zero- and mean-ablated losses over `tokens`, then one ratio each."""
    name = resolve_hook_name(sae, hook_name)
    hooks: dict[str, Hook | None] = {
        "clean": None,
        "recon": lambda act: reconstruct(sae, act, latent_mask),
        "zero": zero_ablate,
        "mean": mean_ablate,
    }
    L, n, per_seq = spliced_losses(model, tokens, name, hooks, batch_size=batch_size, progress=progress)
    return ReconstructionLosses(
        clean=L["clean"],
        recon=L["recon"],
        zero=L["zero"],
        mean=L["mean"],
        score_zero=recovered_fraction(L["clean"], L["recon"], L["zero"]),
        score_mean=recovered_fraction(L["clean"], L["recon"], L["mean"]),
        n_tokens=n,
        per_seq=per_seq,
    )


@torch.no_grad()
def loss_vs_frequency_floor(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "n_seq pos"],
    freq: Float[Tensor, " d_sae"],
    floors: Sequence[float] = NEEL_FLOORS,
    *,
    hook_name: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> pd.DataFrame:
    """Score of reconstructions that keep only latents with freq >= 10**floor, for each floor (REPLICATION.md §9.7).

    Use frequencies, activations and decoder of the same checkpoint. Columns: floor, n_kept, loss, score_zero."""
    return sae_losses(model, sae, tokens, freq, floors, hook_name=hook_name, batch_size=batch_size, progress=progress)[1]


@torch.no_grad()
def sae_losses(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "n_seq pos"],
    freq: Float[Tensor, " d_sae"],
    floors: Sequence[float] = NEEL_FLOORS,
    *,
    hook_name: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[ReconstructionLosses, pd.DataFrame]:
    """`reconstruction_losses` and `loss_vs_frequency_floor` from one pass: per batch one clean forward up to the MLP
    (`batch_losses`), one encoding, then the rest of the model once for clean, zero, mean, the full reconstruction and
    each distinct set of kept latents (floors that keep the same latents share one loss).

    The kept sets are nested (each keeps the latents at or above a frequency), so with the latents sorted by frequency
    each set is a prefix, and its reconstruction is the next smaller set's plus one slice of latents (`PrefixDecoder`):
    all floors together cost one full decode per batch instead of one each."""
    name = resolve_hook_name(sae, hook_name)
    freq = freq.to(sae.device)
    masks = {f: freq >= 10.0**f for f in floors}
    kept = sorted({int(m.sum()) for m in masks.values()})  # each distinct set, as the size of its prefix
    group = {f: f"kept_{kept.index(int(m.sum()))}" for f, m in masks.items()}  # floor -> the loss key of its set
    order = torch.argsort(freq, descending=True, stable=True)  # every kept set is a prefix of this order
    W_sorted = sae.W_dec[order]
    totals: dict[str, float] = dict.fromkeys(["clean", "zero", "mean", "recon", *group.values()], 0.0)
    per_seq: dict[str, list[Tensor]] = {k: [] for k in ("clean", "recon", "zero", "mean")}
    n_pred = 0
    for batch in _batches(tokens, batch_size, progress, "losses"):
        batch = batch.to(model.cfg.device)
        n = batch.shape[0] * (batch.shape[1] - 1)
        decoder: list[PrefixDecoder] = []  # the batch's code, encoded once (at the first hook that needs it)

        def prefix(n_latents: int) -> Hook:
            def hook(act: Tensor) -> Tensor:
                if not decoder:
                    f = sae.encode(act.reshape(-1, act.shape[-1])).to(W_sorted.dtype)
                    decoder.append(PrefixDecoder(f.index_select(1, order), W_sorted, sae.b_dec))
                return decoder[0].upto(n_latents).reshape(act.shape).to(act.dtype)

            return hook

        hooks: dict[str, Hook | None] = {"clean": None, "zero": zero_ablate, "mean": mean_ablate}
        hooks |= {f"kept_{i}": prefix(k) for i, k in enumerate(kept)}  # smallest set first: each adds one slice
        hooks["recon"] = prefix(sae.cfg.d_sae)
        for key, (mean, sums) in batch_losses(model, batch, name, hooks).items():
            totals[key] += mean * n
            if key in per_seq:
                per_seq[key].append(sums)
        n_pred += n
    L = _average(totals, n_pred)
    recon = ReconstructionLosses(L["clean"], L["recon"], L["zero"], L["mean"],
                                 recovered_fraction(L["clean"], L["recon"], L["zero"]),
                                 recovered_fraction(L["clean"], L["recon"], L["mean"]), n_pred,
                                 {k: torch.cat(v) for k, v in per_seq.items() if v})  # fmt: skip
    rows = [{"floor": float(f), "n_kept": int(m.sum()), "loss": L[group[f]],
             "score_zero": recovered_fraction(L["clean"], L[group[f]], L["zero"])} for f, m in masks.items()]  # fmt: skip
    return recon, pd.DataFrame(rows)


class PrefixDecoder:
    """Reconstructions from the first n latents of a code whose latents (columns of `f`, rows of `W`) are sorted, for a
    run of increasing n: x̂_n = b_dec + f[:, :n] @ W[:n], each from the previous one plus the product over the new slice,
    so a run up to n costs one decode of n latents in total. A smaller n than the last starts over (correct, not fast).
    The returned tensor is the decoder's accumulator: use it before the next `upto`."""

    def __init__(self, f: Float[Tensor, "batch d_sae"], W: Float[Tensor, "d_sae d_in"], b_dec: Float[Tensor, " d_in"]):
        self.f, self.W, self.b_dec = f, W, b_dec
        self.n, self.acc = 0, b_dec.expand(f.shape[0], -1).clone()
        self.columns = 0
        """Latent columns decoded so far (the cost, in units of one latent over the batch)."""

    def upto(self, n: int) -> Float[Tensor, "batch d_in"]:
        if n < self.n:
            self.n, self.acc = 0, self.b_dec.expand(self.f.shape[0], -1).clone()
        if n > self.n:
            self.acc.addmm_(self.f[:, self.n : n], self.W[self.n : n])
            self.columns += n - self.n
            self.n = n
        return self.acc
