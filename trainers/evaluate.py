"""Evaluators: what the trainer measures on data it does not train on (REPLICATION.md §8).

Neel's get_freqs(n) and recons score draw random rows of the token pool each time; here every draw is seeded by
(run seed, step), so evaluation is reproducible and a resumed run measures exactly what an uninterrupted one does.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_analysis import SAE
from sae_analysis.frequency import FrequencyResult, frequencies_from_activations, latent_frequencies
from sae_analysis.reconstruction import ReconstructionLosses, reconstruction_losses


def sample_rows(n_rows: int, n_wanted: int, seed: int) -> Int[Tensor, " n"]:
    """`min(n_wanted, n_rows)` distinct row indices, drawn with a generator seeded by `seed`."""
    perm = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    return perm[:max(1, min(n_wanted, n_rows))]


@runtime_checkable
class Evaluator(Protocol):
    def frequencies(self, sae: SAE, n_tokens: int, seed: int) -> FrequencyResult: ...

    def reconstruction(self, sae: SAE, n_tokens: int, seed: int) -> ReconstructionLosses | None: ...

    def activations(self, n_tokens: int, seed: int) -> Float[Tensor, "n d_in"]: ...


class ModelEvaluator:
    """Measures on random token sequences run through `model` in fp32 (no autocast, as Neel's evaluation)."""

    def __init__(self, model: Any, tokens: Int[Tensor, "n_seq pos"], *, hook_name: str, batch_size: int = 32):
        self.model, self.tokens, self.hook_name, self.batch_size = model, tokens, hook_name, batch_size

    def _rows(self, n_tokens: int, seed: int) -> Int[Tensor, "n pos"]:
        n_seq = -(-n_tokens // self.tokens.shape[1])
        return self.tokens[sample_rows(len(self.tokens), n_seq, seed)]

    def frequencies(self, sae: SAE, n_tokens: int, seed: int) -> FrequencyResult:
        return latent_frequencies(self.model, sae, self._rows(n_tokens, seed), hook_name=self.hook_name,
                                  batch_size=self.batch_size)

    def reconstruction(self, sae: SAE, n_tokens: int, seed: int) -> ReconstructionLosses:
        return reconstruction_losses(self.model, sae, self._rows(n_tokens, seed), hook_name=self.hook_name,
                                     batch_size=self.batch_size)

    def activations(self, n_tokens: int, seed: int) -> Float[Tensor, "n d_in"]:
        from sae_analysis.activations import hook_activations, token_batches

        rows = self._rows(n_tokens, seed)
        acts = [hook_activations(self.model, b, self.hook_name) for b in token_batches(rows, self.batch_size)]
        return torch.cat(acts).reshape(-1, acts[0].shape[-1])[:n_tokens]


class ActivationEvaluator:
    """Measures on random rows of a held activation tensor (no model, so no reconstruction score)."""

    def __init__(self, activations: Float[Tensor, "n d_in"], *, batch_size: int = 4096):
        self.acts, self.batch_size = activations, batch_size

    def frequencies(self, sae: SAE, n_tokens: int, seed: int) -> FrequencyResult:
        x = self.activations(n_tokens, seed)
        return frequencies_from_activations(sae, x.split(self.batch_size), source="held-out activations")

    def reconstruction(self, sae: SAE, n_tokens: int, seed: int) -> None:
        return None

    def activations(self, n_tokens: int, seed: int) -> Float[Tensor, "n d_in"]:
        return self.acts[sample_rows(len(self.acts), n_tokens, seed)]
