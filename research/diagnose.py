"""Diagnosis of the committed demo SAEs (issue #13 item 2), with the toolkit's own analyses, on held-out tokens.

    python research/diagnose.py [--tokens N] [--out docs/demo_research/diagnosis.json]

Per seed, on the first N rows of the demo corpus's eval split (default 2^20 tokens; 1/N = 9.5e-7 is the smallest
resolvable frequency):

* frequencies (exact counts), dead (0 firings) and < 1e-6 fractions, the ULF set (freq < 1e-4);
* where the ULF latents fire: share of their firings at position 0 (BOS) and by position bucket, the top token ids, the
  top source files (a row of `demo_tokens` is reconstructed to its file: rows are 127-byte pieces of the concatenated eval
  files, permuted with `SHUFFLE_SEED`); `ulf_token_stats`: the largest share of ULF latents active on one token (Neel:
  95% of ULF latents fire on one input) and where it happens;
* the largest pre-activation of every latent over the tokens (how far a dead latent is from firing);
* resampling history from the shipped metrics.jsonl: for dead / rare / alive latents at the end, how many were resampled,
  how often, and at which resample last; whether the last resample's latents are the dead ones;
* encoder norm, decoder norm and encoder bias of dead vs ULF-alive vs common latents (medians).
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sae_analysis.activations import hook_activations, token_batches  # noqa: E402
from sae_analysis.case_study import ulf_token_stats  # noqa: E402
from sae_analysis.frequency import frequencies_from_log10  # noqa: E402
from sae_analysis.io import demo_dir, load_model, load_sae  # noqa: E402
from sae_analysis.io.demo import SHUFFLE_SEED, chunk_bytes, corpus_files, demo_tokens, stdlib_root  # noqa: E402
from sae_analysis.io.runs import read_metrics  # noqa: E402
from sae_analysis.metrics import RARE_FREQ, frequency_fractions  # noqa: E402
from sae_analysis.similarity import direction_cosine  # noqa: E402
from sae_analysis.ulf import ulf_cluster, ulf_mask  # noqa: E402

HOOK = "blocks.0.mlp.hook_post"
SEQ_LEN = 128


def row_files(n_rows: int, seq_len: int = SEQ_LEN) -> list[str]:
    """The eval-split file (path relative to the stdlib) each of the first `n_rows` rows of demo_tokens('eval') comes from."""
    files = corpus_files("eval")
    sizes = np.cumsum([p.stat().st_size for p in files])
    n_all = chunk_bytes(b"".join(p.read_bytes() for p in files), seq_len).shape[0]
    perm = torch.randperm(n_all, generator=torch.Generator().manual_seed(SHUFFLE_SEED))[:n_rows]
    root = stdlib_root()
    starts = (perm * (seq_len - 1)).tolist()
    return [files[bisect.bisect_right(sizes.tolist(), s)].relative_to(root).as_posix() for s in starts]


@torch.no_grad()
def firing_pass(model: Any, sae: Any, tokens: torch.Tensor, watch: torch.Tensor, batch: int = 32) -> dict[str, Any]:
    """Exact counts, max pre-activation per latent, and every firing (row, pos, token) of the `watch` latents."""
    counts = torch.zeros(sae.cfg.d_sae, dtype=torch.int64)
    max_pre = torch.full((sae.cfg.d_sae,), -torch.inf)
    fires: list[torch.Tensor] = []
    sum_x = torch.zeros(sae.cfg.d_in, dtype=torch.float64)
    for i, b in enumerate(token_batches(tokens, batch)):
        x = hook_activations(model, b, HOOK).float()
        sum_x += x.double().sum((0, 1))
        pre = sae.encode_pre(x)  # [batch, pos, d_sae]
        counts += (pre > 0).sum((0, 1))
        max_pre = torch.maximum(max_pre, pre.amax((0, 1)))
        hit = (pre[..., watch] > 0).nonzero()  # (row, pos, watched index)
        if len(hit):
            hit[:, 0] += i * batch
            fires.append(hit)
    n = tokens.numel()
    return {"counts": counts, "freq": counts.double() / n, "n_tokens": n, "max_pre": max_pre, "mean_x": (sum_x / n).float(),
            "fires": torch.cat(fires) if fires else torch.zeros(0, 3, dtype=torch.int64)}


def where_ulf_fires(fires: torch.Tensor, tokens: torch.Tensor, files: list[str]) -> dict[str, Any]:
    """Positions, token ids and source files of every ULF firing."""
    if len(fires) == 0:
        return {"n_firings": 0}
    rows, pos = fires[:, 0], fires[:, 1]
    tok = tokens[rows, pos]
    buckets = {"0 (BOS)": pos == 0, "1-3": (pos >= 1) & (pos <= 3), "4-31": (pos >= 4) & (pos <= 31), "32-127": pos >= 32}
    top_tok = Counter(tok.tolist()).most_common(10)
    top_files = Counter(files[r] for r in rows.tolist()).most_common(10)
    per_latent_rows = Counter(zip(fires[:, 2].tolist(), rows.tolist()))
    return {"n_firings": int(len(fires)), "n_latents_firing": int(fires[:, 2].unique().numel()),
            "share_by_position": {k: float(v.double().mean()) for k, v in buckets.items()},
            "top_tokens": [[t, repr(bytes([t]).decode("latin-1")) if t < 256 else "<BOS>", c / len(fires)] for t, c in top_tok],
            "top_files": [[f, c / len(fires)] for f, c in top_files],
            "n_distinct_rows": int(rows.unique().numel()), "max_firings_of_one_latent_in_one_row": max(per_latent_rows.values())}


def resample_history(log_dir: Path, d_sae: int) -> dict[str, Any]:
    """Per latent: times resampled and the step of its last resample (-1 never), from the run's metrics.jsonl."""
    m = read_metrics(log_dir)
    res = m[m.event == "resample"]
    times, last = np.zeros(d_sae, int), np.full(d_sae, -1)
    for step, latents in zip(res.step, res.latents):
        times[latents] += 1
        last[latents] = step
    return {"times": times, "last": last, "steps": sorted(int(s) for s in res.step)}


