"""Training throughput of the trainer at gelu-1l run-1 shapes (d_in 2048, d_sae 16384, batch 4096), fp32 and bf16,
next to the machine's GEMM rate measured in the same run, plus the share of wall time spent refilling the buffer and, when
sae-lens is installed, SAELens's own trainer (`SAETrainer.fit` on a `StandardTrainingSAE`, wandb off) fed the same
synthetic batches, interleaved with ours (in a fresh interpreter each round, so it runs with the default allocator, as its
users run it; --saelens-inproc also times it in this process, where our glibc setting speeds it up too).

Real FLOPs per token = 10 · d_in · d_sae: forward 2 GEMMs (x @ W_enc, f @ W_dec), backward 3 (grad W_dec, grad f,
grad W_enc; no input gradient). Each fp32 step takes ~10 s on 2 CPU cores: run with nothing else heavy going.

    .venv/bin/python bench/bench_train.py            # full shapes, ~4 minutes on 2 cores
    .venv/bin/python bench/bench_train.py --small    # d_in 256, seconds (smoke test)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import torch

from sae_analysis import SAE
from sae_analysis.memory import keep_freed_memory
from trainers.buffer import MixingBuffer
from trainers.config import TrainConfig
from trainers.source import TensorActivations
from trainers.sparse_step import make_workspace
from trainers.train import make_optimizer, train_step


def gemm_seconds(B: int, d_in: int, d_sae: int, dtype: torch.dtype, reps: int) -> tuple[float, float]:
    """Best-of-`reps` (wall, CPU) time of the 5 GEMMs of one training step, into preallocated outputs."""
    g = torch.Generator().manual_seed(0)
    x, W_enc = torch.randn(B, d_in, generator=g).to(dtype), torch.randn(d_in, d_sae, generator=g).to(dtype)
    W_dec, f = torch.randn(d_sae, d_in, generator=g).to(dtype), torch.randn(B, d_sae, generator=g).to(dtype)
    o_f, o_x = torch.empty(B, d_sae, dtype=dtype), torch.empty(B, d_in, dtype=dtype)
    o_dec, o_enc = torch.empty(d_sae, d_in, dtype=dtype), torch.empty(d_in, d_sae, dtype=dtype)

    def step() -> None:
        torch.mm(x, W_enc, out=o_f)  # forward: pre-activations
        torch.mm(f, W_dec, out=o_x)  # forward: reconstruction
        torch.mm(f.T, o_x, out=o_dec)  # backward: grad W_dec
        torch.mm(o_x, W_dec.T, out=o_f)  # backward: grad f
        torch.mm(x.T, f, out=o_enc)  # backward: grad W_enc

    step()
    best = (float("inf"), float("inf"))
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        step()
        best = min(best, (time.perf_counter() - t, time.process_time() - c))
    return best


def synthetic_pool(n: int, d_in: int) -> torch.Tensor:
    """Non-negative, sparse-ish activations shaped like post-GELU MLP outputs."""
    g = torch.Generator().manual_seed(1)
    return torch.relu(torch.randn(n, d_in, generator=g) - 0.5)


def ours(cfg: TrainConfig, pool: torch.Tensor, steps: int, state: dict) -> dict:
    """`steps` timed steps of `train_step` fed by the real MixingBuffer (state persists across rounds; 1 warm-up step)."""
    if "sae" not in state:
        torch.manual_seed(0)
        state["sae"] = SAE(cfg.sae_config(pool.shape[1]))
        state["opt"] = make_optimizer(state["sae"], cfg)
        src = TensorActivations(pool, chunk=cfg.batch_size * 2, wrap=True)
        state["buffer"] = MixingBuffer(src, size=cfg.buffer_size, batch_size=cfg.batch_size,
                                       generator=torch.Generator().manual_seed(0), dtype=torch.bfloat16, end_of_data="wrap")
        state["ws"] = make_workspace(cfg.step_impl)
        train_step(state["sae"], state["opt"], next(state["buffer"]), cfg, state["ws"])
    buf = state["buffer"]
    refill0, t, cpu = buf.refill_seconds, time.perf_counter(), time.process_time()
    for _ in range(steps):
        train_step(state["sae"], state["opt"], next(buf), cfg, state["ws"])
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "refill": buf.refill_seconds - refill0, "tokens": steps * cfg.batch_size}


def saelens(cfg: TrainConfig, pool: torch.Tensor, steps: int) -> dict | None:
    """SAELens's trainer on the same batches: `fit` for steps + 1 steps, timed from the second batch request."""
    try:
        from sae_lens import SAETrainer, StandardTrainingSAE, StandardTrainingSAEConfig
        from sae_lens.config import LoggingConfig, SAETrainerConfig
    except ImportError:
        return None
    d_in, B = pool.shape[1], cfg.batch_size
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_in * cfg.dict_mult, l1_coefficient=1.0,
                                                        apply_b_dec_to_input=True, dtype="float32", device="cpu"))
    stamps: list[tuple[float, float]] = []

    def batches() -> Iterator[torch.Tensor]:
        i = 0
        while True:
            stamps.append((time.perf_counter(), time.process_time()))
            yield pool[(i * B) % (len(pool) - B):][:B].float()
            i += 1

    tcfg = SAETrainerConfig(total_training_samples=(steps + 1) * B, train_batch_size_samples=B, lr=cfg.lr, lr_end=cfg.lr,
                            adam_beta1=cfg.beta1, adam_beta2=cfg.beta2, autocast=cfg.autocast_bf16,
                            logger=LoggingConfig(log_to_wandb=False))
    SAETrainer(tcfg, sae, batches()).fit()
    return {"wall": time.perf_counter() - stamps[1][0], "cpu": time.process_time() - stamps[1][1], "tokens": steps * B}


