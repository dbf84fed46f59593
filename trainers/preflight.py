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
    """A run saved on N ranks resumes on N ranks, or on another count where its saved data state can be re-split
    (`trainers.ddp_state.resplit_state`)."""
    from trainers.ddp_state import saved_world_size

    saved = saved_world_size(out)
    if saved is None or saved == world_size:  # no saved state: --resume starts the run
        return
    reason = _resplit_reason(out)
    if reason is not None:
        flag = f"--nproc {saved}" if saved > 1 else "no --nproc (or --nproc 1)"
        raise UsageError(f"{out} was saved by a run on {saved} rank(s), not {world_size}, and cannot be re-split "
                         f"({reason}): resume it with {flag}")


def _resplit_reason(out: Path) -> str | None:
    """Why the saved state cannot be re-split (read from the JSON metadata of its files only), or None."""
    from trainers.checkpoint import read_state_meta
    from trainers.ddp_state import rank_state_path, read_rank_meta
    from trainers.ddp_state import resplit_refusal as refusal

    meta = read_state_meta(out) or {}
    world = int(meta.get("world_size", 1))
    if world == 1:
        return refusal([({}, meta)])
    metas = []
    for r in range(world):
        path = rank_state_path(out, r, int(meta.get("step", -1)))
        if not path.exists():
            return f"missing {path}"
        metas.append(({}, read_rank_meta(path)))
    return refusal(metas)


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
