"""Every on-disk SAE format -> `SAE` in canonical orientation (converted once, here). REPLICATION.md §4, §15.

| format                | files                                   | conversion                                              |
|-----------------------|-----------------------------------------|---------------------------------------------------------|
| `original` (Neel)     | `{v}.pt` state dict + `{v}_cfg.json`    | as is (W_enc [d_in, d_sae], W_dec [d_sae, d_in])        |
| `saelens` (native)    | cfg.json + sae_weights.safetensors      | as is; see `sae_analysis.io.native`                     |
| `sparsify`            | cfg.json + sae.safetensors              | W_enc = encoder.weight.T, b_enc = encoder.bias          |
| `dictionary_learning` | ae.pt + config.json                     | W_enc = encoder.weight.T, W_dec = decoder.weight.T |

The format is detected from the files present (`detect_format`) or forced with `format=`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_analysis.io.assemble import assemble_sae
from sae_analysis.io.errors import CorruptFileError, MissingFileError, ShapeMismatchError, UnknownFormatError
from sae_analysis.io.native import CFG_FILE, SPARSITY_FILE, WEIGHTS_FILE, load_saelens
from sae_analysis.io.readers import read_json, read_safetensors, read_torch_state, require_file
from sae_analysis.sae import SAE, SAEConfig

logger = logging.getLogger(__name__)

FORMATS = ("original", "saelens", "sparsify", "dictionary_learning")
NEEL_ALIASES = {"run1": "25", "run2": "47"}
"""`AutoEncoder.load_from_hf` in Neel's 1L-Sparse-Autoencoder (REPLICATION.md §4.1)."""
GELU_1L_HOOK = "blocks.0.mlp.hook_post"
GELU_1L_MODEL = "gelu-1l"
SPARSIFY_WEIGHTS = "sae.safetensors"
DL_WEIGHTS, DL_CONFIG = "ae.pt", "config.json"
ORIGINAL_KEYS = {"W_enc", "W_dec", "b_enc", "b_dec"}
Loader = Callable[..., SAE]


def _matrix_shape(state: dict[str, Tensor], key: str, where: Path) -> tuple[int, int]:
    if key not in state or state[key].ndim != 2:
        raise CorruptFileError(f"{where}: expected a 2-D tensor {key!r}; found {({k: tuple(v.shape) for k, v in state.items()})}")
    rows, cols = state[key].shape
    return int(rows), int(cols)


# ----- original (Neel's {v}.pt + {v}_cfg.json) ----------------------------------------------------------------------
def original_cfg_path(pt_path: Path) -> Path:
    return pt_path.with_name(f"{pt_path.stem}_cfg.json")


def cfg_mismatch(raw: dict[str, Any], d_in: int, d_sae: int) -> dict[str, Any] | None:
    """Where an original `{v}_cfg.json` disagrees with the state dict's shapes: the cfg's d_mlp / dict_mult beside the
    weights' d_in / d_sae (None when they agree or the keys are absent). The file dumps the saving process's global cfg,
    which need not describe the saved encoder (REPLICATION.md §4.1, §14.6)."""
    d_mlp, mult = raw.get("d_mlp"), raw.get("dict_mult")
    bad_in = d_mlp is not None and d_mlp != d_in
    bad_sae = d_mlp is not None and mult is not None and d_mlp * mult != d_sae
    if not (bad_in or bad_sae):
        return None
    return {"cfg_d_mlp": d_mlp, "cfg_dict_mult": mult, "d_in": d_in, "d_sae": d_sae}


