"""A ReLU-SAE training step that exploits activation sparsity, and `AutoStep`, which picks it or the dense fused step.

`SparseStep` computes the same loss and gradients as `FusedStep` (see its docstring for the formulas) but only the
encoder forward `x @ W_enc` is a dense GEMM. With the active (token, latent) pairs P = {(b, i): f[b, i] > 0}:
    x̂[b]          = b_dec + Σ_{i:(b,i)∈P} f[b,i] W_dec[i]       per-token weighted row sums   (embedding_bag)
    W_dec.grad[i] = Σ_{b:(b,i)∈P} f[b,i] g_xhat[b]              per-latent weighted row sums  (embedding_bag)
    g_pre[b,i]    = g_xhat[b] · W_dec[i] + c  on P, 0 elsewhere  sampled dense-dense product   (sampled_addmm)
    W_enc.grad[:,i] = Σ_{b:(b,i)∈P} g_pre[b,i] x[b]             per-latent weighted row sums  (embedding_bag)
so the other four GEMMs cost O(|P| · d_in) instead of O(B · d_sae · d_in). The kernels were chosen by timing the
alternatives (CSR/COO `torch.sparse.mm`, gathered rows with `bmm` or `index_add_`); `bench/bench_sparse.py --kernels`
repeats that comparison, and BENCHMARKS.md records it. All kernels exist on CPU and CUDA.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from sae_analysis import SAE, ForwardOutput
from trainers.step import FusedStep

SPARSE_CROSSOVER_DENSITY = 0.05
"""Activation density (active pairs / (batch · d_sae)) around which `SparseStep` and `FusedStep` cost the same, on the
safe side of paired measurements on a quiet machine with `bench/bench_sparse.py` (2 CPU cores, torch 2.13, 2026-12-03;
BENCHMARKS.md, "Sparse step"), as ratios to the dense 5-GEMM bound of the same run: at d_in 2048 → 16384, batch 4096,
sparse 2.07 at 3 %, 1.37 at 5 %, 0.81 at 10 % against fused ≈ 0.98 (crossover ≈ 8 %); at the demo shape 512 → 4096,
batch 1024, sparse 1.58 at 10 % against fused 1.05 (crossover above 10 %). Model: the four replaced GEMMs cost
8 · B · d_in · d_sae / (GEMM rate) dense and 8 · ρ · B · d_in · d_sae / (gather rate) sparse, so ρ* ≈ gather rate / GEMM
rate, a property of the machine, lowered by the sparse step's own O(B · d_sae) passes (finding the active pairs). (An
earlier value, 0.02, came from measurements on a machine loaded 4-9 on 2 cores, which understated the sparse step.) On a
GPU (faster GEMMs relative to gathers) the crossover is lower; it has not been measured there."""
AUTO_HYSTERESIS = 1.5
"""`AutoStep` goes sparse below crossover / 1.5 (3.3 %) and back to dense above crossover × 1.5 (7.5 %), so a density
hovering near the crossover does not flip the implementation every step. Both thresholds sit where the sparse step is
still at least as fast as the dense one at both measured shapes."""


class SparseStep(FusedStep):
    """Workspace of the sparse forward + backward; `density` is the active fraction of the last batch's latents."""

    density: float = 1.0

    @torch.no_grad()
    def forward_backward(self, sae: SAE, x: Float[Tensor, "batch d_in"], l1_scale: float = 1.0) -> ForwardOutput:
        """Loss of `sae` on `x` (the values of `SAE.forward`) with the parameters' `.grad` set to the gradient of
        l2 + l1_scale * l1 (`l1_scale`: the data-parallel rescaling, as in `FusedStep.forward_backward`).
        The returned `acts` live in the workspace: valid until the next call."""
        B, W_enc, W_dec, b_enc, b_dec = x.shape[0], sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec
        d_sae = W_enc.shape[1]
        x = x.to(W_enc.dtype)
        fold = sae.cfg.apply_b_dec_to_input
        f = self._buf("f", (B, d_sae), W_enc)
        torch.addmm(b_enc - b_dec @ W_enc if fold else b_enc, x, W_enc, out=f).relu_()
        pairs = ActivePairs(f)
        self.density = pairs.nnz / max(f.numel(), 1)
        x_hat = pairs.token_sums(W_dec, pairs.values).add_(b_dec)
        c = sae.cfg.l1_coeff / (B if sae.cfg.loss_convention == "per_token" else 1)
        diff = x_hat - x
        l2 = diff.pow(2).sum(-1).mean()  # SAE.losses, without its pass over the dense [B, d_sae] activations
        l1 = pairs.values.sum() * c  # f ≥ 0: |f| summed over the active pairs
        g_xhat = diff.mul_(2.0 / B)
        for p in (W_enc, W_dec, b_enc, b_dec):
            if p.grad is None:
                p.grad = torch.empty_like(p)
        W_dec.grad.copy_(pairs.latent_sums(g_xhat, pairs.values))
        g = pairs.sampled_dot(g_xhat, W_dec, c * l1_scale)
        b_enc.grad.zero_().index_add_(0, pairs.col, g)
        torch.addr(pairs.latent_sums(x, g).T, b_dec, b_enc.grad, alpha=-1 if fold else 0, out=W_enc.grad)
        torch.sum(g_xhat, 0, out=b_dec.grad)
        if fold:
            b_dec.grad.addmv_(W_enc, b_enc.grad, alpha=-1)
        return ForwardOutput(x_hat=x_hat, acts=f, l2=l2, l1=l1, loss=l2 + l1)


