"""Alternative kernels for each sparse product of `SparseStep`, timed at one shape and planted density (best of 3),
next to the dense GEMM each replaces. Run through `bench/bench_sparse.py --kernels`."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch

from trainers.sparse_step import ActivePairs


def best_ms(fn: Callable[[], object], reps: int = 5) -> tuple[float, float]:
    """Best-of-`reps` (wall, process CPU) milliseconds: CPU time is steadier on a shared machine."""
    fn()
    best = (float("inf"), float("inf"))
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        best = (min(best[0], time.perf_counter() - t), min(best[1], time.process_time() - c))
    return 1e3 * best[0], 1e3 * best[1]


def gathered_dot(p: ActivePairs, a: torch.Tensor, b: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Sampled product by gathering both rows of each pair and a batched dot (`bmm`), in chunks."""
    out, row = torch.empty_like(p.values), p.row_t[torch.argsort(p.perm)]
    for s in range(0, p.nnz, chunk):
        r, c = row[s:s + chunk], p.col[s:s + chunk]
        out[s:s + chunk] = torch.bmm(a.index_select(0, r).unsqueeze(1), b.index_select(0, c).unsqueeze(2)).view(-1)
    return out


def kernel_table(d_in: int, B: int, density: float) -> str:
    warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state")
    warnings.filterwarnings("ignore", "Sparse invariant checks are implicitly disabled")
    g = torch.Generator().manual_seed(0)
    d_sae = 8 * d_in
    x, W_enc = torch.randn(B, d_in, generator=g), torch.randn(d_in, d_sae, generator=g) / d_in**0.5
    W_dec, gx = torch.randn(d_sae, d_in, generator=g), torch.randn(B, d_in, generator=g)
    pre = x @ W_enc
    f = (pre - pre.sort(0).values[B - max(round(density * B), 1) - 1]).relu_()
    p = ActivePairs(f)
    csr = torch.sparse_csr_tensor(p.crow, p.col, p.values, (B, d_sae))
    csr_t = torch.sparse_csr_tensor(p.ccol, p.row_t, p.values[p.perm], (d_sae, B))
    coo = torch.sparse_coo_tensor(torch.stack([p.row_t[torch.argsort(p.perm)], p.col]), p.values, (B, d_sae))
    out_t = torch.empty(d_in, d_sae)
    rows = {
        "active pairs: ActivePairs (flat nonzero + argsort)": lambda: ActivePairs(f),
        "active pairs: f.to_sparse_csr()": lambda: f.to_sparse_csr(),
        "f @ W_dec: embedding_bag per token (kept)": lambda: p.token_sums(W_dec, p.values),
        "f @ W_dec: CSR torch.sparse.mm": lambda: torch.sparse.mm(csr, W_dec),
        "f @ W_dec: COO torch.sparse.mm": lambda: torch.sparse.mm(coo, W_dec),
        "f @ W_dec: dense mm": lambda: f @ W_dec,
        "fᵀ @ g: embedding_bag per latent (kept)": lambda: p.latent_sums(gx, p.values),
        "fᵀ @ g: CSR of fᵀ, torch.sparse.mm": lambda: torch.sparse.mm(csr_t, gx),
        "fᵀ @ g: CSR .t() @ g": lambda: csr.t() @ gx,
        "fᵀ @ g: dense mm": lambda: f.T @ gx,
        "g·W_dec at pairs: sampled_addmm on CSR (kept)": lambda: p.sampled_dot(gx, W_dec),
        "g·W_dec at pairs: gathered rows + bmm": lambda: gathered_dot(p, gx, W_dec),
        "g·W_dec at pairs: dense mm (then mask)": lambda: gx @ W_dec.T,
        "xᵀ @ g_pre: embedding_bag per latent + transposed copy (kept)":
            lambda: out_t.copy_(p.latent_sums(x, p.values).T),
        "xᵀ @ g_pre: dense @ CSR": lambda: x.T @ csr,
        "xᵀ @ g_pre: CSR of g_preᵀ @ x, transposed copy": lambda: out_t.copy_(torch.sparse.mm(csr_t, x).T),
        "xᵀ @ g_pre: dense mm": lambda: x.T @ f,
    }
    lines = [f"d_in {d_in} → {d_sae}, batch {B}, density {p.nnz / f.numel():.4f} ({p.nnz} pairs), "
             f"{torch.get_num_threads()} threads", "", "| operation: kernel | wall ms | CPU ms |",
             "|---|---|---|"]
    for name, fn in rows.items():
        wall, cpu = best_ms(fn)
        lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} |")
    return "\n".join(lines)
