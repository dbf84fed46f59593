"""A hand-written forward + backward of `SAE.forward`'s loss for ReLU SAEs in fp32, into memory reused across steps.

Same function and gradients as autograd on `SAE.forward` (tested against it), but faster on CPU: the pre-encoder bias is
folded into one `addmm` (x @ W_enc + (b_enc − b_dec @ W_enc)), the five GEMMs write into preallocated buffers or straight
into `param.grad`, the L1 gradient needs no sign() pass (f ≥ 0), and no `[batch, d_sae]` tensor is allocated per step.

Gradients (B = batch, c = per-element L1 weight: l1_coeff under 'original', l1_coeff / B under 'per_token'):
    g_xhat = 2 (x̂ − x) / B                 W_dec.grad = fᵀ g_xhat
    g_pre  = (g_xhat W_decᵀ + c) ⊙ [f > 0]  b_enc.grad = Σ_b g_pre
    W_enc.grad = xᵀ g_pre − b_dec ⊗ b_enc.grad           (the b_dec @ W_enc term)
    b_dec.grad = Σ_b g_xhat − W_enc b_enc.grad           (the decoder bias, and the pre-encoder bias)
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from sae_analysis import SAE, ForwardOutput


class FusedStep:
    """Workspace of `forward_backward`: buffers keyed by shape, reused while the batch shape stays the same."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def _buf(self, name: str, shape: tuple[int, ...], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.device != like.device or buf.dtype != (dtype or like.dtype):
            buf = self._buffers[name] = torch.empty(shape, device=like.device, dtype=dtype or like.dtype)
        return buf

    @staticmethod
    def supports(sae: SAE) -> bool:
        return sae.cfg.activation == "relu" and sae.dtype == torch.float32

    @torch.no_grad()
    def forward_backward(self, sae: SAE, x: Float[Tensor, "batch d_in"], l1_scale: float = 1.0) -> ForwardOutput:
        """Loss of `sae` on `x` (the values of `SAE.forward`) with the parameters' `.grad` set to the gradient of
        l2 + l1_scale * l1 (`l1_scale`: the data-parallel rescaling of `trainers.ddp_reduce.rank_objective`). Existing
        `.grad` tensors are written in place (they may be views of one flat buffer). The returned `acts` live in the
        workspace: valid until the next call."""
        B, W_enc, W_dec, b_enc, b_dec = x.shape[0], sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec
        x = x.to(W_enc.dtype)
        fold = sae.cfg.apply_b_dec_to_input
        f = self._buf("f", (B, W_enc.shape[1]), W_enc)
        torch.addmm(b_enc - b_dec @ W_enc if fold else b_enc, x, W_enc, out=f).relu_()
        x_hat = torch.addmm(b_dec, f, W_dec)
        l2, l1 = sae.losses(x, x_hat, f)
        c = l1_scale * sae.cfg.l1_coeff / (B if sae.cfg.loss_convention == "per_token" else 1)
        g_xhat = (x_hat - x).mul_(2.0 / B)
        for p in (W_enc, W_dec, b_enc, b_dec):
            if p.grad is None:
                p.grad = torch.empty_like(p)
        torch.mm(f.T, g_xhat, out=W_dec.grad)
        g = torch.mm(g_xhat, W_dec.T, out=self._buf("g", f.shape, f)).add_(c)
        alive = torch.gt(f, 0, out=self._buf("alive", f.shape, f, torch.bool))
        g.mul_(alive)
        torch.sum(g, 0, out=b_enc.grad)
        torch.mm(x.T, g, out=W_enc.grad)
        torch.sum(g_xhat, 0, out=b_dec.grad)
        if fold:
            W_enc.grad.addr_(b_dec, b_enc.grad, alpha=-1)
            b_dec.grad.addmv_(W_enc, b_enc.grad, alpha=-1)
        return ForwardOutput(x_hat=x_hat, acts=f, l2=l2, l1=l1, loss=l2 + l1)
