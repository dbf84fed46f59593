"""A run's saved trainer state: everything a resumed run needs to continue exactly after the saved step. The functions
take the `trainers.trainer.Trainer` (`t`).

One process writes one file (`trainers.checkpoint.save_state`). A data-parallel run writes each rank's data (buffer
contents, source position, RNG) into its own file and the shared part (SAE, Adam, tracker, step, config, world_size)
from rank 0 (`trainers.ddp_state`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from trainers import checkpoint as ckpt
from trainers.config import TrainConfig
from trainers.ddp_state import load_rank_state, prune_rank_states, remove_rank_states, resplit_state, save_rank_state

log = logging.getLogger(__name__)


def trainer_state(t: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
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


def save_trainer_state(t: Any) -> None:
    """One process: one file. N ranks: each rank's data state first, then (after a barrier) rank 0's shared state, then
    old rank files go; a crash at any point leaves a shared file whose step has a complete set of rank files."""
    tensors, meta = trainer_state(t)
    if t.coll.world == 1:
        ckpt.save_state(t.out_dir, tensors, meta)
        remove_rank_states(t.out_dir, keep_world=0)  # left by a data-parallel run this one continued, if any
        return
    save_rank_state(t.out_dir, t.coll.rank, t.step, tensors, meta)
    t.coll.barrier()
    if t.coll.is_writer:
        shared = {k: v for k, v in tensors.items() if not k.startswith(("buffer/", "rng/"))}
        rest = {k: v for k, v in meta.items() if k not in ("buffer", "source")}
        ckpt.save_state(t.out_dir, shared, {**rest, "world_size": t.coll.world})
    t.coll.barrier()
    prune_rank_states(t.out_dir, t.coll.rank, keep_step=t.step)
    if t.coll.is_writer:
        remove_rank_states(t.out_dir, keep_world=t.coll.world)


def load_for(t: Any, tensors: dict[str, Tensor], meta: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The saved state as this rank restores it: as saved (one process), merged with the rank's own file (N ranks), or
    re-split when the run was saved on another rank count (`trainers.ddp_state.resplit_state`)."""
    saved_world = int(meta.get("world_size", 1))
    if saved_world != t.coll.world:
        log.warning("%s was saved on %d rank(s): re-splitting its unread data over %d (every activation is still "
                    "trained on once; the batches' mixing differs from an uninterrupted run)", t.out_dir,
                    saved_world, t.coll.world)
        return resplit_state(t.out_dir, tensors, meta, t.coll.rank, t.coll.world)
    if saved_world > 1:
        return load_rank_state(t.out_dir, t.coll.rank, t.coll.world, tensors, meta)
    return tensors, meta


def restore(t: Any, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
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
    if "carry/rows" in tensors:  # continued on another rank count (trainers.ddp_state.resplit_state)
        t.buffer.adopt(tensors["carry/rows"])
    else:
        t.buffer.load_state_dict({"tensors": ckpt.unprefixed("buffer", tensors), **meta["buffer"]})
    if meta["source"] is not None:
        t.source.load_state_dict(meta["source"])
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    if meta.get("step_state") is not None and hasattr(t.workspace, "load_state_dict"):
        t.workspace.load_state_dict(meta["step_state"])  # AutoStep's mode, so that resume is bit-identical
    t.step, t.tokens, t.next_checkpoint = meta["step"], meta["tokens"], meta["next_checkpoint"]
    t.prev_tokens = t.tokens
    t.last_checkpoint = meta["last_checkpoint"]
    t.writer.truncate(meta["metrics_offset"])
