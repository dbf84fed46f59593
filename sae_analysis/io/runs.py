"""Run folders, the one home of their format: a per-run `metrics.jsonl` (one JSON object per line, key 'event') and
per-checkpoint frequency snapshots (`freq/<tokens>.npy`, float16 log10(freq + 10^-6.5)). The trainer writes them through
`MetricsWriter` / `write_frequency_snapshot`; `paper_figures.py` and the demo export read them back through
`read_metrics` / `read_frequency_snapshots` (the phase-transition curves are drawn from them).

Events: 'train' (loss, l2, l1, l0, explained_variance, tokens_per_s), 'eval' (reconstruction losses and scores, frac_dead,
frac_below_1e-5, frac_below_1e-6), 'resample' (latents and their prior frequency), 'checkpoint', 'error'.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sae_analysis.io.readers import atomic_write

METRICS_FILE = "metrics.jsonl"
SNAPSHOT_DIR = "freq"


class MetricsWriter:
    """Appends JSON lines to `path`, flushing each one, so a killed run loses at most the line being written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def write(self, event: str, **fields: Any) -> None:
        row = {"event": event, **{k: _jsonable(v) for k, v in fields.items()}}
        self._file.write((json.dumps(row, allow_nan=True) + "\n").encode())
        self._file.flush()

    def offset(self) -> int:
        """Bytes written so far (saved with each checkpoint; a resume truncates the log back to it)."""
        self._file.flush()
        return self._file.tell()

    def truncate(self, offset: int) -> None:
        """Drop everything after `offset`: rows logged after the checkpoint that a resumed run will log again."""
        self._file.flush()
        os.truncate(self.path, min(offset, self.path.stat().st_size))
        self._file.seek(0, os.SEEK_END)

    def close(self) -> None:
        self._file.close()


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def write_frequency_snapshot(run_dir: str | Path, tokens: int, log10_freq: np.ndarray) -> Path:
    """Save one snapshot of per-latent log10 frequencies (float16) as `freq/<tokens>.npy`, atomically."""
    path = Path(run_dir) / SNAPSHOT_DIR / f"{tokens:015d}.npy"
    data = np.asarray(log10_freq, dtype=np.float16)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the temporary name
            np.save(f, data, allow_pickle=False)

    atomic_write(path, write)
    return path


def read_frequency_snapshots(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All snapshots of a run: `tokens_seen [n_snap]` (int64, ascending) and `log10_freq [n_snap, d_sae]` (float32)."""
    paths = sorted((Path(run_dir) / SNAPSHOT_DIR).glob("*.npy"))
    if not paths:
        raise FileNotFoundError(f"no frequency snapshots in {Path(run_dir) / SNAPSHOT_DIR}")
    tokens = np.array([int(p.stem) for p in paths], dtype=np.int64)
    return tokens, np.stack([np.load(p, allow_pickle=False).astype(np.float32) for p in paths])


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """Every row of `metrics.jsonl` as a DataFrame (column 'event' tells the kind; absent fields are NaN). A truncated
    last line (a run killed while writing) is skipped."""
    rows = []
    with open(Path(run_dir) / METRICS_FILE, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame(rows)
