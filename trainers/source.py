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


class _ChunkSource(Iterator[Tensor]):
    """Shared bookkeeping: `position` (items consumed this epoch), `epoch`, optional wrap-around, state for resume."""

    def __init__(self, n_items: int, chunk: int, *, wrap: bool):
        if n_items <= 0 or chunk <= 0:
            raise ValueError(f"need at least one item and a positive chunk size, got {n_items} and {chunk}")
        self.n_items, self.chunk, self.wrap = n_items, chunk, wrap
        self.position, self.epoch = 0, 0

    def _next_slice(self) -> slice:
        if self.position >= self.n_items:
            if not self.wrap:
                raise StopIteration
            self.position, self.epoch = 0, self.epoch + 1
            log.warning("data exhausted after %d items; wrapping around (epoch %d): activations now repeat",
                        self.n_items, self.epoch)
        start = self.position
        self.position = min(self.n_items, start + self.chunk)
        return slice(start, self.position)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position, self.epoch = int(state["position"]), int(state["epoch"])


class ModelActivations(_ChunkSource):
    """Activation chunks `[model_batch * pos, d_in]` of `hook_name`, from `model` run over consecutive token sequences."""

    def __init__(self, model: Any, tokens: Int[Tensor, "n_seq pos"], *, hook_name: str, model_batch: int,
                 autocast: bool = False, wrap: bool = False):
        super().__init__(len(tokens), model_batch, wrap=wrap)
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

    def __init__(self, activations: Float[Tensor, "n d_in"], *, chunk: int, wrap: bool = False):
        super().__init__(len(activations), chunk, wrap=wrap)
        self.activations = activations

    def __next__(self) -> Float[Tensor, "rows d_in"]:
        return self.activations[self._next_slice()]
