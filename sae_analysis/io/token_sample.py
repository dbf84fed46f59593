"""A fair, seeded sample of evaluation sequences from a tokenized Hub dataset (`NeelNanda/c4-code-tokenized-2b`).

Neel sampled random rows of his shuffled copy of the data (REPLICATION.md §2, §8). Taking the first sequences in shard
order instead would put, say, the 256 loss sequences in 32 consecutive rows. Here:

1. the split's shards are ranked by sha256(f"{seed}:{name}"), a seeded order that does not depend on which other shards
   are listed, so offline (where only cached shards are listed) the same shards come first;
2. shards are taken in that order until at least `n_shards` are taken and they hold enough rows (the download budget:
   each real shard is hundreds of MB);
3. rows are drawn uniformly without replacement from the pooled rows of those shards with numpy's default_rng(seed);
4. each row is cut into sequences with BOS first (`reshape_rows`), and the sequences are shuffled with the same generator,
   so the first k sequences (e.g. the loss sequences) come from about k different rows.

The result carries its provenance (repo, revision, commit, seed, shard names, row ids) for the run's manifest.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from sae_analysis.io.errors import CorruptFileError
from sae_analysis.io.tokens import SEQ_LEN, TOKENS_REPO, _read_rows, download_dataset_file, reshape_rows, split_shards

DEFAULT_SEED = 0
DEFAULT_SHARDS = 2
"""Shards a sample spreads over by default (fewer when the split has fewer; more when these hold too few rows)."""


class TokenSample(NamedTuple):
    tokens: Int[Tensor, "n_seq seq_len"]
    provenance: dict[str, Any]
    """repo, revision, commit, split, column, seed, shards (names, in draw order), rows ([shard index, row] per drawn
    row, in reading order), seq_len, n_seq."""


def shard_order(names: list[str], seed: int) -> list[str]:
    """`names` ranked by sha256 of f"{seed}:{name}": a seeded shuffle in which each shard's rank ignores the others."""
    return sorted(names, key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())


def _shape(path: Path, column: str) -> tuple[int, int]:
    """(rows, tokens per row) of one shard, from its metadata and first row."""
    import pyarrow.parquet as pq

    try:
        n_rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on a non-parquet or truncated file
        raise CorruptFileError(f"{path} is not a readable parquet file ({e})") from None
    first = next(_read_rows(path, column), None)
    return n_rows, (0 if first is None else first.shape[1])


def _take_rows(path: Path, column: str, wanted: np.ndarray) -> Tensor:
    """Rows `wanted` (sorted indices) of one shard, reading its record batches in order."""
    out, start = [], 0
    for rows in _read_rows(path, column):
        local = wanted[(wanted >= start) & (wanted < start + len(rows))] - start
        if len(local):
            out.append(rows[torch.from_numpy(local)])
        start += len(rows)
        if start > wanted[-1]:
            break
    return torch.cat(out)


def sample_hub_tokens(
    repo_id: str = TOKENS_REPO,
    *,
    n_seq: int,
    seq_len: int = SEQ_LEN,
    bos_token_id: int | None,
    seed: int = DEFAULT_SEED,
    n_shards: int = DEFAULT_SHARDS,
    revision: str | None = None,
    column: str = "tokens",
    split: str = "train",
) -> TokenSample:
    """`n_seq` sequences drawn fairly from `n_shards` seeded shards of the split (module docstring). Offline, only cached
    shards are listed; a sample drawn online is drawn again identically from the cache. Raises as `hub_tokens` does."""
    from sae_analysis.io.hub import commit_of

    if n_seq < 1 or n_shards < 1:
        raise ValueError(f"n_seq and n_shards must be >= 1, got {n_seq} and {n_shards}")
    chosen: list[tuple[str, Path, int]] = []
    per_row = 0
    for name in shard_order(split_shards(repo_id, revision, split), seed):
        path = download_dataset_file(repo_id, name, revision=revision)
        n_rows, row_len = _shape(path, column)
        reshape_rows(torch.zeros(1, row_len, dtype=torch.long), seq_len)  # ValueError unless row_len is a multiple
        chosen.append((name, path, n_rows))
        per_row = row_len // seq_len
        if len(chosen) >= n_shards and sum(n for *_, n in chosen) * per_row >= n_seq:
            break
    total = sum(n for *_, n in chosen)
    if total * per_row < n_seq:
        have = total * per_row
        raise ValueError(f"the shards of {repo_id} split {split!r} hold only {have} sequences of {seq_len} < n_seq={n_seq}")
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=math.ceil(n_seq / per_row), replace=False))
    offsets = np.cumsum([0] + [n for *_, n in chosen])
    parts, rows = [], []
    for i, (_, path, _) in enumerate(chosen):
        local = picks[(picks >= offsets[i]) & (picks < offsets[i + 1])] - offsets[i]
        if len(local):
            parts.append(_take_rows(path, column, local))
            rows += [[i, int(r)] for r in local]
    seqs = reshape_rows(torch.cat(parts), seq_len, bos_token_id)
    order = torch.from_numpy(rng.permutation(len(seqs))[:n_seq])
    provenance = {"repo": repo_id, "revision": revision or "main", "commit": commit_of(chosen[0][1]), "split": split,
                  "column": column, "seed": seed, "shards": [name for name, *_ in chosen], "rows": rows,
                  "seq_len": seq_len, "n_seq": n_seq}  # fmt: skip
    return TokenSample(seqs[order], provenance)


__all__ = ["TokenSample", "sample_hub_tokens", "shard_order", "DEFAULT_SEED", "DEFAULT_SHARDS"]
