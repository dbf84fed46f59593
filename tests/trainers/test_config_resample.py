"""Resampling options nested by method (`trainers.config_resample`): JSON round trips, the flat form of older configs and
run folders (read with a deprecation warning, and a run saved in that form resumes bit-identically), and the command
line's flat flags (a flag of another method than the run's is one line naming the fix)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from sae_analysis.cli import main
from trainers import (
    ActivationEvaluator,
    AnthropicResample,
    KaimingResample,
    NoResample,
    TensorActivations,
    TrainConfig,
    preset,
    train,
)
from trainers import checkpoint as ckpt
from trainers.config_resample import FLAT_FIELDS, METHODS


def flat_form(cfg: TrainConfig) -> dict:
    """`cfg` as the trainer saved it before the nesting: the method's name and every method's fields side by side."""
    d = cfg.to_dict()
    nested = d.pop("resample")
    d["resample"] = nested["method"]
    for flat, (method, name) in FLAT_FIELDS.items():
        value = nested[name] if method == nested["method"] else getattr(METHODS[method](), name)
        d[flat] = list(value) if isinstance(value, tuple) else value
    return d


@pytest.mark.parametrize("resample", [NoResample(), KaimingResample(every_tokens=512, freq=1e-3),
                                      AnthropicResample(at_tokens=(512, 2048), window_tokens=256, loss="loss", center=True)])
def test_nested_json_round_trips_and_the_flat_form_reads_back_equal(resample):
    cfg = dataclasses.replace(preset("demo"), resample=resample)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["resample"]["method"] == resample.method and "resample_every_tokens" not in d
    assert TrainConfig.from_dict(d) == cfg
    with pytest.warns(FutureWarning, match="deprecated"):
        assert TrainConfig.from_dict(json.loads(json.dumps(flat_form(cfg)))) == cfg


def test_overrides_take_a_method_its_options_or_the_deprecated_flat_names():
    demo = preset("demo")
    assert demo.with_overrides({"resample": "kaiming"}).resample == demo.resample  # same method: the preset's options
    assert demo.with_overrides({"resample": {"method": "anthropic", "at_tokens": [512]}}).resample == \
        AnthropicResample(at_tokens=(512,))
    with pytest.warns(FutureWarning, match="flat resampling"):
        assert demo.with_overrides({"resample_freq": 0.01}).resample == dataclasses.replace(demo.resample, freq=0.01)
    with pytest.raises(ValueError, match="unknown anthropic resampling options"):
        demo.with_overrides({"resample": {"method": "anthropic", "every_tokens": 512}})
    with pytest.raises(ValueError, match="strictly increasing"):
        AnthropicResample(at_tokens=(1024, 512))


def test_a_flag_of_another_method_is_one_line_naming_the_fix(capsys, tmp_path):
    assert main(["train", "--preset", "demo", "--model", str(tmp_path), "--data", "demo", "--out", str(tmp_path / "r"),
                 "--resample-window-tokens", "1024"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resample-window-tokens" in err and "--resample METHOD" in err


def test_a_run_saved_in_the_flat_form_resumes_bit_identically(tmp_path):
    """A run folder whose trainer state holds the flat config (as written before the nesting) continues exactly like an
    uninterrupted run of the nested config: 40 steps, state rewritten in the flat form, resumed to 80 steps."""
    g = torch.Generator().manual_seed(3)
    acts = (torch.rand(4000, 16, generator=g) * (torch.rand(4000, 16, generator=g) < 0.2)) @ torch.randn(16, 16, generator=g)
    b = 64
    cfg = TrainConfig(model_name="synthetic", batch_size=b, buffer_mult=4, buffer_dtype="float32", lr=3e-3, l1_coeff=2e-5,
                      num_tokens=80 * b, seed=2, dict_mult=2, end_of_data="wrap", eval_tokens=512, resample_freq_tokens=512,
                      resample=KaimingResample(every_tokens=20 * b, freq=0.05), log_every_tokens=10 * b,
                      eval_every_tokens=40 * b, checkpoint_every_tokens=20 * b)

    def run(c: TrainConfig, folder: str, resume: bool = False) -> None:
        train(c, TensorActivations(acts, chunk=100, wrap=True), out_dir=tmp_path / folder,
              evaluator=ActivationEvaluator(acts[:1024]), resume=resume, progress=False)

    run(cfg, "ref")
    run(dataclasses.replace(cfg, num_tokens=40 * b), "old")
    tensors, meta = ckpt.load_state(tmp_path / "old")
    ckpt.save_state(tmp_path / "old", tensors, {**meta, "cfg": flat_form(TrainConfig.from_dict(meta["cfg"]))})
    with pytest.warns(FutureWarning, match="flat resampling"):
        run(cfg, "old", resume=True)
    a, b_ = (load_file(str(tmp_path / r / "final" / "sae_weights.safetensors")) for r in ("ref", "old"))
    assert all(torch.equal(a[k], b_[k]) for k in a)
    assert ckpt.read_state_meta(tmp_path / "old")["cfg"]["resample"]["method"] == "kaiming"  # saved nested from now on
