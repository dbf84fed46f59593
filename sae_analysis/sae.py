"""The sparse autoencoder in canonical orientation: `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc [d_sae]`, `b_dec [d_in]`.

Latent *i* is `W_enc[:, i]` (encoder direction) and `W_dec[i]` (decoder direction), as in Neel Nanda's
1L-Sparse-Autoencoder and in SAELens. Every on-disk format is converted to this orientation once, in `sae_analysis.io`.

Forward pass (REPLICATION.md §3.2), with the pre-encoder bias when `apply_b_dec_to_input`:

    f     = act((x - b_dec) @ W_enc + b_enc)
    x_hat = f @ W_dec + b_dec

Loss conventions (REPLICATION.md §3.3), both named options of `SAEConfig.loss_convention`:

* ``"original"`` (Neel's): ``l2 = sum_d (x_hat - x)^2`` averaged over the batch; ``l1 = l1_coeff * sum_{batch, i} |f|`` —
  summed over latents *and* over the batch. The per-token coefficient is therefore ``l1_coeff * batch_size``
  (3e-4 * 4096 = 1.2288 for run 1).
* ``"per_token"``: ``l2`` as above; ``l1 = l1_coeff * mean_batch sum_i |f|``. The same objective as ``"original"`` at batch
  size B when ``l1_coeff_per_token = l1_coeff_original * B``.

Anthropic's convention (MSE averaged over the d_in elements) differs from ``"per_token"`` by the constant factor d_in on
the L2 term: divide a per-token coefficient by d_in to get Anthropic's lambda.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

Activation = Literal["relu", "topk", "jumprelu"]
LossConvention = Literal["original", "per_token"]


@dataclass(frozen=True)
class SAEConfig:
    """Shape, activation and loss settings of one autoencoder, plus where it hooks into a model."""

    d_in: int
    """Input width (gelu-1l: 2048 MLP neurons)."""
    d_sae: int
    """Number of latents (gelu-1l runs: 16384 = 8 x 2048)."""
    activation: Activation = "relu"
    """'relu' (Neel, SAELens standard), 'topk' (sparsify; needs `k`) or 'jumprelu' (SAELens JumpReLU; needs a threshold)."""
    k: int | None = None
    """Number of latents kept by the TopK activation."""
    apply_b_dec_to_input: bool = True
    """Subtract `b_dec` before encoding (the tied pre-encoder bias of the original and of Towards Monosemanticity)."""
    l1_coeff: float = 3e-4
    """Sparsity coefficient, interpreted under `loss_convention`."""
    loss_convention: LossConvention = "original"
    """'original': L1 summed over the batch (Neel's); 'per_token': L1 averaged over the batch. See the module docstring."""
    hook_name: str | None = None
    """Model activation the SAE reads, e.g. 'blocks.0.mlp.hook_post'."""
    model_name: str | None = None
    """Model the SAE was trained on, e.g. 'gelu-1l'."""

    def __post_init__(self) -> None:
        if self.d_in <= 0 or self.d_sae <= 0:
            raise ValueError(f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}")
        if self.activation not in ("relu", "topk", "jumprelu"):
            raise ValueError(f"unknown activation {self.activation!r}; expected 'relu', 'topk' or 'jumprelu'")
        if self.activation == "topk" and (self.k is None or not 0 < self.k <= self.d_sae):
            raise ValueError(f"activation 'topk' needs 0 < k <= d_sae, got k={self.k}")
        if self.loss_convention not in ("original", "per_token"):
            raise ValueError(f"unknown loss_convention {self.loss_convention!r}; expected 'original' or 'per_token'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAEConfig:
        """Build from a dict, ignoring unknown keys (so configs written by newer versions still load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class ForwardOutput(NamedTuple):
    """What `SAE.forward` returns; the same fields, in the same order, as the original `(loss, x_hat, f, l2, l1)`."""

    x_hat: Float[Tensor, "batch d_in"]
    acts: Float[Tensor, "batch d_sae"]
    l2: Float[Tensor, ""]
    l1: Float[Tensor, ""]
    loss: Float[Tensor, ""]


def kaiming_init_(W_enc: Tensor, W_dec: Tensor) -> None:
    """Neel's initialisation (REPLICATION.md §3.1), reproduced as-is: `kaiming_uniform_` on both matrices in canonical
    orientation (fan_in = size(1), leaky-ReLU gain), then decoder rows scaled to unit norm."""
    nn.init.kaiming_uniform_(W_enc)
    nn.init.kaiming_uniform_(W_dec)
    with torch.no_grad():
        W_dec /= W_dec.norm(dim=-1, keepdim=True)


class SAE(nn.Module):
    """A sparse autoencoder in canonical orientation. Build one with `SAE(cfg)` (Neel's init, seeded by the caller's
    torch RNG) or load one with `sae_analysis.load_sae`.

    Attributes besides the parameters: `cfg` (SAEConfig); `meta` (provenance: format, source, revision, file names);
    `log10_density` (per-latent log10 firing frequency stored with the checkpoint, or None).
    """

    threshold: Tensor

    def __init__(self, cfg: SAEConfig, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg = cfg
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_sae, **kw))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in, **kw))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, **kw))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, **kw))
        self.register_buffer("threshold", torch.zeros(cfg.d_sae, **kw))  # used by 'jumprelu' only
        if self.W_enc.device.type != "meta":  # `from_weights` builds on meta and copies weights in: nothing to init
            kaiming_init_(self.W_enc.data, self.W_dec.data)
        self.meta: dict[str, Any] = {}
        self.log10_density: Tensor | None = None

    # ----- maths ------------------------------------------------------------------------------------------------
    def encode_pre(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """Pre-activations `(x - b_dec) @ W_enc + b_enc`, written as `x @ W_enc + (b_enc - b_dec @ W_enc)`: the same
        function, but autograd then needs no gradient GEMM through the subtraction (one GEMM fewer per training step)."""
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            return x @ self.W_enc + (self.b_enc - self.b_dec @ self.W_enc)
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_sae"]:
        """The activation function applied to pre-activations."""
        if self.cfg.activation == "relu":
            return torch.relu(pre)
        if self.cfg.activation == "jumprelu":
            return torch.relu(pre) * (pre > self.threshold)
        # topk: keep the k largest ReLU'd pre-activations (sparsify's convention), zero the rest.
        post = torch.relu(pre)
        values, indices = post.topk(self.cfg.k or 1, dim=-1, sorted=False)
        return torch.zeros_like(post).scatter_(-1, indices, values)

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """Latent activations `f`."""
        return self.activate(self.encode_pre(x))

    def fires(self, x: Float[Tensor, "batch d_in"], as_float: bool = False) -> Tensor:
        """Which latents are active (f > 0) on each row, as bool or (`as_float`) as 1.0 / 0.0 in the SAE's dtype, ready
        for a counting product (`metrics.grouped_firing_counts`). For a ReLU SAE straight from the pre-activations: one
        fused GEMM + bias, then one in-place comparison, no ReLU pass and no second [batch, d_sae] tensor."""
        if self.cfg.activation != "relu" or x.ndim != 2:
            fired = self.encode(x) > 0
            return fired.to(self.dtype) if as_float else fired
        W = self.W_enc
        bias = self.b_enc - self.b_dec @ W if self.cfg.apply_b_dec_to_input else self.b_enc
        pre = torch.addmm(bias, x.to(W.dtype), W)
        return pre.gt_(0) if as_float else pre > 0

    def decode(self, f: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_in"]:
        """Reconstruction `f @ W_dec + b_dec`."""
        return f.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def losses(
        self, x: Float[Tensor, "batch d_in"], x_hat: Float[Tensor, "batch d_in"], f: Float[Tensor, "batch d_sae"]
    ) -> tuple[Tensor, Tensor]:
        """(l2, l1) under `cfg.loss_convention`, computed in fp32 (REPLICATION.md §3.2-3.3)."""
        l2 = (x_hat.float() - x.float()).pow(2).sum(-1).mean()
        l1_sum = f.float().abs().sum()
        if self.cfg.loss_convention == "per_token":
            l1_sum = l1_sum / f.shape[0]
        return l2, self.cfg.l1_coeff * l1_sum

    def forward(self, x: Float[Tensor, "batch d_in"]) -> ForwardOutput:
        """Encode, decode and score one batch. Pure: no statistics are updated here (the trainer owns those)."""
        f = self.encode(x)
        x_hat = self.decode(f)
        l2, l1 = self.losses(x, x_hat, f)
        return ForwardOutput(x_hat=x_hat, acts=f, l2=l2, l1=l1, loss=l2 + l1)

    # ----- conveniences -----------------------------------------------------------------------------------------
    def decoder_norms(self) -> Float[Tensor, " d_sae"]:
        """L2 norm of every decoder row. Published gelu-1l rows are *not* unit norm (REPLICATION.md §3.4)."""
        return self.W_dec.detach().norm(dim=-1)

    def encoder_norms(self) -> Float[Tensor, " d_sae"]:
        """L2 norm of every encoder column."""
        return self.W_enc.detach().norm(dim=0)

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @classmethod
    def from_weights(
        cls,
        cfg: SAEConfig,
        *,
        W_enc: Tensor,
        W_dec: Tensor,
        b_enc: Tensor,
        b_dec: Tensor,
        threshold: Tensor | None = None,
        meta: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> SAE:
        """Wrap canonical-orientation tensors (copied) in an SAE, checking shapes and finiteness."""
        expected = {
            "W_enc": (cfg.d_in, cfg.d_sae),
            "W_dec": (cfg.d_sae, cfg.d_in),
            "b_enc": (cfg.d_sae,),
            "b_dec": (cfg.d_in,),
        }
        given = {"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}
        if threshold is not None:
            expected["threshold"] = (cfg.d_sae,)
            given["threshold"] = threshold
        for name, t in given.items():
            if tuple(t.shape) != expected[name]:
                raise ValueError(
                    f"{name} has shape {tuple(t.shape)}, but the config says {expected[name]} "
                    f"(d_in={cfg.d_in}, d_sae={cfg.d_sae})"
                )
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(f"{name} holds {bad} non-finite values (NaN or inf)")
        dtype = dtype or (W_enc.dtype if W_enc.is_floating_point() else torch.float32)
        with torch.device("meta"):
            sae = cls(cfg, dtype=dtype)
        sae = sae.to_empty(device=device or "cpu")
        with torch.no_grad():
            for name, t in given.items():
                getattr(sae, name).copy_(t.to(dtype))
            if threshold is None:
                sae.threshold.zero_()
        sae.meta = dict(meta or {})
        return sae

    def extra_repr(self) -> str:
        c = self.cfg
        return f"d_in={c.d_in}, d_sae={c.d_sae}, activation={c.activation}, dtype={self.dtype}"


def expected_kaiming_bound(fan_in: int) -> float:
    """Bound of torch's default `kaiming_uniform_` (a=0, leaky-ReLU gain sqrt(2)): sqrt(6 / fan_in)."""
    return math.sqrt(6.0 / fan_in)


__all__ = ["SAE", "SAEConfig", "ForwardOutput", "kaiming_init_", "expected_kaiming_bound"]