def summarise(res: dict, runs: dict[str, list[dict]]) -> None:
    """Rates from totals, per wall second and per process CPU second (x threads: less sensitive to other processes
    sharing the cores), and the ratios the issue asks for."""
    for name, rs in runs.items():
        if rs:
            res[f"{name}_tok_s"] = sum(r["tokens"] for r in rs) / sum(r["wall"] for r in rs)
            res[f"{name}_tok_cpu_s"] = sum(r["tokens"] for r in rs) / sum(r["cpu"] for r in rs) * torch.get_num_threads()
    for key in ("tok_s", "tok_cpu_s"):
        res[f"ours_fp32_share_of_gemm_{key}"] = res[f"ours_fp32_{key}"] / res[f"gemm_fp32_{key}"]
        res[f"ours_bf16_share_of_gemm_{key}"] = res[f"ours_bf16_{key}"] / res[f"gemm_bf16_{key}"]
        res[f"bf16_over_fp32_{key}"] = res[f"ours_bf16_{key}"] / res[f"ours_fp32_{key}"]
        if runs["saelens_fp32"]:
            res[f"ours_over_saelens_fp32_{key}"] = res[f"ours_fp32_{key}"] / res[f"saelens_fp32_{key}"]
    for name in ("ours_fp32", "ours_bf16"):
        res[f"refill_share_{name}"] = sum(r["refill"] for r in runs[name]) / sum(r["wall"] for r in runs[name])


def gemm_run(B: int, d_in: int, d_sae: int, dtype: torch.dtype, reps: int) -> dict:
    """The 5 GEMMs of `reps` steps (timed after one warm-up each), wall and CPU time."""
    walls, cpus = zip(*(gemm_seconds(B, d_in, d_sae, dtype, 1) for _ in range(reps)))
    return {"tokens": B * reps, "wall": sum(walls), "cpu": sum(cpus)}


def saelens_subprocess(small: bool, steps: int) -> dict | None:
    """`saelens` in a fresh interpreter: SAELens as its users run it, without the allocator setting this process made
    for our trainer (which would also speed SAELens up; see --saelens-inproc)."""
    cmd = [sys.executable, __file__, "--saelens-worker", "--steps", str(steps)] + (["--small"] if small else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    return json.loads(out[-1]) if out and out[-1] != "null" else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="d_in 256 (smoke test)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per round and trainer")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds: GEMMs, ours, (ours autograd), SAELens")
    p.add_argument("--no-saelens", action="store_true")
    p.add_argument("--autograd", action="store_true", help="also time our fp32 step through autograd (step_impl='autograd')")
    p.add_argument("--saelens-inproc", action="store_true", help="also time SAELens in this process (with our allocator setting)")
    p.add_argument("--saelens-worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    d_in, B = (256, 1024) if a.small else (2048, 4096)
    base = dict(batch_size=B, buffer_mult=4, dict_mult=8)
    pool = synthetic_pool(8 * B, d_in)
    if a.saelens_worker:
        print(json.dumps(saelens(TrainConfig(**base), pool, a.steps)))
        return
    keep_freed_memory()  # as train() does on CPU
    runs: dict[str, list[dict]] = {k: [] for k in ("gemm_fp32", "ours_fp32", "ours_fp32_autograd", "saelens_fp32",
                                                   "saelens_fp32_inproc", "gemm_bf16", "ours_bf16")}
    states: dict[str, dict] = {k: {} for k in runs}
    for _ in range(a.rounds):
        runs["gemm_fp32"].append(gemm_run(B, d_in, 8 * d_in, torch.float32, a.steps))
        runs["ours_fp32"].append(ours(TrainConfig(**base), pool, a.steps, states["ours_fp32"]))
        if a.autograd:
            cfg = TrainConfig(**base, step_impl="autograd")
            runs["ours_fp32_autograd"].append(ours(cfg, pool, a.steps, states["ours_fp32_autograd"]))
        if not a.no_saelens and (r := saelens_subprocess(a.small, a.steps)) is not None:
            runs["saelens_fp32"].append(r)
        if a.saelens_inproc and (r := saelens(TrainConfig(**base), pool, a.steps)) is not None:
            runs["saelens_fp32_inproc"].append(r)
    states = {k: {} for k in runs}  # free the fp32 models
    for _ in range(a.rounds):
        runs["gemm_bf16"].append(gemm_run(B, d_in, 8 * d_in, torch.bfloat16, 2 * a.steps))
        cfg = TrainConfig(**base, autocast_bf16=True)
        runs["ours_bf16"].append(ours(cfg, pool, 2 * a.steps, states["ours_bf16"]))
    res: dict = {"threads": torch.get_num_threads(), "d_in": d_in, "d_sae": 8 * d_in, "batch": B,
                 "gemm_fp32_gflops": 10 * d_in * 8 * d_in * sum(r["tokens"] for r in runs["gemm_fp32"])
                 / sum(r["wall"] for r in runs["gemm_fp32"]) / 1e9}
    summarise(res, runs)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}, indent=1))


if __name__ == "__main__":
    main()
