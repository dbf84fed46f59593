"""`sae-analysis analyze` and `compare` end to end on a tiny saved model and SAEs (offline, tmp_path only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_analysis import SAE
from sae_analysis.cli import main
from sae_analysis.cli.compare import split_spec
from sae_analysis.io import save_model, save_sae
from sae_analysis.table import COMPARE_KEYS, KEYS
from tests.helpers import tiny_sae

HOOK = "blocks.0.mlp.hook_post"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cfg = HookedTransformerConfig(n_layers=1, d_model=32, d_mlp=64, n_heads=2, d_head=16, n_ctx=16, d_vocab=50,
                                  act_fn="gelu", normalization_type="LN", seed=0)  # fmt: skip
    save_model(HookedTransformer(cfg), root / "model")
    sae = tiny_sae(d_in=64, d_sae=96, hook_name=HOOK)
    sae.log10_density = torch.linspace(-7, -1, 96)
    save_sae(sae, root / "a")
    perm = torch.randperm(96, generator=torch.Generator().manual_seed(2))
    b = SAE.from_weights(sae.cfg, W_enc=sae.W_enc.detach()[:, perm], W_dec=sae.W_dec.detach()[perm],
                         b_enc=sae.b_enc.detach()[perm], b_dec=sae.b_dec.detach())  # fmt: skip
    b.log10_density = sae.log10_density[perm]
    save_sae(b, root / "b")
    np.save(root / "tokens.npy", np.random.default_rng(0).integers(0, 50, size=(12, 16)))
    return root


def read(path) -> dict:
    return json.loads(path.read_text())


def test_analyze_weights_and_stored_frequencies(files, capsys):
    out = files / "a.json"
    assert main(["analyze", str(files / "a"), "--json", str(out), "--table", str(files / "a.csv")]) == 0
    got = read(out)
    assert json.loads(capsys.readouterr().out) == got
    assert set(got) <= set(KEYS) and got["d_sae"] == 96 and "recons_score" not in got
    assert got["frequency_source"].startswith("stored: ") and "(log10 density)" in got["frequency_source"]
    assert got["ulf_fraction"] == pytest.approx(float((torch.linspace(-7, -1, 96) < -4).double().mean()), abs=1e-6)
    header = (files / "a.csv").read_text().splitlines()[0].split(",")
    assert {"latent", "fve_top_1", "fve_next_9", "sparsity_class", "kurtosis", "frequency"} <= set(header)


def test_analyze_with_model_counts_frequencies_and_scores(files, capsys):
    args = ["analyze", str(files / "a"), "--model", str(files / "model"), "--tokens-file", str(files / "tokens.npy"),
            "--tokens", "64", "--batch-size", "3"]  # fmt: skip
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    # every key but the ULF co-firing pair, which needs per-token activations that `analyze` does not keep
    assert list(got) == [k for k in KEYS if k not in ("ulf_max_frac_active", "ulf_tokens_searched")]
    assert got["frequency_source"] == "model: 64 tokens" and got["n_freq_tokens"] == 64
    assert got["recons_score"] is None or np.isfinite(got["recons_score"])
    assert got["null_frac_random"] == 0.5  # (d_mlp - d_model) / d_mlp = 32 / 64


def test_compare_planted_permutation(files, capsys):
    assert main(["compare", str(files / "a"), str(files / "b"), "--json", str(files / "cmp.json")]) == 0
    got = read(files / "cmp.json")
    assert list(got) == list(COMPARE_KEYS)
    for k in ("ulf_direction_cos", "enc_best_match_cos_median", "dec_best_match_cos_median"):
        assert got[k] == pytest.approx(1.0, abs=1e-5)


def test_bad_inputs_fail_cleanly(files, capsys):
    assert main(["analyze", str(files / "a"), "--model", str(files / "model")]) == 2  # no token file
    (files / "bad.npy").write_bytes(b"not numpy")
    assert main(["analyze", str(files / "a"), "--model", str(files / "model"), "--tokens-file", str(files / "bad.npy")]) == 2
    assert "error" in capsys.readouterr().err


def test_split_spec(tmp_path):
    assert split_spec("demo:seed1") == ("demo", "seed1")
    assert split_spec("NeelNanda/sparse_autoencoder:run2") == ("NeelNanda/sparse_autoencoder", "run2")
    assert split_spec("demo") == ("demo", None)
    assert split_spec("C:/x/y") == ("C:/x/y", None)
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert split_spec(str(odd)) == (str(odd), None)


def test_help_lists_every_documented_key(capsys):
    for cmd, keys in (("analyze", KEYS), ("compare", COMPARE_KEYS)):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        assert all(k in out for k in keys), cmd
