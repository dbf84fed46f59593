"""The full-scale planted source: synthetic checkpoints shaped like the published ones (16,384 latents; 2,048 neurons by
default) with planted structure and planted outliers, so that every figure can be drawn, looked at and layout-checked at
the scale of the Hub run without the Hub (issue #16).

Planted, per SAE: 10 % 1-sparse decoder rows; a rare cluster (the second half of the latents) whose encoders share one
direction and whose biases keep them silent; and five outlier latents among the common ones: two with b_enc = -10 (the
bias panels of F21 at full scale), one with a 25x encoder norm, one with a 25x decoder norm, one with b_enc = +3.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from paper.options import Options
from paper.sources import DEFAULTS, RUNS, Source, setting
from sae_analysis import SAE, SAEConfig

OUTLIER_BIAS = -10.0
"""b_enc of the two planted bias outliers (the value seen in the full-scale F21 of issue #16)."""


def planted_sae(seed: int, d_sae: int, acts: torch.Tensor) -> SAE:
    """A random SAE on `acts`' d_in neurons with the planted structure and outliers of the module docstring. The common
    latents' biases are set from their pre-activation spread on `acts` [n, d_in] (z-scores drawn from 0.5 to 3.5), so
    their frequencies spread over about three decades, as trained latents' do."""
    d_in = acts.shape[1]
    torch.manual_seed(seed)
    sae = SAE(SAEConfig(d_in=d_in, d_sae=d_sae, hook_name="blocks.0.mlp.hook_post", model_name="planted"))
    n_sparse, rare = d_sae // 10, slice(d_sae // 2, d_sae)
    with torch.no_grad():
        rows = torch.arange(n_sparse) % d_in
        sae.W_dec[:n_sparse] = torch.eye(d_in)[rows] + 0.01 * torch.randn(n_sparse, d_in)
        sae.W_enc[:, rare] = (torch.randn(d_in, 1) + 0.3 * torch.randn(d_in, d_sae - d_sae // 2)) / d_in**0.5
        pre = acts @ sae.W_enc[:, : rare.start]
        sae.b_enc[: rare.start] = -pre.mean(0) - (0.5 + 3.0 * torch.rand(rare.start)) * pre.std(0)
        sae.b_enc[rare] = -4.0 - 2.0 * torch.rand(d_sae - rare.start)
        o = n_sparse  # the outliers: the first common latents after the 1-sparse ones
        sae.b_enc[o : o + 2] = OUTLIER_BIAS
        sae.W_enc[:, o + 2] *= 25.0
        sae.W_dec[o + 3] *= 25.0
        sae.b_enc[o + 4] = 3.0
    return sae


PLANTED_SNAPSHOT_TOKENS = 65_536
"""The token count the planted snapshots claim to be measured on (the hub's CPU default), so that F2/F4/F5 draw their
unresolved band and its legend entry at full scale, as on the hub."""


def _snapshots(d_sae: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seven checkpoints (the post's 9-25) of log frequencies with a planted step: 40 % of the latents drop by three
    decades from the fifth on, with a few dead ones at the -6.5 floor."""
    tokens = np.array([(c - 8) * 122_880_000 if c < 25 else 2_000_000_000 for c in (9, 12, 15, 18, 21, 22, 25)])
    logf = rng.normal(-2.5, 0.6, (len(tokens), d_sae))
    logf -= np.where(np.arange(len(tokens))[:, None] >= 4, 3.0, 0.0) * (np.arange(d_sae) >= int(0.6 * d_sae))
    logf[:, :16] = -6.5
    return tokens, np.clip(logf, -6.5, 0.0)


def load_planted(args: Options) -> Source:
    """Synthetic gelu-1l-shaped model (one layer, d_mlp = d_in) and two planted SAEs of DEFAULTS['planted'] size, planted
    frequency snapshots and a training log. d_in and d_sae come from `paper.sources.DEFAULTS['planted']`."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    d_in, d_sae = DEFAULTS["planted"]["d_in"], DEFAULTS["planted"]["d_sae"]
    torch.manual_seed(0)
    shape = {"n_layers": 1, "d_model": d_in // 4, "d_mlp": d_in, "n_heads": 4, "d_head": d_in // 16, "n_ctx": 32, "d_vocab": 200}
    model = HookedTransformer(HookedTransformerConfig(**shape, act_fn="gelu", normalization_type="LN", seed=0)).eval()
    n_seqs = max(2, setting(args, "planted", "tokens") // 32)
    tokens = torch.randint(0, 200, (n_seqs, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[:8], names_filter="blocks.0.mlp.hook_post")
    acts = cache["blocks.0.mlp.hook_post"].reshape(-1, d_in)
    saes = {run: planted_sae(i + 1, d_sae, acts) for i, run in enumerate(RUNS["planted"])}
    snapshots = _snapshots(d_sae, np.random.default_rng(0))
    steps = np.arange(1, 201) * 10_000_000
    log_df = pd.DataFrame({"event": "train", "tokens": steps, "loss": 3 * np.exp(-steps / 2e8) + 0.5, "l0": 20 + 0 * steps})
    return Source(
        "planted", f"planted full-scale checkpoints ({d_in} x {d_sae})", model, saes, tokens,
        lambda ids: [f"t{i} " for i in ids], lambda: snapshots, dict.fromkeys(RUNS["planted"], log_df),
        {"planted": {"d_in": d_in, "d_sae": d_sae}},
        snapshot_tokens=PLANTED_SNAPSHOT_TOKENS,
    )  # fmt: skip
