"""The data-exhaustion experiment's numbers (REPLICATION.md §6.2, issue #13), from committed frequency snapshots.

The runs were trained by `research/demo_sweep.py` (rows exhaust_freeze / exhaust_wrap / exhaust_stop: the demo recipe on a
786,432-token slice of the train split, so fresh data runs out after 753,664 training tokens) and their snapshots committed
as `paper/data/demo_exhaustion/<row>.npz` (`write_exhaustion_snapshots`). No training happens here. The fresh-data control
is the first demo build's seed1 (same seed, same recipe at lr 1e-3, the whole train split), whose first snapshots are
committed as `paper/data/demo_exhaustion/control/first_build_seed1.npz` (`write_control_snapshots`): the committed demo
was since rebuilt at lr 3e-4, so its own snapshots are no longer the same recipe.

npz keys: tokens [n] int64; log10_freq [n, d_sae] float16 = log10(freq + 10^-6.5) on `snapshot_tokens` held-out tokens;
policy (end_of_data); exhausted_tokens; slice_tokens; snapshot_tokens; resample_tokens [k] int64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sae_analysis.metrics import LOG_FREQ_EPS, RARE_FREQ
from sae_analysis.phase import log_freq_histograms, snapshots_from_log10, ulf_fraction_over_time

EXHAUSTION_DIR = Path(__file__).resolve().parent / "data" / "demo_exhaustion"
CONTROL_FILE = EXHAUSTION_DIR / "control" / "first_build_seed1.npz"
KEYS = ("tokens", "log10_freq", "policy", "exhausted_tokens", "slice_tokens", "snapshot_tokens", "resample_tokens")


def write_exhaustion_snapshots(path: Path, tokens: np.ndarray, log10_freq: np.ndarray, *, policy: str, exhausted_tokens: int,
                               slice_tokens: int, snapshot_tokens: int, resample_tokens: list[int]) -> Path:
    """Store one run's snapshots (float16, as the trainer writes them) and what is needed to read them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, tokens=np.asarray(tokens, np.int64), log10_freq=np.asarray(log10_freq, np.float16),
                        policy=np.array(policy), exhausted_tokens=np.int64(exhausted_tokens),
                        slice_tokens=np.int64(slice_tokens), snapshot_tokens=np.int64(snapshot_tokens),
                        resample_tokens=np.asarray(resample_tokens, np.int64))  # fmt: skip
    tmp.replace(path)
    return path


def read_exhaustion_runs(folder: Path = EXHAUSTION_DIR) -> dict[str, dict[str, Any]]:
    """policy -> the npz contents of every committed run in `folder` (empty when there are none)."""
    runs = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing {missing}; rewrite it with research/demo_sweep.py summarize")
            run = {k: z[k] for k in KEYS}
        runs[str(run["policy"])] = run
    return runs


def write_control_snapshots(path: Path, tokens: np.ndarray, log10_freq: np.ndarray, *, name: str) -> Path:
    """Store the fresh-data control's snapshots (float16 log10(freq + 10^-6.5), like the runs') and its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, tokens=np.asarray(tokens, np.int64), log10_freq=np.asarray(log10_freq, np.float16),
                        name=np.array(name))
    tmp.replace(path)
    return path


def read_control(path: Path = CONTROL_FILE) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(tokens, log10_freq, name) of the committed fresh-data control, or None when there is none."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return z["tokens"], z["log10_freq"], str(z["name"])


def _shares(tokens: np.ndarray, log10: np.ndarray) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    snap = snapshots_from_log10(tokens, log10.astype(np.float64), source="exhaustion", eps=LOG_FREQ_EPS)
    ulf = ulf_fraction_over_time(snap.freq, RARE_FREQ).numpy()
    dead = (snap.freq == 0).double().mean(-1).numpy()
    return ulf, dead, snap.freq


def exhaustion_panels(runs: dict[str, dict[str, Any]], control: tuple[np.ndarray, np.ndarray] | None = None,
                      control_name: str = "fresh data") -> dict[str, Any]:
    """Per policy (and the control, cut to the runs' length): ULF share and dead share per snapshot; per policy the
    histogram of the last snapshot before exhaustion and of the final one, over shared bins."""
    if not runs:
        raise ValueError("no data-exhaustion runs")
    first = next(iter(runs.values()))
    exhausted, end = int(first["exhausted_tokens"]), max(int(r["tokens"].max()) for r in runs.values())
    ulf, dead, hists = {}, {}, {}
    if control is not None:
        tokens, log10 = control
        keep = np.asarray(tokens) <= 1.01 * end  # a control snapshot a few steps past the runs still counts
        u, d, _ = _shares(np.asarray(tokens)[keep], np.asarray(log10)[keep])
        ulf[control_name], dead[control_name] = (np.asarray(tokens)[keep], u), (np.asarray(tokens)[keep], d)
    edges = None
    for policy, r in runs.items():
        u, d, freq = _shares(r["tokens"], r["log10_freq"])
        ulf[policy], dead[policy] = (r["tokens"], u), (r["tokens"], d)
        before = int(np.flatnonzero(r["tokens"] <= exhausted)[-1]) if (r["tokens"] <= exhausted).any() else 0
        h = log_freq_histograms(freq[[before, len(r["tokens"]) - 1]])
        edges, hists[policy] = h.edges.numpy(), (h.percent[0].numpy(), h.percent[1].numpy())
    return {"ulf": ulf, "dead": dead, "histograms": hists, "edges": edges, "exhausted_tokens": exhausted,
            "resample_tokens": [int(t) for t in first["resample_tokens"]], "snapshot_tokens": int(first["snapshot_tokens"]),
            "slice_tokens": int(first["slice_tokens"])}  # fmt: skip


def planted_exhaustion_runs(d_sae: int = 200) -> dict[str, dict[str, Any]]:
    """Synthetic runs for the smoke source and the tests: 12 snapshots every 100k tokens, data exhausted after 600k; before
    it every policy has 25% dead and 50% ULF latents; after it 'freeze' kills another 30% of latents (dead 55%, ULF 80%),
    'wrap' another 10% (dead 35%, ULF 60%); 'stop' ends at the exhaustion point."""
    tokens = np.arange(1, 13, dtype=np.int64) * 100_000
    base = np.full(d_sae, np.log10(1e-2 + LOG_FREQ_EPS))
    base[: d_sae // 4] = np.log10(LOG_FREQ_EPS)  # dead: log10(0 + eps)
    base[d_sae // 4 : d_sae // 2] = np.log10(1e-5 + LOG_FREQ_EPS)  # rare but alive
    runs = {}
    for policy, extra in (("freeze", 0.30), ("wrap", 0.10), ("stop", 0.0)):
        n = 6 if policy == "stop" else 12
        logf = np.tile(base, (n, 1))
        killed = slice(d_sae // 2, d_sae // 2 + int(round(extra * d_sae)))
        logf[6:, killed] = np.log10(LOG_FREQ_EPS)
        runs[policy] = {"tokens": tokens[:n], "log10_freq": logf.astype(np.float16), "policy": np.array(policy),
                        "exhausted_tokens": np.int64(600_000), "slice_tokens": np.int64(650_000),
                        "snapshot_tokens": np.int64(262_144), "resample_tokens": np.array([500_000, 1_000_000])}  # fmt: skip
    return runs
