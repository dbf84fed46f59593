"""Turn canonical-orientation tensors read from a checkpoint into an `SAE`, with file-naming error messages."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sae_analysis.io.errors import NonFiniteWeightsError, ShapeMismatchError
from sae_analysis.sae import SAE, SAEConfig


def expected_shapes(cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
    """Canonical shape of each parameter (threshold: JumpReLU only)."""
    return {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_enc": (cfg.d_sae,),
        "b_dec": (cfg.d_in,),
        "threshold": (cfg.d_sae,),
    }


def check_tensors(cfg: SAEConfig, tensors: dict[str, Tensor], *, where: str, cfg_where: str) -> None:
    """Raise `ShapeMismatchError` / `NonFiniteWeightsError` naming `where` (weights) and `cfg_where` (config)."""
    shapes = expected_shapes(cfg)
    for name, t in tensors.items():
        if tuple(t.shape) != shapes[name]:
            raise ShapeMismatchError(
                f"{where}: {name} has shape {tuple(t.shape)}, but {cfg_where} implies {shapes[name]} "
                f"(d_in={cfg.d_in}, d_sae={cfg.d_sae}); the config and the weights do not belong together"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise NonFiniteWeightsError(f"{where}: {name} holds {bad} non-finite values (NaN or inf); the checkpoint is unusable")


def assemble_sae(
    cfg: SAEConfig,
    tensors: dict[str, Tensor],
    *,
    where: str,
    cfg_where: str,
    meta: dict[str, Any],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> SAE:
    """Check `tensors` (keys W_enc, W_dec, b_enc, b_dec[, threshold], canonical orientation) and wrap them in an SAE."""
    check_tensors(cfg, tensors, where=where, cfg_where=cfg_where)
    dtype = dtype or tensors["W_enc"].dtype
    return SAE.from_weights(cfg, **tensors, meta=meta, device=device, dtype=dtype)


__all__ = ["expected_shapes", "check_tensors", "assemble_sae"]
