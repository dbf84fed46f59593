"""Checks that `sae-analysis train` runs before it loads anything or spawns a rank: each refusal is one line naming the
fix (`sae_analysis.errors.UsageError` or `sae_analysis.io.errors.MissingFileError`, printed by the CLI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sae_analysis.errors import UsageError
from sae_analysis.io.errors import MissingFileError

if TYPE_CHECKING:
    from trainers.cli_inputs import RunInputs


def requested_world_size(nproc: int | None) -> int:
    """Ranks this command will train on: torchrun's WORLD_SIZE inside a worker, else `--nproc` (default 1)."""
    env = int(os.environ.get("WORLD_SIZE", "1"))
    return env if env > 1 else (nproc or 1)


def check_resume(out: Path, world_size: int) -> None:
    """A run saved on N ranks resumes on N ranks (each rank's data state belongs to its own shard)."""
    from trainers.ddp_state import saved_world_size

    saved = saved_world_size(out)
    if saved is not None and saved != world_size:  # no saved state: --resume starts the run
        flag = f"--nproc {saved}" if saved > 1 else "no --nproc (or --nproc 1)"
        raise UsageError(f"{out} was saved by a run on {saved} rank(s), not {world_size}: resume it with {flag}")


def check_model(spec: str) -> None:
    """A model given as a local folder must exist (names are resolved by `load_model` later)."""
    if spec == "demo":
        from sae_analysis.io.demo_paths import demo_dir

        folder = demo_dir() / "model"
        if not folder.is_dir():
            raise MissingFileError(f"the demo model is not installed: {folder} does not exist "
                                   "(run `sae-analysis demo build` or pass --model FOLDER)")
        return
    if spec.startswith((".", "/", "~")) and not Path(spec).expanduser().is_dir():
        raise MissingFileError(f"--model {spec}: no such model folder (pass a folder saved by save_model, 'demo' or a "
                               "TransformerLens model name)")


def check_data(spec: str) -> None:
    """A data source given as a local path must exist."""
    if spec == "demo" or spec.startswith("hub:"):
        return
    if not Path(spec).expanduser().exists():
        raise MissingFileError(f"--data {spec}: no such token file or folder (pass 'demo', hub:REPO or a .npy / .pt / "
                               ".safetensors / .parquet path)")


def preflight(inputs: RunInputs, nproc: int | None) -> None:
    """Every check above, in the order a user would fix them."""
    check_data(inputs.data)
    check_model(inputs.model)
    if inputs.resume:
        check_resume(inputs.out, requested_world_size(nproc))


__all__ = ["requested_world_size", "check_resume", "check_model", "check_data", "preflight"]
