"""Streaming frequencies: exact counts, batch-size invariance, naive reference, no unembedding."""

from __future__ import annotations

import pytest
import torch

from sae_analysis.activations import hook_activations, hook_layer, token_batches
from sae_analysis.frequency import frequencies_from_activations, frequencies_from_log10, latent_frequencies

HOOK = "blocks.0.mlp.hook_post"


@pytest.fixture
def tokens():
    return torch.randint(0, 50, (10, 16), generator=torch.Generator().manual_seed(1))


def test_hook_layer():
    assert hook_layer("blocks.0.mlp.hook_post") == 0 and hook_layer("blocks.11.hook_resid_pre") == 11
    with pytest.raises(ValueError, match="block index"):
        hook_layer("hook_embed")


def test_hook_activations_match_full_forward_and_skip_unembed(model, tokens):
    calls = []
    handle = model.unembed.register_forward_hook(lambda *a: calls.append(1))
    try:
        acts = hook_activations(model, tokens, HOOK)
    finally:
        handle.remove()
    assert calls == []  # stop_at_layer: the unembedding never ran
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(acts, cache[HOOK])


def test_frequencies_equal_naive_and_are_batch_size_invariant(model, make_sae, tokens):
    sae = make_sae(64, 96, hook_name=HOOK)
    with torch.no_grad():
        sae.b_enc.normal_(-0.5, 0.5)  # a spread of frequencies, some latents dead
    a = latent_frequencies(model, sae, tokens, batch_size=3)
    b = latent_frequencies(model, sae, tokens, batch_size=10)
    assert torch.equal(a.counts, b.counts) and torch.equal(a.freq, b.freq)
    x = hook_activations(model, tokens, HOOK).reshape(-1, 64)
    naive = (sae.encode(x) > 0).double().mean(0)
    torch.testing.assert_close(a.freq, naive)
    assert a.n_tokens == 160
    assert a.l0 == pytest.approx(float((sae.encode(x) > 0).sum(-1).double().mean()))
    assert 0 < float((a.freq == 0).double().mean()) < 1  # the case really has dead and live latents


def test_block_counts_are_per_sequence_blocks_whatever_the_batch_size(model, make_sae, tokens, monkeypatch):
    import sae_analysis.frequency as fr

    monkeypatch.setattr(fr, "MAX_BLOCKS", 4)  # 10 sequences -> blocks of ceil(10 / 4) = 3: sizes 3, 3, 3, 1
    sae = make_sae(64, 96, hook_name=HOOK)
    a = latent_frequencies(model, sae, tokens, batch_size=4)
    b = latent_frequencies(model, sae, tokens, batch_size=10)
    assert torch.equal(a.block_counts, b.block_counts) and a.block_counts.dtype == torch.int32
    assert a.block_tokens.tolist() == [48, 48, 48, 16] and torch.equal(a.block_counts.sum(0).long(), a.counts)
    x = hook_activations(model, tokens, HOOK)
    naive = torch.stack([(sae.encode(x[s : s + 3].reshape(-1, 64)) > 0).sum(0) for s in range(0, 10, 3)])
    assert torch.equal(a.block_counts, naive.int())
    flat = frequencies_from_activations(sae, [x.reshape(-1, 64)])
    assert flat.block_counts is None and torch.equal(flat.counts, a.counts)
    with pytest.raises(ValueError, match="n_seq, pos, d_in"):
        frequencies_from_activations(sae, [x.reshape(-1, 64)], block_seqs=2)


def test_frequencies_need_a_hook_name(model, make_sae, tokens):
    with pytest.raises(ValueError, match="hook_name"):
        latent_frequencies(model, make_sae(64, 96), tokens)


def test_frequencies_from_activations_rejects_empty(make_sae):
    with pytest.raises(ValueError, match="zero tokens"):
        frequencies_from_activations(make_sae(), [])


def test_frequencies_from_log10_round_trip():
    freq = torch.tensor([1e-2, 1e-5, 0.0], dtype=torch.float64)
    res = frequencies_from_log10(torch.log10(freq), "sparsity.safetensors")
    torch.testing.assert_close(res.freq, freq)
    assert res.source == "stored: sparsity.safetensors" and res.n_tokens == 0
    with pytest.raises(ValueError, match="NaN"):
        frequencies_from_log10(torch.tensor([float("nan")]), "x")


