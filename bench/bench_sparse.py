"""Training-step throughput of the sparse step (`step_impl='sparse'`), `auto`, the dense fused step and SAELens at planted
activation densities, each as a ratio to the dense 5-GEMM bound measured in the same run (`bench_train.gemm_run`).

A density is planted by shifting b_enc to per-latent order statistics of a probe batch (`plant_density_`); the learning
rate is set tiny (1e-7) so that it stays planted while the steps are timed (the step's cost does not depend on lr).
The GEMM bound and SAELens do not depend on the density and are timed once per round. The fused step is timed at every
density, right before `sparse` and `auto` on the same planted state, so that `auto / fused` is a paired comparison (an
earlier version timed fused once per round, first, and read auto-in-dense-mode as 0.86-0.95x fused on a loaded machine;
paired and quiet, it is 1.03-1.06x). `auto` is primed with the density its previous step would have measured
(`AutoStep.observe`), as in a run. `--kernels` times the
alternative kernels of each sparse product at one shape and density.

    .venv/bin/python bench/bench_sparse.py --shape demo --rounds 3     # d_in 512 → 4096, batch 1024 (a minute)
    .venv/bin/python bench/bench_sparse.py --shape run1 --steps 2      # d_in 2048 → 16384, batch 4096 (~10 min loaded)
    .venv/bin/python bench/bench_sparse.py --kernels --shape run1 --density 0.003
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import gemm_run, ours, saelens, synthetic_pool  # noqa: E402

from sae_analysis import SAE  # noqa: E402
from sae_analysis.memory import keep_freed_memory  # noqa: E402
from trainers.buffer import MixingBuffer  # noqa: E402
from trainers.config import TrainConfig  # noqa: E402
from trainers.source import TensorActivations  # noqa: E402
from trainers.sparse_step import AutoStep, SparseStep, plant_density_  # noqa: E402
from trainers.step import FusedStep  # noqa: E402
from trainers.train import make_optimizer, train_step  # noqa: E402

SHAPES = {"run1": (2048, 4096), "demo": (512, 1024), "small": (128, 256)}  # d_in, batch; d_sae = 8 d_in
DENSITIES = (0.001, 0.003, 0.01, 0.03, 0.1)


def config(d_in: int, B: int) -> TrainConfig:
    return TrainConfig(batch_size=B, buffer_mult=4, dict_mult=8, lr=1e-7, buffer_dtype="float32")


def planted_state(cfg: TrainConfig, pool: torch.Tensor, density: float) -> dict:
    """`bench_train.ours`'s state (SAE, optimizer, buffer) with `density` planted on a probe batch."""
    torch.manual_seed(0)
    sae = SAE(cfg.sae_config(pool.shape[1]))
    plant_density_(sae, pool[-min(len(pool) // 4, 1024):], density)
    src = TensorActivations(pool, chunk=cfg.batch_size * 2, wrap=True)
    buf = MixingBuffer(src, size=cfg.buffer_size, batch_size=cfg.batch_size, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float32, end_of_data="wrap")
    return {"sae": sae, "opt": make_optimizer(sae, cfg), "buffer": buf}


def timed(cfg: TrainConfig, pool: torch.Tensor, steps: int, state: dict, ws) -> dict:
    """`steps` timed steps with workspace `ws` (after one untimed step with it)."""
    state["ws"] = ws
    train_step(state["sae"], state["opt"], next(state["buffer"]), cfg, ws)
    r = ours(cfg, pool, steps, state)
    r["density"] = getattr(ws, "density", float("nan"))
    r["sparse_mode"] = getattr(ws, "sparse", None)
    return r


def saelens_subprocess(d_in: int, B: int, steps: int) -> dict | None:
    """`bench_train.saelens` in a fresh interpreter (SAELens with the default allocator, as its users run it)."""
    cmd = [sys.executable, __file__, "--saelens-worker", str(d_in), str(B), str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    return json.loads(out[-1]) if out and out[-1] != "null" else None


def rate(rs: list[dict], clock: str = "wall") -> float:
    """Tokens per second of wall time, or per CPU second × threads (`clock='cpu'`: steadier when other processes share
    the cores, as in bench_train)."""
    if not rs:
        return float("nan")
    scale = torch.get_num_threads() if clock == "cpu" else 1
    return sum(r["tokens"] for r in rs) / sum(r[clock] for r in rs) * scale


def bench_shape(shape: str, densities: tuple[float, ...], steps: int, rounds: int, with_saelens: bool) -> dict:
    d_in, B = SHAPES[shape]
    cfg, pool = config(d_in, B), synthetic_pool(8 * B, d_in)
    runs: dict[str, list[dict]] = {"gemm": [], "fused": [], "saelens": []}
    runs.update({f"{k}_{p}": [] for p in densities for k in ("fused", "sparse", "auto")})
    load0 = os.getloadavg()[0]
    for _ in range(rounds):
        runs["gemm"].append(gemm_run(B, d_in, 8 * d_in, torch.float32, steps))
        for p in densities:
            state = planted_state(cfg, pool, p)
            runs[f"fused_{p}"].append(timed(cfg, pool, steps, state, FusedStep()))
            runs["fused"].append(runs[f"fused_{p}"][-1])
            runs[f"sparse_{p}"].append(timed(cfg, pool, steps, state, SparseStep()))
            auto = AutoStep()
            auto.observe(runs[f"sparse_{p}"][-1]["density"])
            runs[f"auto_{p}"].append(timed(cfg, pool, steps, state, auto))
            del state
        if with_saelens and (r := saelens_subprocess(d_in, B, steps)) is not None:
            runs["saelens"].append(r)
    res = {"shape": shape, "d_in": d_in, "d_sae": 8 * d_in, "batch": B, "threads": torch.get_num_threads(),
           "load_start": load0, "load_end": os.getloadavg()[0], "rows": [],
           "gemm_gflops": 10 * d_in * 8 * d_in * rate(runs["gemm"]) / 1e9, "runs": runs}
    for clock in ("wall", "cpu"):
        res[clock] = {k: rate(runs[k], clock) for k in ("gemm", "fused", "saelens")}
    for p in densities:
        fu, sp, au = runs[f"fused_{p}"], runs[f"sparse_{p}"], runs[f"auto_{p}"]
        res["rows"].append({"planted": p, "measured": sum(r["density"] for r in sp) / len(sp),
                            "auto_sparse": [r["sparse_mode"] for r in au],
                            **{clock: {"fused": rate(fu, clock), "sparse": rate(sp, clock), "auto": rate(au, clock)}
                               for clock in ("wall", "cpu")}})
    return res


def table(res: dict) -> str:
    """BENCHMARKS.md rows: tokens/s (wall) and the ratios to the dense 5-GEMM bound of the same run, by wall time and by
    CPU time."""
    w, c = res["wall"], res["cpu"]
    head = (f"d_in {res['d_in']} → {res['d_sae']}, batch {res['batch']}, {res['threads']} threads, load "
            f"{res['load_start']:.1f} → {res['load_end']:.1f}. Bound {w['gemm']:.0f} tok/s ({res['gemm_gflops']:.0f} "
            f"GFLOP/s); fused {w['fused']:.0f} tok/s = {w['fused'] / w['gemm']:.2f} of the bound (CPU time "
            f"{c['fused'] / c['gemm']:.2f}); SAELens {w['saelens']:.0f} tok/s = {w['saelens'] / w['gemm']:.2f} "
            f"(CPU time {c['saelens'] / c['gemm']:.2f})\n\n")
    lines = ["| density planted (measured) | sparse tok/s | sparse / bound (wall; CPU) | auto tok/s | auto / bound (wall; CPU) "
             "| auto / fused at this density, paired (wall; CPU) | auto ran |", "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        mode = "sparse" if all(r["auto_sparse"]) else "dense" if not any(r["auto_sparse"]) else "mixed"
        rw, rc = r["wall"], r["cpu"]
        lines.append(f"| {100 * r['planted']:g} % ({100 * r['measured']:.2f} %) | {rw['sparse']:.0f} | "
                     f"**{rw['sparse'] / w['gemm']:.2f}**; {rc['sparse'] / c['gemm']:.2f} | {rw['auto']:.0f} | "
                     f"{rw['auto'] / w['gemm']:.2f}; {rc['auto'] / c['gemm']:.2f} | {rw['auto'] / rw['fused']:.2f}; "
                     f"{rc['auto'] / rc['fused']:.2f} | {mode} |")
    return head + "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="demo")
    p.add_argument("--densities", type=float, nargs="+", default=DENSITIES)
    p.add_argument("--steps", type=int, default=2, help="timed steps per measurement and round")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-saelens", action="store_true")
    p.add_argument("--kernels", action="store_true", help="time the alternative kernels of each sparse product")
    p.add_argument("--density", type=float, default=0.003, help="--kernels: planted density")
    p.add_argument("--saelens-worker", nargs=3, type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.saelens_worker:
        d_in, B, steps = a.saelens_worker
        print(json.dumps(saelens(config(d_in, B), synthetic_pool(8 * B, d_in), steps)))
        return
    keep_freed_memory()  # as train() does on CPU
    if a.kernels:
        from bench_sparse_kernels import kernel_table

        print(kernel_table(*SHAPES[a.shape], a.density))
        return
    res = bench_shape(a.shape, tuple(a.densities), a.steps, a.rounds, not a.no_saelens)
    print(json.dumps(res))
    print(table(res))


if __name__ == "__main__":
    main()
