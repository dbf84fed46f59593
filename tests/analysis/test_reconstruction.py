"""Spliced losses: a perfect SAE recovers everything, ablations match hand-written hooks, floors mask latents."""

from __future__ import annotations

import math

import pytest
import torch

from sae_analysis import SAE, SAEConfig
from sae_analysis.reconstruction import loss_vs_frequency_floor, reconstruction_losses, recovered_fraction

HOOK = "blocks.0.mlp.hook_post"


def perfect_sae(d_in: int) -> SAE:
    """relu(x) - relu(-x) = x: latents [I, -I] reconstruct any input exactly."""
    eye = torch.eye(d_in)
    cfg = SAEConfig(d_in=d_in, d_sae=2 * d_in, hook_name=HOOK)
    return SAE.from_weights(
        cfg, W_enc=torch.cat([eye, -eye], 1), W_dec=torch.cat([eye, -eye], 0), b_enc=torch.zeros(2 * d_in),
        b_dec=torch.zeros(d_in),
    )


@pytest.fixture
def tokens():
    return torch.randint(0, 50, (6, 16), generator=torch.Generator().manual_seed(2))


def test_recovered_fraction_hand_case():
    assert recovered_fraction(2.0, 3.0, 4.0) == 0.5
    assert math.isnan(recovered_fraction(2.0, 3.0, 2.0))


def test_perfect_sae_recovers_all(model, tokens):
    r = reconstruction_losses(model, perfect_sae(64), tokens, batch_size=4)
    assert r.recon == pytest.approx(r.clean, abs=1e-5)
    assert r.score_zero == pytest.approx(1.0, abs=1e-4) and r.score_mean == pytest.approx(1.0, abs=1e-4)
    assert r.n_tokens == 6 * 15


@torch.no_grad()
def test_losses_equal_hand_written_hooks(model, make_sae, tokens):
    sae = make_sae(64, 96, hook_name=HOOK)
    r = reconstruction_losses(model, sae, tokens, batch_size=6)  # one batch: the mean ablation is over all of it
    clean = float(model(tokens, return_type="loss").detach())
    zero = float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(HOOK, lambda a, hook: a * 0)]))
    mean = float(model.run_with_hooks(
        tokens, return_type="loss", fwd_hooks=[(HOOK, lambda a, hook: a.mean((0, 1), keepdim=True).expand_as(a))]))
    def splice(a, hook):
        return sae(a.reshape(-1, 64)).x_hat.reshape(a.shape)

    recon = float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(HOOK, splice)]))
    assert r.clean == pytest.approx(clean, rel=1e-6) and r.zero == pytest.approx(zero, rel=1e-6)
    assert r.mean == pytest.approx(mean, rel=1e-6) and r.recon == pytest.approx(recon, rel=1e-6)
    assert r.score_zero == pytest.approx((zero - recon) / (zero - clean), rel=1e-6)


def test_loss_vs_floor_masks_latents(model, tokens):
    sae = perfect_sae(64)
    freq = torch.linspace(1e-3, 0.5, 128)
    df = loss_vs_frequency_floor(model, sae, tokens, freq, floors=(-6.5, 0.0), batch_size=3)
    assert df["n_kept"].tolist() == [128, 0]
    assert df["score_zero"].iloc[0] == pytest.approx(1.0, abs=1e-4)
    assert df["score_zero"].iloc[1] == pytest.approx(0.0, abs=1e-6)  # no latent kept, b_dec = 0: the zero ablation
    assert list(df.columns) == ["floor", "n_kept", "loss", "score_zero"]


def test_loss_vs_floor_equals_masked_reconstruction(model, make_sae, tokens):
    sae = make_sae(64, 96, hook_name=HOOK)
    freq = torch.rand(96, generator=torch.Generator().manual_seed(3)) ** 4
    floors = (-3.0, -1.0, -0.5)
    df = loss_vs_frequency_floor(model, sae, tokens, freq, floors=floors, batch_size=4)
    for row, floor in zip(df.itertuples(), floors):
        ref = reconstruction_losses(model, sae, tokens, batch_size=4, latent_mask=freq >= 10.0**floor)
        assert row.n_kept == int((freq >= 10.0**floor).sum())
        assert row.loss == pytest.approx(ref.recon, rel=1e-6)
        assert row.score_zero == pytest.approx(ref.score_zero, rel=1e-5, abs=1e-5)  # decoded in another order
    assert df["n_kept"].is_monotonic_decreasing and df["n_kept"].iloc[0] > df["n_kept"].iloc[-1] > 0


@torch.no_grad()
def test_per_sequence_losses_sum_to_the_means_and_match_each_sequence(model, make_sae, tokens):
    """The per-sequence sums behind the bootstrap interval (sae_analysis.uncertainty) are each sequence's own loss."""
    sae = make_sae(64, 96, hook_name=HOOK)
    r = reconstruction_losses(model, sae, tokens, batch_size=4)  # batches of 4 and 2: per-sequence sums do not care
    assert set(r.per_seq) == {"clean", "recon", "zero", "mean"} and all(v.shape == (6,) for v in r.per_seq.values())
    for key, mean in (("clean", r.clean), ("recon", r.recon), ("zero", r.zero)):
        assert float(r.per_seq[key].sum()) / r.n_tokens == pytest.approx(mean, rel=1e-6)
    for i in (0, 5):
        alone = float(model(tokens[i : i + 1], return_type="loss")) * 15
        assert float(r.per_seq["clean"][i]) == pytest.approx(alone, rel=1e-5)


