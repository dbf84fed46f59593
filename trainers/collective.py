"""The collective operations of the training loop, behind one small object: `Single` for one process (every operation
a no-op, the process is the writer) and `TorchDistributed` for one rank of a torch.distributed process group (gloo on
CPU, nccl on CUDA; `trainers.ddp_launch.init_process_group`).

`trainers.train.Trainer` runs the same loop on either; what differs between one process and N ranks is only what these
methods do:

* `reduce_losses`: the global batch's (loss, l2, l1) and per-latent firing counts from each rank's share
  (`trainers.ddp_reduce.global_losses`);
* `mean_`: the mean over ranks of a tensor in place (the gradients, in one flat buffer: one all-reduce per step);
* `broadcast_`: rank 0's values into every rank's tensors (after a resampling decided on rank 0);
* `agree` / `any`: a rank-0 decision / a flag raised on any rank, known to all;
* `gather`: rank tensors concatenated on rank 0 (the global batch for logged explained variance);
* `is_writer`: whether this process writes metrics, checkpoints and the shared trainer state (rank 0).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from jaxtyping import Int
from torch import Tensor

from sae_analysis import ForwardOutput
from sae_analysis.metrics import firing_counts
from trainers.ddp_reduce import global_losses
from trainers.interrupt import StopFlag, StopRequests

LossTerms = tuple[float, float, float, Int[Tensor, " d_sae"]]
"""(loss, l2, l1, firing counts) of the global batch."""


class Single:
    """One process: the world of one rank."""

    rank, world, is_writer = 0, 1, True

    def reduce_losses(self, out: ForwardOutput, loss_convention: str) -> LossTerms:
        """The step's own loss terms (the float32 values `SAE.forward` computed) and firing counts."""
        return (out.loss.detach().item(), out.l2.detach().item(), out.l1.detach().item(), firing_counts(out.acts.detach()))

    def mean_(self, t: Tensor) -> Tensor:
        return t

    def broadcast_(self, tensors: list[Tensor]) -> None:
        pass

    def agree(self, flag: bool) -> bool:
        return flag

    def any(self, flag: bool) -> bool:
        return flag

    def gather(self, t: Tensor) -> Tensor | None:
        return t

    def barrier(self) -> None:
        pass

    def max_divergence(self, tensors: list[Tensor]) -> float:
        return 0.0

    def stop_flag(self) -> StopFlag | StopRequests:
        """First Ctrl-C: stop at the next step boundary; a second one aborts."""
        return StopFlag()

    def log_fields(self) -> dict[str, Any]:
        """Extra fields of the 'train' and 'end' rows (none: a single-process run logs as it always did)."""
        return {}


class TorchDistributed:
    """This rank of the initialised default process group. Small control tensors live on `device` (nccl needs them on
    the GPU)."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.is_writer = self.rank == 0
        self.device = torch.device(device)

    def reduce_losses(self, out: ForwardOutput, loss_convention: str) -> LossTerms:
        """One all-reduce of (l2, l1, firing counts) in fp64; l2 and l1 of the global batch (`global_losses`)."""
        counts = firing_counts(out.acts.detach())
        stats = torch.cat([torch.stack([out.l2.detach(), out.l1.detach()]).double(), counts.double()])
        dist.all_reduce(stats)
        l2, l1 = global_losses(float(stats[0]), float(stats[1]), self.world, loss_convention)
        return l2 + l1, l2, l1, stats[2:].round().long()

    def mean_(self, t: Tensor) -> Tensor:
        dist.all_reduce(t)
        return t.div_(self.world)

    def broadcast_(self, tensors: list[Tensor]) -> None:
        for t in tensors:
            dist.broadcast(t, src=0)

    def agree(self, flag: bool) -> bool:
        t = torch.tensor([float(flag)], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item() > 0)

    def any(self, flag: bool) -> bool:
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def gather(self, t: Tensor) -> Tensor | None:
        """The rank tensors concatenated in rank order, on rank 0 (None elsewhere)."""
        parts = [torch.empty_like(t) for _ in range(self.world)] if self.is_writer else None
        dist.gather(t.contiguous(), parts, dst=0)
        return torch.cat(parts) if parts is not None else None

    def barrier(self) -> None:
        dist.barrier()

    def max_divergence(self, tensors: list[Tensor]) -> float:
        """Largest |value on one rank − value on another| over `tensors` (0.0 when the ranks agree exactly)."""
        worst = torch.zeros((), dtype=torch.float64)
        for t in tensors:
            hi, lo = t.detach().double().clone(), t.detach().double().clone()
            dist.all_reduce(hi, op=dist.ReduceOp.MAX)
            dist.all_reduce(lo, op=dist.ReduceOp.MIN)
            worst = torch.maximum(worst, (hi - lo).abs().max().cpu() if t.numel() else worst)
        return float(worst)

    def stop_flag(self) -> StopFlag | StopRequests:
        """Every SIGINT / SIGTERM asks for a stop (torchrun forwards a Ctrl-C to each worker more than once)."""
        return StopRequests()

    def log_fields(self) -> dict[str, Any]:
        return {"world_size": self.world}


Collective = Single | TorchDistributed


class NullWriter:
    """The metrics writer of ranks other than 0 (`trainers.train.Trainer`)."""

    def write(self, event: str, **fields: Any) -> None:
        pass

    def offset(self) -> int:
        return 0

    def truncate(self, offset: int) -> None:
        pass

    def close(self) -> None:
        pass


class FlatGrads:
    """The gradients of `params` as views of one flat buffer, so that averaging them over ranks is one `mean_`."""

    def __init__(self, params: list[Tensor]):
        self.params = params
        self.buffer = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=params[0].dtype)
        views, start = [], 0
        for p in params:
            views.append(self.buffer[start:start + p.numel()].view_as(p))
            start += p.numel()
        self.views = views

    def bind(self) -> None:
        """(Re)attach the views as `.grad` (anything may have set `.grad` to None or to a new tensor)."""
        for p, view in zip(self.params, self.views):
            if p.grad is not view:
                p.grad = view


__all__ = ["Single", "TorchDistributed", "Collective", "NullWriter", "FlatGrads", "LossTerms"]
