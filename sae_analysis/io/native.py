"""The SAELens layout, which is also this project's native save format (REPLICATION.md §15).

    folder/cfg.json                  d_in, d_sae, architecture, dtype, apply_b_dec_to_input, metadata{hook_name, model_name}
    folder/sae_weights.safetensors   W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec (+ threshold for JumpReLU)
    folder/sparsity.safetensors      optional: {"sparsity": log10 latent density [d_sae]}

Key names follow SAELens 6 (`sae_lens/saes/sae.py` `SAEConfig.to_dict`, `loading/pretrained_sae_loaders.py`): a folder
written by `save_sae` loads in `sae_lens.SAE.load_from_disk`, and a folder written by SAELens (v6, or a pre-v6 config
with top-level hook_name / activation_fn_str) loads here. This project's extra config (l1_coeff, loss_convention) lives
in `metadata["sae_analysis"]`; SAELens keeps unknown metadata keys and ignores them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_analysis.io.assemble import assemble_sae
from sae_analysis.io.errors import CorruptFileError, UnknownFormatError
from sae_analysis.io.readers import read_json, read_safetensors, write_json, write_safetensors
from sae_analysis.sae import SAE, SAEConfig
from sae_analysis.version import __version__

logger = logging.getLogger(__name__)

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"
SAELENS_SCHEMA_VERSION = "6.0.0"
"""Written as metadata.sae_lens_version: marks the v6 config schema, so SAELens skips its pre-6.0 key migration."""

ARCHITECTURE = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}


# ----- reading ------------------------------------------------------------------------------------------------------
def _activation(raw: dict[str, Any], where: Path) -> tuple[str, int | None]:
    """(activation, k) from a SAELens cfg; pre-6 configs name TopK through activation_fn_str / activation_fn_kwargs."""
    act_fn = raw.get("activation_fn") or raw.get("activation_fn_str") or "relu"
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    arch = raw.get("architecture") or ("topk" if act_fn == "topk" else "standard")
    by_arch = {v: k_ for k_, v in ARCHITECTURE.items()}
    if arch not in by_arch or (arch == "standard" and act_fn != "relu"):
        raise UnknownFormatError(
            f"{where}: SAELens architecture {arch!r} (activation {act_fn!r}) is not supported; "
            f"supported: {sorted(by_arch)} with ReLU"
        )
    if raw.get("rescale_acts_by_decoder_norm"):
        raise UnknownFormatError(f"{where}: rescale_acts_by_decoder_norm=true is not supported; fold the decoder norms first")
    return by_arch[arch], (int(k) if arch == "topk" and k is not None else None)


def config_from_saelens(raw: dict[str, Any], where: Path) -> SAEConfig:
    """An `SAEConfig` from a SAELens cfg.json dict; `where` names the file in errors."""
    if raw.get("normalize_activations") not in (None, "none", False):
        raise UnknownFormatError(
            f"{where}: normalize_activations={raw['normalize_activations']!r} is not supported (inputs must be unnormalised)"
        )
    if not isinstance(raw.get("d_in"), int) or not isinstance(raw.get("d_sae"), int):
        raise CorruptFileError(f"{where} lacks integer d_in / d_sae keys; it is not a SAELens config")
    activation, k = _activation(raw, where)
    meta = raw.get("metadata") or {}
    ours = meta.get("sae_analysis") or {}
    extras = {key: ours[key] for key in ("l1_coeff", "loss_convention") if key in ours}
    try:
        return SAEConfig(
            d_in=raw["d_in"], d_sae=raw["d_sae"], activation=activation, k=k,  # type: ignore[arg-type]
            apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
            hook_name=meta.get("hook_name") or raw.get("hook_name") or raw.get("hook_point"),
            model_name=meta.get("model_name") or raw.get("model_name"), **extras,
        )  # fmt: skip
    except (ValueError, TypeError) as e:
        raise CorruptFileError(f"{where}: invalid config ({e})") from None


def _pick_tensors(weights: dict[str, Tensor], cfg: SAEConfig, where: Path) -> dict[str, Tensor]:
    """The canonical tensors of a SAELens weights file (which already uses the canonical orientation)."""
    names = ["W_enc", "W_dec", "b_enc", "b_dec"] + (["threshold"] if cfg.activation == "jumprelu" else [])
    missing = [n for n in names if n not in weights]
    if missing:
        raise CorruptFileError(f"{where} lacks {missing}; found keys {sorted(weights)}")
    scale = weights.get("scaling_factor")
    if scale is not None and not torch.allclose(scale, torch.ones_like(scale)):
        raise UnknownFormatError(f"{where}: a non-trivial scaling_factor (SAELens finetuning) is not supported")
    ignored = sorted(set(weights) - set(names) - {"scaling_factor"})
    if ignored:
        logger.warning("%s: ignoring tensors %s", where, ignored)
    return {n: weights[n] for n in names}


def read_log10_density(path: Path, d_sae: int) -> Tensor:
    """The per-latent log10 density stored in a SAELens sparsity.safetensors (key 'sparsity')."""
    data = read_safetensors(path)
    t = data.get("sparsity")
    if t is None or tuple(t.shape) != (d_sae,):
        found = {k: tuple(v.shape) for k, v in data.items()}
        raise CorruptFileError(f"{path}: expected a 'sparsity' tensor of shape ({d_sae},), found {found}")
    return t.float()


def load_saelens(folder: Path, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SAE:
    """Load a SAELens / native folder (cfg.json + sae_weights.safetensors [+ sparsity.safetensors])."""
    cfg_path, weights_path = folder / CFG_FILE, folder / WEIGHTS_FILE
    raw = read_json(cfg_path)
    cfg = config_from_saelens(raw, cfg_path)
    tensors = _pick_tensors(read_safetensors(weights_path), cfg, weights_path)
    meta = {"format": "saelens", "path": str(folder), "filename": WEIGHTS_FILE, "cfg": raw}
    sae = assemble_sae(cfg, tensors, where=str(weights_path), cfg_where=str(cfg_path), meta=meta, device=device, dtype=dtype)
    if (folder / SPARSITY_FILE).is_file():
        sae.log10_density = read_log10_density(folder / SPARSITY_FILE, cfg.d_sae).to(sae.device)
    return sae


# ----- writing ------------------------------------------------------------------------------------------------------
def config_to_saelens(sae: SAE) -> dict[str, Any]:
    """The SAELens-6 cfg.json dict for `sae` (this project's extras under metadata.sae_analysis)."""
    c = sae.cfg
    source = {k: v for k, v in sae.meta.items() if k in ("format", "repo", "revision", "commit", "filename") and v is not None}
    raw: dict[str, Any] = {
        "architecture": ARCHITECTURE[c.activation], "d_in": c.d_in, "d_sae": c.d_sae,
        "dtype": DTYPE_NAMES.get(sae.dtype, "float32"), "device": "cpu", "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_SCHEMA_VERSION, "model_name": c.model_name, "hook_name": c.hook_name,
            "hook_head_index": None,
            "sae_analysis": {
                "version": __version__, "l1_coeff": c.l1_coeff, "loss_convention": c.loss_convention, "source": source,
            },
        },
    }  # fmt: skip
    if c.activation == "topk":
        raw.update(k=c.k, rescale_acts_by_decoder_norm=False)
    return raw


