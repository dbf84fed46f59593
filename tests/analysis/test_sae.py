"""The canonical SAE: analytic forward values, loss conventions, activations, invariances."""

from __future__ import annotations

import pytest
import torch

from sae_analysis import SAE, SAEConfig


def hand_sae(**cfg) -> SAE:
    c = SAEConfig(d_in=2, d_sae=2, **cfg)
    return SAE.from_weights(
        c,
        W_enc=torch.tensor([[1.0, -1.0], [2.0, 0.5]]),
        W_dec=torch.tensor([[1.0, 0.0], [0.0, 2.0]]),
        b_enc=torch.tensor([0.5, -0.25]),
        b_dec=torch.tensor([1.0, -1.0]),
    )


def test_hand_set_2x2_encode_decode_exact():
    sae = hand_sae()
    x = torch.tensor([[2.0, 1.0]])
    # x - b_dec = [1, 2]; @ W_enc = [1*1 + 2*2, -1 + 1] = [5, 0]; + b_enc = [5.5, -0.25]; relu -> [5.5, 0]
    f = sae.encode(x)
    assert torch.equal(f, torch.tensor([[5.5, 0.0]]))
    # f @ W_dec + b_dec = [5.5, 0] + [1, -1]
    assert torch.equal(sae.decode(f), torch.tensor([[6.5, -1.0]]))


def test_no_pre_encoder_bias_option():
    sae = hand_sae(apply_b_dec_to_input=False)
    f = sae.encode(torch.tensor([[2.0, 1.0]]))
    # x @ W_enc = [4, -1.5]; + b_enc = [4.5, -1.75]
    assert torch.allclose(f, torch.tensor([[4.5, 0.0]]))


@pytest.mark.parametrize("d_in,d_sae", [(8, 32), (12, 48)])
def test_forward_matches_naive_original_convention(make_sae, d_in, d_sae):
    sae = make_sae(d_in, d_sae, l1_coeff=0.01)
    x = torch.randn(16, d_in)
    out = sae(x)
    f = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    x_hat = f @ sae.W_dec + sae.b_dec
    l2 = ((x_hat - x) ** 2).sum(-1).mean()
    l1 = 0.01 * f.abs().sum()
    torch.testing.assert_close(out.acts, f)
    torch.testing.assert_close(out.x_hat, x_hat)
    torch.testing.assert_close(out.l2, l2)
    torch.testing.assert_close(out.l1, l1)
    torch.testing.assert_close(out.loss, l2 + l1)


def test_gradients_match_naive(make_sae):
    sae = make_sae(8, 32)
    x = torch.randn(16, 8)
    sae(x).loss.backward()
    fast = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad()
    f = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    x_hat = f @ sae.W_dec + sae.b_dec
    (((x_hat - x) ** 2).sum(-1).mean() + sae.cfg.l1_coeff * f.abs().sum()).backward()
    for g, p in zip(fast, sae.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_loss_conventions_convert_by_batch_size(make_sae):
    B = 16
    orig = make_sae(8, 32, l1_coeff=3e-4, loss_convention="original")
    tok = make_sae(8, 32, l1_coeff=3e-4 * B, loss_convention="per_token")
    x = torch.randn(B, 8)
    torch.testing.assert_close(orig(x).loss, tok(x).loss)


def test_topk_keeps_exactly_k(make_sae):
    sae = make_sae(8, 32, activation="topk", k=3)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so exactly k survive
    f = sae.encode(torch.randn(5, 8))
    assert ((f > 0).sum(-1) == 3).all()
    pre = torch.relu(sae.encode_pre(torch.zeros(0, 8)))
    assert pre.shape == (0, 32)


def test_jumprelu_threshold():
    sae = hand_sae(activation="jumprelu")
    with torch.no_grad():
        sae.threshold.fill_(6.0)
    assert torch.equal(sae.encode(torch.tensor([[2.0, 1.0]])), torch.zeros(1, 2))
    with torch.no_grad():
        sae.threshold.fill_(5.0)
    assert torch.equal(sae.encode(torch.tensor([[2.0, 1.0]])), torch.tensor([[5.5, 0.0]]))


def test_permuting_latents_permutes_acts(make_sae):
    sae = make_sae(8, 32)
    perm = torch.randperm(32)
    p = SAE.from_weights(
        sae.cfg, W_enc=sae.W_enc[:, perm], W_dec=sae.W_dec[perm], b_enc=sae.b_enc[perm], b_dec=sae.b_dec
    )
    x = torch.randn(10, 8)
    torch.testing.assert_close(p.encode(x), sae.encode(x)[:, perm])
    torch.testing.assert_close(p(x).x_hat, sae(x).x_hat)


def test_decoder_rescale_with_encoder_compensation_keeps_reconstruction(make_sae):
    sae = make_sae(8, 32)
    s = torch.rand(32) + 0.5
    scaled = SAE.from_weights(
        sae.cfg, W_enc=sae.W_enc * s, W_dec=sae.W_dec / s[:, None], b_enc=sae.b_enc * s, b_dec=sae.b_dec
    )
    x = torch.randn(10, 8)
    torch.testing.assert_close(scaled(x).x_hat, sae(x).x_hat, rtol=1e-5, atol=1e-5)


def test_init_matches_original_magnitudes():
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=256, d_sae=1024))
    torch.testing.assert_close(sae.decoder_norms(), torch.ones(1024))
    assert sae.W_enc.abs().max() <= (6 / 1024) ** 0.5
    assert torch.equal(sae.b_enc, torch.zeros(1024)) and torch.equal(sae.b_dec, torch.zeros(256))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"d_in": 0, "d_sae": 4}, "positive"),
        ({"d_in": 4, "d_sae": 4, "activation": "topk"}, "topk"),
        ({"d_in": 4, "d_sae": 4, "activation": "gelu"}, "unknown activation"),
        ({"d_in": 4, "d_sae": 4, "loss_convention": "mse"}, "loss_convention"),
    ],
)
def test_config_validation(kwargs, match):
    # Under the jaxtyping/beartype test hook a wrong Literal is a TypeError before __post_init__ runs; without it,
    # __post_init__ raises the ValueError users see.
    with pytest.raises((ValueError, TypeError), match=f"{match}|type"):
        SAEConfig(**kwargs)


def test_from_weights_rejects_bad_shapes_and_nan():
    c = SAEConfig(d_in=2, d_sae=3)
    good = dict(W_enc=torch.zeros(2, 3), W_dec=torch.zeros(3, 2), b_enc=torch.zeros(3), b_dec=torch.zeros(2))
    with pytest.raises(ValueError, match="W_dec has shape"):
        SAE.from_weights(c, **{**good, "W_dec": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="non-finite"):
        SAE.from_weights(c, **{**good, "b_enc": torch.tensor([0.0, float("nan"), 0.0])})


def test_dtype_and_device():
    c = SAEConfig(d_in=4, d_sae=8)
    sae = SAE(c, dtype=torch.float64)
    assert sae.dtype == torch.float64 and sae.encode(torch.randn(2, 4)).dtype == torch.float64
    assert sae.device.type == "cpu"
