"""Data-parallel SAE training on torch.distributed: `DistributedDataParallel` over the SAE, one process per rank.

Launch with `torchrun --nproc_per_node N -m trainers ...` or `sae-analysis train --nproc N ...` (`trainers.ddp_launch`);
world size 1 is the unchanged single-process trainer. What each rank does (issue #7):

* reads a disjoint shard of the tokens into its own `MixingBuffer` of `batch_size / N` rows per step, so the global batch
  (`TrainConfig.batch_size`, tokens, steps, checkpoint and resampling schedules) is the same at every world size;
* steps a DDP-wrapped SAE on the loss `rank_objective` (the L1 term rescaled so that DDP's gradient *average* equals the
  single-process gradient of the concatenated global batch); the decoder-gradient projection runs after backward, i.e.
  after the all-reduce, so every rank projects the same gradient. With `step_impl='fused'` (fp32 ReLU SAEs) each rank
  runs the fused step of the single-process trainer (`trainers.step`) with the L1 gradient scaled the same way, and the
  four gradients, views of one flat buffer, are averaged by one explicit all-reduce; otherwise DDP + autograd;
* all-reduces the loss terms and the per-latent firing counts (the dead-latent tracker, frequencies and L0 are global);
  logged explained variance is computed on rank 0 from the gathered global batch;
* rank 0 alone evaluates, writes `metrics.jsonl`, SAE checkpoints and the trainer state (weights, Adam, tracker, step);
  resampling is decided and applied on rank 0 and the parameters, Adam moments and tracker are then broadcast
  (Anthropic's resampling without an evaluator scores batches of rank 0's buffer, i.e. 1/N of the usual inputs);
* every rank writes its own data state (buffer contents, source position, RNG) to `state/rank<r>/<step>.safetensors`
  before rank 0 replaces the shared state, so the state on disk always refers to a complete set (resume: same world size).

Failures: every collective has the process-group timeout (`DDPConfig.timeout_s`), so a rank that dies or hangs makes the
others raise `RankFailureError` within that bound (gloo; with nccl, torch's watchdog aborts the process after the
timeout and torchrun reports the failed rank); the last checkpoint (written atomically) is untouched. At every
checkpoint the ranks' parameters are compared ('ddp_check' event in metrics.jsonl; 0.0 = identical).
Backends: gloo on CPU (tested, 2 ranks); nccl on CUDA (implemented, not tested here: no GPU was available).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from jaxtyping import Float
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from sae_analysis.metrics import explained_variance, firing_counts
from trainers import checkpoint as ckpt
from trainers.buffer import MixingBuffer
from trainers.config import TrainConfig
from trainers.ddp_reduce import DistributedTracker, global_losses, is_collective_failure, max_rank_divergence, rank_objective
from trainers.ddp_state import load_rank_state, prune_rank_states, save_rank_state
from trainers.dead import project_decoder_grad_, renormalise_decoder_
from trainers.evaluate import Evaluator
from trainers.interrupt import StopRequests
from trainers.memory import keep_freed_memory
from trainers.precision import resolve_autocast
from trainers.step import FusedStep
from trainers.train import DTYPES, NonFiniteLossError, StepOutput, Stopped, Trainer, TrainResult

log = logging.getLogger(__name__)
_DDP_ARGS = inspect.signature(DistributedDataParallel).parameters
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_ARGS
                   else {"broadcast_buffers": False})  # the SAE's only buffer (JumpReLU threshold) never changes in training


class RankFailureError(RuntimeError):
    """A collective failed or timed out: another rank died or hung. The checkpoints on disk are intact."""


class _NullWriter:
    """The metrics writer of ranks other than 0."""

    def write(self, event: str, **fields: Any) -> None:
        pass

    def offset(self) -> int:
        return 0

    def truncate(self, offset: int) -> None:
        pass

    def close(self) -> None:
        pass


class DistributedTrainer(Trainer):
    """`Trainer` on one rank of a process group: DDP step, all-reduced statistics, rank-0 bookkeeping."""

    def __init__(self, cfg: TrainConfig, buffer: MixingBuffer, source: Any, out_dir: Path, evaluator: Evaluator | None):
        super().__init__(cfg, buffer, source, out_dir, evaluator)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.comm_device = torch.device(cfg.device)  # small control tensors live here (nccl needs them on the GPU)
        if self.rank != 0:
            self.writer.close()
            self.writer = _NullWriter()  # type: ignore[assignment]

    def init_fresh(self, d_in: int) -> None:
        super().init_fresh(d_in)
        self.tracker = DistributedTracker(self.sae.cfg.d_sae, device=self.cfg.device)
        self.fused = self.workspace is not None and not self.cfg.autocast_bf16 and FusedStep.supports(self.sae)
        if self.fused:  # every gradient is a view of one flat buffer: one all-reduce per step
            params = [self.sae.W_enc, self.sae.W_dec, self.sae.b_enc, self.sae.b_dec]
            self.flat_grad = torch.zeros(sum(q.numel() for q in params), device=self.sae.device)
            offsets = itertools.accumulate([q.numel() for q in params], initial=0)
            self.grad_views = [(q, self.flat_grad[start:start + q.numel()].view_as(q)) for q, start in zip(params, offsets)]
        else:  # autograd (bf16 autocast, non-ReLU SAEs): DDP reduces the gradients in backward hooks
            device_ids = [self.sae.device.index] if self.sae.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.sae, device_ids=device_ids, **_NO_BUFFER_SYNC)

    # ----- the loop ---------------------------------------------------------------------------------------------------
    def _any(self, flag: bool) -> bool:
        t = torch.tensor([float(flag)], device=self.comm_device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def run(self, batches: Iterator[Tensor], progress: bool) -> Stopped:
        """As `Trainer.run`, with the stop decisions (a signal on any rank, data exhausted on any rank) agreed by all
        ranks at each step."""
        stopped: Stopped = "done"
        bar = tqdm(total=self.cfg.steps, initial=self.step, unit="step", disable=not progress or self.rank != 0,
                   dynamic_ncols=True)
        with StopRequests() as flag, bar:
            while self.step < self.cfg.steps:
                if self._any(flag.requested):
                    stopped = "interrupted"
                    break
                x = next(batches, None)
                if self._any(x is None):
                    stopped = "data_exhausted"
                    break
                assert x is not None
                self._one_step(x, bar)
        return stopped

    def ddp_step(self, x: Float[Tensor, "batch d_in"]) -> StepOutput:
        """`train_step` through DDP: forward, all-reduce of (l2, l1, firing counts), a globally agreed NaN check,
        backward of `rank_objective` (DDP averages the gradients), projection, Adam step. Returns global loss terms
        and this rank's activations; the tracker receives the global counts."""
        cfg, sae = self.cfg, self.sae
        x = x.to(sae.device)
        if self.fused:
            l1_scale = float(self.world) if sae.cfg.loss_convention == "original" else 1.0
            for q, view in self.grad_views:  # (re)bind: anything may have set .grad to None or a new tensor
                if q.grad is not view:
                    q.grad = view
            out = self.workspace.forward_backward(sae, x, l1_scale=l1_scale)  # type: ignore[union-attr]
        else:
            with torch.autocast(sae.device.type, dtype=torch.bfloat16, enabled=cfg.autocast_bf16):
                out = self.ddp(x)
        counts = firing_counts(out.acts.detach())
        stats = torch.cat([torch.stack([out.l2.detach(), out.l1.detach()]).double(), counts.double()])
        dist.all_reduce(stats)
        l2, l1 = global_losses(float(stats[0]), float(stats[1]), self.world, sae.cfg.loss_convention)
        if not math.isfinite(l2 + l1):
            raise NonFiniteLossError(f"loss is {l2 + l1} (l2={l2}, l1={l1}; summed over {self.world} ranks)")
        self.tracker.add_counts(stats[2:].round().long(), len(x) * self.world)
        if self.fused:  # the mean over ranks of ∇(l2_r + N l1_r) is the gradient of the global batch (rank_objective)
            dist.all_reduce(self.flat_grad)
            self.flat_grad.div_(self.world)
        else:
            rank_objective(out, self.world, sae.cfg.loss_convention).backward()
        project_decoder_grad_(sae.W_dec)
        self.opt.step()
        if not self.fused:  # the fused step overwrites the gradients; autograd accumulates into them
            self.opt.zero_grad(set_to_none=False)
        if cfg.decoder_norm == "project_grad_and_renorm":
            renormalise_decoder_(sae.W_dec)
        self._global_l0 = float(stats[2:].sum()) / (len(x) * self.world)  # = metrics.l0 of the global batch
        return StepOutput(l2 + l1, l2, l1, out.acts.detach(), out.x_hat.detach())

    def _one_step(self, x: Tensor, bar: tqdm) -> None:
        try:
            out = self.ddp_step(x)
        except NonFiniteLossError as err:
            self.writer.write("error", step=self.step + 1, tokens=self.tokens, message=str(err))
            raise NonFiniteLossError(f"step {self.step + 1}: {err}. Stopped; the last good checkpoint is "
                                     f"{self.last_checkpoint or '(none yet)'}") from None
        self.step, self.prev_tokens, self.tokens = self.step + 1, self.tokens, self.tokens + len(x) * self.world
        bar.update(1)
        if self.reached(self.cfg.log_every_tokens):
            self._log_train(x, out, bar)
        if self.reached(self.cfg.eval_every_tokens) and self.rank == 0:
            self._evaluate()
        self._maybe_checkpoint_and_resample()

    def _gather(self, t: Tensor) -> Tensor | None:
        """The rank tensors concatenated in rank order, on rank 0 (None elsewhere)."""
        parts = [torch.empty_like(t) for _ in range(self.world)] if self.rank == 0 else None
        dist.gather(t.contiguous(), parts, dst=0)
        return torch.cat(parts) if parts is not None else None

    def _log_train(self, x: Tensor, out: StepOutput, bar: tqdm) -> None:
        xs, x_hats = self._gather(x.to(out.x_hat.device, out.x_hat.dtype)), self._gather(out.x_hat)
        if xs is None or x_hats is None:
            return
        now, tokens = time.perf_counter(), self.tokens
        rate = (tokens - self._timer[1]) / max(now - self._timer[0], 1e-9)
        self._timer = (now, tokens)
        row = {"loss": out.loss, "l2": out.l2, "l1": out.l1, "l0": self._global_l0,
               "explained_variance": float(explained_variance(xs, x_hats))}
        self.writer.write("train", step=self.step, tokens=tokens, tokens_per_s=rate, world_size=self.world, **row)
        bar.set_postfix(tok_s=f"{rate:.0f}", loss=f"{out.loss:.4g}", L0=f"{row['l0']:.1f}")

    # ----- checkpoints and resampling -----------------------------------------------------------------------------------
    def _save_sae(self, folder: Path) -> None:
        """Rank 0 writes the SAE checkpoint; every rank resets its (identical) frequency window."""
        if self.rank == 0:
            super()._save_sae(folder)
        else:
            self.last_checkpoint = str(folder)
            self.tracker.reset_window()

    def _maybe_checkpoint_and_resample(self) -> None:
        due_ckpt = self.tokens >= self.next_checkpoint
        if due_ckpt:
            self.next_checkpoint += self.cfg.checkpoint_every_tokens
            self._save_sae(self.out_dir / "checkpoints" / f"{self.tokens:012d}")
        resampled = self._maybe_resample() if self.rank == 0 else False
        flag = torch.tensor([float(resampled)], device=self.comm_device)
        dist.broadcast(flag, src=0)
        if flag.item() > 0:
            self.sync_from_rank0()
        if due_ckpt:
            self.check_ranks_identical()
        if due_ckpt or flag.item() > 0:
            self.save_state()

    def check_ranks_identical(self) -> float:
        """Largest difference of any parameter between ranks (a collective; logged as a 'ddp_check' event at every
        checkpoint). DDP keeps the ranks bit-identical, so anything but 0.0 is a bug and is warned about."""
        worst = max_rank_divergence([p.detach() for p in self.sae.parameters()])
        self.writer.write("ddp_check", step=self.step, tokens=self.tokens, max_rank_divergence=worst)
        if worst > 0:
            log.warning("step %d: the ranks' parameters differ by up to %g", self.step, worst)
        return worst

    def sync_from_rank0(self) -> None:
        """Broadcast rank 0's parameters, Adam moments and dead-latent clocks (after a resampling decided there)."""
        tensors = [p.data for p in self.sae.parameters()] + [self.tracker.tokens_since_fired]
        for p in self.sae.parameters():
            tensors += [v for k, v in sorted(self.opt.state.get(p, {}).items()) if torch.is_tensor(v) and k != "step"]
        for t in tensors:
            dist.broadcast(t, src=0)

    def finish(self, stopped: Stopped) -> None:
        folder = self.out_dir / "checkpoints" / f"{self.tokens:012d}"
        if self.last_checkpoint != str(folder):
            self._save_sae(folder)
        self.save_state()
        if self.rank == 0:
            if stopped != "interrupted":
                ckpt.save_native(self.sae, self.out_dir / "final", self.cfg.to_dict())
            self.writer.write("end", step=self.step, tokens=self.tokens, stopped=stopped, world_size=self.world)
        dist.barrier()  # no rank reports success before rank 0 has written the final SAE

    # ----- state --------------------------------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Each rank's data state first, then (after a barrier) rank 0's shared state, then old rank files go."""
        tensors, meta = self.state()
        save_rank_state(self.out_dir, self.rank, self.step, tensors, meta)
        dist.barrier()
        if self.rank == 0:
            shared = {k: v for k, v in tensors.items() if not k.startswith(("buffer/", "rng/"))}
            rest = {k: v for k, v in meta.items() if k not in ("buffer", "source")}
            ckpt.save_state(self.out_dir, shared, {**rest, "world_size": self.world})
        dist.barrier()
        prune_rank_states(self.out_dir, self.rank, keep_step=self.step)


