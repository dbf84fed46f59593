"""bf16 autocast on CPUs without native bf16 arithmetic.

CPUs without AVX512-BF16 or AMX emulate bf16 matrix products, and the SAE step under bf16 autocast then runs about 10×
slower than in fp32 (measured on an AMD EPYC host without those units, same run; issue #11). `resolve_autocast` detects
this case from the CPU's flags and, by the config's `cpu_bf16` policy, falls back to fp32 ('fallback', the default) or
keeps bf16 with a warning ('emulate'). The decision is logged, written into the effective config saved with every
checkpoint (`autocast_bf16`) and recorded as a `precision` row in metrics.jsonl by the trainer.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from trainers.config import TrainConfig

log = logging.getLogger(__name__)
CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""Linux /proc/cpuinfo flags of x86 units that compute bf16 products natively."""


def cpu_native_bf16(cpuinfo: Path = CPUINFO) -> bool | None:
    """Whether this CPU has native bf16 units (True / False), or None when its flags cannot be read (not Linux, not
    x86: then nothing is assumed)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = {word for line in text.splitlines() if line.startswith(("flags", "Features")) for word in line.split()}
    if not flags:
        return None
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def resolve_autocast(cfg: TrainConfig) -> tuple[TrainConfig, str | None]:
    """(the config to train with, the reason when bf16 autocast was turned off or kept despite being emulated)."""
    if not cfg.autocast_bf16 or cfg.device != "cpu" or cpu_native_bf16() is not False:
        return cfg, None
    what = (f"this CPU has none of the native bf16 flags {NATIVE_BF16_FLAGS}: bf16 autocast is emulated, about 10x slower "
            "than fp32")
    if cfg.cpu_bf16 == "emulate":
        reason = f"{what}; kept because cpu_bf16='emulate'"
        log.warning("%s", reason)
        return cfg, reason
    reason = f"{what}; training in fp32 instead (set cpu_bf16='emulate' to keep bf16)"
    log.warning("%s", reason)
    return dataclasses.replace(cfg, autocast_bf16=False), reason


__all__ = ["cpu_native_bf16", "resolve_autocast", "NATIVE_BF16_FLAGS"]
