"""Training configuration: one frozen dataclass, validated, with named presets (REPLICATION.md §4.2, §5, §6, §7).

Every field is saved into each checkpoint (`trainer_state.json` and the SAE's cfg.json `trainer` block), so a run can be
resumed or audited from its output folder alone.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from sae_analysis import SAEConfig

EndOfData = Literal["wrap", "stop", "freeze"]
DecoderNorm = Literal["project_grad", "project_grad_and_renorm"]
Resample = Literal["none", "kaiming", "anthropic"]
ResampleLoss = Literal["l2", "loss"]
BufferDtype = Literal["bfloat16", "float16", "float32"]
Device = Literal["cpu", "cuda"]
StepImpl = Literal["fused", "sparse", "auto", "autograd"]

NEEL_RESAMPLE_FREQ = 10**-5.5
"""Neel's resampling threshold (REPLICATION.md §7.1). Same value as `sae_analysis.metrics.NEEL_RESAMPLE_FREQ`."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. Defaults are Neel's run-1 settings (preset `gelu-1l-run1`)."""

    model_name: str = "gelu-1l"
    """Model the activations come from (recorded in the SAE's cfg; the trainer itself only sees activations)."""
    hook_name: str = "blocks.0.mlp.hook_post"
    """Model activation the SAE reads."""
    d_in: int | None = None
    """Input width; None = infer from the activation source (gelu-1l: 2048)."""
    dict_mult: int = 8
    """d_sae = d_in * dict_mult (run 1: 16384)."""
    batch_size: int = 4096
    """Activations per optimizer step."""
    buffer_mult: int = 384
    """The shuffle buffer holds batch_size * buffer_mult activations (run 1: 1,572,864)."""
    buffer_dtype: BufferDtype = "bfloat16"
    """Storage precision of the buffer (the original stored bf16)."""
    lr: float = 1e-4
    """Adam learning rate (constant; no schedule in the original)."""
    beta1: float = 0.9
    """Adam beta1."""
    beta2: float = 0.99
    """Adam beta2."""
    adam_eps: float = 1e-8
    """Adam epsilon (torch default, as in the original)."""
    l1_coeff: float = 3e-4
    """Sparsity coefficient under `loss_convention` ('original': L1 summed over the batch, per-token λ = l1_coeff * batch)."""
    loss_convention: Literal["original", "per_token"] = "original"
    """See `sae_analysis.sae` (REPLICATION.md §3.3)."""
    seq_len: int = 128
    """Tokens per sequence; position 0 of each sequence is BOS."""
    num_tokens: int = 2_000_000_000
    """Training tokens; steps = num_tokens // batch_size (run 1: 488,281)."""
    seed: int = 52
    """Seeds the SAE init, the buffer's permutations and every sampling RNG (run 1: 52)."""
    model_batch: int = 512
    """Sequences per model forward when filling the buffer."""
    model_autocast: bool = False
    """Run the model under bf16 autocast when filling the buffer (the original did so, on GPU)."""
    end_of_data: EndOfData = "freeze"
    """When fresh tokens run out: 'wrap' (restart the data), 'stop' (end the run), 'freeze' (keep reshuffling the last
    buffer — what run 1 most likely did after ≈1.6955B tokens, REPLICATION.md §6.2)."""
    decoder_norm: DecoderNorm = "project_grad"
    """'project_grad' reproduces the published checkpoints; 'project_grad_and_renorm' also renormalises rows after the step."""
    resample: Resample = "kaiming"
    """'none'; 'kaiming' (Neel, §7.1); 'anthropic' (Towards Monosemanticity, §7.2)."""
    resample_every: int = 30_000
    """kaiming: steps between resamples (measured after the checkpoint at the same step, as in the original)."""
    resample_freq: float = NEEL_RESAMPLE_FREQ
    """kaiming: latents with frequency below this on fresh tokens are re-initialised."""
    resample_freq_tokens: int = 3_276_800
    """kaiming: tokens used to measure frequencies (get_freqs(50) = 50 * 512 * 128)."""
    resample_steps: tuple[int, ...] = (25_000, 50_000, 75_000, 100_000)
    """anthropic: steps at which to resample."""
    resample_window: int = 12_500
    """anthropic: a latent is dead if it did not fire in the previous resample_window steps (counted in tokens)."""
    resample_inputs: int = 819_200
    """anthropic: inputs scored and sampled with probability ∝ loss²."""
    resample_loss: ResampleLoss = "l2"
    """anthropic: per-input loss weighting the sampling: 'l2' (Kissane) or 'loss' = l2 + per-token L1 (ai-safety-foundation)."""
    resample_center: bool = False
    """anthropic: seed from x - b_dec instead of x (Kissane centres; ai-safety-foundation does not; §7.3)."""
    resample_enc_scale: float = 0.2
    """anthropic: new encoder columns get this times the mean alive encoder norm."""
    log_every: int = 100
    """Steps between training-metric rows in metrics.jsonl."""
    eval_every: int = 1000
    """Steps between evaluations (reconstruction score, dead fractions)."""
    eval_tokens: int = 327_680
    """Tokens per evaluation (get_freqs(5) = 5 * 512 * 128)."""
    checkpoint_every: int = 122_880_000
    """Tokens between checkpoints (run 1: every 30,000 steps = 122,880,000 tokens)."""
    autocast_bf16: bool = False
    """Run the SAE step under bf16 autocast (parameters and optimizer stay fp32; uses the autograd step)."""
    step_impl: StepImpl = "fused"
    """'fused': hand-written forward/backward into reused memory (fp32 ReLU SAEs; same gradients as autograd, faster on
    CPU); 'sparse': the same computed over the active (token, latent) pairs only (faster at low L0); 'auto': fused or sparse
    per step on the measured activation density (`trainers.sparse_step`); 'autograd': `SAE.forward(x).loss.backward()`.
    Other cases always use autograd."""
    device: Device = "cpu"
    """Where the SAE trains."""

    def __post_init__(self) -> None:
        for name in ("dict_mult", "batch_size", "buffer_mult", "seq_len", "num_tokens", "model_batch", "log_every",
                     "eval_every", "checkpoint_every", "resample_every", "resample_window", "resample_inputs",
                     "resample_freq_tokens", "eval_tokens"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_in is not None and self.d_in <= 0:
            raise ValueError(f"d_in must be positive or None, got {self.d_in}")
        if self.buffer_mult < 2:
            raise ValueError("buffer_mult must be >= 2: the buffer is refilled when half consumed")
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.l1_coeff >= 0):
            raise ValueError("need lr > 0, 0 <= beta1, beta2 < 1 and l1_coeff >= 0")
        for name, allowed in _LITERALS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")
        if any(s <= 0 for s in self.resample_steps) or list(self.resample_steps) != sorted(set(self.resample_steps)):
            raise ValueError(f"resample_steps must be positive and strictly increasing, got {self.resample_steps}")

    @property
    def steps(self) -> int:
        """Optimizer steps in the run."""
        return self.num_tokens // self.batch_size

    @property
    def buffer_size(self) -> int:
        """Activations held by the shuffle buffer."""
        return self.batch_size * self.buffer_mult

    def sae_config(self, d_in: int) -> SAEConfig:
        """The autoencoder this run trains."""
        return SAEConfig(d_in=d_in, d_sae=d_in * self.dict_mult, l1_coeff=self.l1_coeff,
                         loss_convention=self.loss_convention, hook_name=self.hook_name, model_name=self.model_name)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resample_steps"] = list(self.resample_steps)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. a saved checkpoint), ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "resample_steps" in kw:
            kw["resample_steps"] = tuple(kw["resample_steps"])
        return cls(**kw)

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with fields replaced; string values (from a command line) are parsed to the field's type."""
        hints = typing.get_type_hints(TrainConfig)
        unknown = set(overrides) - set(hints)
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(hints)}")
        parsed = {k: parse_value(hints[k], v) if isinstance(v, str) else v for k, v in overrides.items()}
        return dataclasses.replace(self, **parsed)


