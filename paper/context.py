"""One run of paper_figures.py: its settings, its cache, and the source, loaded only when a computation misses the cache."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from paper import sources
from paper.cache import Cache
from paper.options import Options

log = logging.getLogger(__name__)


class Context:
    """The run's settings, its cache (OUT/cache/KIND-TOKENS unless --cache-dir) and the lazily loaded `Source`."""

    def __init__(self, args: Options):
        self.args = args
        self.kind = "smoke" if args.smoke else args.source
        default = "default-" + str(args.device).split(":")[0]  # the hub's default token count depends on the device
        key = f"{self.kind}-{args.tokens or default}" + (f"-loss{args.loss_seqs}" if args.loss_seqs else "")
        self.cache = Cache(Path(args.cache_dir or Path(args.out) / "cache") / key)
        self._source: sources.Source | None = None
        self.note = ""
        self.memo: dict[str, Any] = {}
        """Results shared by several cached computations within this run (e.g. one frequency pass for every SAE)."""

    @property
    def source(self) -> sources.Source:
        if self._source is None:
            if self.args.source == "planted" and not self.args.smoke:  # paper.planted builds on paper.sources
                from paper.planted import load_planted

                self._source = load_planted(self.args)
                self.note = "requested: --source planted (synthetic, full-scale shapes with planted outliers)"
            else:
                self._source, self.note = sources.resolve_source(self.args)
            log.info("source: %s (%s)", self._source.label, self.note)
        return self._source

    @property
    def info(self) -> dict[str, Any]:
        """Label, kind, runs and provenance of the source (cached, so a redraw does not load anything)."""

        def describe() -> dict[str, Any]:
            src = self.source
            return {"label": src.label, "kind": src.kind, "note": self.note, "runs": list(src.saes), "provenance": src.provenance,
                    "n_tokens": int(src.tokens.numel()), "n_seqs": int(src.tokens.shape[0])}  # fmt: skip

        return self.cache.json("source", describe)

    def setting(self, name: str) -> int:
        """A CLI value, or this source kind's default (sources.DEFAULTS)."""
        return sources.setting(self.args, self.info["kind"], name)

    def runs(self) -> list[str]:
        return self.info["runs"]

    def label(self, run: str | None = None) -> str:
        return self.info["label"] + (f" ({run})" if run else "")