def load_original(pt_path: Path, *, device: Any = None, dtype: torch.dtype | None = None) -> SAE:
    """Neel's format. Shapes come from the state dict; a cfg whose d_mlp / dict_mult disagree is logged as a warning and
    recorded in `sae.meta["cfg_mismatch"]`, not an error (the cfg JSON is the saving process's global cfg, §4.1, §14.7).
    l1_coeff comes from the cfg (never hard-coded: run 2's cfg is unconfirmed, REPLICATION.md §4.2). Integer versions
    get hook 'blocks.0.mlp.hook_post' and model 'gelu-1l' (REPLICATION.md §2); other names get neither."""
    cfg_path = original_cfg_path(pt_path)
    require_file(cfg_path, f"the original format pairs {pt_path.name} with {cfg_path.name}; download both")
    raw = read_json(cfg_path)
    state = read_torch_state(pt_path)
    if set(state) != ORIGINAL_KEYS:
        raise CorruptFileError(f"{pt_path}: expected exactly the keys {sorted(ORIGINAL_KEYS)}, found {sorted(state)}")
    d_in, d_sae = _matrix_shape(state, "W_enc", pt_path)
    mismatch = cfg_mismatch(raw, d_in, d_sae)
    if mismatch is not None:
        logger.warning(
            "%s: W_enc has shape %s, but %s says d_mlp=%s, dict_mult=%s; using the state dict's shapes (the cfg JSON is "
            "the saving process's global cfg, REPLICATION.md §4.1)", pt_path, (d_in, d_sae), cfg_path.name,
            mismatch["cfg_d_mlp"], mismatch["cfg_dict_mult"],
        )  # fmt: skip
    # Integer versions are gelu-1l MLP SAEs; other names in Neel's repo (e.g. gelu-2l_L0_16384_mlp_out_51) are not.
    gelu_1l = pt_path.stem.isdigit()
    cfg = SAEConfig(
        d_in=d_in, d_sae=d_sae, activation="relu", apply_b_dec_to_input=True, l1_coeff=float(raw.get("l1_coeff", 3e-4)),
        loss_convention="original", hook_name=GELU_1L_HOOK if gelu_1l else None, model_name=GELU_1L_MODEL if gelu_1l else None,
    )  # fmt: skip
    meta = {"format": "original", "path": str(pt_path), "filename": pt_path.name, "cfg": raw}
    if mismatch is not None:
        meta["cfg_mismatch"] = mismatch
    return assemble_sae(cfg, state, where=str(pt_path), cfg_where=str(cfg_path), meta=meta, device=device, dtype=dtype)


# ----- sparsify (EleutherAI) -----------------------------------------------------------------------------------------
def _sparsify_config(raw: dict[str, Any], where: Path, d_sae: int) -> SAEConfig:
    if raw.get("activation", "topk") != "topk" or raw.get("skip_connection") or raw.get("transcode"):
        raise UnknownFormatError(
            f"{where}: only sparsify TopK autoencoders are supported (got activation={raw.get('activation')!r}, "
            f"skip_connection={raw.get('skip_connection')}, transcode={raw.get('transcode')})"
        )
    if not isinstance(raw.get("d_in"), int) or not isinstance(raw.get("k"), int):
        raise CorruptFileError(f"{where} lacks integer d_in / k keys; it is not a sparsify config")
    expected = raw.get("num_latents") or raw["d_in"] * raw.get("expansion_factor", 32)
    if expected != d_sae:
        raise ShapeMismatchError(
            f"{where} implies {expected} latents (num_latents={raw.get('num_latents')}, expansion_factor="
            f"{raw.get('expansion_factor')}), but the weights have {d_sae}; the config and the weights do not belong together"
        )
    return SAEConfig(d_in=raw["d_in"], d_sae=d_sae, activation="topk", k=raw["k"], apply_b_dec_to_input=True)