def group_stats(sae: Any, freq: torch.Tensor, max_pre: torch.Tensor, hist: dict[str, Any]) -> dict[str, Any]:
    groups = {"dead": freq == 0, "ulf_alive": (freq > 0) & (freq < RARE_FREQ), "common": freq >= RARE_FREQ}
    enc_norm, dec_norm = sae.encoder_norms().detach(), sae.decoder_norms().detach()
    eff_bias = (sae.b_enc - sae.b_dec @ sae.W_enc).detach()  # the pre-activation at x = 0 (Anthropic's ULF account)
    last_step = hist["steps"][-1] if hist["steps"] else None
    out = {}
    for name, g in groups.items():
        gi = g.numpy()
        med = lambda t: float(t[g].median()) if g.any() else float("nan")  # noqa: E731
        out[name] = {
            "n": int(g.sum()), "enc_norm_median": med(enc_norm), "dec_norm_median": med(dec_norm),
            "b_enc_median": med(sae.b_enc.detach()),
            "effective_bias_median": med(eff_bias),
            "max_preact_median": med(max_pre),
            "frac_ever_resampled": float((hist["times"][gi] > 0).mean()) if gi.any() else float("nan"),
            "frac_resampled_2plus": float((hist["times"][gi] > 1).mean()) if gi.any() else float("nan"),
            "frac_in_last_resample": float((hist["last"][gi] == last_step).mean()) if gi.any() else float("nan"),
            "mean_times_resampled": float(hist["times"][gi].mean()) if gi.any() else float("nan"),
        }  # fmt: skip
    return out


def diagnose_seed(model: Any, name: str, tokens: torch.Tensor, files: list[str]) -> dict[str, Any]:
    """One seed: a counting pass that also records every firing of the ULF latents of the stored (whole held-out split)
    frequencies, then `ulf_token_stats` with the ULF set and mean encoder direction of this pass's counts."""
    sae = load_sae("demo", name)
    stored = frequencies_from_log10(sae.log10_density, f"{name}/sparsity.safetensors").freq
    watch = (stored < RARE_FREQ).nonzero().squeeze(1)  # superset check below: every ULF latent of this pass is watched
    first = firing_pass(model, sae, tokens, watch)
    mask = ulf_mask(first["freq"], RARE_FREQ)
    unwatched = int((mask & (stored >= RARE_FREQ)).sum())
    enc = ulf_cluster(sae.W_enc.T.detach(), mask)
    stats = ulf_token_stats(model, sae, tokens, enc.mean_direction, mask)
    flat = stats.frac_rare_active.flatten()
    top = int(flat.argmax())
    hist = resample_history(demo_dir() / name, sae.cfg.d_sae)
    return {"n_tokens": first["n_tokens"], "min_resolvable_freq": 1 / first["n_tokens"], **frequency_fractions(first["freq"]),
            "frac_ulf": float(mask.double().mean()), "ulf_enc_cos_median": float(enc.cos_with_mean.median()),
            "ulf_mean_enc_cos_with_mean_act": direction_cosine(enc.mean_direction, first["mean_x"]),
            "ulf_mean_enc_cos_with_mean_act_minus_b_dec": direction_cosine(enc.mean_direction,
                                                                           first["mean_x"] - sae.b_dec.detach().float()),
            "where_ulf_fires": {"watched": "freq < 1e-4 in the stored whole-split frequencies", "ulf_not_watched": unwatched,
                                **where_ulf_fires(first["fires"], tokens, files)},
            "ulf_token_stats": {"max_frac_ulf_active_on_one_token": float(flat[top]),
                                "at_row_pos_token": [top // SEQ_LEN, top % SEQ_LEN, int(tokens.flatten()[top])],
                                "tokens_with_any_ulf_active": float((flat > 0).double().mean()),
                                "rare_proj_median": float(stats.rare_proj.median()),
                                "rare_proj_max": float(stats.rare_proj.max())},
            "groups_by": "stored whole-split frequencies (sparsity.safetensors)",
            "groups": group_stats(sae, stored, first["max_pre"], hist),
            "resample_steps": hist["steps"]}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=2**20)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "demo_research" / "diagnosis.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model("demo")
    n_rows = -(-args.tokens // SEQ_LEN)
    tokens, files = demo_tokens("eval", n_rows, seq_len=SEQ_LEN), row_files(n_rows)
    report = {}
    for name in ("seed1", "seed2"):
        report[name] = diagnose_seed(model, name, tokens, files)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    sys.stdout.write(json.dumps(report, indent=1)[:4000] + "\n")


if __name__ == "__main__":
    main()
