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
from sae_analysis.errors import UsageError
from trainers.config_migrate import migrate, migrate_overrides
from trainers.config_resample import (
    FLAT_FIELDS,
    METHODS,
    NEEL_RESAMPLE_FREQ,  # noqa: F401  (re-exported: trainers.config.NEEL_RESAMPLE_FREQ)
    AnthropicResample,
    KaimingResample,
    ResampleConfig,
    nest_flat,
    resample_from,
)

EndOfData = Literal["wrap", "stop", "freeze"]
DecoderNorm = Literal["project_grad", "project_grad_and_renorm"]
BufferDtype = Literal["bfloat16", "float16", "float32"]
Device = Literal["cpu", "cuda"]
StepImpl = Literal["fused", "sparse", "auto", "autograd"]
CpuBf16 = Literal["fallback", "emulate"]

class ConfigError(UsageError):
    """A training configuration, a flag value or a saved run cannot be used as given (the message names the fix)."""


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
    resample: ResampleConfig = KaimingResample()
    """Dead-latent resampling, nested by method (`trainers.config_resample`): `NoResample()`, `KaimingResample(...)` (Neel,
    §7.1) or `AnthropicResample(...)` (Towards Monosemanticity, §7.2). Flag: --resample none|kaiming|anthropic, with the
    method's options as --resample-every-tokens, --resample-freq (kaiming), --resample-at-tokens, --resample-window-tokens,
    --resample-inputs, --resample-loss, --resample-center, --resample-enc-scale (anthropic)."""
    resample_freq_tokens: int = 3_276_800
    """Tokens on which latent frequencies are measured at every checkpoint (the snapshot; kaiming: the resampling
    decision), get_freqs(50) = 50 * 512 * 128."""
    log_every_tokens: int = 409_600
    """Tokens between training-metric rows in metrics.jsonl (at the first step reaching each multiple; 100 steps of 4,096)."""
    eval_every_tokens: int = 4_096_000
    """Tokens between evaluations (reconstruction score, dead fractions; 1,000 steps of 4,096)."""
    eval_tokens: int = 327_680
    """Tokens per evaluation (get_freqs(5) = 5 * 512 * 128)."""
    checkpoint_every_tokens: int = 122_880_000
    """Tokens between checkpoints, each with a frequency measurement on resample_freq_tokens tokens (run 1: every 30,000
    steps = 122,880,000 tokens)."""
    autocast_bf16: bool = False
    """Run the SAE step under bf16 autocast (parameters and optimizer stay fp32; uses the autograd step)."""
    cpu_bf16: CpuBf16 = "fallback"
    """autocast_bf16 on a CPU without native bf16 (no AVX512-BF16 / AMX; about 10x slower than fp32): 'fallback' trains
    in fp32 and logs why, 'emulate' keeps bf16 with a warning (`trainers.precision`)."""
    step_impl: StepImpl = "auto"
    """'auto' (default): 'fused' or 'sparse' per step on the measured activation density (`trainers.sparse_step`; never
    slower than 'fused' in the paired benchmark of BENCHMARKS.md, "Sparse step"); 'fused': hand-written forward/backward
    into reused memory (fp32 ReLU SAEs; same gradients as autograd, faster on CPU); 'sparse': the same computed over the
    active (token, latent) pairs only (faster at low L0); 'autograd': `SAE.forward(x).loss.backward()`. The three fast
    steps compute the same gradients (tested to fp32 tolerance), so a run folder resumes under any of them; bf16 autocast
    and non-ReLU SAEs always use autograd."""
    device: Device = "cpu"
    """Where the SAE trains."""

    def __post_init__(self) -> None:
        for name in ("dict_mult", "batch_size", "buffer_mult", "seq_len", "num_tokens", "model_batch",
                     "resample_freq_tokens", "eval_tokens"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name, value in self.intervals().items():
            if int(value) < self.batch_size:
                raise ConfigError(f"{name}={value} is smaller than one batch ({self.batch_size} tokens): "
                                  f"intervals count tokens, give a multiple of batch_size")
        if self.d_in is not None and self.d_in <= 0:
            raise ConfigError(f"d_in must be positive or None, got {self.d_in}")
        if self.buffer_mult < 2:
            raise ConfigError("buffer_mult must be >= 2: the buffer is refilled when half consumed")
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.l1_coeff >= 0):
            raise ConfigError("need lr > 0, 0 <= beta1, beta2 < 1 and l1_coeff >= 0")
        for name, allowed in _LITERALS.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")

    def intervals(self) -> dict[str, int]:
        """The schedule's intervals (tokens between events), each at least one batch, by their flag names."""
        out = {name: getattr(self, name) for name in INTERVALS}
        if isinstance(self.resample, KaimingResample):
            out["resample_every_tokens"] = self.resample.every_tokens
        if isinstance(self.resample, AnthropicResample):
            out["resample_window_tokens"] = self.resample.window_tokens
        return out

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
        if "at_tokens" in d["resample"]:
            d["resample"]["at_tokens"] = list(d["resample"]["at_tokens"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. a saved checkpoint), ignoring unknown keys; a dict saved with the old step-counted field
        names (`trainers.config_migrate`) or with flat resampling fields (`trainers.config_resample.nest_flat`, with a
        FutureWarning) is migrated."""
        names = {f.name for f in dataclasses.fields(cls)}
        nested = nest_flat(migrate(d, cls.batch_size, cls.resample.method), cls.resample, warn=True, saved=True)
        kw = {k: v for k, v in nested.items() if k in names}
        if "resample" in kw:
            kw["resample"] = resample_from(kw["resample"])
        return cls(**kw)

    def with_overrides(self, overrides: dict[str, Any], *, flat_flags: bool = False) -> TrainConfig:
        """A copy with fields replaced; string values (from a command line) are parsed to the field's type. `resample`
        takes a ResampleConfig, a method name or its JSON form; flat `resample_*` names are the command line's
        (`flat_flags`: no warning, a field of another method refused) or deprecated (a FutureWarning)."""
        hints = typing.get_type_hints(TrainConfig)
        overrides = migrate_overrides(overrides, self.batch_size, parse_value)
        overrides = nest_flat(_parse_flat(overrides), self.resample, warn=not flat_flags, strict=flat_flags)
        unknown = set(overrides) - set(hints)
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; known: {sorted(hints)}")
        parsed = {}
        for k, v in overrides.items():
            try:
                parsed[k] = resample_from(v) if k == "resample" else parse_value(hints[k], v) if isinstance(v, str) else v
            except ValueError as e:
                raise ConfigError(f"--{k.replace('_', '-')} {v}: {e}") from None
        return dataclasses.replace(self, **parsed)


INTERVALS = ("log_every_tokens", "eval_every_tokens", "checkpoint_every_tokens")
"""Schedule fields: tokens between events, each at least one batch (an event fires at the first step reaching a multiple);
with the resampling method's own (`TrainConfig.intervals`)."""


def _parse_flat(overrides: dict[str, Any]) -> dict[str, Any]:
    """Command-line strings of flat resampling fields parsed to the nested field's type."""
    out = dict(overrides)
    for k, (method, name) in FLAT_FIELDS.items():
        if isinstance(out.get(k), str):
            try:
                out[k] = parse_value(typing.get_type_hints(METHODS[method])[name], out[k])
            except ValueError as e:
                raise ConfigError(f"--{k.replace('_', '-')} {out[k]}: {e}") from None
    return out

_LITERALS = {name: typing.get_args(t) for name, t in typing.get_type_hints(TrainConfig).items()
             if typing.get_origin(t) is Literal}


FREQ_SHARE_WARN = 0.25
"""Warn when each checkpoint's frequency measurement reads more than this share of the tokens trained between checkpoints."""


def schedule_warnings(cfg: TrainConfig) -> list[str]:
    """Settings that are valid but probably not meant (the CLI logs them before training)."""
    out = []
    share = cfg.resample_freq_tokens / cfg.checkpoint_every_tokens
    if share > FREQ_SHARE_WARN:
        out.append(f"every checkpoint measures latent frequencies on resample_freq_tokens={cfg.resample_freq_tokens:,} "
                   f"fresh tokens, {share:.0%} of the checkpoint_every_tokens={cfg.checkpoint_every_tokens:,} trained "
                   "between checkpoints: frequency measurement dominates the run (raise checkpoint_every_tokens or lower "
                   "resample_freq_tokens)")
    if isinstance(cfg.resample, KaimingResample) and cfg.resample.every_tokens % cfg.checkpoint_every_tokens:
        out.append(f"resample_every_tokens={cfg.resample.every_tokens:,} is not a multiple of checkpoint_every_tokens="
                   f"{cfg.checkpoint_every_tokens:,}: some resamples measure frequencies without a checkpoint")
    return out


def parse_value(tp: Any, text: str) -> Any:
    """Parse a command-line string to the type `tp` (int, float, bool, str, Literal, Optional, tuple[int, ...])."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if text not in args:
            raise ConfigError(f"{text!r} is not one of {args}")
        return text
    if type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        return parse_value(next(a for a in args if a is not type(None)), text)
    if origin is tuple:
        return tuple(int(float(s)) for s in text.replace(",", " ").split())
    if tp is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"not a boolean: {text!r}")
        return text.lower() in ("true", "1", "yes")
    if tp is int:
        value = float(text)  # accepts '2e9'
        if value != int(value):
            raise ConfigError(f"not an integer: {text!r}")
        return int(value)
    return tp(text)


PRESETS: dict[str, TrainConfig] = {
    "gelu-1l-run1": TrainConfig(),
    "demo": TrainConfig(
        model_name="demo", batch_size=256, buffer_mult=32, buffer_dtype="float32", lr=1e-3, l1_coeff=1e-3 * 1024 / 256,
        seq_len=32, num_tokens=2_000_000, seed=0, model_batch=64, end_of_data="wrap",
        resample=KaimingResample(every_tokens=2_000 * 256),
        resample_freq_tokens=65_536, log_every_tokens=20 * 256, eval_every_tokens=500 * 256, eval_tokens=16_384,
        checkpoint_every_tokens=250_000,
    ),
}
"""Named settings. 'gelu-1l-run1': Neel's run 1 (seed 52, defaults of utils.py). 'demo': small settings for the embedded
model (a few minutes on CPU); its l1_coeff is the demo build's (1e-3 at batch 1,024, `trainers.demo.config`) rescaled to
batch 256, the same per-token λ under the original convention (L1 summed over the batch)."""


def preset(name: str) -> TrainConfig:
    """The named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]
