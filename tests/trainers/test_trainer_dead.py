"""Dead-latent tracker, both resampling variants (what changes, what does not, optimizer state) and the decoder-norm maths."""

from __future__ import annotations

import pytest
import torch

from trainers.dead import (
    DeadLatentTracker,
    anthropic_latents,
    apply_new_latents,
    kaiming_latents,
    per_input_losses,
    project_decoder_grad_,
    renormalise_decoder_,
    zero_adam_moments,
)


def test_tracker_counts_tokens_since_last_firing():
    t = DeadLatentTracker(3)
    t.update(torch.tensor([[1.0, 0, 0], [0, 0, 0]]))  # latent 0 fires in a batch of 2 tokens
    t.update(torch.tensor([[0.0, 0, 2], [0, 0, 0], [0, 0, 0]]))  # latent 2 fires in a batch of 3
    assert t.tokens_since_fired.tolist() == [3, 5, 0]
    assert t.window_counts.tolist() == [1, 0, 1] and t.window_tokens == 5
    assert t.dead_mask(5).tolist() == [False, True, False]
    assert torch.allclose(t.window_frequencies(), torch.tensor([0.2, 0.0, 0.2], dtype=torch.float64))
    t.revive(torch.tensor([1]))
    t.reset_window()
    assert t.tokens_since_fired.tolist() == [3, 0, 0] and t.window_tokens == 0 and t.window_counts.sum() == 0


def test_tracker_is_batch_size_independent():
    acts = (torch.rand(64, 10, generator=torch.Generator().manual_seed(0)) > 0.9).float()
    a, b = DeadLatentTracker(10), DeadLatentTracker(10)
    a.update(acts)
    for chunk in acts.split(4):
        b.update(chunk)
    assert torch.equal(a.window_counts, b.window_counts)
    fired_last_chunk = acts[-4:].any(0)
    assert (b.tokens_since_fired[fired_last_chunk] == 0).all()


def _adam_after_one_step(sae):
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    sae(torch.randn(16, sae.cfg.d_in)).loss.backward()
    opt.step()
    return opt


def test_kaiming_resample_changes_only_dead_latents_and_not_the_optimizer(make_sae):
    sae = make_sae(d_in=8, d_sae=32)
    opt = _adam_after_one_step(sae)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    moments = {k: opt.state[p]["exp_avg"].clone() for k, p in sae.named_parameters()}
    dead = torch.zeros(32, dtype=torch.bool)
    dead[[3, 17, 30]] = True
    new = kaiming_latents(8, 32, dead, torch.Generator().manual_seed(1))
    apply_new_latents(sae, new)
    assert new.index.tolist() == [3, 17, 30]
    assert torch.equal(sae.W_enc[:, ~dead], before["W_enc"][:, ~dead]) and torch.equal(sae.W_dec[~dead], before["W_dec"][~dead])
    assert torch.equal(sae.b_dec, before["b_dec"]) and torch.equal(sae.b_enc[~dead], before["b_enc"][~dead])
    assert (sae.b_enc[dead] == 0).all() and not torch.equal(sae.W_dec[dead], before["W_dec"][dead])
    # full-shape Kaiming bounds: W_enc fan_in = d_sae, W_dec fan_in = d_in; decoder rows are NOT renormalised (as trained)
    assert sae.W_enc[:, dead].abs().max() <= (6 / 32) ** 0.5 and sae.W_dec[dead].abs().max() <= (6 / 8) ** 0.5
    assert not torch.allclose(sae.W_dec[dead].norm(dim=-1), torch.ones(3))
    for k, p in sae.named_parameters():
        assert torch.equal(opt.state[p]["exp_avg"], moments[k]), f"kaiming resampling must not touch Adam state ({k})"


