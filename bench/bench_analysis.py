"""Benchmark of the analysis library at gelu-1l scale (d_in 2048, d_sae 16384), CPU, synthetic weights.

    .venv/bin/python bench/bench_analysis.py [--d-in 2048] [--d-sae 16384] [--threads N]

1. Weight-only analyses of one SAE (target < 10 s on 2 cores): `summarize`, i.e. feature_table (decoder + encoder
   fve / classes / kurtosis, enc-dec cosine, null-space fractions with a 2048 x 512 W_out, ULF columns) plus the Gaussian
   baselines and the ULF split. Separately: compare_summary against a second SAE (two chunked 16384 x 16384 best-match
   cosine passes: 2.2 TFLOP of GEMM, so bound by the machine's GEMM rate, not by this code).
2. Frequency pass: `frequencies_from_activations` over synthetic activations vs the bare encoder GEMM `x @ W_enc` on the
   same batches; reports tokens/s of both and their ratio.
The machine is shared: numbers are indicative. Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from sae_analysis import SAE, SAEConfig
from sae_analysis.frequency import FrequencyResult, frequencies_from_activations
from sae_analysis.table import compare_summary, feature_table, summarize


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def make_sae(d_in: int, d_sae: int, seed: int) -> SAE:
    torch.manual_seed(seed)
    sae = SAE(SAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.b_enc.normal_(-0.05, 0.02)
    return sae


def synthetic_freq(d_sae: int, seed: int) -> FrequencyResult:
    """A bimodal log-frequency profile (half ULF near 1e-6, half near 1e-3), like gelu-1l's."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.where(torch.arange(d_sae) % 2 == 0, -6.0, -3.0).double()
    freq = 10 ** (centre + 0.3 * torch.randn(d_sae, generator=g, dtype=torch.float64))
    return FrequencyResult(freq, torch.full((d_sae,), -1), 0, float(freq.sum()), "synthetic")


def bench_weights(d_in: int, d_sae: int) -> None:
    a, b = make_sae(d_in, d_sae, 0), make_sae(d_in, d_sae, 1)
    fa, fb = synthetic_freq(d_sae, 0), synthetic_freq(d_sae, 1)
    W_out = torch.randn(d_in, d_in // 4)
    summarize(make_sae(64, 256, 2), freq=synthetic_freq(256, 2), W_out=torch.randn(64, 16))  # warm-up (LAPACK, threads)
    dt, _ = timed(lambda: summarize(a, freq=fa, W_out=W_out))
    print(f"  summarize: every single-SAE analysis        {dt:6.2f} s   (target < 10 s)")
    dt, _ = timed(lambda: feature_table(a, freq=fa, W_out=W_out))
    print(f"    of which feature_table                    {dt:6.2f} s")
    dt, _ = timed(lambda: compare_summary(a, b, freq_a=fa, freq_b=fb))
    tflop = 2 * 2 * d_sae * d_sae * d_in / 1e12
    print(f"  compare_summary (enc + dec best match)      {dt:6.2f} s   ({tflop:.1f} TFLOP of cosine GEMMs: GEMM-bound)")


def bench_frequency(d_in: int, d_sae: int, batch: int, n_batches: int) -> None:
    sae = make_sae(d_in, d_sae, 0)
    g = torch.Generator().manual_seed(0)
    xs = [torch.relu(torch.randn(batch, d_in, generator=g)) for _ in range(n_batches)]
    W = sae.W_enc.detach()
    with torch.no_grad():
        _ = xs[0] @ W  # warm-up
        dt_gemm, _ = timed(lambda: [x @ W for x in xs])
        dt_freq, _ = timed(lambda: frequencies_from_activations(sae, xs))
    n = batch * n_batches
    gemm_rate, freq_rate = n / dt_gemm, n / dt_freq
    gflops = 2 * n * d_in * d_sae / dt_gemm / 1e9
    print(f"  encoder GEMM only      {gemm_rate:9.0f} tokens/s  ({gflops:.0f} GFLOP/s)")
    print(f"  frequency pass         {freq_rate:9.0f} tokens/s")
    print(f"  ratio freq / GEMM      {freq_rate / gemm_rate:9.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-in", type=int, default=2048)
    p.add_argument("--d-sae", type=int, default=16384)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--n-batches", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, d_in {args.d_in}, d_sae {args.d_sae}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")  # fmt: skip
    print("weight-only analyses:")
    bench_weights(args.d_in, args.d_sae)
    print(f"frequency pass ({args.n_batches} x {args.batch} tokens):")
    bench_frequency(args.d_in, args.d_sae, args.batch, args.n_batches)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
