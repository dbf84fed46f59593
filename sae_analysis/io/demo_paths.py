"""Where the embedded demo suite lives inside the installed package (layout contract shared by loaders and builder).

    sae_analysis/data/demo/
      manifest.json                  regeneration command, seeds, token counts, versions, headline metrics
      model/                         config.json + model.safetensors (a small TransformerLens HookedTransformer)
      seed1/, seed2/                 final SAEs in the native (SAELens) format, stored fp16 (load_sae("demo", ...) returns
                                     fp32): cfg.json, sae_weights.safetensors, sparsity.safetensors (log10 density),
                                     trainer_cfg.json
      seed1/checkpoints/<tokens>/    intermediate SAEs (native format, fp16), only when the build keeps some
                                     (BuildConfig.keep_fractions; the committed suite has none); <tokens> is the 12-digit
                                     count of training tokens seen
      seed1/metrics.jsonl            the training log (train / eval / resample / checkpoint events; trainers.read_metrics)
      seed1/freq/<tokens>.npy        per-latent log10(freq + 10^-6.5) at every checkpoint, float16
                                     (trainers.read_frequency_snapshots)

Written by `trainers.demo` (`sae-analysis demo build`); the corpus reader is `sae_analysis.io.demo.demo_tokens`.
"""

from __future__ import annotations

from pathlib import Path

DEMO_NAME = "demo"


def demo_dir() -> Path:
    """Root folder of the embedded demo suite."""
    return Path(__file__).resolve().parent.parent / "data" / "demo"
