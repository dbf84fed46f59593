"""Scaling efficiency of data-parallel SAE training (`trainers.train` over `trainers.collective.TorchDistributed`) from
1 to N ranks on one machine.

Each configuration runs in fresh processes on synthetic non-negative sparse activations (no model), with the same global
batch, and reports the trainer's own steady-state rate (median `tokens_per_s` of the logged rows after the first, so
start-up and the first buffer fill are excluded). On CPU (gloo) it compares, on the same cores:

  * 1 rank, 1 thread, autograd step (what each rank runs under bf16 autocast)  -> the per-core baseline
  * 1 rank, 1 thread, fused step (the single-process default)
  * 1 rank, N threads, fused step (what one process gets from N cores)
  * N ranks x 1 thread (gloo; the gradients averaged by one flat all-reduce per step)

scaling efficiency = rate(N ranks) / (N x rate(1 rank, 1 thread, autograd)). On a shared, oversubscribed machine wall
rates measure each process's share of the cores, so the CPU time of all ranks per step (process time, every thread,
including start-up and the first fill) is printed too: its ratio to 1 rank's is the parallel overhead (communication,
per-rank duplicated work), independent of the load. On GPUs (--device cuda) each rank gets one GPU
(nccl) and the baseline is 1 rank on 1 GPU. Run with nothing else heavy going; the load average is printed with the results.

    .venv/bin/python bench/bench_ddp.py                        # CPU, 1 vs 2 ranks, d_in 256, d_sae 2048, batch 1024
    .venv/bin/python bench/bench_ddp.py --d-in 2048 --steps 12  # gelu-1l widths (slow on CPU)
    .venv/bin/python bench/bench_ddp.py --device cuda --nproc 2 --d-in 2048 --batch 4096 --steps 200
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def synthetic_pool(n: int, d_in: int, seed: int = 1) -> torch.Tensor:
    """Non-negative, sparse-ish activations shaped like post-GELU MLP outputs."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, d_in, generator=g) - 1.0)


def bench_config(args: argparse.Namespace, step_impl: str) -> object:
    from trainers import NoResample, TrainConfig

    return TrainConfig(d_in=args.d_in, dict_mult=args.dict_mult, batch_size=args.batch, buffer_mult=4, buffer_dtype="float32",
                       num_tokens=args.batch * args.steps, log_every_tokens=args.batch * max(1, args.steps // 8),
                       eval_every_tokens=10**9,
                       checkpoint_every_tokens=10**12, resample=NoResample(), end_of_data="wrap", device=args.device,
                       step_impl=step_impl,
                       model_name="synthetic", seed=0)


def worker(args: argparse.Namespace) -> None:
    """One process of one configuration (a rank when WORLD_SIZE > 1)."""
    from trainers import TensorActivations, train
    from trainers.collective import TorchDistributed
    from trainers.ddp_launch import DDPConfig, init_process_group

    logging.getLogger("trainers").setLevel(logging.ERROR)  # the synthetic pool wraps around: expected, not news
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = bench_config(args, args.step_impl)
    pool = synthetic_pool(4 * args.batch * 4, args.d_in)
    rank = 0
    if world > 1:
        rank, world = init_process_group(cfg, DDPConfig(timeout_s=600))
    shard = pool[rank * len(pool) // world:(rank + 1) * len(pool) // world]
    source = TensorActivations(shard, chunk=args.batch // world, wrap=True)
    cpu, wall = time.process_time(), time.perf_counter()
    train(cfg, source, out_dir=args.out, progress=False, collective=TorchDistributed() if world > 1 else None)
    times = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
    (Path(args.out) / f"times_rank{rank}.json").write_text(json.dumps(times))
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(args: argparse.Namespace, nproc: int, threads: int, step_impl: str) -> dict:
    """Launch one configuration; returns its steady-state rate from rank 0's metrics."""
    from sae_analysis.io.runs import read_metrics

    out = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    flags = ["--d-in", str(args.d_in), "--dict-mult", str(args.dict_mult), "--batch", str(args.batch), "--steps",
             str(args.steps), "--device", args.device, "--step-impl", step_impl, "--out", str(out), "--worker"]
    port, procs = free_port(), []
    for rank in range(nproc):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, __file__, *flags], env=env))
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError(f"configuration nproc={nproc} threads={threads} failed")
    rows = read_metrics(out).query("event == 'train'")
    rate = float(rows.tokens_per_s.iloc[1:].median())
    cpu = sum(json.loads((out / f"times_rank{r}.json").read_text())["cpu_s"] for r in range(nproc))
    return {"nproc": nproc, "threads": threads, "step_impl": step_impl, "tokens_per_s": rate,
            "ms_per_step": 1000 * args.batch / rate, "cpu_ms_per_step": 1000 * cpu / args.steps,
            "final_loss": float(rows.loss.iloc[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-in", dest="d_in", type=int, default=256)
    parser.add_argument("--dict-mult", dest="dict_mult", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1024, help="global batch (split over the ranks)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--nproc", type=int, default=2, help="ranks to compare with 1 rank")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--step-impl", dest="step_impl", default="autograd", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    n = args.nproc
    configs = [(1, 1, "autograd"), (1, 1, "fused"), (1, n, "fused"), (n, 1, "autograd"), (n, 1, "fused")] \
        if args.device == "cpu" else [(1, 1, "autograd"), (1, 1, "fused"), (n, 1, "autograd"), (n, 1, "fused")]
    t0 = time.time()
    results = [run_config(args, *c) for c in configs]
    base = results[0]["tokens_per_s"]
    print(f"d_in {args.d_in}, d_sae {args.d_in * args.dict_mult}, global batch {args.batch}, {args.steps} steps, "
          f"device {args.device}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}, {time.time() - t0:.0f} s")
    print("| ranks | threads/rank | step | tokens/s (wall) | ms/step | vs 1 rank, 1 thread, autograd | CPU ms/step |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['nproc']} | {r['threads']} | {r['step_impl']} | {r['tokens_per_s']:.0f} | {r['ms_per_step']:.1f} | "
              f"{r['tokens_per_s'] / base:.2f}x | {r['cpu_ms_per_step']:.1f} |")
    for ddp, one in ((results[-2], results[0]), (results[-1], results[1])):
        print(f"scaling efficiency, {ddp['step_impl']} step, 1 -> {n} ranks (wall): "
              f"{ddp['tokens_per_s'] / (n * one['tokens_per_s']):.2f}; CPU work per step, {n} ranks / 1 rank "
              f"(1.00 = no parallel overhead): {ddp['cpu_ms_per_step'] / one['cpu_ms_per_step']:.2f}")
    if args.device == "cpu":
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_train import gemm_seconds

        torch.set_num_threads(1)
        gemm_s = min(gemm_seconds(args.batch, args.d_in, args.d_in * args.dict_mult, torch.float32, 3)[0] for _ in range(3))
        print(f"GEMM bound (the 5 GEMMs of one step, 1 thread): {1000 * gemm_s:.1f} ms/step; 1 rank fused step = "
              f"{1000 * gemm_s / results[1]['ms_per_step']:.2f} of the GEMM rate")
    print(json.dumps({"args": vars(args), "results": results}))


if __name__ == "__main__":
    main()
