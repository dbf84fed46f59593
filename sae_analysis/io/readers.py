"""Safe, atomic file primitives shared by the format loaders: JSON, tensor-only pickles, safetensors.

Pickles are always read with `torch.load(..., weights_only=True)`: a file whose unpickling would build arbitrary
objects (and so could run code) is refused with `UnsafePickleError`, never executed. Writes go to a temporary file in
the destination folder and are then moved into place with `os.replace`, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sae_analysis.io.errors import CorruptFileError, MissingFileError, UnsafePickleError


def require_file(path: Path, hint: str = "") -> Path:
    """`path` if it is an existing file, else `MissingFileError` naming it (and what to do)."""
    if not path.is_file():
        raise MissingFileError(f"missing file {path}" + (f": {hint}" if hint else ""))
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; `CorruptFileError` when truncated, not JSON, or not an object."""
    require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path} is not valid JSON ({e}); the file may be truncated: re-download or re-save it") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path} holds a JSON {type(data).__name__}, expected an object of config keys")
    return data


def read_torch_state(path: Path) -> dict[str, Tensor]:
    """A dict of tensors from a torch pickle, loaded with `weights_only=True` on CPU."""
    require_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(
            f"refused to unpickle {path}: it holds objects other than tensors, and loading it could run code "
            f"(torch.load with weights_only=True said: {str(e).splitlines()[0]}). Only load files you trust; "
            "convert trusted ones to safetensors"
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, ... on truncated or non-torch files
        msg = f"cannot read {path} as a torch checkpoint ({type(e).__name__}: {e}); it may be truncated or corrupt"
        raise CorruptFileError(msg) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CorruptFileError(f"{path} does not hold a state dict of tensors (got {type(state).__name__})")
    return state


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file, on CPU."""
    require_file(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises SafetensorError (a plain Exception subclass) on bad headers
        raise CorruptFileError(f"cannot read {path} as safetensors ({e}); the file may be truncated or corrupt") from None


def atomic_write(path: Path, write: Callable[[Path], None], *, durable: bool = False) -> None:
    """Call `write(tmp)` on a temporary path in `path`'s folder, then move it onto `path` with `os.replace`. With
    `durable`, the file is flushed to disk (fsync) before the move, so a crash right after cannot leave it empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_folder(new: Path, folder: Path) -> Path:
    """Put the finished folder `new` in `folder`'s place: the old folder is renamed aside first and deleted last, so a
    reader sees either the old or the new folder, never a mix."""
    new, folder = Path(new), Path(folder)
    old = folder.parent / f".{folder.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def atomic_folder(folder: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a fresh temporary sibling folder of `folder`, then `replace_folder` it into place; on an
    error the temporary folder is removed and `folder` is left as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_folder(tmp, folder)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write `data` as indented JSON."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"))


def write_safetensors(path: Path, tensors: dict[str, Tensor]) -> None:
    """Atomically write contiguous CPU copies of `tensors` as safetensors."""
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(data, str(tmp)))


__all__ = ["require_file", "read_json", "read_torch_state", "read_safetensors", "atomic_write", "replace_folder", "atomic_folder",
           "write_json", "write_safetensors"]
