"""Per-rank trainer state of a data-parallel run: each rank's data (buffer contents, source position, RNG) in its own
file, next to the shared state that rank 0 writes with `trainers.checkpoint.save_state`.

    out_dir/state/trainer_state.safetensors       shared: SAE, Adam, tracker, step, config, world_size (rank 0)
    out_dir/state/rank<r>/<step>.safetensors      rank r's buffer, RNG and source position at that step

Order of a save (`trainers.trainer_state.save_trainer_state`): every rank writes its file for the new step (atomically), barrier,
rank 0 replaces the shared file (atomically), barrier, every rank deletes its files of other steps. A crash at any point
leaves a shared file whose step has a complete set of rank files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from sae_analysis.errors import UsageError
from sae_analysis.io.readers import atomic_write

RANK_TENSOR_PREFIXES = ("buffer/", "rng/")
RANK_META_KEYS = ("buffer", "source")


def rank_state_path(out_dir: str | Path, rank: int, step: int) -> Path:
    return Path(out_dir) / "state" / f"rank{rank}" / f"{step:012d}.safetensors"


def save_rank_state(out_dir: str | Path, rank: int, step: int, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write the rank-local part of a full trainer state (`Trainer.state()`): tensors under
    `RANK_TENSOR_PREFIXES` and metadata under `RANK_META_KEYS`."""
    path = rank_state_path(out_dir, rank, step)
    local = {k: v.detach().contiguous().cpu() for k, v in tensors.items() if k.startswith(RANK_TENSOR_PREFIXES)}
    info = {"rank": rank, "step": step, **{k: meta[k] for k in RANK_META_KEYS}}
    atomic_write(path, lambda tmp: save_file(local, str(tmp), metadata={"json": json.dumps(info)}), durable=True)
    return path


def prune_rank_states(out_dir: str | Path, rank: int, *, keep_step: int) -> None:
    """Delete rank `rank`'s files of every step but `keep_step` (and leftovers of interrupted writes)."""
    keep = rank_state_path(out_dir, rank, keep_step)
    for path in keep.parent.glob("*.safetensors*"):
        if path.name != keep.name:
            path.unlink(missing_ok=True)
    for path in keep.parent.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def load_rank_state(out_dir: str | Path, rank: int, world_size: int, tensors: dict[str, Tensor],
                    meta: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The full trainer state of rank `rank`: the shared state (`tensors`, `meta` from `checkpoint.load_state`) merged
    with the rank's own file for the same step. Raises ValueError when the run was saved at another world size."""
    saved_world = int(meta.get("world_size", 1))
    if saved_world != world_size:
        raise UsageError(f"{out_dir} was saved by a run on {saved_world} rank(s); resume it on the same number "
                         f"(got {world_size}): each rank's data state belongs to its own shard")
    path = rank_state_path(out_dir, rank, int(meta["step"]))
    if not path.exists():
        raise FileNotFoundError(f"missing {path}: the shared trainer state is at step {meta['step']}, but rank {rank}'s "
                                "data state for that step is not there")
    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {})["json"])
    return {**tensors, **load_file(str(path))}, {**meta, **{k: info[k] for k in RANK_META_KEYS}}


def saved_world_size(out_dir: str | Path) -> int | None:
    """World size recorded in a run folder's shared trainer state (1 for single-process runs); None without a state."""
    from trainers.checkpoint import STATE_FILE

    path = Path(out_dir) / STATE_FILE
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        return int(json.loads((f.metadata() or {})["json"]).get("world_size", 1))