def make_rank_buffer(cfg: TrainConfig, source: Iterator[Tensor], rank: int, world_size: int) -> MixingBuffer:
    """This rank's shuffle buffer: `batch_size / world_size` rows per batch and `buffer_mult` batches, with a generator
    seeded by (seed, rank); rank 0's seed is the single-process buffer's, so one rank reproduces `train` exactly."""
    if cfg.batch_size % world_size:
        raise ValueError(f"batch_size {cfg.batch_size} (the global batch) is not divisible by the world size {world_size}")
    b = cfg.batch_size // world_size
    return MixingBuffer(source, size=b * cfg.buffer_mult, batch_size=b,
                        generator=torch.Generator().manual_seed(cfg.seed + 1_000_003 * rank), dtype=DTYPES[cfg.buffer_dtype],
                        end_of_data=cfg.end_of_data, device=cfg.device)


def _start(trainer: DistributedTrainer, resume: bool) -> Iterator[Tensor]:
    """Restore the saved state or initialise a fresh SAE; returns the batches to train on."""
    saved = ckpt.load_state(trainer.out_dir)
    if saved is not None and not resume:
        raise FileExistsError(f"{trainer.out_dir} already holds a run; pass resume=True (--resume) or choose another folder")
    dist.barrier()  # every rank has read the state before anyone can write
    if saved is not None:
        trainer.restore(*load_rank_state(trainer.out_dir, trainer.rank, trainer.world, *saved))
        log.info("resumed %s at step %d (%d tokens) on %d ranks", trainer.out_dir, trainer.step, trainer.tokens, trainer.world)
        return trainer.buffer
    trainer.writer.truncate(0)
    first = next(trainer.buffer, None)
    if trainer._any(first is None):
        raise ValueError("a rank has no activations at all: too few sequences for this world size")
    assert first is not None
    trainer.init_fresh(trainer.cfg.d_in or first.shape[-1])
    return itertools.chain([first], trainer.buffer)


