"""Evaluation tokens from the Hub dataset `NeelNanda/c4-code-tokenized-2b` (REPLICATION.md §2 "Data").

The dataset's split `train` holds rows of 1,024 token ids in the list column `tokens`; each row is cut into 8 sequences
of 128 and position 0 of every sequence is overwritten with BOS (Neel's utils.py; in sequences 2-8 of a row this replaces
a real token). `hub_tokens` lists the split's parquet shards through huggingface_hub, downloads only as many shards as
`n_seq` needs (in name order), and reads only the record batches it needs. With HF_HUB_OFFLINE=1 it lists the shards
already in the local huggingface_hub cache instead. The Hub settings (endpoint, offline, cache folder) come from
`sae_analysis.io.hub.hub_settings`, read at call time. huggingface_hub and pyarrow are imported only when used, so
`import sae_analysis.io` stays free of them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import einops
import torch
from jaxtyping import Int
from torch import Tensor

from sae_analysis.io.errors import CorruptFileError, HubError, MissingFileError

logger = logging.getLogger(__name__)

TOKENS_REPO = "NeelNanda/c4-code-tokenized-2b"
"""gelu-1l's training data: split `train`, column `tokens`, 1,024 tokens per row (REPLICATION.md §2)."""
SEQ_LEN = 128
"""Tokens per sequence: each 1,024-token row gives 8 sequences (REPLICATION.md §2)."""
_BATCH_ROWS = 1024
"""Rows per parquet record batch read: bounds memory when only the head of a large shard is needed."""


def reshape_rows(
    rows: Int[Tensor, "n_rows row_len"], seq_len: int = SEQ_LEN, bos_token_id: int | None = None
) -> Int[Tensor, "n_seq seq_len"]:
    """Cut each row into `row_len // seq_len` consecutive sequences, "(batch (x seq_len)) -> ((batch x) seq_len)", so
    sequence `i * x + j` is row i's tokens `[j * seq_len, (j + 1) * seq_len)`. Unless `bos_token_id` is None, position 0
    of every sequence is overwritten with BOS (REPLICATION.md §2). The input is never modified.
    Raises ValueError when `row_len` is not a positive multiple of `seq_len`."""
    row_len = rows.shape[1]
    if seq_len < 1 or row_len == 0 or row_len % seq_len:
        raise ValueError(f"rows of {row_len} tokens cannot be cut into sequences of seq_len={seq_len}: need a multiple")
    seqs = einops.rearrange(rows, "batch (x seq_len) -> (batch x) seq_len", seq_len=seq_len).clone()
    if bos_token_id is not None:
        seqs[:, 0] = bos_token_id
    return seqs


def _in_split(path: str, split: str) -> bool:
    """Whether a repo path belongs to `split`: a path component named `split` (`default/train/0000.parquet`) or a file
    name starting with it (`data/train-00000-of-00002.parquet`)."""
    return re.search(rf"(^|/){re.escape(split)}([/_.-]|$)", path) is not None


def _split_shards(paths: list[str], split: str) -> list[str]:
    return sorted(p for p in paths if p.endswith(".parquet") and _in_split(p, split))


def split_shards(repo_id: str, revision: str | None, split: str) -> list[str]:
    """The parquet shards of `split` in name order: listed on the Hub online, in the cached snapshot offline. Raises
    HubError offline when none is cached, MissingFileError online when the split has none."""
    from sae_analysis.io.hub import hub_settings, list_files

    shards = _split_shards(list_files(repo_id, revision=revision, repo_type="dataset"), split)
    s = hub_settings()
    if not shards and s.offline:
        raise HubError(
            f"dataset {repo_id}@{revision or 'main'} has no cached parquet shards of split {split!r} and HF_HUB_OFFLINE=1 "
            f"forbids listing or downloading them: run once with network access (unset HF_HUB_OFFLINE) or pass "
            f"--tokens-file; files are cached in {s.cache_dir}"
        )
    if not shards:
        raise MissingFileError(f"dataset {repo_id}@{revision or 'main'} has no .parquet files of split {split!r}")
    return shards


