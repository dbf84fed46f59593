"""Computed arrays (.npz, no pickles) and numbers (.json) in one folder, written atomically and reused when present."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sae_analysis.io.readers import atomic_write


class Cache:
    """One folder of `name.npz` / `name.json` files; a name that exists is read back instead of computed."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def has(self, name: str) -> bool:
        """Whether `name` is cached (as arrays or as numbers)."""
        return (self.folder / f"{name}.npz").exists() or (self.folder / f"{name}.json").exists()

    def arrays(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, np.ndarray]:
        path = self.folder / f"{name}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        data = {k: _plain(v) for k, v in compute().items()}
        atomic_write(path, lambda tmp: _savez(tmp, data))
        return data

    def json(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        path = self.folder / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        data = json.loads(json.dumps(compute(), default=_jsonable))
        write_json(path, data)
        return data


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write that keeps key order (results.json's order is documented) and writes NaN as NaN."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n"))


def _plain(value: Any) -> np.ndarray:
    """A numpy array that loads without pickle: object arrays (strings from pandas) become unicode arrays."""
    arr = np.asarray(value)
    return arr.astype(str) if arr.dtype == object else arr


def _jsonable(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else str(v)


def _savez(path: Path, data: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object, so numpy does not append '.npz' to the temporary name
        np.savez(f, **data)
