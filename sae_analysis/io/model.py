"""Load the subject transformer: a TransformerLens pretrained name, a local folder the project ships, or the demo model.

Local layout (written by `save_model`): `config.json` (HookedTransformerConfig fields; dtype as a string) and
`model.safetensors` (the state dict). REPLICATION.md §2: gelu-1l is loaded with TransformerLens's defaults (fold_ln,
center_writing_weights, center_unembed, fold_value_biases) and cast to fp32.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sae_analysis.io import demo_paths
from sae_analysis.io.errors import CorruptFileError, HubError, MissingFileError, ShapeMismatchError
from sae_analysis.io.readers import read_json, read_safetensors, write_json, write_safetensors

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

logger = logging.getLogger(__name__)

MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"


def _config_to_json(cfg: Any) -> dict[str, Any]:
    """HookedTransformerConfig -> JSON-safe dict (torch dtypes as names; device dropped)."""
    out = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        if key != "device":
            out[key] = value
    return out


def save_model(model: HookedTransformer, path: str | Path) -> Path:
    """Write `model` as `path/config.json` + `path/model.safetensors` (each atomically); returns the folder."""
    folder = Path(path)
    write_safetensors(folder / MODEL_WEIGHTS, dict(model.state_dict()))
    write_json(folder / MODEL_CONFIG, _config_to_json(model.cfg))
    return folder


def _build(cfg_dict: dict[str, Any], where: Path, device: Any) -> HookedTransformer:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg_dict = dict(cfg_dict, device=str(device))
    if isinstance(cfg_dict.get("dtype"), str):
        cfg_dict["dtype"] = getattr(torch, cfg_dict["dtype"])
    try:
        cfg = HookedTransformerConfig(**cfg_dict)
    except (TypeError, ValueError, AssertionError) as e:
        raise CorruptFileError(f"{where}: not a HookedTransformerConfig ({e})") from None
    try:
        return HookedTransformer(cfg)
    except OSError as e:  # the tokenizer could not be fetched (offline): the model itself is still usable
        logger.warning("%s: tokenizer %r unavailable (%s); loading without a tokenizer", where, cfg.tokenizer_name, e)
        return HookedTransformer(HookedTransformerConfig(**dict(cfg_dict, tokenizer_name=None)))


def load_local_model(folder: Path, *, device: Any = "cpu") -> HookedTransformer:
    """A HookedTransformer from a folder written by `save_model`."""
    cfg_path, weights_path = folder / MODEL_CONFIG, folder / MODEL_WEIGHTS
    raw = read_json(cfg_path)
    state = read_safetensors(weights_path)
    model = _build(raw, cfg_path, device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ShapeMismatchError(f"{weights_path} does not match {cfg_path}: {str(e).splitlines()[0]}") from None
    model.to(device).eval()
    return model


def _from_pretrained(name: str, device: Any) -> HookedTransformer:
    from transformer_lens import HookedTransformer

    from sae_analysis.io.hub_model import is_neel_format, load_neel_model

    if is_neel_format(name):  # gelu-1l: through this project's Hub layer, so that offline mode uses the cache
        return load_neel_model(name, device=device)
    try:
        model = HookedTransformer.from_pretrained(name, device=device)
    except OSError as e:
        raise HubError(
            f"cannot load pretrained model {name!r} ({e}); run once with network access to fill the Hugging Face "
            "cache, or pass a local model folder (config.json + model.safetensors)"
        ) from None
    return model.to(torch.float32).eval()


def load_model(name_or_path: str | Path, *, device: Any = "cpu") -> HookedTransformer:
    """A HookedTransformer in fp32, eval mode.

    `name_or_path`: "demo" (the embedded demo model, demo_dir()/model), a local folder written by `save_model`, or a
    TransformerLens pretrained name such as "gelu-1l" (loaded with TransformerLens's default weight processing; Neel-format
    models such as gelu-1l through `sae_analysis.io.hub_model`, which works offline from the huggingface_hub cache).
    TransformerLens prints progress ("Moving model to device", "Loaded pretrained model") on stdout; that text goes to
    this module's logger instead, so stdout stays clean for JSON output."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            return _load_model(name_or_path, device)
    finally:
        if captured.getvalue().strip():
            logger.debug("%s", captured.getvalue().strip())


def _load_model(name_or_path: str | Path, device: Any) -> HookedTransformer:
    if str(name_or_path) == demo_paths.DEMO_NAME:
        folder = demo_paths.demo_dir() / "model"
        if not folder.is_dir():
            raise MissingFileError(f"the demo model is not installed: {folder} does not exist (build the demo suite first)")
        return load_local_model(folder, device=device)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return load_local_model(path, device=device)
    if isinstance(name_or_path, Path) or str(name_or_path).startswith((".", "/", "~")):
        raise MissingFileError(f"model folder {path} does not exist (expected {MODEL_CONFIG} + {MODEL_WEIGHTS})")
    return _from_pretrained(str(name_or_path), device)


__all__ = ["MODEL_CONFIG", "MODEL_WEIGHTS", "save_model", "load_model", "load_local_model"]
