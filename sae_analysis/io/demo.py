"""The demo corpus: the running interpreter's own standard-library sources, as byte-level tokens (issue #5).

Every Python installation carries its standard library, so the demo suite needs no download. The corpus is built as:

* **files**: every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]``, excluding ``site-packages`` and ``__pycache__``,
  sorted by their path relative to the stdlib root (POSIX separators, so the order is platform independent);
* **split by file**: a file is in ``"eval"`` when ``crc32(relative_path) % EVAL_MODULUS == 0`` (about 10 % of files), else in
  ``"train"``; a file never contributes to both splits;
* **tokens**: the files of a split are read as bytes and concatenated in that order; token ``b`` is byte ``b`` (0-255) and
  ``BOS_TOKEN = 256`` (vocabulary ``D_VOCAB = 257``);
* **sequences**: the byte stream is cut into consecutive pieces of ``seq_len - 1`` bytes (the incomplete tail is dropped) and
  each piece gets BOS prepended, so every row is ``[BOS, b_0, ..., b_{seq_len-2}]``;
* **order**: rows are permuted with a fixed seed (``SHUFFLE_SEED``), so ``demo_tokens(n=...)`` takes a spread-out sample and
  not the first few files.

The stdlib differs between Python versions, so the corpus does too: `corpus_fingerprint` identifies it and the demo manifest
records the fingerprint and the Python version it was built with.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sysconfig
import zlib
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from sae_analysis.errors import UsageError

Split = Literal["train", "eval"]

BOS_TOKEN = 256
"""Beginning-of-sequence token id; ids 0-255 are raw bytes."""
D_VOCAB = 257
"""Vocabulary size of the byte-level demo model (256 bytes + BOS)."""
EVAL_MODULUS = 10
"""A file goes to the eval split when crc32(relative path) % EVAL_MODULUS == 0."""
SHUFFLE_SEED = 0
"""Seed of the fixed row permutation applied by `demo_tokens`."""
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


def stdlib_root() -> Path:
    """Folder holding the running interpreter's standard-library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relative_path: str) -> Split:
    """Split a stdlib file belongs to, from its POSIX path relative to the stdlib root (deterministic, by file)."""
    return "eval" if zlib.crc32(relative_path.encode()) % EVAL_MODULUS == 0 else "train"


@functools.lru_cache(maxsize=4)
def _all_files(root: Path) -> tuple[tuple[str, Path], ...]:
    """(relative POSIX path, path) of every corpus file under `root`, sorted; excluded folders are pruned, not walked."""
    found = []
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in EXCLUDED_DIRS]
        for name in names:
            path = Path(folder) / name
            if name.endswith(".py") and path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return tuple(sorted(found))


def corpus_files(split: Split, root: Path | None = None) -> list[Path]:
    """The sorted ``*.py`` files of one split under `root` (default: the stdlib)."""
    return [path for rel, path in _all_files(stdlib_root() if root is None else root) if split_of(rel) == split]


def _check_split(split: str) -> None:
    if split not in ("train", "eval"):
        raise UsageError(f"split must be 'train' or 'eval', got {split!r}")


@functools.lru_cache(maxsize=4)
def corpus_bytes(split: Split, root: Path | None = None) -> bytes:
    """All files of a split, concatenated as raw bytes in sorted-path order."""
    _check_split(split)
    return b"".join(path.read_bytes() for path in corpus_files(split, root))


def corpus_fingerprint(split: Split, root: Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) of a split's byte stream: equal fingerprints mean identical token tensors."""
    return hashlib.sha256(corpus_bytes(split, root)).hexdigest()[:16]


def chunk_bytes(data: bytes, seq_len: int) -> Int[Tensor, "n_seq seq_len"]:
    """Cut a byte stream into rows ``[BOS, seq_len - 1 bytes]`` in stream order, dropping the incomplete tail."""
    if seq_len < 2:
        raise UsageError(f"seq_len must be at least 2 (BOS plus one byte), got {seq_len}")
    body = seq_len - 1
    n_seq = len(data) // body
    flat = torch.frombuffer(bytearray(data[: n_seq * body]), dtype=torch.uint8).long() if n_seq else torch.zeros(0).long()
    rows = flat.reshape(n_seq, body)
    return torch.cat([torch.full((n_seq, 1), BOS_TOKEN, dtype=torch.long), rows], dim=1)


@functools.lru_cache(maxsize=4)
def _all_tokens(split: Split, seq_len: int, root: Path | None) -> Tensor:
    rows = chunk_bytes(corpus_bytes(split, root), seq_len)
    perm = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(SHUFFLE_SEED))
    return rows[perm]


def demo_tokens(
    split: Split = "eval", n: int | None = None, seq_len: int = 128, *, root: Path | None = None
) -> Int[Tensor, "n seq_len"]:
    """Token rows of the demo corpus (see the module docstring): the first `n` rows of the fixed permutation, or all rows.

    Raises ValueError for an unknown split, ``n < 0`` or ``n`` larger than the split holds.
    """
    _check_split(split)
    rows = _all_tokens(split, seq_len, root)
    if n is None:
        return rows.clone()
    if not 0 <= n <= rows.shape[0]:
        raise UsageError(f"asked for n={n} rows but the {split!r} split holds {rows.shape[0]} rows of seq_len={seq_len}")
    return rows[:n].clone()


__all__ = [
    "BOS_TOKEN",
    "D_VOCAB",
    "chunk_bytes",
    "corpus_bytes",
    "corpus_files",
    "corpus_fingerprint",
    "demo_tokens",
    "split_of",
    "stdlib_root",
]
