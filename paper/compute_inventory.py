"""Cached computations behind the inventory figures added by issue #12 (F4/F5 snapshot pairs, F11 rare-direction tokens,
F19 W_out spectrum, F22 latent statistics by frequency group). Like `paper.compute`: `sae_analysis` calls only, each result
cached under a stable name."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from paper.compute import CONTEXT, eval_tokens, frequencies, phase, table
from paper.context import Context
from paper.sources import RUN1_FINAL, Skip, checkpoint_tokens
from sae_analysis import case_study as cs
from sae_analysis.geometry import is_centred, null_space
from sae_analysis.metrics import COMMON_FREQ
from sae_analysis.sparsity import neuron_frac_max
from sae_analysis.ulf import ulf_cluster, ulf_mask

TOP_FEATURES = 20
"""Latents of highest encoder kurtosis drawn in F22's "Top Features in Neuron Basis" (Neel's scratch.py: 20)."""
RARE_CONTEXTS = 3
"""F11: the sequences with the largest rare-direction projection (Neel: top 3)."""


def snapshot_pair(ctx: Context, checkpoint: int, final: int = RUN1_FINAL) -> tuple[int, int]:
    """Indices of the frequency snapshots standing for run 1's `checkpoint` and `final` (F4: 21 vs 25, F5: 22 vs 25):
    the last snapshot is the final one, and the other is the one nearest the same fraction of training as `checkpoint` is
    of run 1 (21: 1,597.44M / 2,000M = 0.799; 22: 0.860). On the Hub, whose snapshots are those checkpoints, this is exact."""
    tokens = phase(ctx)["tokens"].astype(np.float64)
    if len(tokens) < 2:
        raise Skip(f"F4/F5 need at least two frequency snapshots, got {len(tokens)}")
    target = checkpoint_tokens(checkpoint) / checkpoint_tokens(final) * tokens[-1]
    return int(np.argmin(np.abs(tokens[:-1] - target))), len(tokens) - 1


def rare_tokens(ctx: Context, run: str) -> dict[str, np.ndarray]:
    """F11: per token of the evaluation sequences, mlp_acts @ mu (mu = mean encoder direction of the rare latents, §9.3);
    the windows (CONTEXT tokens around the maximum) of the RARE_CONTEXTS sequences with the largest maximum, flattened
    (`lengths` splits them), with each window's maximum, its position in the window and its sequence."""

    def compute() -> dict[str, Any]:
        src, sae = ctx.source, ctx.source.saes[run]
        mask = ulf_mask(frequencies(ctx, run).freq)
        if not bool(mask.any()):
            raise Skip("no rare latents, so there is no mean rare direction")
        mu = ulf_cluster(sae.W_enc.detach().T, mask).mean_direction
        tokens = eval_tokens(ctx)
        proj = cs.ulf_token_stats(src.model, sae, tokens, mu, mask, batch_size=ctx.setting("batch_size")).rare_proj
        best, where = proj.max(-1)
        seqs = best.topk(min(RARE_CONTEXTS, len(best))).indices.tolist()
        (before, after), windows, values, positions = CONTEXT, [], [], []
        for s in seqs:
            p = int(where[s])
            start, stop = max(0, p - before), p + after + 1
            windows.append(src.decode(tokens[s, start:stop].tolist()))
            values.append(proj[s, start:stop].numpy())
            positions.append(p - start)
        return {"tokens": np.array([t for w in windows for t in w]), "lengths": [len(w) for w in windows],
                "values": np.concatenate(values), "positions": positions, "seqs": seqs, "max": best[seqs].numpy(),
                "n_rare": int(mask.sum()), "n_tokens": int(tokens.numel())}  # fmt: skip

    return ctx.cache.arrays(f"rare_tokens_{run}", compute)


def w_out_spectrum(ctx: Context) -> dict[str, Any]:
    """F19: singular values of the model's W_out[0] (the matrix every null-space number uses), its numerical rank, and
    whether its writing weights are centred (TransformerLens's default processing; then rank <= d_model - 1)."""

    def compute() -> dict[str, Any]:
        W_out = ctx.source.model.W_out[0].detach().cpu()
        ns = null_space(W_out)
        return {"singular_values": ns.singular_values.numpy(), "rank": ns.rank, "centred": is_centred(W_out),
                "d_mlp": int(W_out.shape[0]), "d_model": int(W_out.shape[1])}  # fmt: skip

    return ctx.cache.arrays("w_out_spectrum", compute)


def by_commonness(ctx: Context, run: str) -> dict[str, np.ndarray]:
    """F22 (Neel's scratch.py on v25): encoder kurtosis ("Neuron Kurtosis"), encoder max weight over L1 norm ("Neuron
    Frac Max"), vocab kurtosis of the decoder's direct logit effect, is_common (freq > COMMON_FREQ), and the encoder
    columns of the TOP_FEATURES latents of highest encoder kurtosis."""

    def compute() -> dict[str, Any]:
        sae, model = ctx.source.saes[run], ctx.source.model
        W_enc = sae.W_enc.detach().float().cpu()
        kurt = table(ctx, run)["enc_kurtosis"]
        vocab = cs.vocab_kurtosis(sae.W_dec.detach().cpu(), model.W_out[0].detach().cpu(), model.W_U.detach().cpu())
        top = np.argsort(-np.nan_to_num(kurt, nan=-np.inf), kind="stable")[:TOP_FEATURES]
        return {"neuron_kurtosis": kurt, "neuron_frac_max": neuron_frac_max(W_enc.T).numpy(), "vocab_kurtosis": vocab.numpy(),
                "is_common": frequencies(ctx, run).freq.numpy() > COMMON_FREQ, "top_latents": top,
                "top_weights": W_enc[:, torch.from_numpy(top)].T.numpy()}  # fmt: skip

    return ctx.cache.arrays(f"by_commonness_{run}", compute)
