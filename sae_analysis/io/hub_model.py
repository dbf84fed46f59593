"""TransformerLens models kept on the Hub in Neel Nanda's format, loaded through this project's Hub layer.

A repo such as `NeelNanda/GELU_1L512W_C4_Code` (gelu-1l, REPLICATION.md §2) holds `config.json` (TransformerLens keys) and
the weights `model_final.pth` (a plain state dict; `checkpoints/` holds earlier ones); its tokenizer lives in another repo
(`config.json`'s `tokenizer_name`, `NeelNanda/gpt-neox-tokenizer-digits`: `tokenizer.json` + `tokenizer_config.json`).
`HookedTransformer.from_pretrained` finds the weights by listing the repo through the Hub API, which offline mode refuses,
and reads the cache folder and endpoint frozen at import. Here every file is downloaded (or found in the cache) by
`sae_analysis.io.hub.download`, which reads HF_ENDPOINT / HF_HUB_OFFLINE / HF_HOME at call time, the weights file is
found by listing the cached snapshot when offline, and the model is built from the local files with TransformerLens's
own config conversion and weight processing (its defaults: fold_ln, center_writing_weights, center_unembed,
fold_value_biases), in fp32. So after one online run, HF_HUB_OFFLINE=1 loads the same model from the cache.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sae_analysis.io.errors import CorruptFileError, HubError, MissingFileError, SAELoadError
from sae_analysis.io.hub import commit_of, download, hub_settings, list_files

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

logger = logging.getLogger(__name__)

NEEL_FORMAT_OWNERS = ("NeelNanda/", "ArthurConmy/", "Baidicoot/")
"""Repo owners whose TransformerLens models use the config.json + *final.pth layout (TransformerLens's own rule)."""
MODEL_CONFIG_FILE = "config.json"
FINAL_WEIGHTS_SUFFIX = "final.pth"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
"""A fast tokenizer's files, all required; `special_tokens_map.json` is fetched when the repo has it."""
OPTIONAL_TOKENIZER_FILES = ("special_tokens_map.json",)


def official_name(name: str) -> str | None:
    """TransformerLens's Hub repo for a model name or alias ("gelu-1l" -> "NeelNanda/GELU_1L512W_C4_Code"), else None."""
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(name)
    except ValueError:
        return None


def is_neel_format(name: str) -> bool:
    """Whether `name` is a TransformerLens model stored in the config.json + *final.pth layout."""
    repo = official_name(name)
    return repo is not None and repo.startswith(NEEL_FORMAT_OWNERS)


def final_weights_name(repo: str, revision: str | None = None) -> str:
    """The final weights file of a Neel-format repo (the one file ending in final.pth outside checkpoints/): listed on the
    Hub online, in the cached snapshot offline."""
    files = list_files(repo, revision=revision)
    found = sorted(f for f in files if f.endswith(FINAL_WEIGHTS_SUFFIX) and not f.startswith("checkpoints/"))
    if found:
        return found[0]
    if hub_settings().offline:
        raise HubError(
            f"{repo}@{revision or 'main'}: no *{FINAL_WEIGHTS_SUFFIX} in the local cache and HF_HUB_OFFLINE=1 forbids "
            f"downloading it: run once with network access (unset HF_HUB_OFFLINE); files are cached in "
            f"{hub_settings().cache_dir}"
        )
    raise MissingFileError(f"{repo}@{revision or 'main'} has no *{FINAL_WEIGHTS_SUFFIX} weights file (files: {files[:10]})")


def load_tokenizer(repo: str, revision: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(fast tokenizer with add_bos_token=True, provenance) from Hub repo `repo`; (None, provenance with the error) when
    its files cannot be had, so that the model still loads (token ids need no tokenizer)."""
    from transformers import AutoTokenizer

    try:
        paths = [download(repo, f, revision=revision) for f in TOKENIZER_FILES]
        for optional in OPTIONAL_TOKENIZER_FILES:
            if optional in list_files(repo, revision=revision):
                download(repo, optional, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(str(paths[0].parent), add_bos_token=True, use_fast=True)
    except (SAELoadError, OSError, ValueError) as e:
        logger.warning("tokenizer %s unavailable (%s); loading the model without a tokenizer", repo, e)
        return None, {"repo": repo, "revision": revision or "main", "error": str(e).splitlines()[0]}
    files = list(TOKENIZER_FILES)
    return tokenizer, {"repo": repo, "revision": revision or "main", "commit": commit_of(paths[0]), "files": files}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: never unpickle code
    except Exception as e:  # noqa: BLE001 - torch raises several types for a bad or unsafe pickle
        raise CorruptFileError(f"{path} is not a tensors-only state dict ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"{path} is not a state dict of tensors")
    return {k: v.to(torch.float32) for k, v in state.items()}


def load_neel_model(name: str, *, device: Any = "cpu", revision: str | None = None) -> HookedTransformer:
    """gelu-1l (or another Neel-format TransformerLens model) from the Hub or the local cache, processed as
    `HookedTransformer.from_pretrained(name)` does by default, fp32, eval mode. `model.provenance` names the model and
    tokenizer repos, revisions, commits and files (for the run's manifest)."""
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    repo = official_name(name)
    if repo is None or not repo.startswith(NEEL_FORMAT_OWNERS):
        raise ValueError(f"{name!r} is not a Neel-format TransformerLens model")
    cfg_path = download(repo, MODEL_CONFIG_FILE, revision=revision)
    weights_name = final_weights_name(repo, revision)
    weights = download(repo, weights_name, revision=revision)
    # TransformerLens converts the config itself; it reads the file we just cached (local_files_only, our cache folder).
    cfg = get_pretrained_model_config(repo, fold_ln=True, device=device, dtype=torch.float32, revision=revision,
                                      cache_dir=hub_settings().cache_dir, local_files_only=True)  # fmt: skip
    tokenizer, tok_meta = load_tokenizer(cfg.tokenizer_name) if cfg.tokenizer_name else (None, None)
    if tokenizer is None:
        cfg.tokenizer_name = None  # otherwise HookedTransformer would try the Hub itself
    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(_read_state_dict(weights), fold_ln=True, center_writing_weights=True,
                                      center_unembed=True, fold_value_biases=True)  # fmt: skip
    model.move_model_modules_to_device()
    model.provenance = {
        "model": {"name": name, "repo": repo, "revision": revision or "main", "commit": commit_of(cfg_path),
                  "files": [MODEL_CONFIG_FILE, weights_name]},
        "tokenizer": tok_meta,
    }  # fmt: skip
    return model.to(torch.float32).eval()


__all__ = ["is_neel_format", "load_neel_model", "load_tokenizer", "final_weights_name", "official_name"]
