"""Checkpoints: the SAE in the native (SAELens) format plus a single trainer-state file, each written atomically.

    out_dir/checkpoints/<tokens>/   cfg.json + sae_weights.safetensors (+ sparsity.safetensors) + trainer_cfg.json
    out_dir/final/                  the same for the last step
    out_dir/state/trainer_state.safetensors   weights, Adam moments, tracker, buffer contents and RNG states (tensors)
                                              with every scalar (step, tokens, data position, config...) as JSON metadata

Only the latest trainer state is kept (it holds the whole buffer: ≈6.4 GB at run-1 size).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from sae_analysis import SAE
from sae_analysis.io.readers import atomic_folder, atomic_write

STATE_FILE = Path("state") / "trainer_state.safetensors"


def save_native(sae: SAE, folder: Path, trainer_cfg: dict[str, Any]) -> Path:
    """Write `sae` (native format, via `sae_analysis.io`) and the trainer config into `folder`, replacing it atomically:
    the files go to a temporary sibling folder that is renamed into place."""
    from sae_analysis.io.native import save_sae
    def write(tmp: Path) -> None:
        save_sae(sae, tmp)
        (tmp / "trainer_cfg.json").write_text(json.dumps(trainer_cfg, indent=1))

    return atomic_folder(Path(folder), write)


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into named tensors and JSON-able rest."""
    sd = opt.state_dict()
    tensors, rest = {}, {"param_groups": sd["param_groups"], "scalars": {}}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"opt/{i}/{k}"] = v
            else:
                rest["scalars"][f"{i}/{k}"] = v
    return tensors, rest


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        if name.startswith("opt/"):
            _, i, k = name.split("/", 2)
            state.setdefault(int(i), {})[k] = v
    for name, v in rest["scalars"].items():
        i, k = name.split("/", 1)
        state.setdefault(int(i), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def save_state(out_dir: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write the trainer state (tensors + JSON metadata) to `out_dir/state/trainer_state.safetensors`."""
    path = Path(out_dir) / STATE_FILE
    data = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(data, str(tmp), metadata={"json": json.dumps(meta)}), durable=True)
    return path


def load_state(out_dir: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The saved trainer state, or None if the run has none."""
    path = Path(out_dir) / STATE_FILE
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["json"])
    return load_file(str(path)), meta


def read_state_meta(out_dir: Path) -> dict[str, Any] | None:
    """Only the JSON metadata of the saved trainer state (cheap: no tensor is read), or None."""
    path = Path(out_dir) / STATE_FILE
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})["json"])


def prefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}/{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
