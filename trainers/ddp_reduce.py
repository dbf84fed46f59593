"""The maths of data-parallel training: the per-rank loss whose rank-averaged gradient is the global-batch gradient,
global loss terms from rank sums, and telling communication failures apart from a rank's own errors."""

from __future__ import annotations

import torch.distributed as dist
from jaxtyping import Float
from torch import Tensor

from sae_analysis import ForwardOutput


class RankFailureError(RuntimeError):
    """A collective failed or timed out: another rank died or hung. The checkpoints on disk are intact."""


def l1_scale(world_size: int, loss_convention: str) -> int:
    """The factor on each rank's L1 term in `rank_objective` (N under 'original', else 1)."""
    return world_size if loss_convention == "original" else 1


def rank_objective(out: ForwardOutput, world_size: int, loss_convention: str) -> Float[Tensor, ""]:
    """The loss each rank backpropagates so that the ranks' averaged gradient is the single-process gradient on the global
    batch (the concatenation of the N rank batches of b rows, B = N b).

    'original' (Neel's): L = (1/B) Σ_all Σ_d err² + c Σ_all Σ_i |f| = (1/N) Σ_r l2_r + Σ_r l1_r, with l2_r the rank's
    batch-mean L2 and l1_r its batch-*summed* L1. The ranks average their gradients, (1/N) Σ_r ∇(l2_r + N l1_r) = ∇L, so the L1
    term is multiplied by N. 'per_token': both terms are batch means, L = (1/N) Σ_r (l2_r + l1_r): no rescaling."""
    scale = l1_scale(world_size, loss_convention)
    return out.loss if scale == 1 else out.l2 + out.l1 * scale


def global_losses(l2_sum: float, l1_sum: float, world_size: int, loss_convention: str) -> tuple[float, float]:
    """(l2, l1) of the global batch from the rank values summed over ranks (see `rank_objective`)."""
    return l2_sum / world_size, l1_sum if loss_convention == "original" else l1_sum / world_size


_COLLECTIVE_MARKERS = ("gloo", "nccl", "c10d", "connection", "timed out", "timeout", "broken pipe", "socket")


def is_collective_failure(err: BaseException) -> bool:
    """Whether `err` comes from the communication layer (a peer that died, hung or closed its socket) rather than from
    this rank's own computation."""
    text = str(err).lower()
    return isinstance(err, dist.DistError) or any(m in text for m in _COLLECTIVE_MARKERS)


__all__ = ["RankFailureError", "l1_scale", "rank_objective", "global_losses", "is_collective_failure"]
