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

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from sae_analysis.errors import UsageError
from sae_analysis.io.readers import atomic_write

RANK_TENSOR_PREFIXES = ("buffer/", "rng/")
RANK_META_KEYS = ("buffer", "source", "step_state")
"""Per-rank metadata: the data state, and the step workspace's mode (`AutoStep` decides on its own rank's density)."""


def rank_state_path(out_dir: str | Path, rank: int, step: int) -> Path:
    return Path(out_dir) / "state" / f"rank{rank}" / f"{step:012d}.safetensors"


def save_rank_state(out_dir: str | Path, rank: int, step: int, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write the rank-local part of a full trainer state (`Trainer.state()`): tensors under
    `RANK_TENSOR_PREFIXES` and metadata under `RANK_META_KEYS`."""
    path = rank_state_path(out_dir, rank, step)
    local = {k: v.detach().contiguous().cpu() for k, v in tensors.items() if k.startswith(RANK_TENSOR_PREFIXES)}
    info = {"rank": rank, "step": step, **{k: meta[k] for k in RANK_META_KEYS if k in meta}}
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


def read_rank_meta(path: Path) -> dict[str, Any]:
    """The JSON metadata of a rank file (buffer scalars, source position)."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})["json"])


def load_rank_state(out_dir: str | Path, rank: int, world_size: int, tensors: dict[str, Tensor],
                    meta: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The full trainer state of rank `rank`: the shared state (`tensors`, `meta` from `checkpoint.load_state`) merged
    with the rank's own file for the same step. Raises UsageError when the run was saved at another world size (see
    `resplit_state`)."""
    saved_world = int(meta.get("world_size", 1))
    if saved_world != world_size:
        raise UsageError(f"{out_dir} was saved by a run on {saved_world} rank(s); resume it on the same number "
                         f"(got {world_size}): each rank's data state belongs to its own shard")
    path = rank_state_path(out_dir, rank, int(meta["step"]))
    if not path.exists():
        raise FileNotFoundError(f"missing {path}: the shared trainer state is at step {meta['step']}, but rank {rank}'s "
                                "data state for that step is not there")
    info = read_rank_meta(path)
    own = {k: info[k] for k in RANK_META_KEYS if k in info}  # files written before step_state was per rank lack it
    return {**tensors, **load_file(str(path))}, {**meta, **own}


def _old_rank_states(out_dir: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> list[tuple[dict, dict]]:
    """(tensors, meta) of every rank of the saved run (one process: the shared state itself)."""
    saved_world = int(meta.get("world_size", 1))
    if saved_world == 1:
        return [(tensors, meta)]
    return [load_rank_state(out_dir, r, saved_world, tensors, meta) for r in range(saved_world)]


def resplit_refusal(states: list[tuple[dict, dict]]) -> str | None:
    """Why the saved run cannot continue on another rank count, or None."""
    sources = [m.get("source") or {} for _, m in states]
    if any("ranges" not in s for s in sources):
        return "its data positions predate re-splitting (no source ranges recorded)"
    if len({int(s["epoch"]) for s in sources}) > 1:
        return "its ranks are in different epochs of the data"
    if any(m["buffer"]["scalars"]["exhausted"] for _, m in states):
        return "its data ran out (end_of_data stop or freeze): the buffers cannot be re-split"
    return None


def resplit_state(out_dir: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any], rank: int,
                  world_size: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state of rank `rank` of `world_size` continuing a run saved on another rank count: the shared state, plus a
    share of the data no old rank had trained on. The old ranks' unread item ranges of this epoch (in rank order) are cut
    into `world_size` consecutive, near-equal shares (`trainers.source.split_ranges`), and so are their buffers' unserved
    rows (then `MixingBuffer.adopt`). Every activation is trained on once, as before; lost: the exact mixing (which rows
    share a batch) and the RNG streams, so the run is not bit-identical to one that kept its rank count."""
    from trainers.source import remaining_ranges, split_ranges

    states = _old_rank_states(out_dir, tensors, meta)
    reason = resplit_refusal(states)
    if reason is not None:
        raise UsageError(f"{out_dir} cannot continue on {world_size} rank(s): {reason}; resume it on "
                         f"{len(states)} rank(s)")
    unread = [r for _, m in states for r in remaining_ranges([tuple(x) for x in m["source"]["ranges"]],
                                                             int(m["source"]["position"]))]
    rows = torch.cat([_unserved(t, m) for t, m in states])
    mine = split_ranges(unread, world_size)[rank]
    shared = {k: v for k, v in tensors.items() if not k.startswith(RANK_TENSOR_PREFIXES)}
    source = {"position": 0, "epoch": int(states[0][1]["source"]["epoch"]), "ranges": [list(x) for x in mine],
              "shard": [rank, world_size]}
    carry = rows.tensor_split(world_size)[rank]
    return {**shared, "carry/rows": carry}, {**{k: v for k, v in meta.items() if k != "buffer"}, "source": source}


def _unserved(tensors: dict[str, Tensor], meta: dict[str, Any]) -> Tensor:
    """A saved buffer's rows not served yet: storage rows past `ptr`, then the pending rows of a split chunk."""
    scalars = meta["buffer"]["scalars"]
    rows = [tensors["buffer/storage"][scalars["ptr"]:scalars["valid"]]] if "buffer/storage" in tensors else []
    rows += [tensors["buffer/pending"]] if "buffer/pending" in tensors else []
    return torch.cat(rows) if rows else torch.empty(0, int(meta["buffer"]["d_in"] or 0))


def remove_rank_states(out_dir: str | Path, keep_world: int) -> None:
    """Delete the rank folders of ranks >= `keep_world` (after a run continued on fewer ranks saved its state)."""
    for folder in (Path(out_dir) / "state").glob("rank*"):
        if folder.name[4:].isdigit() and int(folder.name[4:]) >= keep_world:
            for path in folder.iterdir():
                path.unlink(missing_ok=True)
            folder.rmdir()


def saved_world_size(out_dir: str | Path) -> int | None:
    """World size recorded in a run folder's shared trainer state (1 for single-process runs); None without a state."""
    from trainers.checkpoint import STATE_FILE

    path = Path(out_dir) / STATE_FILE
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        return int(json.loads((f.metadata() or {})["json"]).get("world_size", 1))
