"""The training loop (REPLICATION.md §5): Adam on `SAE.forward`'s loss, decoder-gradient projection, logging, evaluation,
checkpoints, resampling, resume; on one process or on each rank of a data-parallel group, the same loop.

`train` is the entry point. `train_step` (`trainers.trainer`) is the whole optimizer step and sees one batch;
`Trainer.run` sees only an iterator of activation batches (the `MixingBuffer` over a chunk source). Metric formulas come
from `sae_analysis.metrics`; the dead-latent tracker and the resampling maths live in `trainers.dead`, the schedule in
`trainers.resampling`, the saved state in `trainers.trainer_state`; what differs between one process and N ranks
(reductions, broadcasts, rank-0 writes) is the `trainers.collective` object the trainer is given (`Single`: every
operation a no-op).

Data parallel (N ranks, one process each): every rank reads a disjoint share of the data into its own buffer of
`batch_size / N` rows, so the global batch, tokens, steps and schedules are those of one process; each rank steps on
the loss whose rank-averaged gradient is the global-batch gradient (`trainers.ddp_reduce.rank_objective`), the
gradients (views of one flat buffer) are averaged by one all-reduce before the decoder projection and Adam, and the
loss terms and firing counts are summed, so the tracker, frequencies and L0 are global. Rank 0 alone evaluates, writes
metrics and checkpoints, and decides resampling; the new latents are then broadcast. A run saved on N ranks resumes on
N, or on another count with its unread data re-split (`trainers.ddp_state.resplit_state`).

Order of work at the end of step s (as the original: save, then resample): log / evaluate; at a checkpoint, write the SAE
(pre-resample weights) and a frequency snapshot; resample; then write the trainer state, so a resumed run continues
exactly after step s.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from sae_analysis.memory import keep_freed_memory
from trainers import checkpoint as ckpt
from trainers.buffer import MixingBuffer
from trainers.collective import Collective, Single
from trainers.config import TrainConfig
from trainers.ddp_reduce import RankFailureError, is_collective_failure
from trainers.evaluate import Evaluator
from trainers.precision import resolve_autocast
from trainers.trainer import (
    DTYPES,
    NonFiniteLossError,
    StepOutput,
    Stopped,
    Trainer,
    TrainResult,
    make_optimizer,
    train_step,
)
from trainers.trainer_state import load_for, restore

log = logging.getLogger(__name__)


def start(t: Trainer, resume: bool) -> Iterator[Tensor]:
    """Restore the saved state or initialise a fresh SAE; returns the batches to train on."""
    saved = ckpt.load_state(t.out_dir)
    if saved is not None and not resume:
        raise FileExistsError(f"{t.out_dir} already holds a run; pass resume=True (--resume) or choose another folder")
    t.coll.barrier()  # every rank has read the state before anyone can write
    if saved is not None:
        saved = load_for(t, *saved)
        t.coll.barrier()  # every rank has read the old rank files before any is replaced
        restore(t, *saved)
        log.info("resumed %s at step %d (%d tokens) on %d rank(s)", t.out_dir, t.step, t.tokens, t.coll.world)
        return t.buffer
    t.writer.truncate(0)
    first = next(t.buffer, None)
    if t.coll.any(first is None):
        raise ValueError("no activations at all" + (": too few sequences for this world size" if t.coll.world > 1 else ""))
    assert first is not None
    t.init_fresh(t.cfg.d_in or first.shape[-1])
    return itertools.chain([first], t.buffer)


def make_buffer(cfg: TrainConfig, source: Iterator[Tensor], rank: int = 0, world_size: int = 1) -> MixingBuffer:
    """This rank's shuffle buffer over an activation-chunk source: `batch_size / world_size` rows per batch and
    `buffer_mult` batches, with a generator seeded by (seed, rank); rank 0's seed is the single-process buffer's."""
    if cfg.batch_size % world_size:
        raise ValueError(f"batch_size {cfg.batch_size} (the global batch) is not divisible by the world size {world_size}")
    b = cfg.batch_size // world_size
    return MixingBuffer(source, size=b * cfg.buffer_mult, batch_size=b,
                        generator=torch.Generator().manual_seed(cfg.seed + 1_000_003 * rank), dtype=DTYPES[cfg.buffer_dtype],
                        end_of_data=cfg.end_of_data, device=cfg.device)


def train(cfg: TrainConfig, source: Iterator[Tensor], *, out_dir: str | Path, evaluator: Evaluator | None = None,
          resume: bool = False, progress: bool = True, collective: Collective | None = None) -> TrainResult:
    """Train an SAE on activation chunks from `source` (e.g. `trainers.source.ModelActivations`) and write metrics,
    snapshots and checkpoints to `out_dir`. With `resume`, continue from `out_dir`'s trainer state (if any); without it,
    an existing state is an error. Returns when all steps are done, on Ctrl-C (after saving) or at the end of the data
    (end_of_data='stop'); raises NonFiniteLossError on a NaN/inf loss, keeping the last good checkpoint.

    Data parallel: `collective=TorchDistributed()` on each rank of an initialised process group, `source` being this
    rank's own shard; `evaluator` is used on rank 0 only. Every rank returns the same `TrainResult`; a rank raises
    `trainers.ddp_reduce.RankFailureError` when another rank dies or hangs (after at most the process-group timeout)."""
    out_dir, coll = Path(out_dir), collective or Single()
    cfg, precision_note = resolve_autocast(cfg)  # every rank decides alike (same host)
    if cfg.device == "cpu":
        keep_freed_memory()
    trainer = Trainer(cfg, make_buffer(cfg, source, coll.rank, coll.world), source, out_dir,
                      evaluator if coll.is_writer else None, coll)
    try:
        batches = start(trainer, resume)
        if precision_note is not None:
            trainer.writer.write("precision", step=trainer.step, tokens=trainer.tokens,
                                 autocast_bf16=trainer.cfg.autocast_bf16, reason=precision_note)
        stopped = trainer.run(batches, progress)
        trainer.finish(stopped)
    except RuntimeError as err:  # gloo reports a dead or hung peer as a plain RuntimeError
        if coll.world == 1 or isinstance(err, NonFiniteLossError) or not is_collective_failure(err):
            raise
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise RankFailureError(f"rank {coll.rank} of {coll.world}: a collective failed after step {trainer.step}: "
                               f"another rank died, hung past the process-group timeout or failed. Last checkpoint: "
                               f"{trainer.last_checkpoint or '(none)'}. Cause: {type(err).__name__}: {first_line}") from err
    finally:
        trainer.writer.close()
    return TrainResult(trainer.sae, trainer.step, trainer.tokens, out_dir, stopped)


__all__ = ["train", "train_step", "make_buffer", "make_optimizer", "TrainResult", "NonFiniteLossError", "Trainer",
           "StepOutput", "Stopped", "DTYPES", "start"]