def test_anthropic_resample_hand_case(make_sae):
    """Two dead latents; four inputs of which only #1 and #3 have non-zero loss, so (without replacement) latent 0 and 2
    get inputs {1, 3}; decoder = unit input, encoder = 0.2 * mean alive encoder norm * unit input, b_enc = 0."""
    sae = make_sae(d_in=4, d_sae=6)
    opt = _adam_after_one_step(sae)
    dead = torch.tensor([True, False, True, False, False, False])
    inputs = torch.tensor([[9.0, 0, 0, 0], [0, 3.0, 4.0, 0], [0, 0, 7.0, 0], [0, 0, 0, 2.0]])
    losses = torch.tensor([0.0, 1.0, 0.0, 5.0])
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    alive_norm = sae.W_enc[:, ~dead].norm(dim=0).mean()
    new = anthropic_latents(sae.W_enc, dead, inputs, losses, torch.Generator().manual_seed(0))
    apply_new_latents(sae, new, opt)
    units = {tuple(round(v, 6) for v in r.tolist()) for r in sae.W_dec[dead].detach()}
    assert units == {(0.0, 0.6, 0.8, 0.0), (0.0, 0.0, 0.0, 1.0)}
    assert torch.allclose(sae.W_enc[:, dead].T, sae.W_dec[dead] * 0.2 * alive_norm)
    assert (sae.b_enc[dead] == 0).all()
    assert torch.equal(sae.W_enc[:, ~dead], before["W_enc"][:, ~dead]) and torch.equal(sae.b_dec, before["b_dec"])
    for name, p, idx in (("W_enc", sae.W_enc, (slice(None), dead)), ("W_dec", sae.W_dec, (dead,)), ("b_enc", sae.b_enc, (dead,))):
        for key in ("exp_avg", "exp_avg_sq"):
            m = opt.state[p][key]
            assert (m[idx] == 0).all(), f"{name}.{key} not reset on resampled latents"
            keep = torch.ones_like(m, dtype=torch.bool)
            keep[idx] = False
            assert (m[keep] != 0).all(), f"{name}.{key} reset outside the resampled latents"
    assert (opt.state[sae.b_dec]["exp_avg"] != 0).all()


def test_anthropic_sampling_follows_squared_loss():
    W_enc = torch.ones(2, 4000)
    dead = torch.ones(4000, dtype=torch.bool)
    inputs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    new = anthropic_latents(W_enc, dead, inputs, torch.tensor([1.0, 2.0]), torch.Generator().manual_seed(0))
    share_second = float((new.W_dec_rows[:, 1] == 1).double().mean())
    assert share_second == pytest.approx(4 / 5, abs=0.03)  # p ∝ loss²: 4 / (1 + 4)
    assert torch.allclose(new.W_enc_cols.norm(dim=0), torch.full((4000,), 0.2 * 2**0.5))  # nobody alive: all-latent mean


def test_anthropic_with_no_dead_latents_is_a_no_op(make_sae):
    sae = make_sae()
    new = anthropic_latents(sae.W_enc, torch.zeros(32, dtype=torch.bool), torch.randn(5, 8), torch.ones(5),
                            torch.Generator())
    assert len(new.index) == 0 and new.W_enc_cols.shape == (8, 0)


def test_per_input_losses_match_the_batch_loss(make_sae):
    sae = make_sae(d_in=8, d_sae=16)
    x = torch.randn(10, 8)
    l2 = per_input_losses(sae, x, "l2", batch_size=10)
    full = per_input_losses(sae, x, "loss", batch_size=10)
    out = sae(x)
    assert torch.allclose(l2.mean(), out.l2) and torch.allclose(full.mean(), out.loss)


def test_zero_adam_moments_before_first_step_is_harmless():
    p = torch.nn.Parameter(torch.ones(3))
    zero_adam_moments(torch.optim.Adam([p]), p, (slice(None),))


@pytest.mark.parametrize("d_in", [48, 64])
def test_decoder_gradient_projection_matches_a_loop_and_is_orthogonal(d_in):
    W = torch.nn.Parameter(torch.randn(5, d_in) * 3)
    W.grad = torch.randn(5, d_in)
    expected = torch.stack([g - (g @ w / w.norm()) * w / w.norm() for g, w in zip(W.grad, W.detach())])
    project_decoder_grad_(W)
    assert torch.allclose(W.grad, expected, atol=1e-5)
    assert torch.allclose((W.grad * W.detach()).sum(-1), torch.zeros(5), atol=1e-4)
    renormalise_decoder_(W)
    assert torch.allclose(W.norm(dim=-1), torch.ones(5))