def test_token_batches_cover_all_rows():
    t = torch.arange(7 * 2).reshape(7, 2)
    assert torch.equal(torch.cat(list(token_batches(t, 3))), t)
    with pytest.raises(ValueError):
        list(token_batches(t, 0))


def test_many_saes_in_one_pass_equal_separate_counting_exactly(model, make_sae, tokens):
    """One forward per batch for every SAE: counts identical to one pass per SAE; one SAE under two names counted once."""
    from sae_analysis.frequency import latent_frequencies_many

    saes = {f"s{i}": make_sae(64, 48 + 16 * i, hook_name=HOOK, seed=i) for i in range(3)}
    with torch.no_grad():
        for sae in saes.values():
            sae.b_enc.normal_(-0.5, 0.5)
    calls, handle = [], model.blocks[0].mlp.hook_post.register_forward_hook(lambda *a: calls.append(1))
    try:
        many = latent_frequencies_many(model, saes | {"again": saes["s1"]}, tokens, batch_size=4)
    finally:
        handle.remove()
    assert len(calls) == 3  # ceil(10 / 4) batches, each forwarded once for all four names
    for name, sae in saes.items():
        one = latent_frequencies(model, sae, tokens, batch_size=7)
        assert torch.equal(many[name].counts, one.counts) and torch.equal(many[name].freq, one.freq)
        assert many[name].n_tokens == one.n_tokens == 160 and many[name].l0 == one.l0
    assert many["again"] is many["s1"]


def test_many_saes_must_read_the_same_hook(model, make_sae, tokens):
    from sae_analysis.frequency import latent_frequencies_many

    a, b = make_sae(64, 32, hook_name=HOOK), make_sae(32, 32, hook_name="blocks.0.hook_resid_mid")
    with pytest.raises(ValueError, match="different hooks"):
        latent_frequencies_many(model, {"a": a, "b": b}, tokens)
    with pytest.raises(ValueError, match="no SAEs"):
        latent_frequencies_many(model, {}, tokens)


def test_fires_and_counts_equal_the_relu_definition_exactly(make_sae, gen):
    """The fast path (pre-activations > 0, counted by `grouped_firing_counts`) equals counting encode(x) > 0, including
    latents that never fire and ties at exactly 0; non-ReLU SAEs go through encode."""
    from sae_analysis.metrics import firing_counts

    sae = make_sae(16, 40)
    with torch.no_grad():
        sae.b_enc[:5] = -1e6  # never fire
        sae.b_enc[5:8] = 1e6  # always fire
    x = torch.randn(1000, 16, generator=gen)
    fired = sae.fires(x)
    assert fired.dtype == torch.bool and torch.equal(fired, sae.encode(x) > 0)
    counts = firing_counts(fired)
    assert counts.dtype == torch.int64 and torch.equal(counts, (sae.encode(x) > 0).sum(0))
    assert counts[:5].sum() == 0 and (counts[5:8] == 1000).all()
    assert torch.equal(firing_counts(torch.tensor([[0.0, 1.0], [2.0, 0.0], [-1.0, 3.0]])), torch.tensor([1, 2]))
    as_float = sae.fires(x, as_float=True)
    assert as_float.dtype == torch.float32 and torch.equal(as_float, fired.float())


def test_grouped_firing_counts_equal_a_naive_per_group_count(gen):
    """Per-sequence counts from the batched product of ones equal a Python loop over groups, for bool and 0/1 float masks;
    a batch that does not split into whole groups is refused."""
    from sae_analysis.metrics import grouped_firing_counts

    fired = torch.rand(6 * 7, 33, generator=gen) < 0.3
    naive = torch.stack([fired[i : i + 7].sum(0) for i in range(0, 42, 7)])
    for mask in (fired, fired.float(), fired.double()):
        got = grouped_firing_counts(mask, 7)
        assert got.dtype == torch.int64 and torch.equal(got, naive)
    assert torch.equal(grouped_firing_counts(fired, 42)[0], fired.sum(0))
    with pytest.raises(ValueError, match="groups of 5"):
        grouped_firing_counts(fired, 5)
