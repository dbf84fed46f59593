"""The typed options of a `paper_figures.py` run: what `parse_args` returns and what every function below `main`
receives (no argparse.Namespace travels into `paper/`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields


@dataclass
class Options:
    """One run of paper_figures.py; `None` means the source's default (`paper.sources.setting`)."""

    source: str = "auto"
    """auto | demo | hub | planted."""
    out: str = "out"
    only: list[str] | None = None
    tokens: int | None = None
    """Tokens to count frequencies on."""
    device: str = "cpu"
    smoke: bool = False
    cache_dir: str | None = None
    tokens_file: str | None = None
    token_seed: int | None = None
    token_shards: int | None = None
    revision: str | None = None
    batch_size: int | None = None
    """Sequences per model forward."""
    loss_seqs: int | None = None
    """Sequences for the losses and the case studies."""
    formats: list[str] | None = None
    dpi: int = 150
    argv: list[str] | None = None
    """The command line as given to `main` (None: sys.argv), for the manifest."""

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> Options:
        """The parsed command line as Options (every field of the dataclass must be a parser destination)."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})
