"""Dead-latent tracking and the two resampling procedures (REPLICATION.md §7).

The tracker counts **tokens** since each latent last fired (as sparsify does), so the batch size cannot skew it, and keeps
exact int64 firing counts over a window (for frequency snapshots). Resampling is split into pure functions that return new
latent parameters (`NewLatents`) and one function that writes them into the SAE and, for Anthropic's variant, zeroes the
Adam moments of exactly those entries, found through `opt.state[param]` (never by position).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from sae_analysis import SAE
from sae_analysis.metrics import firing_counts


class DeadLatentTracker:
    """Tokens since each latent last fired, and firing counts since the last `reset_window`."""

    def __init__(self, d_sae: int, device: torch.device | str = "cpu"):
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.window_counts = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.window_tokens = 0

    def update(self, acts: Float[Tensor, "batch d_sae"]) -> None:
        """Account for one batch of latent activations (a latent fires on a token when its activation is > 0)."""
        self.add_counts(firing_counts(acts.detach()), acts.shape[0])

    def add_counts(self, counts: Int[Tensor, " d_sae"], n_tokens: int) -> None:
        """Account for `n_tokens` tokens on which latent i fired `counts[i]` times (data-parallel: summed over ranks)."""
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[counts > 0] = 0
        self.window_counts += counts
        self.window_tokens += n_tokens

    def dead_mask(self, min_tokens: int) -> Bool[Tensor, " d_sae"]:
        """Latents that have not fired in the last `min_tokens` tokens."""
        return self.tokens_since_fired >= min_tokens

    def window_frequencies(self) -> Float[Tensor, " d_sae"]:
        """Firing frequency of each latent over the current window (zeros if the window is empty)."""
        return self.window_counts.double() / max(self.window_tokens, 1)

    def reset_window(self) -> None:
        self.window_counts.zero_()
        self.window_tokens = 0

    def revive(self, latents: Int[Tensor, " n"]) -> None:
        """Give freshly resampled latents a new grace period."""
        self.tokens_since_fired[latents] = 0

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_since_fired": self.tokens_since_fired, "window_counts": self.window_counts,
                "window_tokens": self.window_tokens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
        self.window_counts.copy_(state["window_counts"])
        self.window_tokens = int(state["window_tokens"])


class NewLatents(NamedTuple):
    """Replacement parameters for the latents `index`."""

    index: Int[Tensor, " n"]
    W_enc_cols: Float[Tensor, "d_in n"]
    W_dec_rows: Float[Tensor, "n d_in"]
    b_enc: Float[Tensor, " n"]


def kaiming_latents(d_in: int, d_sae: int, dead: Bool[Tensor, " d_sae"], generator: torch.Generator) -> NewLatents:
    """Neel's resampling (REPLICATION.md §7.1): fresh full-shape Kaiming-uniform matrices, as at init but **without**
    normalising decoder rows (as trained), of which the dead columns/rows are taken; b_enc = 0."""
    index = dead.nonzero().squeeze(-1).cpu()
    W_enc = nn.init.kaiming_uniform_(torch.empty(d_in, d_sae), generator=generator)
    W_dec = nn.init.kaiming_uniform_(torch.empty(d_sae, d_in), generator=generator)
    return NewLatents(index, W_enc[:, index], W_dec[index], torch.zeros(len(index)))


def anthropic_latents(W_enc: Float[Tensor, "d_in d_sae"], dead: Bool[Tensor, " d_sae"], inputs: Float[Tensor, "n_inputs d_in"],
                      losses: Float[Tensor, " n_inputs"], generator: torch.Generator, enc_scale: float = 0.2) -> NewLatents:
    """Towards Monosemanticity's resampling (REPLICATION.md §7.2): for each dead latent draw an input with probability
    ∝ loss² (without replacement while enough inputs have non-zero loss); decoder row = the input at unit norm; encoder
    column = the same unit input times `enc_scale` × the mean encoder norm of the alive latents (of all latents if none is
    alive); b_enc = 0. Inputs of zero norm give zero rows."""
    index = dead.nonzero().squeeze(-1).cpu()
    weights = losses.double().cpu().pow(2)
    if not bool((weights > 0).any()):
        weights = torch.ones_like(weights)
    replace = len(index) > int((weights > 0).sum())
    picked = torch.multinomial(weights, len(index), replacement=replace, generator=generator) if len(index) else index
    x = inputs.cpu().double()[picked]
    unit = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    norms = W_enc.detach().cpu().double().norm(dim=0)
    alive = ~dead.cpu()
    scale = enc_scale * (norms[alive].mean() if bool(alive.any()) else norms.mean())
    dtype = W_enc.dtype
    return NewLatents(index, (unit * scale).T.to(dtype), unit.to(dtype), torch.zeros(len(index), dtype=dtype))


def per_input_losses(sae: SAE, x: Float[Tensor, "n d_in"], kind: str, batch_size: int) -> Float[Tensor, " n"]:
    """Loss of each input for resampling weights: 'l2' = Σ_d (x̂ − x)² (Kissane), or 'loss' = l2 + λ_tok Σ_i |f_i|
    (ai-safety-foundation), with λ_tok the per-token L1 weight of the SAE's loss convention at training batch size."""
    out = sae(x)
    l2 = (out.x_hat.float() - x.float()).pow(2).sum(-1)
    if kind == "l2":
        return l2.detach()
    lam = sae.cfg.l1_coeff * (batch_size if sae.cfg.loss_convention == "original" else 1)
    return (l2 + lam * out.acts.float().abs().sum(-1)).detach()


def zero_adam_moments(opt: torch.optim.Optimizer, param: Tensor, index: tuple) -> None:
    """Zero Adam's `exp_avg` and `exp_avg_sq` at `index` of `param` (STYLE.md §2); nothing to do before the first step."""
    state = opt.state.get(param)
    if state:
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][index] = 0.0


@torch.no_grad()
def apply_new_latents(sae: SAE, new: NewLatents, opt: torch.optim.Optimizer | None = None) -> None:
    """Write `new` into the SAE; with `opt`, also zero the Adam moments of those encoder columns, decoder rows and encoder
    biases (Anthropic). `b_dec` and every other latent are untouched."""
    idx = new.index.to(sae.device)
    sae.W_enc[:, idx] = new.W_enc_cols.to(sae.device, sae.dtype)
    sae.W_dec[idx] = new.W_dec_rows.to(sae.device, sae.dtype)
    sae.b_enc[idx] = new.b_enc.to(sae.device, sae.dtype)
    if opt is not None:
        zero_adam_moments(opt, sae.W_enc, (slice(None), idx))
        zero_adam_moments(opt, sae.W_dec, (idx,))
        zero_adam_moments(opt, sae.b_enc, (idx,))


@torch.no_grad()
def project_decoder_grad_(W_dec: nn.Parameter) -> None:
    """Remove from each decoder row's gradient its component along the row: g ← g − (g·û)û (REPLICATION.md §3.4)."""
    if W_dec.grad is None:
        return
    unit = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    W_dec.grad -= (W_dec.grad * unit).sum(-1, keepdim=True) * unit


@torch.no_grad()
def renormalise_decoder_(W_dec: nn.Parameter) -> None:
    """Scale each decoder row to unit norm (after the optimizer step: the 'correct' variant of REPLICATION.md §3.4)."""
    W_dec /= W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
