"""Where the embedded demo suite lives inside the installed package (layout contract shared by loaders and builder).

    sae_analysis/data/demo/
      manifest.json            regeneration command, seeds, token counts, versions, headline metrics
      model/                   config.json + model.safetensors (a small TransformerLens HookedTransformer)
      seed1/, seed2/           final SAEs in the native (SAELens) format
      seed1/checkpoints/NNN/   intermediate SAEs (native format) for the phase-transition curves
      seed1/metrics.jsonl      the training log (per-step metrics and per-latent frequency snapshots)
"""

from __future__ import annotations

from pathlib import Path

DEMO_NAME = "demo"


def demo_dir() -> Path:
    """Root folder of the embedded demo suite."""
    return Path(__file__).resolve().parent.parent / "data" / "demo"
