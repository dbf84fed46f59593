"""Launching data-parallel training: the process group, stop signals, token shards and the `--nproc` / torchrun CLI.

    torchrun --nproc_per_node 2 -m trainers --preset demo --out runs/ddp      # one process per rank (torchrun)
    sae-analysis train --preset demo --out runs/ddp --nproc 2                  # the same: relaunches itself under torchrun

`trainers.cli.run` resolves the flags into a `TrainConfig` and `RunInputs` (refusing bad values before anything is
spawned). With `--nproc N > 1` it writes them, with the `DDPConfig`, to a launch file (JSON: the config's `to_dict` form)
and runs `python -m torch.distributed.run --standalone --nproc_per_node N -m trainers --launch-file FILE`; each rank
reads that file (`run_rank`), joins the group and trains its shard with `trainers.train.train` over a
`trainers.collective.TorchDistributed`. Processes started by torchrun directly with the training flags (WORLD_SIZE > 1)
resolve the same flags themselves.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.distributed as dist
from jaxtyping import Int
from torch import Tensor

from trainers.config import TrainConfig
from trainers.interrupt import StopRequests

if TYPE_CHECKING:
    from trainers.cli_inputs import RunInputs

log = logging.getLogger(__name__)
Backend = Literal["auto", "gloo", "nccl"]
DDP_ARGS = ("nproc", "ddp_timeout", "ddp_backend", "launch_file")
EXIT_RANK_FAILURE = 3
"""Exit code of a rank whose run failed because another rank died or hung."""


@dataclass(frozen=True)
class DDPConfig:
    """How the ranks talk to each other."""

    backend: Backend = "auto"
    """'auto' = nccl when training on CUDA, gloo on CPU."""
    timeout_s: float = 600.0
    """Seconds any collective waits for the other ranks before the run fails. Must exceed the longest phase that rank 0
    runs alone (an evaluation, a checkpoint, a resampling)."""

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "gloo", "nccl"):
            raise ValueError(f"backend={self.backend!r}; expected 'auto', 'gloo' or 'nccl'")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")



def init_process_group(cfg: TrainConfig, ddp: DDPConfig) -> tuple[int, int]:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
    LOCAL_RANK), with `ddp.timeout_s` on the rendezvous and on every collective. Returns (rank, world_size)."""
    backend = ddp.backend if ddp.backend != "auto" else ("nccl" if cfg.device == "cuda" else "gloo")
    if cfg.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=ddp.timeout_s))
    return dist.get_rank(), dist.get_world_size()



def shard_sequences(tokens: Int[Tensor, "n_seq pos"], rank: int, world_size: int) -> Int[Tensor, "n_shard pos"]:
    """Rank `rank`'s contiguous, disjoint shard; every shard has `n_seq // world_size` sequences (the remainder is
    dropped so that all ranks run out of data at the same step)."""
    from trainers.source import shard_ranges

    (start, stop), = shard_ranges(len(tokens), rank, world_size)
    return tokens[start:stop]




