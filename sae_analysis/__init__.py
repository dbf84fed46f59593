"""sae_analysis: load, inspect and analyse sparse autoencoders trained on a transformer's MLP neurons.

Public API: `SAE`, `SAEConfig`, `load_sae`, `save_sae`, `load_model`.
"""

from sae_analysis.sae import SAE, ForwardOutput, SAEConfig
from sae_analysis.version import __version__


def __getattr__(name: str):
    # The loaders import huggingface_hub and transformer_lens, which are slow to import: load them on first use.
    if name in ("load_sae", "save_sae", "load_model"):
        from sae_analysis import io

        return getattr(io, name)
    raise AttributeError(f"module 'sae_analysis' has no attribute {name!r}")


__all__ = ["SAE", "SAEConfig", "ForwardOutput", "load_sae", "save_sae", "load_model", "__version__"]
