"""Reading a model's activations at a hook point, without ever computing the unembedding."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

_LAYER = re.compile(r"^blocks\.(\d+)\.")


def hook_layer(hook_name: str) -> int:
    """Block index of a TransformerLens hook name: 'blocks.0.mlp.hook_post' -> 0."""
    m = _LAYER.match(hook_name)
    if m is None:
        raise ValueError(f"cannot read a block index from hook name {hook_name!r}; expected 'blocks.<layer>.<...>'")
    return int(m.group(1))


@torch.no_grad()
def hook_activations(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], hook_name: str
) -> Float[Tensor, "batch pos d_in"]:
    """Activations at `hook_name` for a batch of token sequences.

    Runs the model with `stop_at_layer = layer + 1` and caches only `hook_name` (REPLICATION.md §6.1), so neither the
    later blocks nor the unembedding are computed.
    """
    tokens = tokens.to(model.cfg.device)
    _, cache = model.run_with_cache(tokens, names_filter=hook_name, stop_at_layer=hook_layer(hook_name) + 1)
    if hook_name not in cache:
        raise KeyError(f"hook {hook_name!r} did not fire; check the hook name against model.hook_dict")
    return cache[hook_name]


def token_batches(tokens: Int[Tensor, "n_seq pos"], batch_size: int) -> Iterator[Int[Tensor, "batch pos"]]:
    """Consecutive batches of `batch_size` sequences (the last one may be smaller)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, tokens.shape[0], batch_size):
        yield tokens[start : start + batch_size]