def download_dataset_file(repo_id: str, filename: str, *, revision: str | None = None) -> Path:
    """Local path of `filename` from Hub dataset `repo_id` (downloaded, or found in the huggingface_hub cache)."""
    from sae_analysis.io.hub import download

    return download(repo_id, filename, revision=revision, repo_type="dataset")


def _shard_paths(repo_id: str, revision: str | None, split: str) -> Iterator[Path]:
    """Local paths of the split's shards in name order; online, each is downloaded only when the caller asks for it."""
    for name in split_shards(repo_id, revision, split):
        yield download_dataset_file(repo_id, name, revision=revision)


def _read_rows(path: Path, column: str) -> Iterator[Int[Tensor, "rows row_len"]]:
    """Record batches of the list column `column` of one parquet shard, as 2-D int64 tensors, read lazily."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        shard = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on a non-parquet or truncated file
        raise CorruptFileError(f"{path} is not a readable parquet file ({e})") from None
    names = shard.schema_arrow.names
    if column not in names:
        raise CorruptFileError(f"{path} has no column {column!r} (columns: {names}); pass column=...")
    for batch in shard.iter_batches(batch_size=_BATCH_ROWS, columns=[column]):
        values = batch.column(0)
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        if values.null_count or len(set(lengths.tolist())) > 1:
            raise CorruptFileError(f"{path}: column {column!r} has null or ragged rows (lengths {sorted(set(lengths.tolist()))})")
        flat = values.flatten().to_numpy(zero_copy_only=False)
        yield torch.tensor(flat.reshape(len(values), -1), dtype=torch.long)  # a copy: arrow buffers are read-only


def hub_tokens(
    repo_id: str = TOKENS_REPO,
    *,
    n_seq: int | None,
    seq_len: int = SEQ_LEN,
    bos_token_id: int | None,
    revision: str | None = None,
    column: str = "tokens",
    split: str = "train",
) -> Int[Tensor, "n_seq seq_len"]:
    """The first `n_seq` sequences (None: all of them) of `seq_len` tokens of a tokenized Hub dataset, in shard-name and
    row order, each
    row cut by `reshape_rows` (BOS at position 0 of every sequence unless `bos_token_id` is None; gelu-1l's BOS id comes
    from its tokenizer). Shards are downloaded one at a time, only until `n_seq` sequences are read; offline, only the
    cached shards are used. Raises HubError (offline with nothing cached, Hub unreachable or answering an error),
    MissingFileError (no shard of `split`), CorruptFileError (no such column, ragged rows, unreadable shard), ValueError
    (too few sequences, row length not a multiple of `seq_len`)."""
    if n_seq is not None and n_seq < 1:
        raise ValueError(f"n_seq must be >= 1, got {n_seq}")
    parts: list[Tensor] = []
    have = 0
    for path in _shard_paths(repo_id, revision, split):  # lazy: the next shard is downloaded only if still needed
        for rows in _read_rows(path, column):
            parts.append(reshape_rows(rows, seq_len, bos_token_id)[: None if n_seq is None else n_seq - have])
            have += len(parts[-1])
            if have == n_seq:
                return torch.cat(parts)
        logger.info("read %s: %d sequences so far (want %s)", path.name, have, n_seq or "all")
    if n_seq is None and have:
        return torch.cat(parts)
    from sae_analysis.io.hub import hub_settings

    where = "cached " if hub_settings().offline else ""
    raise ValueError(f"the {where}shards of {repo_id} split {split!r} hold only {have} sequences of {seq_len} < n_seq={n_seq}")


__all__ = ["TOKENS_REPO", "SEQ_LEN", "reshape_rows", "hub_tokens", "download_dataset_file"]
