"""Where the checkpoints come from: the embedded demo, the Hub (`NeelNanda/sparse_autoencoder`), or synthetic smoke ones.

Each loader turns the CLI arguments into one `Source`; `resolve_source` picks the loader (auto: the Hub when it loads,
else the demo, with the Hub's error as the reason).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from paper.options import Options
from sae_analysis import SAE, SAEConfig
from sae_analysis.frequency import FrequencyResult, frequencies_from_log10
from sae_analysis.io import SAELoadError, demo_dir, load_model, load_sae
from sae_analysis.io.demo import BOS_TOKEN, demo_tokens
from sae_analysis.io.provenance import array_digest, digest
from sae_analysis.io.runs import read_frequency_snapshots, read_metrics
from sae_analysis.io.token_sample import DEFAULT_SEED, DEFAULT_SHARDS, sample_hub_tokens
from sae_analysis.io.tokens import SEQ_LEN, load_token_file

log = logging.getLogger(__name__)
HUB_REPO = "NeelNanda/sparse_autoencoder"
HUB_CHECKPOINTS = (9, 12, 15, 18, 21, 22, 25)
"""Run-1 checkpoints of F2 (REPLICATION.md §4.3: checkpoint c holds (c - 8) * 122.88M tokens; 25 is the final 2B)."""
RUN1_FINAL = 25


def checkpoint_tokens(c: int) -> int:
    """Training tokens of run-1 checkpoint c (REPLICATION.md §4.3): (c - 8) x 122,880,000 for 9 <= c <= 24, 2B for 25."""
    if not 9 <= c <= RUN1_FINAL:
        raise ValueError(f"run-1 checkpoints are 9..25, got {c}")
    return (c - 8) * 122_880_000 if c < RUN1_FINAL else 2_000_000_000


Decode = Callable[[Any], list[str]]
"""Every source's decode contract: a 1-D sequence of token ids (torch tensor, numpy array or list of ints) -> one string
per id, in order."""
RUNS = {"demo": ("seed1", "seed2"), "hub": ("run1", "run2"), "smoke": ("seed1", "seed2"), "planted": ("run1", "run2")}
DEFAULTS = {
    "demo": {"tokens": 512 * 128, "loss_seqs": 64, "batch_size": 64},
    "hub": {"tokens": 1_638_400, "loss_seqs": 256, "batch_size": 32},
    "smoke": {"tokens": 32 * 16, "loss_seqs": 32, "batch_size": 32},
    "planted": {"tokens": 64 * 32, "loss_seqs": 16, "batch_size": 16, "d_in": 2048, "d_sae": 16384},
}
"""Per source: tokens for frequencies (hub: Neel's get_freqs(25), CPU_HUB_TOKENS on a CPU); sequences for the loss-based
numbers (hub: Neel's all_tokens[:256], §9.7; demo: 64, because F6 runs one spliced forward per floor and must fit the
3-minute budget), which also serve the case studies; sequences per forward. `--tokens`, `--loss-seqs`, `--batch-size`
override them. The planted source (paper/planted.py) also takes its SAE shape from here: the published 2048 x 16384
unless a test shrinks d_in."""
CPU_HUB_TOKENS = 65_536
"""The hub's default --tokens on a CPU (a 25x smaller frequency sample than Neel's; BENCHMARKS.md times it); on a GPU the
default is Neel's 1,638,400. The run logs its estimated time first (paper.cost)."""
CPU_HUB_LOSS_SEQS = 64
"""The hub's default --loss-seqs on a CPU (Neel's 256 on a GPU): each sequence costs ~17 unembeddings into 48,262 tokens
per run (F6's floors), which dominated a CPU run at 256 (BENCHMARKS.md)."""
CPU_DEFAULTS = {"tokens": CPU_HUB_TOKENS, "loss_seqs": CPU_HUB_LOSS_SEQS}


class Skip(Exception):
    """A figure that this source cannot draw (the reason goes into the report)."""


