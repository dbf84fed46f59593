"""Where activations come from: token sequences permuted with the run's seed, and resumable activation-chunk iterators.

Tokens (REPLICATION.md §2) are read and cut into BOS-first sequences by `sae_analysis.io.tokens` (`load_token_file`,
`reshape_rows`, `hub_tokens`), then permuted here with the run's seed. Chunks: the model runs on `model_batch` sequences
at a time with `stop_at_layer` (via `sae_analysis.activations.hook_activations`), and the `[batch * pos, d_in]`
activations are yielded. Sources count consumed sequences in `position`, so a run can resume from the same place; with
`wrap=True` they restart at the end of the data (a new `epoch`) and log a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

log = logging.getLogger(__name__)


def permute_sequences(tokens: Int[Tensor, "n_seq pos"], seed: int) -> Int[Tensor, "n_seq pos"]:
    """The sequences in a seeded random order (each run of the original permutes its token cache again)."""
    perm = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    return tokens[perm]


Range = tuple[int, int]


def shard_ranges(n_items: int, rank: int, world_size: int) -> list[Range]:
    """Rank `rank`'s contiguous, disjoint share of `n_items` items: `n_items // world_size` of them (the remainder is
    dropped so that all ranks run out of data at the same step)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    n = n_items // world_size
    if n == 0:
        raise ValueError(f"{n_items} sequences cannot be shared by {world_size} ranks")
    return [(rank * n, (rank + 1) * n)]


def remaining_ranges(ranges: list[Range], position: int) -> list[Range]:
    """The items of `ranges` (read in order) after the first `position`."""
    out = []
    for a, b in ranges:
        skip = min(position, b - a)
        position -= skip
        if a + skip < b:
            out.append((a + skip, b))
    return out


def split_ranges(ranges: list[Range], parts: int) -> list[list[Range]]:
    """`ranges` (in order) cut into `parts` consecutive pieces whose item counts differ by at most one."""
    total = sum(b - a for a, b in ranges)
    sizes = [total // parts + (i < total % parts) for i in range(parts)]
    out, rest = [], list(ranges)
    for size in sizes:
        piece: list[Range] = []
        while size > 0:
            a, b = rest.pop(0)
            take = min(size, b - a)
            piece.append((a, a + take))
            if a + take < b:
                rest.insert(0, (a + take, b))
            size -= take
        out.append(piece)
    return out


def _head(ranges: list[Range], n: int) -> list[Range]:
    """The first `n` items of `ranges`."""
    out = []
    for a, b in ranges:
        if n <= 0:
            break
        out.append((a, a + min(n, b - a)))
        n -= b - a
    return out


class _ChunkSource(Iterator[Tensor]):
    """Shared bookkeeping: the item `ranges` read this epoch (the whole data, or rank r's share of N: `shard=(r, N)`),
    `position` (items of them consumed), `epoch`, optional wrap-around (the next epoch reads the shard again), state for
    resume. A data-parallel run resumed on another rank count gives each rank a share of the items the old ranks had
    not read yet (`trainers.ddp_state.resplit_state`) as its `ranges` for the rest of the epoch."""

    def __init__(self, n_items: int, chunk: int, *, wrap: bool, shard: tuple[int, int] = (0, 1)):
        if n_items <= 0 or chunk <= 0:
            raise ValueError(f"need at least one item and a positive chunk size, got {n_items} and {chunk}")
        self.n_items, self.chunk, self.wrap, self.shard = n_items, chunk, wrap, (int(shard[0]), int(shard[1]))
        self.ranges = shard_ranges(n_items, *self.shard)
        self.position, self.epoch = 0, 0

    def _next_slice(self) -> slice | Tensor:
        """The next chunk's items: a slice, or an index tensor where a chunk spans two ranges."""
        total = sum(b - a for a, b in self.ranges)
        if self.position >= total:
            if not self.wrap:
                raise StopIteration
            self.position, self.epoch, self.ranges = 0, self.epoch + 1, shard_ranges(self.n_items, *self.shard)
            total = sum(b - a for a, b in self.ranges)
            log.warning("data exhausted after %d items; wrapping around (epoch %d): activations now repeat",
                        total, self.epoch)
        start = self.position
        self.position = min(total, start + self.chunk)
        rest = remaining_ranges(self.ranges, start)
        idx = _head(rest, self.position - start)
        if len(idx) == 1:
            return slice(*idx[0])
        return torch.cat([torch.arange(a, b) for a, b in idx])

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "epoch": self.epoch, "ranges": [list(r) for r in self.ranges],
                "shard": list(self.shard)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position, self.epoch = int(state["position"]), int(state["epoch"])
        if "ranges" in state:  # states saved before ranges were recorded read the shard's own range
            self.ranges = [(int(a), int(b)) for a, b in state["ranges"]]


class ModelActivations(_ChunkSource):
    """Activation chunks `[model_batch * pos, d_in]` of `hook_name`, from `model` run over consecutive token sequences."""

    def __init__(self, model: Any, tokens: Int[Tensor, "n_seq pos"], *, hook_name: str, model_batch: int,
                 autocast: bool = False, wrap: bool = False, shard: tuple[int, int] = (0, 1)):
        super().__init__(len(tokens), model_batch, wrap=wrap, shard=shard)
        self.model, self.tokens, self.hook_name, self.autocast = model, tokens, hook_name, autocast

    def __next__(self) -> Float[Tensor, "rows d_in"]:
        from sae_analysis.activations import hook_activations

        batch = self.tokens[self._next_slice()].to(self.model.cfg.device)
        device_type = torch.device(self.model.cfg.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.autocast):
            acts = hook_activations(self.model, batch, self.hook_name)
        return acts.reshape(-1, acts.shape[-1])


class TensorActivations(_ChunkSource):
    """Activation chunks of `chunk` rows read in order from a precomputed `[n, d_in]` tensor (synthetic data, tests)."""

    def __init__(self, activations: Float[Tensor, "n d_in"], *, chunk: int, wrap: bool = False,
                 shard: tuple[int, int] = (0, 1)):
        super().__init__(len(activations), chunk, wrap=wrap, shard=shard)
        self.activations = activations

    def __next__(self) -> Float[Tensor, "rows d_in"]:
        return self.activations[self._next_slice()]
