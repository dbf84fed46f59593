"""Token data, the one home of every token format: local token files (`load_token_file`), the row cutting of the
original (`reshape_rows`), and tokens from the Hub dataset `NeelNanda/c4-code-tokenized-2b` (REPLICATION.md §2 "Data").

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
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import einops
import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from sae_analysis.errors import UsageError
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
    sequence `i * x + j` is row i's tokens `[j * seq_len, (j + 1) * seq_len)`; a trailing remainder of
    `row_len % seq_len` tokens per row is dropped (with a warning: gelu-1l's 1,024-token rows have none). Unless
    `bos_token_id` is None, position 0 of every sequence is overwritten with BOS (REPLICATION.md §2; in sequences 2.. of
    a row this replaces a real token). The input is never modified. Raises ValueError when rows are shorter than
    `seq_len`."""
    n_rows, row_len = rows.shape
    if seq_len < 1 or row_len < seq_len:
        raise UsageError(f"rows of {row_len} tokens cannot be cut into sequences of seq_len={seq_len}")
    per_row = row_len // seq_len
    if row_len % seq_len:
        logger.warning("rows of %d tokens: dropping the last %d tokens of each row to cut sequences of %d",
                       row_len, row_len % seq_len, seq_len)
    kept = rows[:, : per_row * seq_len]
    seqs = einops.rearrange(kept, "batch (x seq_len) -> (batch x) seq_len", seq_len=seq_len).clone()
    if bos_token_id is not None:
        seqs[:, 0] = bos_token_id
    return seqs


def load_token_file(path: str | Path, column: str = "tokens") -> Int[Tensor, "n_rows row_len"]:
    """A 2-D int64 token array from `.npy` (no pickles), `.pt` (a tensor, loaded with weights_only=True),
    `.safetensors` (key 'tokens' or the only key), `.parquet` (the list column `column`, as in the shards of
    NeelNanda/c4-code-tokenized-2b), or a folder of `.parquet` shards (read in name order). Rows are not cut:
    `reshape_rows` does that. Raises MissingFileError / CorruptFileError naming the file, ValueError for other suffixes."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("**/*.parquet"))
        if not shards:
            raise MissingFileError(f"{path} holds no .parquet files: pass a token file or a folder of parquet shards")
        return torch.cat([load_token_file(p, column) for p in shards])
    if not path.is_file():
        raise MissingFileError(f"missing token file {path}")
    tokens = _read_token_array(path, column)
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        raise CorruptFileError(f"{path}: expected a 2-D integer array of token ids [n_rows, row_len]")
    return tokens.long()


def _read_token_array(path: Path, column: str) -> object:
    try:
        if path.suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        if path.suffix in (".pt", ".pth"):
            return torch.load(path, map_location="cpu", weights_only=True)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
            return data["tokens"] if "tokens" in data else next(iter(data.values()), None)
    except (ValueError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise CorruptFileError(f"cannot read {path} as a token array ({type(e).__name__}: {e})") from None
    if path.suffix == ".parquet":
        parts = list(_read_rows(path, column))
        return torch.cat(parts) if parts else None
    raise UsageError(f"unsupported token file {path}: expected .npy, .pt, .safetensors, .parquet or a folder of .parquet")


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
    (too few sequences, rows shorter than `seq_len`)."""
    if n_seq is not None and n_seq < 1:
        raise UsageError(f"n_seq must be >= 1, got {n_seq}")
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
    raise UsageError(f"the {where}shards of {repo_id} split {split!r} hold only {have} sequences of {seq_len} < n_seq={n_seq}")


__all__ = ["TOKENS_REPO", "SEQ_LEN", "reshape_rows", "load_token_file", "hub_tokens", "download_dataset_file"]