@dataclass
class Source:
    """Everything loaded from one source; `snapshots` and `train_logs` are per-run (tokens, log10 freq) / DataFrames."""

    kind: str
    label: str
    model: Any
    saes: dict[str, Any]
    tokens: Any
    decode: Decode
    snapshots: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    """Stored frequency snapshots of the first run (tokens, log10 freq), when the source has them."""
    train_logs: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    stored_freq: dict[str, FrequencyResult] = field(default_factory=dict)
    """Per run: frequencies stored with the SAE on a recorded token count (used unless --tokens is given)."""
    snapshot_tokens: int = 0
    """Tokens each stored snapshot's frequencies were counted on (0 when unknown), for what F2/F4/F5 can resolve."""
    checkpoints: Callable[[], dict[int, Any]] | None = None
    """Training tokens -> SAE of the first run's checkpoints, whose frequencies are measured on `tokens` (the hub)."""


def setting(args: Options, kind: str, name: str) -> int:
    """A CLI value (`--tokens`, `--loss-seqs`, `--batch-size`), or this source kind's default (DEFAULTS; the hub's on a
    CPU: CPU_DEFAULTS)."""
    if kind == "hub" and name in CPU_DEFAULTS and not getattr(args, name) and str(args.device).startswith("cpu"):
        return CPU_DEFAULTS[name]
    return getattr(args, name) or DEFAULTS[kind][name]


def token_ids(ids: Any) -> list[int]:
    """The ids of a 1-D token sequence (tensor, array or list) as Python ints; ValueError for any other shape."""
    arr = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"decode takes a 1-D sequence of integer token ids, got shape {arr.shape} of {arr.dtype}")
    return arr.astype(np.int64).tolist()


def _byte_decode(ids: Any) -> list[str]:
    return ["<BOS>" if i == BOS_TOKEN else bytes([i]).decode("latin-1") for i in token_ids(ids)]


def _smoke_decode(ids: Any) -> list[str]:
    return [f"t{i} " for i in token_ids(ids)]


def model_decode(model: Any) -> Decode:
    """Decode with a HookedTransformer's tokenizer (`to_str_tokens` on a 1-D int64 tensor)."""

    def decode(ids: Any) -> list[str]:
        strings = model.to_str_tokens(torch.tensor(token_ids(ids), dtype=torch.long))
        return [strings] if isinstance(strings, str) else list(strings)

    return decode


def _meta(sae: Any) -> dict[str, Any]:
    """Provenance for the manifest: where the checkpoint came from, its size and its training seed when recorded."""
    keep = ("format", "path", "repo", "revision", "commit", "filename")
    raw_cfg = sae.meta.get("cfg") or {}
    seed = raw_cfg.get("seed", (raw_cfg.get("metadata") or {}).get("sae_analysis", {}).get("seed"))
    out = {k: str(v) for k, v in sae.meta.items() if k in keep and v is not None} | {"d_sae": sae.cfg.d_sae, "seed": seed}
    local = Path(out["path"]) if "path" in out and "commit" not in out else None  # a Hub file is pinned by its commit
    return out | ({"sha256": digest(local)} if local is not None and local.exists() else {})


def stored_demo_frequencies(saes: dict[str, SAE], manifest: dict[str, Any]) -> dict[str, FrequencyResult]:
    """Per run: the frequencies the demo build stored in sparsity.safetensors, counted on the whole held-out split, with
    the token count its manifest records (`trainers.demo.sparsity`). Runs without both are left out (counted on the
    source's tokens instead)."""
    out = {}
    for run, sae in saes.items():
        n = int((((manifest.get("saes") or {}).get(run) or {}).get("sparsity") or {}).get("n_tokens") or 0)
        if sae.log10_density is None or n <= 0:
            continue
        what = f"{run}/sparsity.safetensors, {n:,} held-out tokens (resolves >= 1/{n:,} = {1 / n:.1e})"
        r = frequencies_from_log10(sae.log10_density.cpu(), what)
        counts = (r.freq.double() * n).round().long()  # the firing counts the stored frequencies were measured from
        out[run] = r._replace(counts=counts, n_tokens=n, source=f"stored: {what}")
    return out