class ActivePairs:
    """The non-zero entries of a [B, d_sae] matrix in token-major order (CSR: `crow`, `col`, `values`), with the
    permutation to latent-major order (`perm`, `row_t`, `ccol`) for the per-latent sums."""

    def __init__(self, f: Float[Tensor, "batch d_sae"]):
        B, d_sae = f.shape
        flat = f.view(-1).nonzero().squeeze(1)
        self.nnz = flat.numel()
        self.values = f.view(-1)[flat]
        row, self.col = flat.div(d_sae, rounding_mode="floor"), flat.remainder(d_sae)
        self.crow = _offsets(row, B)
        self.perm = torch.argsort(self.col, stable=True)
        self.row_t, self.ccol = row[self.perm], _offsets(self.col, d_sae)
        self.shape = (B, d_sae)

    def token_sums(self, table: Float[Tensor, "d_sae d"], w: Float[Tensor, " nnz"]) -> Float[Tensor, "batch d"]:
        """out[b] = Σ_{(b,i) active} w[b,i] table[i]  (the sparse product F @ table)."""
        return F.embedding_bag(self.col, table, self.crow, mode="sum", per_sample_weights=w, include_last_offset=True)

    def latent_sums(self, table: Float[Tensor, "batch d"], w: Float[Tensor, " nnz"]) -> Float[Tensor, "d_sae d"]:
        """out[i] = Σ_{(b,i) active} w[b,i] table[b]  (the sparse product Fᵀ @ table)."""
        return F.embedding_bag(self.row_t, table, self.ccol, mode="sum", per_sample_weights=w[self.perm],
                               include_last_offset=True)

    def sampled_dot(self, a: Float[Tensor, "batch d"], b: Float[Tensor, "d_sae d"], c: float = 0.0) -> Float[Tensor, " nnz"]:
        """out[(b,i)] = a[b] · b[i] + c at the active pairs only (token-major order)."""
        if self.nnz == 0:
            return a.new_zeros(0)
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            base = torch.sparse_csr_tensor(self.crow, self.col, torch.full_like(self.values, c), self.shape)
            return torch.sparse.sampled_addmm(base, a, b.T).values()


def _offsets(index: Tensor, n: int) -> Tensor:
    """CSR offsets (n + 1 entries) of a sorted-or-not index vector with values in [0, n)."""
    out = torch.zeros(n + 1, dtype=index.dtype, device=index.device)
    torch.cumsum(torch.bincount(index, minlength=n), 0, out=out[1:])
    return out


class AutoStep(SparseStep):
    """`FusedStep` or `SparseStep` per step, chosen on the previous step's activation density with hysteresis
    (sparse below SPARSE_CROSSOVER_DENSITY / AUTO_HYSTERESIS, dense above SPARSE_CROSSOVER_DENSITY × AUTO_HYSTERESIS).
    Both share one workspace. The first step is dense (a fresh SAE fires about half its latents)."""

    def __init__(self, crossover: float | None = None, hysteresis: float | None = None) -> None:
        super().__init__()
        crossover = SPARSE_CROSSOVER_DENSITY if crossover is None else crossover
        hysteresis = AUTO_HYSTERESIS if hysteresis is None else hysteresis
        self.low, self.high = crossover / hysteresis, crossover * hysteresis
        self.sparse = False

    @torch.no_grad()
    def forward_backward(self, sae: SAE, x: Float[Tensor, "batch d_in"], l1_scale: float = 1.0) -> ForwardOutput:
        if self.sparse:
            out = super().forward_backward(sae, x, l1_scale)
        else:
            out = FusedStep.forward_backward(self, sae, x, l1_scale)
            alive = self._buffers["alive"]  # the fused step's [f > 0] mask (bool: a cheaper count than acts)
            self.density = int(torch.count_nonzero(alive)) / max(alive.numel(), 1)
        self.observe(self.density)
        return out

    def observe(self, density: float) -> None:
        """Choose the next step's implementation after a step of activation density `density`."""
        self.density = density
        self.sparse = density < (self.high if self.sparse else self.low)

    def state_dict(self) -> dict[str, bool]:
        """The mode of the next step (saved with the trainer state, so that a resumed run switches as the original)."""
        return {"sparse": self.sparse}

    def load_state_dict(self, state: dict[str, bool]) -> None:
        self.sparse = bool(state["sparse"])


STEPS: dict[str, type[FusedStep]] = {"fused": FusedStep, "sparse": SparseStep, "auto": AutoStep}
"""Workspace class of each `TrainConfig.step_impl` that has one ('autograd' has none)."""


def make_workspace(step_impl: str) -> FusedStep | None:
    """The step workspace of `step_impl`, or None for autograd."""
    return STEPS[step_impl]() if step_impl in STEPS else None


@torch.no_grad()
def plant_density_(sae: SAE, x: Float[Tensor, "batch d_in"], density: float) -> None:
    """Shift `sae.b_enc` so that each latent is active on round(density · batch) of the inputs `x`: its threshold goes
    midway between two consecutive order statistics of its pre-activations (robust to rounding). For tests and
    benchmarks that need a planted activation density."""
    pre = sae.encode_pre(x).sort(0).values
    k = len(x) - round(density * len(x))  # inputs to switch off, per latent
    below = pre[k - 1] if k > 0 else pre[0] - 1
    above = pre[k] if k < len(x) else pre[-1] + 1
    sae.b_enc.sub_((below + above) / 2)
