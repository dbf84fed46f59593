"""Stored frequencies keep dead latents dead: log10(freq + 1e-10) is inverted exactly (REPLICATION.md §15, issue #12).

A plain 10**d turns a stored dead latent (-10) into frequency 1e-10, so `analyze` without a model reported frac_dead = 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sae_analysis import load_sae, save_sae
from sae_analysis.frequency import frequencies_from_log10, stored_log10_density
from sae_analysis.metrics import LOG_FREQ_EPS, ROUNDING_TOLERANCE, SPARSITY_EPS, freq_from_log10
from sae_analysis.phase import snapshots_from_log10
from sae_analysis.table import stored_frequencies, summarize
from sae_analysis_cli import main

D_IN, D_SAE = 8, 48


def planted_freq(gen: torch.Generator) -> torch.Tensor:
    """A third of the latents dead (exactly 0), the rest spread over 1e-8 .. 1e-1."""
    freq = 10.0 ** (-8 + 7 * torch.rand(D_SAE, generator=gen, dtype=torch.float64))
    freq[torch.randperm(D_SAE, generator=gen)[: D_SAE // 3]] = 0.0
    return freq


def test_dead_latent_is_stored_as_minus_10_and_read_back_as_exactly_zero(gen):
    freq = planted_freq(gen)
    stored = stored_log10_density(freq)
    assert stored.dtype == torch.float32 and bool((stored[freq == 0] == -10.0).all())
    back = frequencies_from_log10(stored, "x").freq
    assert bool((back[freq == 0] == 0).all()) and bool((back[freq > 0] > 0).all())
    torch.testing.assert_close(back[freq > 0], freq[freq > 0], rtol=1e-5, atol=0)  # float32 storage of the log


def test_rounding_of_a_stored_dead_latent_still_reads_as_dead():
    """A float32 log10 computed elsewhere may land a few ulps off -10; within the tolerance it is still dead."""
    minus_10 = torch.tensor(-10.0, dtype=torch.float32)
    ulps = torch.stack([torch.nextafter(minus_10, torch.tensor(x)) for x in (0.0, -20.0)])
    near = torch.cat([ulps, torch.tensor([-10.0]), torch.tensor([float("-inf")])])
    assert bool((freq_from_log10(near, SPARSITY_EPS) == 0).all())
    # the boundary: 2x the tolerance survives (float64 input, no storage rounding), half of it does not
    edge = torch.log10(SPARSITY_EPS + torch.tensor([2.0, 0.5], dtype=torch.float64) * ROUNDING_TOLERANCE * SPARSITY_EPS)
    got = freq_from_log10(edge, SPARSITY_EPS)
    assert got[0] == pytest.approx(2 * ROUNDING_TOLERANCE * SPARSITY_EPS, rel=1e-3) and got[1] == 0
    np.testing.assert_array_equal(freq_from_log10(np.array([-10.0, -np.inf]), SPARSITY_EPS), [0.0, 0.0])


def test_float16_snapshots_in_the_plotted_convention_keep_dead_latents_dead():
    logs = np.log10(np.array([[0.0, 1e-3, 1e-5]]) + LOG_FREQ_EPS).astype(np.float16)
    snap = snapshots_from_log10([100], logs, source="t", eps=LOG_FREQ_EPS)
    assert snap.freq[0, 0] == 0 and snap.freq[0, 1] == pytest.approx(1e-3, rel=3e-3)


def test_planted_dead_latents_survive_save_load_analyze(tmp_path, make_sae, gen):
    sae = make_sae(D_IN, D_SAE, hook_name="blocks.0.mlp.hook_post")
    freq = planted_freq(gen)
    sae.log10_density = stored_log10_density(freq)
    loaded = load_sae(save_sae(sae, tmp_path / "s"))
    got = summarize(loaded, freq=stored_frequencies(loaded))
    assert got["frac_dead"] == pytest.approx(1 / 3) and got["frac_dead"] == float((freq == 0).double().mean())
    assert got["frac_below_1e-6"] == float((freq < 1e-6).double().mean())
    out = tmp_path / "a.json"  # the CLI path: `sae-analysis analyze FOLDER --json OUT` without --model
    assert main(["analyze", str(tmp_path / "s"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["frac_dead"] == pytest.approx(1 / 3)


def test_sparsity_file_written_by_saelens_keeps_dead_latents_dead(tmp_path, gen):
    """SAELens's trainer (sae_lens/training/sae_trainer.py, 6.x) saves {"sparsity": _log_feature_sparsity(freq)} with
    save_file, where _log_feature_sparsity = torch.log10(freq + 1e-10): its own function writes the file here."""
    pytest.importorskip("sae_lens")
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.training.sae_trainer import _log_feature_sparsity

    theirs = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE))
    theirs.save_model(tmp_path / "s")
    freq = planted_freq(gen).float()  # SAELens keeps its firing counts in float32
    save_file({"sparsity": _log_feature_sparsity(freq)}, str(tmp_path / "s" / "sparsity.safetensors"))
    loaded = load_sae(tmp_path / "s")
    got = stored_frequencies(loaded)
    assert bool((got.freq[freq == 0] == 0).all()) and bool((got.freq[freq > 0] > 0).all())
    assert summarize(loaded, freq=got)["frac_dead"] == pytest.approx(1 / 3)
