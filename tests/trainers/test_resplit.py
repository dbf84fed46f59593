"""Resuming a data-parallel run on another rank count (`trainers.ddp_state.resplit_state`): the old ranks' unread data
and unserved buffer rows are re-split over the new ranks, so that every activation of the epoch is still trained on
once: none twice, none skipped (but the last partial batch of each rank at the end of the data)."""

from __future__ import annotations

import pytest
import torch

from sae_analysis.errors import UsageError
from trainers import NoResample, TensorActivations, TrainConfig
from trainers import checkpoint as ckpt
from trainers.ddp_state import resplit_state, save_rank_state
from trainers.source import remaining_ranges, split_ranges
from trainers.train import make_buffer

N, CHUNK = 600, 7
CFG = TrainConfig(batch_size=12, buffer_mult=4, buffer_dtype="float32", end_of_data="stop", seed=1, resample=NoResample(),
                  log_every_tokens=12, eval_every_tokens=12, checkpoint_every_tokens=12)


def pipeline(rank: int, world: int) -> tuple[TensorActivations, object]:
    """Rank `rank`'s source (its share of N activations whose first coordinate is their index) and buffer."""
    acts = torch.zeros(N, 3)
    acts[:, 0] = torch.arange(N)
    src = TensorActivations(acts, chunk=CHUNK, shard=(rank, world))
    return src, make_buffer(CFG, src, rank, world)


def save(out, pipes, step: int) -> None:
    """The data part of the trainer state, as `trainers.trainer_state.save_trainer_state` writes it."""
    for r, (src, buf) in enumerate(pipes):
        state = buf.state_dict()
        tensors = {**ckpt.prefixed("buffer", state["tensors"]), "rng/torch": torch.get_rng_state()}
        meta = {"buffer": {"scalars": state["scalars"], "d_in": state["d_in"]}, "source": src.state_dict(), "step": step}
        if len(pipes) == 1:
            ckpt.save_state(out, {"sae/x": torch.zeros(1), **tensors}, meta)
        else:
            save_rank_state(out, r, step, tensors, meta)
    if len(pipes) > 1:
        ckpt.save_state(out, {"sae/x": torch.zeros(1)}, {"step": step, "world_size": len(pipes)})


@pytest.mark.parametrize(("old", "new"), [(2, 1), (1, 2), (2, 3)])
def test_every_activation_is_served_once_across_the_resplit(tmp_path, old, new):
    pipes = [pipeline(r, old) for r in range(old)]
    seen = [next(buf)[:, 0] for _ in range(9) for _, buf in pipes]  # 9 steps: the buffers have been refilled
    save(tmp_path, pipes, step=9)
    tensors, meta = ckpt.load_state(tmp_path)
    for r in range(new):
        t, m = resplit_state(tmp_path, tensors, meta, r, new)
        assert m["source"]["shard"] == [r, new] and "buffer/storage" not in t
        src, buf = pipeline(r, new)
        buf.adopt(t["carry/rows"])
        src.load_state_dict(m["source"])
        seen += [b[:, 0] for b in buf]  # to the end of the data (end_of_data='stop')
    ids = torch.cat(seen).long().tolist()
    assert len(ids) == len(set(ids)), "an activation was served twice"
    missing = set(range(old * (N // old))) - set(ids)
    assert len(missing) < CFG.batch_size  # only what is left over at the end: under one batch per new rank


def test_ranges_split_into_near_equal_consecutive_shares():
    rest = remaining_ranges([(0, 10), (20, 25)], 4)
    assert rest == [(4, 10), (20, 25)]
    parts = split_ranges(rest, 3)
    assert parts == [[(4, 8)], [(8, 10), (20, 22)], [(22, 25)]]
    assert [sum(b - a for a, b in p) for p in split_ranges([(0, 7)], 3)] == [3, 2, 2]


def test_a_state_without_source_ranges_is_refused(tmp_path):
    pipes = [pipeline(r, 2) for r in range(2)]
    for _, buf in pipes:
        next(buf)
    save(tmp_path, pipes, step=1)
    tensors, meta = ckpt.load_state(tmp_path)
    path = tmp_path / "state" / "rank1" / f"{1:012d}.safetensors"
    t1, m1 = pipes[1][1].state_dict(), pipes[1][0].state_dict()
    save_rank_state(tmp_path, 1, 1, ckpt.prefixed("buffer", t1["tensors"]),
                    {"buffer": {"scalars": t1["scalars"], "d_in": 3}, "source": {"position": m1["position"], "epoch": 0}})
    assert path.exists()
    with pytest.raises(UsageError, match="predate re-splitting"):
        resplit_state(tmp_path, tensors, meta, 0, 1)
