"""Resampling options of `TrainConfig`, nested by method (REPLICATION.md §7): `resample` is one of `NoResample`,
`KaimingResample` (Neel, §7.1) or `AnthropicResample` (Towards Monosemanticity, §7.2), each holding only its own fields.
In JSON: `{"resample": {"method": "kaiming", "every_tokens": ..., "freq": ...}}`.

Configs saved before the nesting held a flat union (`"resample": "kaiming"` next to `resample_every_tokens`,
`resample_at_tokens`, ...); `nest_flat` reads them (the fields of the method not used never acted and are dropped), and
the command line keeps the flat flag names (`--resample anthropic --resample-at-tokens 5e6,1e7`), see `FLAT_FIELDS`.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from sae_analysis.errors import UsageError

NEEL_RESAMPLE_FREQ = 10**-5.5
"""Neel's resampling threshold (REPLICATION.md §7.1). Same value as `sae_analysis.metrics.NEEL_RESAMPLE_FREQ`."""
ResampleLoss = Literal["l2", "loss"]


@dataclass(frozen=True)
class NoResample:
    """No resampling."""

    method: Literal["none"] = "none"


@dataclass(frozen=True)
class KaimingResample:
    """Neel's resampling: dead latents re-initialised (Kaiming uniform) on a fixed token interval."""

    method: Literal["kaiming"] = "kaiming"
    every_tokens: int = 122_880_000
    """Tokens between resamples (run 1: every 30,000 steps of 4,096 = 122,880,000 tokens; measured after the checkpoint
    of the same step, as in the original)."""
    freq: float = NEEL_RESAMPLE_FREQ
    """Latents with frequency below this on fresh tokens (resample_freq_tokens of them) are re-initialised."""


@dataclass(frozen=True)
class AnthropicResample:
    """Anthropic's resampling: dead latents re-seeded from inputs sampled with probability ∝ loss², at fixed token counts."""

    method: Literal["anthropic"] = "anthropic"
    at_tokens: tuple[int, ...] = (102_400_000, 204_800_000, 307_200_000, 409_600_000)
    """Token counts at which to resample (at the first step reaching each; 25k, 50k, 75k, 100k steps of 4,096)."""
    window_tokens: int = 51_200_000
    """A latent is dead if it did not fire on the previous window_tokens tokens (12,500 steps of 4,096)."""
    inputs: int = 819_200
    """Inputs scored and sampled with probability ∝ loss²."""
    loss: ResampleLoss = "l2"
    """Per-input loss weighting the sampling: 'l2' (Kissane) or 'loss' = l2 + per-token L1 (ai-safety-foundation)."""
    center: bool = False
    """Seed from x - b_dec instead of x (Kissane centres; ai-safety-foundation does not; §7.3)."""
    enc_scale: float = 0.2
    """New encoder columns get this times the mean alive encoder norm."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "at_tokens", tuple(int(t) for t in self.at_tokens))
        at = self.at_tokens
        if any(t <= 0 for t in at) or list(at) != sorted(set(at)):
            raise UsageError(f"resample_at_tokens must be positive and strictly increasing, got {at}")
        if self.inputs <= 0:
            raise UsageError(f"resample_inputs must be positive, got {self.inputs}")
        if self.loss not in typing.get_args(ResampleLoss):
            raise UsageError(f"resample_loss={self.loss!r}; expected one of {typing.get_args(ResampleLoss)}")


ResampleConfig = NoResample | KaimingResample | AnthropicResample
METHODS: dict[str, type] = {"none": NoResample, "kaiming": KaimingResample, "anthropic": AnthropicResample}
FLAT_FIELDS = {"resample_every_tokens": ("kaiming", "every_tokens"), "resample_freq": ("kaiming", "freq"),
               "resample_at_tokens": ("anthropic", "at_tokens"), "resample_window_tokens": ("anthropic", "window_tokens"),
               "resample_inputs": ("anthropic", "inputs"), "resample_loss": ("anthropic", "loss"),
               "resample_center": ("anthropic", "center"), "resample_enc_scale": ("anthropic", "enc_scale")}
"""Flat name (saved configs before the nesting; command-line flags) -> (method, field)."""


def method_config(method: str) -> ResampleConfig:
    """The default options of a method, by name."""
    if method not in METHODS:
        raise UsageError(f"resample={method!r}; expected one of {tuple(METHODS)}")
    return METHODS[method]()


def resample_from(value: Any) -> ResampleConfig:
    """A ResampleConfig from itself, a method name or its JSON form (`{"method": ..., field: value}`)."""
    if isinstance(value, (NoResample, KaimingResample, AnthropicResample)):
        return value
    if isinstance(value, str):
        return method_config(value)
    if isinstance(value, dict):
        cls = type(method_config(str(value.get("method", "kaiming"))))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - names
        if unknown:
            raise UsageError(f"unknown {value.get('method')} resampling options {sorted(unknown)}; known: {sorted(names)}")
        return cls(**_tuples(value))
    raise UsageError(f"resample must be a method name or its options, got {value!r}")


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples of the dataclass fields."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def nest_flat(d: dict[str, Any], base: ResampleConfig, *, warn: bool, strict: bool = False,
              saved: bool = False) -> dict[str, Any]:
    """`d` with a flat `resample` method name and `resample_*` fields replaced by one nested `resample` value, built on
    `base` (kept when the method is unchanged). Fields of another method are dropped (`strict`: refused). `warn`: a
    FutureWarning that the flat fields are deprecated (Python callers; the command line keeps the flat flags), `saved`:
    `d` is a saved config, where a method name alone is the flat form too."""
    flat = {k: d[k] for k in FLAT_FIELDS if k in d and d[k] is not None}
    method_given = isinstance(d.get("resample"), str)
    if not flat and not method_given:
        return d
    out = {k: v for k, v in d.items() if k not in FLAT_FIELDS}
    chosen = resample_from(d["resample"]) if "resample" in d else base
    if chosen.method == base.method and method_given:
        chosen = base
    if warn and (flat or saved):
        warnings.warn("flat resampling fields (resample='<method>', resample_*) are deprecated: give resample as "
                      "KaimingResample / AnthropicResample / NoResample or {'method': ..., ...}", FutureWarning, stacklevel=4)
    own = {FLAT_FIELDS[k][1]: v for k, v in flat.items() if FLAT_FIELDS[k][0] == chosen.method}
    other = sorted(k for k in flat if FLAT_FIELDS[k][0] != chosen.method)
    if other and strict:
        raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in other)} apply to another resampling method "
                         f"than this run's {chosen.method!r} (give --resample METHOD)")
    out["resample"] = dataclasses.replace(chosen, **_tuples(own)) if own else chosen  # type: ignore[arg-type]
    return out


__all__ = ["NEEL_RESAMPLE_FREQ", "NoResample", "KaimingResample", "AnthropicResample", "ResampleConfig", "METHODS",
           "FLAT_FIELDS", "method_config", "resample_from", "nest_flat"]
