"""The shuffle buffer on index-tagged activations: served once, mixed, each end-of-data policy, resume."""

from __future__ import annotations

import logging

import pytest
import torch

from trainers.buffer import mixing_buffer
from trainers.source import TensorActivations


def tagged(n: int, chunk: int, *, wrap: bool = False) -> TensorActivations:
    """Row i of the data is the vector (i, -i): the first column tags the activation, the second checks rows stay intact."""
    i = torch.arange(n, dtype=torch.float64)
    return TensorActivations(torch.stack([i, -i], dim=1), chunk=chunk, wrap=wrap)


def make(source, *, size=64, batch=8, policy="stop", seed=0):
    return mixing_buffer(source, size=size, batch_size=batch, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64, end_of_data=policy)


def served(buffer, max_batches=10_000) -> list[torch.Tensor]:
    out = []
    for b in buffer:
        assert b.shape == (buffer.batch_size, 2)
        assert torch.equal(b[:, 1], -b[:, 0]), "rows were torn apart"
        out.append(b[:, 0].long())
        if len(out) >= max_batches:
            break
    return out


@pytest.mark.parametrize("chunk", [7, 16, 64, 100])
def test_stop_serves_every_activation_exactly_once(chunk):
    batches = served(make(tagged(1000, chunk)))
    ids = torch.cat(batches)
    assert len(ids) == 1000 and torch.equal(ids.sort().values, torch.arange(1000))


def test_stop_drops_only_a_partial_last_batch(caplog):
    with caplog.at_level(logging.WARNING):
        ids = torch.cat(served(make(tagged(1003, 10))))
    assert len(ids) == 1000 and len(ids.unique()) == 1000
    assert "exhausted" in caplog.text and "3 activations" in caplog.text


def test_batches_mix_many_prompts():
    """A 'prompt' is a chunk of 16 consecutive rows; a batch of 8 from a 512-row buffer should come from ~8 prompts,
    while without shuffling it would come from one."""
    batches = served(make(tagged(4096, 16), size=512, batch=8))
    prompts_per_batch = torch.tensor([len((b // 16).unique()) for b in batches], dtype=torch.float64)
    assert prompts_per_batch.mean() > 7.0
    first = batches[0]
    assert first.max() < 512, "the first batch can only come from the first fill"


def test_refill_replaces_exactly_the_served_half():
    """Before the first refill only the first fill (rows < size) is served; after it, the next `size/2` rows arrive."""
    batches = served(make(tagged(10_000, 32), size=64, batch=8), max_batches=8)
    first_half, second_half = torch.cat(batches[:4]), torch.cat(batches[4:8])
    assert first_half.max() < 64
    assert second_half.max() < 96 and len(torch.cat(batches).unique()) == 64


def test_freeze_keeps_reshuffling_the_last_pool(caplog):
    with caplog.at_level(logging.WARNING):
        ids = torch.cat(served(make(tagged(200, 16), policy="freeze"), max_batches=200))
    # 64 + 4 * 32 = 192 rows arrive in full refills; the fifth refill (after 160 served) gets only 8 and warns
    assert len(ids[:160].unique()) == 160, "no repeats while data lasts"
    assert torch.equal(ids.unique(), torch.arange(200)), "every row, including the last 8, is served"
    assert "exhausted" in caplog.text
    late, later = ids[-800:-400], ids[-400:]
    assert len(later.unique()) == 64, "after the data ends the frozen pool of `size` rows is served"
    assert torch.equal(late.unique(), later.unique()), "the pool no longer changes"


def test_wrap_restarts_the_data(caplog):
    with caplog.at_level(logging.WARNING):
        ids = torch.cat(served(make(tagged(100, 10, wrap=True), policy="wrap"), max_batches=50))
    counts = torch.bincount(ids, minlength=100)
    assert len(ids) == 400 and counts.min() >= 2 and counts.max() <= 5
    assert len(ids[:64].unique()) == 64, "no repeats before the second epoch enters the buffer"
    assert "wrapping around" in caplog.text


def test_no_data_at_all_stops():
    empty = TensorActivations(torch.zeros(1, 2), chunk=1)
    next(empty)
    assert served(make(empty)) == []


def test_short_first_fill_serves_only_real_rows():
    ids = torch.cat(served(make(tagged(40, 16), size=64, batch=8, policy="freeze"), max_batches=30))
    assert ids.max() < 40 and len(ids.unique()) == 40


@pytest.mark.parametrize("policy", ["stop", "freeze"])
def test_state_dict_resumes_the_same_stream(policy):
    src = tagged(700, 13)
    buf = make(src, policy=policy, seed=3)
    head = served(buf, max_batches=37)
    state, src_state = buf.state_dict(), src.state_dict()
    rest = torch.cat(served(buf, max_batches=100))

    src2 = tagged(700, 13)
    src2.load_state_dict(src_state)
    buf2 = make(src2, policy=policy, seed=99)  # the generator state comes from the saved state, not the seed
    buf2.load_state_dict(state)
    assert torch.equal(torch.cat(served(buf2, max_batches=100)), rest)
    assert len(head) == 37


def test_rejects_a_buffer_smaller_than_two_batches():
    with pytest.raises(ValueError, match="at least 2"):
        make(tagged(10, 1), size=15, batch=8)
