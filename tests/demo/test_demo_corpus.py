"""The demo corpus reader (sae_analysis.io.demo) and the bigram baseline (trainers.demo.corpus)."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from sae_analysis.io.demo import (
    BOS_TOKEN,
    chunk_bytes,
    corpus_bytes,
    corpus_files,
    corpus_fingerprint,
    demo_tokens,
    split_of,
    stdlib_root,
)
from trainers.demo.corpus import bigram_counts, bigram_log_probs, bigram_loss


@pytest.fixture
def fake_stdlib(tmp_path):
    """A planted stdlib: 40 modules with known contents, plus files that must be ignored."""
    for i in range(40):
        sub = tmp_path / f"pkg{i % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"mod{i}.py").write_bytes(f"# module {i}\nx = {i * i}\n".encode() * (i + 1))
    for ignored in ("site-packages/foo.py", "pkg0/__pycache__/mod0.py", "pkg1/data.txt"):
        (tmp_path / ignored).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / ignored).write_bytes(b"ignored")
    return tmp_path


def test_chunk_bytes_prepends_bos_and_drops_tail():
    rows = chunk_bytes(b"abcdefg", seq_len=4)
    assert rows.tolist() == [[BOS_TOKEN, 97, 98, 99], [BOS_TOKEN, 100, 101, 102]]
    assert chunk_bytes(b"ab", seq_len=4).shape == (0, 4)
    with pytest.raises(ValueError):
        chunk_bytes(b"abc", seq_len=1)


def test_split_is_by_file_deterministic_and_disjoint(fake_stdlib):
    train, held = corpus_files("train", fake_stdlib), corpus_files("eval", fake_stdlib)
    rel = lambda paths: {p.relative_to(fake_stdlib).as_posix() for p in paths}  # noqa: E731
    assert rel(train).isdisjoint(rel(held))
    assert rel(train) | rel(held) == {f"pkg{i % 3}/mod{i}.py" for i in range(40)}
    for name in rel(held):
        assert zlib.crc32(name.encode()) % 10 == 0 and split_of(name) == "eval"
    assert train == sorted(train, key=lambda p: p.relative_to(fake_stdlib).as_posix())


def test_demo_tokens_is_a_fixed_permutation_of_the_chunks(fake_stdlib):
    reference = chunk_bytes(corpus_bytes("train", fake_stdlib), seq_len=16)
    rows = demo_tokens("train", seq_len=16, root=fake_stdlib)
    assert rows.shape == reference.shape and rows.dtype == torch.long
    assert (rows[:, 0] == BOS_TOKEN).all() and (rows[:, 1:] < 256).all()
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, reference.tolist()))
    assert not torch.equal(rows, reference)  # shuffled, not stream order
    assert torch.equal(demo_tokens("train", n=5, seq_len=16, root=fake_stdlib), rows[:5])
    assert torch.equal(demo_tokens("train", seq_len=16, root=fake_stdlib), rows)


def test_demo_tokens_rejects_hostile_arguments(fake_stdlib):
    n_rows = demo_tokens("eval", seq_len=8, root=fake_stdlib).shape[0]
    with pytest.raises(ValueError):
        demo_tokens("eval", n=n_rows + 1, seq_len=8, root=fake_stdlib)
    with pytest.raises(ValueError):
        demo_tokens("eval", n=-1, seq_len=8, root=fake_stdlib)
    with pytest.raises((ValueError, TypeError)):
        demo_tokens("test", root=fake_stdlib)  # type: ignore[arg-type]


def test_returned_rows_are_copies(fake_stdlib):
    rows = demo_tokens("train", n=3, seq_len=8, root=fake_stdlib)
    rows.zero_()
    assert (demo_tokens("train", n=3, seq_len=8, root=fake_stdlib)[:, 0] == BOS_TOKEN).all()


def test_real_stdlib_corpus():
    assert stdlib_root().is_dir()
    rows = demo_tokens("eval", n=8)
    assert rows.shape == (8, 128) and (rows[:, 0] == BOS_TOKEN).all()
    assert bytes(rows[0, 1:].tolist()) in corpus_bytes("eval")
    assert len(corpus_bytes("train")) > 5 * len(corpus_bytes("eval")) > 0
    assert len(corpus_fingerprint("eval")) == 16 and corpus_fingerprint("eval") != corpus_fingerprint("train")


def test_bigram_counts_match_a_naive_loop(gen):
    tokens = torch.randint(0, 257, (6, 9), generator=gen)
    naive = torch.zeros(257, 257, dtype=torch.long)
    for row in tokens.tolist():
        for a, b in zip(row[:-1], row[1:]):
            naive[a, b] += 1
    assert torch.equal(bigram_counts(tokens), naive)
    assert torch.allclose(bigram_log_probs(naive).exp().sum(1), torch.ones(257, dtype=torch.float64))


def test_bigram_loss_add_one_smoothing_by_hand():
    train = torch.tensor([[0, 1, 0, 1]])  # counts: 0->1 twice, 1->0 once
    assert bigram_loss(train, torch.tensor([[0, 1]])) == pytest.approx(-math.log(3 / 259))
    assert bigram_loss(train, torch.tensor([[1, 0, 5]])) == pytest.approx(-(math.log(2 / 258) + math.log(1 / 259)) / 2)