def load_sparsify(folder: Path, *, device: Any = None, dtype: torch.dtype | None = None) -> SAE:
    """sparsify's `SparseCoder` folder: `encoder` is an `nn.Linear` ([d_sae, d_in] weight), `W_dec` is [d_sae, d_in]."""
    cfg_path, weights_path = folder / CFG_FILE, folder / SPARSIFY_WEIGHTS
    raw = read_json(cfg_path)
    w = read_safetensors(weights_path)
    missing = sorted({"encoder.weight", "encoder.bias", "W_dec", "b_dec"} - set(w))
    if missing:
        raise CorruptFileError(f"{weights_path} lacks {missing}; found keys {sorted(w)}")
    d_sae, _ = _matrix_shape(w, "encoder.weight", weights_path)
    cfg = _sparsify_config(raw, cfg_path, d_sae)
    tensors = {"W_enc": w["encoder.weight"].T, "b_enc": w["encoder.bias"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]}
    meta = {"format": "sparsify", "path": str(folder), "filename": SPARSIFY_WEIGHTS, "hookpoint": folder.name, "cfg": raw}
    return assemble_sae(cfg, tensors, where=str(weights_path), cfg_where=str(cfg_path), meta=meta, device=device, dtype=dtype)


# ----- dictionary_learning (saprmarks) -------------------------------------------------------------------------------
DL_STANDARD = {"encoder.weight", "encoder.bias", "decoder.weight", "bias"}
DL_TOPK = {"encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k"}


def _dl_tensors(state: dict[str, Tensor], where: Path) -> tuple[dict[str, Tensor], int | None]:
    """Canonical tensors and k (None: ReLU `AutoEncoder`) from a dictionary_learning state dict, dispatched on keys."""
    keys = set(state)
    if keys == DL_STANDARD:
        b_dec, k = state["bias"], None
    elif DL_TOPK <= keys <= DL_TOPK | {"threshold"}:
        b_dec, k = state["b_dec"], int(state["k"])
    else:
        raise UnknownFormatError(
            f"{where}: unsupported dictionary_learning state dict with keys {sorted(keys)}; supported: AutoEncoder "
            f"{sorted(DL_STANDARD)} and AutoEncoderTopK {sorted(DL_TOPK)}"
        )
    # decoder is nn.Linear(d_sae, d_in): its weight is [d_in, d_sae], dictionary vectors are columns.
    W_enc, W_dec = state["encoder.weight"].T, state["decoder.weight"].T
    tensors = {"W_enc": W_enc, "b_enc": state["encoder.bias"], "W_dec": W_dec, "b_dec": b_dec}
    return tensors, k


def load_dictionary_learning(folder: Path, *, device: Any = None, dtype: torch.dtype | None = None) -> SAE:
    """dictionary_learning's `ae.pt` (+ `config.json`, whose trainer.activation_dim / dict_size are checked)."""
    weights_path, cfg_path = folder / DL_WEIGHTS, folder / DL_CONFIG
    state = read_torch_state(weights_path)
    tensors, k = _dl_tensors(state, weights_path)
    d_sae, d_in = _matrix_shape(state, "encoder.weight", weights_path)
    raw = read_json(cfg_path) if cfg_path.is_file() else {}
    trainer = raw.get("trainer") or {}
    if (trainer.get("activation_dim"), trainer.get("dict_size")) not in ((None, None), (d_in, d_sae)):
        raise ShapeMismatchError(
            f"{weights_path}: encoder.weight is {(d_sae, d_in)}, but {cfg_path} says activation_dim="
            f"{trainer.get('activation_dim')}, dict_size={trainer.get('dict_size')}"
        )
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, activation="topk" if k else "relu", k=k, apply_b_dec_to_input=True)
    meta = {"format": "dictionary_learning", "path": str(folder), "filename": DL_WEIGHTS, "cfg": raw}
    return assemble_sae(cfg, tensors, where=str(weights_path), cfg_where=str(cfg_path), meta=meta, device=device, dtype=dtype)


LOADERS: dict[str, Loader] = {
    "original": load_original,
    "saelens": load_saelens,
    "sparsify": load_sparsify,
    "dictionary_learning": load_dictionary_learning,
}


# ----- detection and dispatch ----------------------------------------------------------------------------------------
FILE_FORMATS = {
    WEIGHTS_FILE: "saelens", SPARSITY_FILE: "saelens", SPARSIFY_WEIGHTS: "sparsify", DL_WEIGHTS: "dictionary_learning",
}  # fmt: skip