_LITERALS = {name: typing.get_args(t) for name, t in typing.get_type_hints(TrainConfig).items()
             if typing.get_origin(t) is Literal}


def parse_value(tp: Any, text: str) -> Any:
    """Parse a command-line string to the type `tp` (int, float, bool, str, Literal, Optional, tuple[int, ...])."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if text not in args:
            raise ValueError(f"{text!r} is not one of {args}")
        return text
    if type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        return parse_value(next(a for a in args if a is not type(None)), text)
    if origin is tuple:
        return tuple(int(float(s)) for s in text.replace(",", " ").split())
    if tp is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"not a boolean: {text!r}")
        return text.lower() in ("true", "1", "yes")
    if tp is int:
        value = float(text)  # accepts '2e9'
        if value != int(value):
            raise ValueError(f"not an integer: {text!r}")
        return int(value)
    return tp(text)


PRESETS: dict[str, TrainConfig] = {
    "gelu-1l-run1": TrainConfig(),
    "demo": TrainConfig(
        model_name="demo", batch_size=256, buffer_mult=32, buffer_dtype="float32", lr=1e-3, l1_coeff=1e-3 * 1024 / 256,
        seq_len=32, num_tokens=2_000_000, seed=0, model_batch=64, end_of_data="wrap", resample_every=2_000,
        resample_freq_tokens=65_536, log_every=20, eval_every=500, eval_tokens=16_384, checkpoint_every=250_000,
    ),
}
"""Named settings. 'gelu-1l-run1': Neel's run 1 (seed 52, defaults of utils.py). 'demo': small settings for the embedded
model (a few minutes on CPU); its l1_coeff is the demo build's (1e-3 at batch 1,024, `demo_suite.build`) rescaled to batch 256,
the same per-token λ under the original convention (L1 summed over the batch)."""


def preset(name: str) -> TrainConfig:
    """The named preset."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]