def train_distributed(cfg: TrainConfig, source: Iterator[Tensor], *, out_dir: str | Path, evaluator: Evaluator | None = None,
                      resume: bool = False, progress: bool = True) -> TrainResult:
    """`trainers.train` on one rank of an initialised process group (`init_process_group`). `source` is this rank's
    own activation shard; `evaluator` is used on rank 0 only. Every rank returns the same `TrainResult`. Raises
    `RankFailureError` when another rank dies or hangs (after at most the process-group timeout)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg, _ = resolve_autocast(cfg)  # every rank decides alike (same host); rank 0's log says why
    if cfg.device == "cpu":
        keep_freed_memory()  # as `train` does
    trainer = DistributedTrainer(cfg, make_rank_buffer(cfg, source, rank, world), source, Path(out_dir), evaluator)
    try:
        batches = _start(trainer, resume)
        stopped = trainer.run(batches, progress)
        trainer.finish(stopped)
    except RuntimeError as err:  # gloo reports a dead or hung peer as a plain RuntimeError
        if isinstance(err, NonFiniteLossError) or not is_collective_failure(err):
            raise
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise RankFailureError(f"rank {rank} of {world}: a collective failed after step {trainer.step}: another rank "
                               f"died, hung past the process-group timeout or failed. Last checkpoint: "
                               f"{trainer.last_checkpoint or '(none)'}. Cause: {type(err).__name__}: {first_line}") from err
    finally:
        trainer.writer.close()
    return TrainResult(trainer.sae, trainer.step, trainer.tokens, Path(out_dir), stopped)


__all__ = ["RankFailureError", "rank_objective", "global_losses",
           "max_rank_divergence", "is_collective_failure",
           "DistributedTracker", "DistributedTrainer", "make_rank_buffer", "train_distributed"]