def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--nproc`, `--ddp-timeout` and `--ddp-backend` flags (all default to None = not given)."""
    group = parser.add_argument_group("data-parallel training (torch.distributed DDP)")
    group.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="train on N processes of this machine (relaunches under torchrun; the batch stays global)")
    group.add_argument("--ddp-timeout", "--ddp_timeout", dest="ddp_timeout", type=float, default=None, metavar="SECONDS",
                       help=f"fail when a rank waits this long for the others (default {DDPConfig.timeout_s:g})")
    group.add_argument("--ddp-backend", "--ddp_backend", dest="ddp_backend", default=None, choices=["auto", "gloo", "nccl"],
                       help="default auto: nccl on CUDA, gloo on CPU")
    parser.add_argument("--launch-file", dest="launch_file", default=None, help=argparse.SUPPRESS)  # set by `launch`


def pop_distributed_arguments(args: argparse.Namespace) -> tuple[int | None, DDPConfig, Path | None]:
    """(--nproc, the DDPConfig of --ddp-timeout / --ddp-backend, --launch-file), removed from `args` (they are not
    TrainConfig fields)."""
    own = {k: vars(args).pop(k, None) for k in DDP_ARGS}
    ddp = DDPConfig(backend=own["ddp_backend"] or "auto", timeout_s=own["ddp_timeout"] or DDPConfig.timeout_s)
    return own["nproc"], ddp, Path(own["launch_file"]) if own["launch_file"] else None


def write_launch_file(path: Path, cfg: TrainConfig, inputs: RunInputs, ddp: DDPConfig) -> Path:
    """The resolved run for the ranks: the TrainConfig's JSON form, the run's inputs and the DDP settings."""
    from sae_analysis.io.readers import atomic_write

    doc = {"cfg": cfg.to_dict(), "inputs": inputs.to_dict(), "ddp": asdict(ddp)}
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))
    return path


def read_launch_file(path: Path) -> tuple[TrainConfig, RunInputs, DDPConfig]:
    from trainers.cli_inputs import RunInputs

    doc = json.loads(Path(path).read_text())
    return TrainConfig.from_dict(doc["cfg"]), RunInputs.from_dict(doc["inputs"]), DDPConfig(**doc["ddp"])


def launch(cfg: TrainConfig, inputs: RunInputs, nproc: int, ddp: DDPConfig) -> int:
    """Run `nproc` local ranks under torchrun, each reading the resolved config from a launch file (written here, removed
    when torchrun returns); returns torchrun's exit code."""
    with tempfile.TemporaryDirectory(prefix="sae_launch_") as tmp:
        path = write_launch_file(Path(tmp) / "launch.json", cfg, inputs, ddp)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m",
               "trainers", "--launch-file", str(path)]
        log.info("launching %d ranks: %s", nproc, " ".join(cmd))
        return subprocess.call(cmd)


def rank_data(cfg: TrainConfig, inputs: RunInputs, rank: int, world: int) -> tuple[Any, Any]:
    """(this rank's activation source over its token shard, the evaluator on rank 0 / None elsewhere)."""
    from sae_analysis.io.model import load_model
    from trainers.cli_inputs import load_sequences
    from trainers.evaluate import ModelEvaluator
    from trainers.source import ModelActivations

    model = load_model(inputs.model, device=cfg.device)
    train_seqs, eval_seqs = load_sequences(inputs.data, cfg, model, inputs.bos)
    source = ModelActivations(model, train_seqs, hook_name=cfg.hook_name, model_batch=cfg.model_batch,
                              autocast=cfg.model_autocast, wrap=cfg.end_of_data == "wrap", shard=(rank, world))
    evaluator = ModelEvaluator(model, eval_seqs, hook_name=cfg.hook_name, batch_size=min(cfg.model_batch, 64))
    return source, evaluator if rank == 0 else None


def run_rank(cfg: TrainConfig, inputs: RunInputs, ddp: DDPConfig) -> int:
    """One torchrun worker: join the group, train this rank's shard, leave. Exit code 0, 130 (interrupted) or
    EXIT_RANK_FAILURE when another rank died or hung."""
    from trainers.collective import TorchDistributed
    from trainers.ddp_reduce import RankFailureError
    from trainers.train import train

    rank, world = init_process_group(cfg, ddp)
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(levelname)s rank {rank}/{world} %(name)s: %(message)s")
    try:
        source, evaluator = rank_data(cfg, inputs, rank, world)
        result = train(cfg, source, out_dir=inputs.out, evaluator=evaluator, resume=inputs.resume,
                       progress=inputs.progress, collective=TorchDistributed(cfg.device))
    except RankFailureError as err:
        log.error("%s", err)
        # Leave at once: with a peer gone, tearing down the gloo group at interpreter exit can abort (SIGABRT,
        # "terminate called without an active exception") and hide this exit code. Every file is closed by now.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_RANK_FAILURE)
    dist.destroy_process_group()
    log.info("%s after %d steps (%d tokens) on %d ranks; final SAE in %s", result.stopped, result.step, result.tokens,
             world, inputs.out / "final")
    return 0 if result.stopped != "interrupted" else 130


__all__ = ["DDPConfig", "init_process_group", "shard_sequences", "StopRequests", "add_distributed_arguments",
           "pop_distributed_arguments", "write_launch_file", "read_launch_file", "launch", "rank_data", "run_rank",
           "EXIT_RANK_FAILURE"]
