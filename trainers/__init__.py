"""The minimal trainer: `train(cfg, source, out_dir=...)` on activation chunks, with Neel's run-1 settings as a preset.

    from trainers import preset, train, ModelActivations, ModelEvaluator
    cfg = preset("demo").with_overrides({"num_tokens": 100_000})
    result = train(cfg, ModelActivations(model, tokens, hook_name=cfg.hook_name, model_batch=cfg.model_batch),
                   out_dir="runs/demo", evaluator=ModelEvaluator(model, tokens, hook_name=cfg.hook_name))
"""

from trainers.buffer import MixingBuffer, mixing_buffer
from trainers.config import PRESETS, TrainConfig, preset
from trainers.config_resample import AnthropicResample, KaimingResample, NoResample
from trainers.evaluate import ActivationEvaluator, ModelEvaluator
from trainers.source import ModelActivations, TensorActivations, permute_sequences
from trainers.train import NonFiniteLossError, TrainResult, train, train_step

__all__ = ["MixingBuffer", "mixing_buffer", "PRESETS", "TrainConfig", "preset", "AnthropicResample", "KaimingResample",
           "NoResample", "ActivationEvaluator", "ModelEvaluator",
           "ModelActivations", "TensorActivations",
           "permute_sequences", "NonFiniteLossError", "TrainResult", "train", "train_step"]
