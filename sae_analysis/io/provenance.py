"""The provenance stamp every written artefact carries: git commit of the checkout, interpreter, platform and library
versions. One helper for the demo builder's manifest and `paper_figures.py`'s manifest."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("sae-analysis", "torch", "transformer_lens", "numpy", "safetensors", "huggingface_hub", "matplotlib", "scipy")
"""Distributions whose versions a stamp records (None where one is not installed)."""


def git(*argv: str, cwd: str | Path | None = None) -> str:
    """Output of a git command in the checkout holding `cwd` (default: this package's), or '' where git or the
    repository is missing."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", *argv], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def version(name: str) -> str | None:
    """Installed version of distribution `name`, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def stamp(packages: tuple[str, ...] = PACKAGES, *, cwd: str | Path | None = None) -> dict[str, Any]:
    """git commit (None outside a repository) and whether tracked files differ from it, Python, platform, machine, torch
    threads and the versions of `packages`."""
    import torch

    commit = git("rev-parse", "HEAD", cwd=cwd) or None
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", cwd=cwd)) if commit else None
    return {"git_commit": commit, "git_dirty": dirty, "python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "torch_threads": torch.get_num_threads(),
            "versions": {name: version(name) for name in packages}}  # fmt: skip


def digest(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """sha256 of a file, or of a folder as the sha256 of its sorted 'relative/path sha256' lines (every file below it),
    so that a manifest pins local inputs the way a commit pins Hub ones."""
    import hashlib

    path = Path(path)
    if path.is_dir():
        lines = [f"{p.relative_to(path).as_posix()} {digest(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def array_digest(values: Any) -> str:
    """sha256 of an array's dtype, shape and bytes (e.g. the evaluation tokens a run used)."""
    import hashlib

    import numpy as np

    a = np.ascontiguousarray(values.cpu().numpy() if hasattr(values, "cpu") else np.asarray(values))
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()