def _count_calls(module: torch.nn.Module) -> tuple[list, object]:
    calls: list = []
    return calls, module.register_forward_hook(lambda *a: calls.append(1))


@torch.no_grad()
def _count_tails(monkeypatch) -> list:
    """Record each call of the rest-of-model pass (later blocks, final LN, chunked unembedding)."""
    import sae_analysis.reconstruction as rec

    calls, tail = [], rec.tail_losses
    monkeypatch.setattr(rec, "tail_losses", lambda *a, **k: calls.append(1) or tail(*a, **k))
    return calls


def test_batch_losses_rerun_only_the_tail_and_equal_full_forwards(model, make_sae, tokens, monkeypatch):
    """For an MLP hook_post: attention runs once per batch, the unembedding once per intervention, and every loss equals
    a full hooked forward (fp32 tolerance); for another hook the slow path gives the same numbers."""
    from sae_analysis.reconstruction import _batch_loss, batch_losses

    sae = make_sae(64, 96, hook_name=HOOK)
    hooks = {"clean": None, "zero": torch.zeros_like, "recon": lambda a: sae(a.reshape(-1, 64)).x_hat.reshape(a.shape)}
    (attn, h1), unembed = _count_calls(model.blocks[0].attn), _count_tails(monkeypatch)
    try:
        fast = batch_losses(model, tokens, HOOK, hooks)
    finally:
        h1.remove()
    assert len(attn) == 1 and len(unembed) == len(hooks)
    for key, fn in hooks.items():
        assert fast[key][0] == pytest.approx(_batch_loss(model, tokens, HOOK, fn), rel=1e-6, abs=1e-6)
        assert float(fast[key][1].sum()) / (tokens.shape[0] * (tokens.shape[1] - 1)) == pytest.approx(fast[key][0], rel=1e-6)
    other = "blocks.0.hook_resid_mid"
    slow = batch_losses(model, tokens, other, {"clean": None, "zero": torch.zeros_like})
    assert slow["clean"][0] == pytest.approx(fast["clean"][0], rel=1e-6)
    assert torch.allclose(slow["clean"][1], fast["clean"][1], rtol=1e-6)
    assert slow["zero"][0] == pytest.approx(_batch_loss(model, tokens, other, torch.zeros_like), rel=1e-6)


def test_sae_losses_equal_the_separate_computations_and_share_equal_floors(model, make_sae, tokens, monkeypatch):
    from sae_analysis.reconstruction import sae_losses

    sae = make_sae(64, 96, hook_name=HOOK)
    freq = torch.rand(96, generator=torch.Generator().manual_seed(4)) ** 4
    freq[:10] = 0.0  # dead latents
    floors = (-6.5, -6.0, -2.0, -1.0, 0.5)  # -6.5 and -6 keep the same latents unless a frequency lies between them
    freq[(freq > 0) & (freq < 1e-6)] = 1e-6
    calls = _count_tails(monkeypatch)
    recon, df = sae_losses(model, sae, tokens, freq, floors, batch_size=6)
    distinct = len({tuple((freq >= 10.0**f).tolist()) for f in floors})
    assert distinct < len(floors) and len(calls) == 4 + distinct  # clean, zero, mean, recon + one per distinct floor set
    ref = reconstruction_losses(model, sae, tokens, batch_size=6)
    for a, b in zip(recon[:-1], ref[:-1]):
        assert a == pytest.approx(b, rel=1e-6)
    for key, sums in ref.per_seq.items():
        assert torch.allclose(recon.per_seq[key], sums, rtol=1e-6)
    for row, floor in zip(df.itertuples(), floors):
        masked = reconstruction_losses(model, sae, tokens, batch_size=6, latent_mask=freq >= 10.0**floor)
        assert row.loss == pytest.approx(masked.recon, rel=1e-6) and row.floor == floor


@torch.no_grad()
@pytest.mark.parametrize("n_layers", [1, 2])
def test_tail_losses_equal_transformer_lens_per_token_losses_in_any_chunking(n_layers, tokens, monkeypatch):
    """The chunked unembedding (3 positions at a time here, not dividing the batch) and, for a 2-layer model, the later
    block run through TransformerLens, give TransformerLens's own per-token losses."""
    import sae_analysis.reconstruction as rec
    from tests.helpers import tiny_model

    model = tiny_model(n_layers=n_layers)
    monkeypatch.setattr(rec, "TAIL_CHUNK_TOKENS", 3)
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    ours = rec.tail_losses(model, cache["blocks.0.hook_resid_post"], 0, tokens)
    theirs = model(tokens, return_type="loss", loss_per_token=True)
    assert ours.shape == theirs.shape == (tokens.shape[0], tokens.shape[1] - 1)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_prefix_decoder_equals_dense_prefix_decodes_at_the_cost_of_one():
    """Nested kept sets as prefixes of a sorted code: every reconstruction equals the dense one, and a run of increasing
    prefixes decodes each latent once (the loss-vs-floor curve's floors together cost one decode)."""
    from sae_analysis.reconstruction import PrefixDecoder

    g = torch.Generator().manual_seed(11)
    f, W, b = torch.rand(40, 96, generator=g), torch.randn(96, 24, generator=g), torch.randn(24, generator=g)
    dec = PrefixDecoder(f, W, b)
    for n in (0, 3, 10, 10, 40, 96):
        torch.testing.assert_close(dec.upto(n).clone(), b + f[:, :n] @ W[:n], rtol=1e-5, atol=1e-5)
    assert dec.columns == 96
    torch.testing.assert_close(dec.upto(5), b + f[:, :5] @ W[:5], rtol=1e-5, atol=1e-5)  # going back starts over
    assert dec.columns == 101
