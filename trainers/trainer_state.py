"""A run's saved trainer state (everything a resumed run needs to continue exactly after the saved step) and the start
of a run: a fresh SAE, or the state restored from the run folder.

One process writes one file (`trainers.checkpoint.save_state`). A data-parallel run writes each rank's data (buffer
contents, source position, RNG) into its own file and the shared part (SAE, Adam, tracker, step, config, world_size)
from rank 0 (`trainers.ddp_state`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from trainers import checkpoint as ckpt
from trainers.collective import Collective
from trainers.config import TrainConfig
from trainers.ddp_reduce import RankFailureError, is_collective_failure
from trainers.ddp_state import load_rank_state, prune_rank_states, save_rank_state
from trainers.memory import keep_freed_memory
from trainers.precision import resolve_autocast

if TYPE_CHECKING:
    from trainers.evaluate import Evaluator
    from trainers.train import Trainer, TrainResult

log = logging.getLogger(__name__)


def trainer_state(t: Trainer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Everything `restore` needs, as (tensors, JSON-able metadata)."""
    opt_tensors, opt_rest = ckpt.optimizer_tensors(t.opt)
    buf = t.buffer.state_dict()
    tensors = {**ckpt.prefixed("sae", t.sae.state_dict()), **opt_tensors,
               **ckpt.prefixed("buffer", buf["tensors"]), "rng/torch": torch.get_rng_state(),
               "tracker/tokens_since_fired": t.tracker.tokens_since_fired,
               "tracker/window_counts": t.tracker.window_counts}
    meta = {"cfg": t.cfg.to_dict(), "step": t.step, "tokens": t.tokens, "next_checkpoint": t.next_checkpoint,
            "last_checkpoint": t.last_checkpoint, "metrics_offset": t.writer.offset(), "optimizer": opt_rest,
            "buffer": {"scalars": buf["scalars"], "d_in": buf["d_in"]}, "window_tokens": t.tracker.window_tokens,
            "source": t.source.state_dict() if hasattr(t.source, "state_dict") else None,
            "step_state": t.workspace.state_dict() if hasattr(t.workspace, "state_dict") else None}
    return tensors, meta


def save_trainer_state(t: Trainer) -> None:
    """One process: one file. N ranks: each rank's data state first, then (after a barrier) rank 0's shared state, then
    old rank files go; a crash at any point leaves a shared file whose step has a complete set of rank files."""
    tensors, meta = trainer_state(t)
    if t.coll.world == 1:
        ckpt.save_state(t.out_dir, tensors, meta)
        return
    save_rank_state(t.out_dir, t.coll.rank, t.step, tensors, meta)
    t.coll.barrier()
    if t.coll.is_writer:
        shared = {k: v for k, v in tensors.items() if not k.startswith(("buffer/", "rng/"))}
        rest = {k: v for k, v in meta.items() if k not in ("buffer", "source")}
        ckpt.save_state(t.out_dir, shared, {**rest, "world_size": t.coll.world})
    t.coll.barrier()
    prune_rank_states(t.out_dir, t.coll.rank, keep_step=t.step)


def restore(t: Trainer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    saved = TrainConfig.from_dict(meta["cfg"])
    now, before = t.cfg.to_dict(), saved.to_dict()
    changed = {k: v for k, v in now.items() if k != "d_in" and before[k] != v}
    if changed:
        log.warning("resuming with config changes %s (saved: %s)", changed, {k: before[k] for k in changed})
    t.init_fresh(int(saved.d_in or 0))
    t.sae.load_state_dict({k: v.to(t.cfg.device) for k, v in ckpt.unprefixed("sae", tensors).items()})
    ckpt.load_optimizer_tensors(t.opt, tensors, meta["optimizer"])
    t.tracker.load_state_dict({"tokens_since_fired": tensors["tracker/tokens_since_fired"],
                               "window_counts": tensors["tracker/window_counts"], "window_tokens": meta["window_tokens"]})
    t.buffer.load_state_dict({"tensors": ckpt.unprefixed("buffer", tensors), **meta["buffer"]})
    if meta["source"] is not None:
        t.source.load_state_dict(meta["source"])
    torch.set_rng_state(tensors["rng/torch"])
    if meta.get("step_state") is not None and hasattr(t.workspace, "load_state_dict"):
        t.workspace.load_state_dict(meta["step_state"])  # AutoStep's mode, so that resume is bit-identical
    t.step, t.tokens, t.next_checkpoint = meta["step"], meta["tokens"], meta["next_checkpoint"]
    t.prev_tokens = t.tokens
    t.last_checkpoint = meta["last_checkpoint"]
    t.writer.truncate(meta["metrics_offset"])


def start(t: Trainer, resume: bool) -> Iterator[Tensor]:
    """Restore the saved state or initialise a fresh SAE; returns the batches to train on."""
    saved = ckpt.load_state(t.out_dir)
    if saved is not None and not resume:
        raise FileExistsError(f"{t.out_dir} already holds a run; pass resume=True (--resume) or choose another folder")
    t.coll.barrier()  # every rank has read the state before anyone can write
    if saved is not None:
        if t.coll.world > 1 or "world_size" in saved[1]:
            saved = load_rank_state(t.out_dir, t.coll.rank, t.coll.world, *saved)
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


def run_training(cfg: TrainConfig, source: Iterator[Tensor], out_dir: Path, evaluator: Evaluator | None, resume: bool,
                 progress: bool, coll: Collective) -> TrainResult:
    """`trainers.train.train`'s body."""
    from trainers.train import Trainer, TrainResult, make_buffer

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
        if coll.world == 1 or not is_collective_failure(err) or type(err).__name__ == "NonFiniteLossError":
            raise
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise RankFailureError(f"rank {coll.rank} of {coll.world}: a collective failed after step {trainer.step}: "
                               f"another rank died, hung past the process-group timeout or failed. Last checkpoint: "
                               f"{trainer.last_checkpoint or '(none)'}. Cause: {type(err).__name__}: {first_line}") from err
    finally:
        trainer.writer.close()
    return TrainResult(trainer.sae, trainer.step, trainer.tokens, out_dir, stopped)
