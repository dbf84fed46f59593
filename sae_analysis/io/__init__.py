"""Loading and saving: `load_sae`, `save_sae`, `load_model`, `save_model`. The only package that touches files or the Hub.

    load_sae("NeelNanda/sparse_autoencoder", "run1")     # Hub repo + file stem or alias (run1 -> 25, run2 -> 47)
    load_sae("path/to/folder_or_file")                   # any known format, detected from the files present
    load_sae("demo", "seed1")                            # the embedded demo suite
    save_sae(sae, "out/my_sae")                          # native (SAELens) layout
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from sae_analysis.io import demo_paths
from sae_analysis.io.demo_paths import DEMO_NAME, demo_dir
from sae_analysis.io.disk import FORMATS, detect_format, load_local
from sae_analysis.io.errors import (
    CorruptFileError,
    HubError,
    MissingFileError,
    NonFiniteWeightsError,
    SAELoadError,
    ShapeMismatchError,
    UnknownFormatError,
    UnsafePickleError,
)
from sae_analysis.io.model import load_model, save_model
from sae_analysis.io.native import save_sae
from sae_analysis.io.runs import read_frequency_snapshots, read_metrics
from sae_analysis.io.tokens import hub_tokens, load_token_file, reshape_rows
from sae_analysis.sae import SAE

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _load_demo(name: str | None, **kw: Any) -> SAE:
    root = demo_paths.demo_dir()
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "model") if root.is_dir() else []
    if name is None:
        raise MissingFileError(f"load_sae('demo', NAME) needs a name; available in {root}: {available or 'none (not built)'}")
    if not (root / name).exists():
        raise MissingFileError(f"demo SAE {name!r} not found in {root}; available: {available or 'none (the demo is not built)'}")
    if kw.get("dtype") is None:  # stored in fp16 to fit the package; analyses want fp32
        kw["dtype"] = torch.float32
    return load_local(root / name, **kw)


def load_sae(
    source: str | Path,
    name: str | None = None,
    *,
    revision: str | None = None,
    format: str | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> SAE:
    """Load an SAE in canonical orientation from a local path, a Hub repo, or the demo suite.

    source: a local folder or file; "demo" (with name "seed1", "seed2", ...); or a Hub repo id "owner/name" (used when no
        such local path exists), downloaded through huggingface_hub's cache (HF_HUB_OFFLINE=1: cache only).
    name: a file stem or alias inside `source` ("25", "run1") or a sub-folder; None: `source` itself.
    revision: Hub branch, tag or commit to pin. format: one of FORMATS to skip detection.
    dtype: cast the weights (None: keep the checkpoint's dtype; for the demo, whose SAEs are stored in fp16, float32).
    Provenance (format, path, repo, revision, commit, filename, raw cfg) is recorded in `sae.meta`; a stored
    sparsity.safetensors sets `sae.log10_density`. Raises an `SAELoadError` subclass naming the file on any failure.
    """
    kw: dict[str, Any] = {"format": format, "device": device, "dtype": dtype}
    if str(source) == DEMO_NAME:
        return _load_demo(name, **kw)
    path = Path(source).expanduser()
    if path.exists() or isinstance(source, Path) or not _REPO_ID.match(str(source)):
        return load_local(path, name, **kw)
    from sae_analysis.io.hub import load_from_hub  # imports huggingface_hub: only when needed

    return load_from_hub(str(source), name, revision=revision, **kw)


__all__ = [
    "load_sae", "save_sae", "load_model", "save_model", "load_local", "detect_format", "FORMATS", "demo_dir",
    "SAELoadError", "MissingFileError", "CorruptFileError", "UnsafePickleError", "ShapeMismatchError",
    "NonFiniteWeightsError", "UnknownFormatError", "HubError", "hub_tokens", "reshape_rows", "load_token_file",
    "read_metrics", "read_frequency_snapshots",
]  # fmt: skip