def _detect_in_folder(folder: Path) -> tuple[str, Path]:
    files = sorted(p.name for p in folder.iterdir())
    for marker, fmt in FILE_FORMATS.items():
        if marker in files and marker != SPARSITY_FILE:
            return fmt, folder
    originals = [f for f in files if f.endswith(".pt") and f"{f[:-3]}_cfg.json" in files]
    if len(originals) == 1:
        return "original", folder / originals[0]
    hint = f"; it holds {len(originals)} original checkpoints: pass a name, e.g. {originals[0][:-3]!r}" if originals else ""
    raise UnknownFormatError(
        f"no SAE checkpoint format recognised in {folder}: found {files[:30]}; known formats: {list(FORMATS)} "
        f"(saelens: {CFG_FILE} + {WEIGHTS_FILE}; sparsify: {CFG_FILE} + {SPARSIFY_WEIGHTS}; dictionary_learning: "
        f"{DL_WEIGHTS} + {DL_CONFIG}; original: {{v}}.pt + {{v}}_cfg.json)" + hint
    )


def detect_format(path: Path) -> tuple[str, Path]:
    """(format, target): target is the checkpoint folder, or for the original format the `{v}.pt` file."""
    if path.is_dir():
        return _detect_in_folder(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    if path.name in FILE_FORMATS:
        return FILE_FORMATS[path.name], path.parent
    if path.name in (CFG_FILE, DL_CONFIG):
        return _detect_in_folder(path.parent)
    if path.name.endswith("_cfg.json"):
        return "original", path.with_name(path.name[: -len("_cfg.json")] + ".pt")
    if path.suffix in (".pt", ".pth"):
        return "original", path
    raise UnknownFormatError(f"cannot tell the checkpoint format of {path}; pass format= one of {list(FORMATS)}")


def target_for(path: Path, fmt: str) -> Path:
    """The loader target for an explicitly chosen format: a folder, or (original) the `.pt` file."""
    if fmt not in LOADERS:
        raise UnknownFormatError(f"unknown format {fmt!r}; known formats: {list(FORMATS)}")
    if fmt == "original":
        if path.is_dir():
            return _detect_in_folder(path)[1]
        return path.with_name(path.name[: -len("_cfg.json")] + ".pt") if path.name.endswith("_cfg.json") else path
    return path.parent if path.is_file() else path


def resolve_name(folder: Path, name: str) -> Path:
    """`folder/name` if present, else the original checkpoint `folder/{v}.pt` (aliases run1 -> 25, run2 -> 47)."""
    stem = NEEL_ALIASES.get(name, name).removesuffix(".pt")
    candidates = [folder / name, folder / f"{stem}.pt"]
    for c in candidates:
        if c.exists():
            return c
    found = sorted(p.name for p in folder.iterdir())[:30] if folder.is_dir() else "nothing (no such folder)"
    raise MissingFileError(f"no checkpoint {name!r} in {folder}: looked for {[str(c) for c in candidates]}; found {found}")


def load_local(
    path: str | Path, name: str | None = None, *, format: str | None = None, device: Any = "cpu", dtype: torch.dtype | None = None
) -> SAE:
    """Load an SAE from a local folder or file (optionally `name` inside folder `path`), in any known format."""
    p = Path(path).expanduser()
    if name is not None:
        p = resolve_name(p, name)
    if format is not None:
        fmt, target = format, target_for(p, format)
    else:
        fmt, target = detect_format(p)
    logger.info("loading %s checkpoint %s", fmt, target)
    return LOADERS[fmt](target, device=device, dtype=dtype)


__all__ = ["FORMATS", "NEEL_ALIASES", "LOADERS", "detect_format", "resolve_name", "load_local", "load_original",
           "load_sparsify", "load_dictionary_learning", "original_cfg_path"]  # fmt: skip
