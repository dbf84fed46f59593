"""Where activations come from: token arrays chunked as in the original, and resumable activation-chunk iterators.

Tokens (REPLICATION.md §2): rows of the tokenized dataset are split into sequences of `seq_len` tokens whose position 0 is
overwritten with BOS, then permuted with the run's seed. Chunks: the model runs on `model_batch` sequences at a time with
`stop_at_layer` (via `sae_analysis.activations.hook_activations`), and the `[batch * pos, d_in]` activations are yielded.
Sources count consumed sequences in `position`, so a run can resume from the same place; with `wrap=True` they restart
at the end of the data (a new `epoch`) and log a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

log = logging.getLogger(__name__)


def chunk_rows(rows: Int[Tensor, "n_rows row_len"], seq_len: int, bos_token_id: int | None) -> Int[Tensor, "n_seq seq_len"]:
    """Split each row into `row_len // seq_len` sequences (a trailing remainder is dropped) and, unless `bos_token_id` is
    None, overwrite position 0 of every sequence with BOS (Neel's utils.py; in sequences 2.. of a row this replaces a real
    token)."""
    n_rows, row_len = rows.shape
    if row_len < seq_len:
        raise ValueError(f"rows of {row_len} tokens are shorter than seq_len={seq_len}")
    per_row = row_len // seq_len
    seqs = rows[:, :per_row * seq_len].reshape(n_rows * per_row, seq_len).clone()
    if bos_token_id is not None:
        seqs[:, 0] = bos_token_id
    return seqs


def permute_sequences(tokens: Int[Tensor, "n_seq pos"], seed: int) -> Int[Tensor, "n_seq pos"]:
    """The sequences in a seeded random order (each run of the original permutes its token cache again)."""
    perm = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    return tokens[perm]


def load_tokens(path: str | Path, column: str = "tokens") -> Int[Tensor, "n_rows row_len"]:
    """A 2-D integer token array from `.npy`, `.pt` (a tensor, loaded with weights_only=True), `.safetensors` (key
    'tokens' or the only key), `.parquet` (the list column `column`, as in the Hub dataset NeelNanda/c4-code-tokenized-2b:
    download its shards with `huggingface-cli download --repo-type dataset ...`), or a folder of `.parquet` shards
    (read in name order)."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("**/*.parquet"))
        if not shards:
            raise ValueError(f"{path} holds no .parquet files")
        return torch.cat([load_tokens(p, column) for p in shards])
    tokens = _read_token_file(path, column)
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        raise ValueError(f"{path}: expected a 2-D integer array of token ids")
    return tokens.long()


def _read_token_file(path: Path, column: str) -> Any:
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False))
    if path.suffix in (".pt", ".pth"):
        return torch.load(path, map_location="cpu", weights_only=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        data = load_file(str(path))
        return data["tokens"] if "tokens" in data else next(iter(data.values()))
    if path.suffix == ".parquet":
        import pandas as pd

        values = pd.read_parquet(path, columns=[column])[column].to_numpy()
        return torch.from_numpy(np.stack(values)) if len(values) else None
    raise ValueError(f"unsupported token file {path}: expected .npy, .pt, .safetensors or .parquet")


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