def load_demo(args: Options) -> Source:
    root, runs = demo_dir(), RUNS["demo"]
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").exists() else {}
    saes = {r: load_sae("demo", r, device=args.device) for r in runs}
    tokens = demo_tokens("eval")[: max(2, setting(args, "demo", "tokens") // 128)]
    logs = {r: read_metrics(root / r) for r in runs if (root / r / "metrics.jsonl").exists()}
    prov = {"demo_manifest": manifest, **{r: _meta(s) for r, s in saes.items()}}
    prov |= {"model": {"path": str(root / "model"), "sha256": digest(root / "model")},
             "tokens": {"split": "eval", "shape": list(tokens.shape), "sha256": array_digest(tokens)}}  # fmt: skip
    model = load_model("demo", device=args.device)
    snapshots = partial(read_frequency_snapshots, root / runs[0])  # read only when F2 misses the cache
    stored = stored_demo_frequencies(saes, manifest)
    return Source("demo", "embedded demo", model, saes, tokens, _byte_decode, snapshots, logs, prov, stored,
                  snapshot_tokens=snapshot_token_count(logs.get(runs[0])))  # fmt: skip


def snapshot_token_count(log: pd.DataFrame | None) -> int:
    """Tokens the trainer counted each checkpoint's frequency snapshot on, from the run log's checkpoint rows
    (`freq_source` 'model: N tokens'); 0 when the log does not say, or says different counts."""
    if log is None or "freq_source" not in log:
        return 0
    counts = {int(m.group(1)) for s in log["freq_source"].dropna() if (m := re.search(r"(\d+) tokens", str(s)))}
    return counts.pop() if len(counts) == 1 else 0


def load_hub(args: Options) -> Source:
    saes = {r: load_sae(HUB_REPO, r, revision=args.revision, device=args.device) for r in RUNS["hub"]}
    model = load_model("gelu-1l", device=args.device)
    tokens, token_prov = hub_eval_tokens(args, model, setting(args, "hub", "tokens"))

    @cache
    def checkpoints() -> dict[int, Any]:
        """Run 1's F2 checkpoints by training tokens (§4.3); the final one is run1's own file, not loaded twice."""
        same = {saes["run1"].meta.get("filename"): saes["run1"]}
        load = partial(load_sae, HUB_REPO, revision=args.revision, device=args.device)
        return {checkpoint_tokens(c): same.get(f"{c}.pt") or load(str(c)) for c in HUB_CHECKPOINTS}

    commit = saes["run1"].meta.get("commit") or args.revision or "main"
    files = [f"{c}.pt" for c in HUB_CHECKPOINTS]  # same repo and revision as the runs, so the same commit
    prov = {r: _meta(s) for r, s in saes.items()} | {"checkpoints": {"repo": HUB_REPO, "commit": commit, "files": files}}
    prov |= dict(getattr(model, "provenance", {})) | {"tokens": token_prov}
    label = f"{HUB_REPO}@{str(commit)[:7]}"
    return Source("hub", label, model, saes, tokens, model_decode(model), None, {}, prov, checkpoints=checkpoints)


def hub_eval_tokens(args: Options, model: Any, n_tokens: int) -> tuple[Any, dict[str, Any]]:
    """(evaluation sequences for gelu-1l, their provenance): the rows of --tokens-file, else a seeded fair sample of
    NeelNanda's c4-code data (rows of 1,024 cut into 8 x 128 with BOS first, as the original did; rows drawn at random
    from --token-shards shards chosen by --token-seed, `sae_analysis.io.token_sample`)."""
    if args.tokens_file:
        path = Path(args.tokens_file)
        tokens = load_token_file(path)
        tokens = tokens[: max(1, n_tokens // tokens.shape[1])]
        return tokens, {"file": str(path.resolve()), "sha256": digest(path)}
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    if bos is None:
        raise Skip("gelu-1l's tokenizer is unavailable, so BOS is unknown: pass --tokens-file (int array [n_seq, seq_len])")
    seed = DEFAULT_SEED if args.token_seed is None else args.token_seed
    sample = sample_hub_tokens(n_seq=max(1, -(-n_tokens // SEQ_LEN)), seq_len=SEQ_LEN, bos_token_id=bos, seed=seed,
                               n_shards=args.token_shards or DEFAULT_SHARDS)  # fmt: skip
    return sample.tokens, sample.provenance


def _smoke_sae(seed: int) -> SAE:
    """A random 64 -> 256 SAE with 16 planted 1-sparse decoder rows and 64 dead latents whose encoders share one direction."""
    torch.manual_seed(seed)
    sae = SAE(SAEConfig(d_in=64, d_sae=256, hook_name="blocks.0.mlp.hook_post", model_name="smoke"))
    with torch.no_grad():
        sae.W_dec[:16] = torch.eye(64)[:16] + 0.01 * torch.randn(16, 64)  # planted 1-sparse decoders
        sae.W_enc[:, 192:] = torch.randn(64, 1) + 0.2 * torch.randn(64, 64)  # planted rare cluster, one direction
        sae.b_enc[192:] = -50.0
        sae.b_enc[:192] = 0.1 * torch.randn(192)
    return sae


def load_smoke(args: Options) -> Source:
    """Synthetic checkpoints: a random tiny GELU model and two random SAEs with planted 1-sparse rows and a dead, aligned
    rare cluster; synthetic frequency snapshots with a planted step and a synthetic training log. Exercises every figure."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    shape = {"n_layers": 1, "d_model": 32, "d_mlp": 64, "n_heads": 2, "d_head": 16, "n_ctx": 16, "d_vocab": 50}
    cfg = HookedTransformerConfig(**shape, act_fn="gelu", normalization_type="LN", seed=0)
    model, rng = HookedTransformer(cfg).eval(), np.random.default_rng(0)
    saes = {run: _smoke_sae(i + 1) for i, run in enumerate(RUNS["smoke"])}
    n_seqs = max(2, setting(args, "smoke", "tokens") // 16)
    tokens = torch.randint(0, 50, (n_seqs, 16), generator=torch.Generator().manual_seed(0))
    snap_tokens = np.arange(1, 13) * 1_000_000
    snaps = rng.normal(-2.5, 0.5, (12, 256)) - np.where(np.arange(12)[:, None] >= 7, 3.0, 0.0) * (np.arange(256) >= 160)
    steps = np.arange(1, 51) * 240_000
    log_df = pd.DataFrame({"event": "train", "tokens": steps, "loss": 3 * np.exp(-steps / 4e6) + 0.5, "l0": 20 + 0 * steps})
    logs, snapshots = {r: log_df for r in RUNS["smoke"]}, lambda: (snap_tokens, np.clip(snaps, -6.5, 0))
    return Source("smoke", "synthetic smoke checkpoints", model, saes, tokens, _smoke_decode, snapshots, logs, {"smoke": True})


def resolve_source(args: Options) -> tuple[Source, str]:
    """The source to use and a sentence saying why (auto: the Hub when it loads, else the demo, with the Hub's error)."""
    if args.smoke or args.source == "smoke":
        return load_smoke(args), "--smoke: synthetic checkpoints (no real model or SAE)"
    if args.source == "demo":
        return load_demo(args), "requested: --source demo"
    if args.source == "hub":
        return load_hub(args), "requested: --source hub"

    from sae_analysis.io.hub import cache_only, hub_settings, hub_unreachable  # imports huggingface_hub: only here

    # A quick probe: with the network down, a download would wait out huggingface_hub's ~23 s of retries first.
    unreachable = None if hub_settings().offline else hub_unreachable()
    try:
        if unreachable is None:
            return load_hub(args), "auto: the Hub (or its local cache) was reachable"
        with cache_only():
            return load_hub(args), f"auto: {unreachable}; used the local Hub cache"
    except (Skip, SAELoadError, OSError) as err:
        why = str(err).splitlines()[0][:200]
        if unreachable is not None:  # the cache-only attempt's error would blame HF_HUB_OFFLINE, which the user did not set
            cached = f"the local Hub cache ({hub_settings().cache_dir}) lacks the checkpoints"
            why = f"{unreachable}, and " + (cached if isinstance(err, SAELoadError) else why)
        reason = f"auto: Hub not used ({why}); fell back to the embedded demo"
        log.warning(reason)
        return load_demo(args), reason
