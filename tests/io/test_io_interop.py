"""Interop with the real ecosystem packages (the `interop` extra): SAELens and EleutherAI sparsify.

An SAE saved here loads in SAELens with identical encode/decode, and SAEs saved by SAELens and by sparsify load here
with identical encode/decode. d_in == d_sae, so a transposed weight cannot hide behind a matching shape.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sae_analysis import load_sae, save_sae

D = 16


def fill_random_(module: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


@pytest.mark.parametrize(
    "overrides", [{}, {"activation": "topk", "k": 4}, {"activation": "jumprelu"}, {"apply_b_dec_to_input": False}]
)
def test_saved_here_loads_in_saelens_identically(tmp_path, make_sae, gen, overrides):
    sae_lens = pytest.importorskip("sae_lens")
    ours = make_sae(D, D, hook_name="blocks.0.mlp.hook_post", model_name="gelu-1l", **overrides)
    with torch.no_grad():
        ours.threshold.copy_(torch.rand(D, generator=gen) * 0.3)
    theirs = sae_lens.SAE.load_from_disk(save_sae(ours, tmp_path / "s"))
    x = torch.randn(32, D, generator=gen)
    f_ours, f_theirs = ours.encode(x), theirs.encode(x)
    torch.testing.assert_close(f_theirs, f_ours)
    torch.testing.assert_close(theirs.decode(f_theirs), ours.decode(f_ours))
    assert (f_ours > 0).any() and (f_ours == 0).any()
    assert theirs.cfg.metadata.hook_name == "blocks.0.mlp.hook_post" and theirs.cfg.metadata.model_name == "gelu-1l"
    assert theirs.cfg.architecture() == {"relu": "standard"}.get(ours.cfg.activation, ours.cfg.activation)


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_saved_by_saelens_loads_here_identically(tmp_path, gen, arch):
    sae_lens = pytest.importorskip("sae_lens")
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    cls, cfg_cls, extra = {
        "standard": (StandardSAE, StandardSAEConfig, {}),
        "topk": (TopKSAE, TopKSAEConfig, {"k": 5}),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}),
    }[arch]
    theirs = cls(cfg_cls(d_in=D, d_sae=D, **extra))
    fill_random_(theirs, gen)
    if arch == "jumprelu":
        with torch.no_grad():
            theirs.threshold.abs_()
    theirs.cfg.metadata.hook_name = "blocks.3.hook_resid_post"
    theirs.save_model(tmp_path / "s")
    log10 = -torch.rand(D, generator=gen) * 5
    save_file({"sparsity": log10}, str(tmp_path / "s" / "sparsity.safetensors"))  # as SAELens's training runner does
    ours = load_sae(tmp_path / "s")
    x = torch.randn(32, D, generator=gen)
    torch.testing.assert_close(ours.encode(x), theirs.encode(x))
    torch.testing.assert_close(ours.decode(ours.encode(x)), theirs.decode(theirs.encode(x)))
    assert ours.cfg.hook_name == "blocks.3.hook_resid_post" and torch.equal(ours.log10_density, log10)
    assert sae_lens is not None


def test_saved_by_sparsify_loads_here_identically(tmp_path, gen):
    sparsify = pytest.importorskip("sparsify")
    theirs = sparsify.SparseCoder(D, sparsify.SparseCoderConfig(num_latents=D, k=4))
    fill_random_(theirs, gen)
    theirs.save_to_disk(tmp_path / "layers.2")
    ours = load_sae(tmp_path / "layers.2")
    x = torch.randn(32, D, generator=gen)
    enc = theirs.encode(x)
    f_theirs = torch.zeros(32, D).scatter_(-1, enc.top_indices, enc.top_acts)
    torch.testing.assert_close(ours.encode(x), f_theirs)
    torch.testing.assert_close(ours.decode(ours.encode(x)), theirs.decode(enc.top_acts, enc.top_indices))
    assert (ours.cfg.activation, ours.cfg.k, ours.meta["format"]) == ("topk", 4, "sparsify")