def write_log10_density(folder: str | Path, log10_density: Tensor) -> Path:
    """Write (atomically) `folder/sparsity.safetensors` = {"sparsity": float32 [d_sae]}, the per-latent log10 density
    (`sae_analysis.frequency.stored_log10_density`); returns the file."""
    path = Path(folder) / SPARSITY_FILE
    write_safetensors(path, {"sparsity": log10_density.detach().float().cpu().contiguous()})
    return path


def save_sae(sae: SAE, path: str | Path) -> Path:
    """Write `sae` in the native (SAELens) layout into folder `path`; returns the folder.

    Each file is written atomically (temp file + `os.replace`), weights first and cfg.json last. Other files in the
    folder (e.g. a `checkpoints/` subfolder) are left alone; a stale sparsity.safetensors is removed when
    `sae.log10_density` is None."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CorruptFileError(f"cannot save an SAE to {folder}: it exists and is not a folder")
    tensors = {"W_enc": sae.W_enc, "W_dec": sae.W_dec, "b_enc": sae.b_enc, "b_dec": sae.b_dec}
    if sae.cfg.activation == "jumprelu":
        tensors["threshold"] = sae.threshold
    write_safetensors(folder / WEIGHTS_FILE, tensors)
    if sae.log10_density is not None:
        write_log10_density(folder, sae.log10_density)
    else:
        (folder / SPARSITY_FILE).unlink(missing_ok=True)
    write_json(folder / CFG_FILE, config_to_saelens(sae))
    return folder


__all__ = ["CFG_FILE", "WEIGHTS_FILE", "SPARSITY_FILE", "config_from_saelens", "config_to_saelens", "load_saelens",
           "read_log10_density", "save_sae", "write_log10_density"]  # fmt: skip
