"""The hand-fused training step equals autograd on `SAE.forward` (values and gradients), and trains the same."""

from __future__ import annotations

import pytest
import torch

from trainers.config import TrainConfig
from trainers.step import FusedStep
from trainers.train import make_optimizer, train_step


@pytest.mark.parametrize("d_in", [48, 64])
@pytest.mark.parametrize("convention", ["original", "per_token"])
@pytest.mark.parametrize("fold", [True, False])
def test_fused_step_matches_autograd(make_sae, d_in, convention, fold):
    sae = make_sae(d_in=d_in, d_sae=2 * d_in, loss_convention=convention, apply_b_dec_to_input=fold, l1_coeff=1e-2)
    x = torch.relu(torch.randn(40, d_in, generator=torch.Generator().manual_seed(d_in))).bfloat16().float()
    ref = sae(x)
    ref.loss.backward()
    grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    for p in sae.parameters():
        p.grad = torch.full_like(p, 123.0)  # stale gradients must be overwritten, not accumulated
    ws = FusedStep()
    for _ in range(2):  # the second call reuses the workspace
        out = ws.forward_backward(sae, x.bfloat16())  # buffer batches arrive in bf16
    for field in ("x_hat", "acts", "l2", "l1", "loss"):
        torch.testing.assert_close(getattr(out, field), getattr(ref, field).detach(), rtol=1e-5, atol=1e-6)
    for n, p in sae.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6 * float(grads[n].abs().max()))
    assert (ref.acts == 0).any() and (ref.acts > 0).any(), "the case must exercise the ReLU mask"


def test_fused_step_is_only_used_where_supported(make_sae):
    assert FusedStep.supports(make_sae()) and not FusedStep.supports(make_sae(activation="topk", k=2))


def test_fused_and_autograd_training_agree(make_sae):
    x = torch.relu(torch.randn(20, 64, 16, generator=torch.Generator().manual_seed(0)))
    cfg = TrainConfig(lr=1e-3, batch_size=64)
    saes = [make_sae(d_in=16, d_sae=32, seed=3) for _ in range(2)]
    opts = [make_optimizer(s, cfg) for s in saes]
    ws = FusedStep()
    for batch in x:
        a = train_step(saes[0], opts[0], batch, cfg)
        b = train_step(saes[1], opts[1], batch, cfg, ws)
        assert a.loss == pytest.approx(b.loss, rel=1e-4)
    for n, p in saes[0].named_parameters():
        torch.testing.assert_close(p, getattr(saes[1], n), rtol=1e-4, atol=1e-5)
