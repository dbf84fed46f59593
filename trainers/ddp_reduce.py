"""The maths and reductions of data-parallel training: the per-rank loss whose DDP-averaged gradient is the global-batch
gradient, global loss terms from rank sums, a dead-latent tracker fed with summed counts, a cross-rank equality check,
and telling communication failures apart from a rank's own errors."""

from __future__ import annotations

import torch
import torch.distributed as dist
from jaxtyping import Float, Int
from torch import Tensor

from sae_analysis import ForwardOutput
from trainers.dead import DeadLatentTracker


def rank_objective(out: ForwardOutput, world_size: int, loss_convention: str) -> Float[Tensor, ""]:
    """The loss each rank backpropagates so that DDP's averaged gradient is the single-process gradient on the global
    batch (the concatenation of the N rank batches of b rows, B = N b).

    'original' (Neel's): L = (1/B) Σ_all Σ_d err² + c Σ_all Σ_i |f| = (1/N) Σ_r l2_r + Σ_r l1_r, with l2_r the rank's
    batch-mean L2 and l1_r its batch-*summed* L1. DDP averages gradients, (1/N) Σ_r ∇(l2_r + N l1_r) = ∇L, so the L1
    term is multiplied by N. 'per_token': both terms are batch means, L = (1/N) Σ_r (l2_r + l1_r): no rescaling."""
    return out.l2 + out.l1 * (world_size if loss_convention == "original" else 1)


def global_losses(l2_sum: float, l1_sum: float, world_size: int, loss_convention: str) -> tuple[float, float]:
    """(l2, l1) of the global batch from the rank values summed over ranks (see `rank_objective`)."""
    return l2_sum / world_size, l1_sum if loss_convention == "original" else l1_sum / world_size


def max_rank_divergence(tensors: list[Tensor]) -> float:
    """Largest |value on one rank − value on another| over `tensors` (a collective; 0.0 when the ranks agree exactly)."""
    worst = torch.zeros((), dtype=torch.float64)
    for t in tensors:
        hi, lo = t.detach().double().clone(), t.detach().double().clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        worst = torch.maximum(worst, (hi - lo).abs().max().cpu() if t.numel() else worst)
    return float(worst)


class DistributedTracker(DeadLatentTracker):
    """`DeadLatentTracker` fed with firing counts already summed over the ranks (tokens are global tokens)."""

    def add_counts(self, counts: Int[Tensor, " d_sae"], n_tokens: int) -> None:
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[counts > 0] = 0
        self.window_counts += counts
        self.window_tokens += n_tokens


_COLLECTIVE_MARKERS = ("gloo", "nccl", "c10d", "connection", "timed out", "timeout", "broken pipe", "socket")


def is_collective_failure(err: BaseException) -> bool:
    """Whether `err` comes from the communication layer (a peer that died, hung or closed its socket) rather than from
    this rank's own computation."""
    text = str(err).lower()
    return isinstance(err, dist.DistError) or any(m in text for m in _COLLECTIVE_MARKERS)


__all__ = ["rank_objective", "global_losses", "max_rank_divergence", "DistributedTracker", "is_collective_failure"]
