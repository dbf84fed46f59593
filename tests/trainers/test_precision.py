"""bf16 autocast on CPUs without native bf16: detection from the CPU flags, fp32 fallback or kept-with-warning, and the
decision recorded in the run (metrics.jsonl, the saved config)."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from sae_analysis.io.runs import read_metrics
from trainers import ActivationEvaluator, NoResample, TensorActivations, TrainConfig, precision, train
from trainers.checkpoint import read_state_meta

AVX512_NO_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
AMX = "processor\t: 0\nflags\t\t: fpu avx2 amx_tile amx_bf16\n"


@pytest.mark.parametrize(("text", "native"), [(AVX512_NO_BF16, False), (AVX512_BF16, True), (AMX, True), ("", None)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, text, native):
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    assert precision.cpu_native_bf16(info) is native
    assert precision.cpu_native_bf16(tmp_path / "absent") is None  # unreadable flags: nothing is assumed


def cfg(**kw) -> TrainConfig:
    return TrainConfig(model_name="synthetic", batch_size=32, buffer_mult=4, buffer_dtype="float32", num_tokens=32 * 12,
                       dict_mult=2, resample=NoResample(), log_every_tokens=4 * 32, eval_every_tokens=12 * 32, eval_tokens=256,
                       end_of_data="wrap",
                       checkpoint_every_tokens=32 * 12, resample_freq_tokens=256, autocast_bf16=True, **kw)


def emulated(monkeypatch, native: bool | None) -> None:
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda *a: native)


def test_fallback_to_fp32_without_native_bf16(monkeypatch, caplog):
    emulated(monkeypatch, False)
    with caplog.at_level(logging.WARNING, logger="trainers.precision"):
        out, reason = precision.resolve_autocast(cfg())
    assert not out.autocast_bf16 and "fp32" in reason and "avx512_bf16" in caplog.text
    kept, why = precision.resolve_autocast(cfg(cpu_bf16="emulate"))
    assert kept.autocast_bf16 and "kept" in why


@pytest.mark.parametrize("native", [True, None])
def test_native_or_unknown_cpu_keeps_bf16(monkeypatch, native):
    emulated(monkeypatch, native)
    c = cfg()
    assert precision.resolve_autocast(c) == (c, None)
    plain = dataclasses.replace(c, autocast_bf16=False)
    assert precision.resolve_autocast(plain) == (plain, None)  # nothing to decide without autocast


@pytest.mark.parametrize("native", [False, True])
def test_the_decision_is_recorded_in_the_run(monkeypatch, tmp_path, native):
    emulated(monkeypatch, native)
    acts = torch.randn(2048, 8).relu()
    train(cfg(), TensorActivations(acts, chunk=64, wrap=True), out_dir=tmp_path, progress=False,
          evaluator=ActivationEvaluator(acts[:256]))
    rows = read_metrics(tmp_path)
    saved = read_state_meta(tmp_path)["cfg"]
    if native:
        assert "precision" not in set(rows.event) and saved["autocast_bf16"] is True
    else:
        note = rows[rows.event == "precision"]
        assert len(note) == 1 and not note.autocast_bf16.iloc[0] and "fp32" in note.reason.iloc[0]
        assert saved["autocast_bf16"] is False
