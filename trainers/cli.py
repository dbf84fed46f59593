"""`sae-analysis train --preset NAME [--key value ...] [--out DIR] [--resume]` (also `python -m trainers ...`).

Every `TrainConfig` field is a flag (`--l1_coeff 1e-4` or `--l1-coeff 1e-4`). Data: `--data demo` (the embedded demo
corpus) or a local `.npy` / `.pt` / `.safetensors` array of token rows, chunked to seq_len with BOS at position 0 and
permuted with the run's seed. The model (`--model`, default the preset's model_name) is loaded by `sae_analysis.load_model`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import logging

from trainers.cli_inputs import RunInputs, config_from_args, data_source, inputs_from_args, load_sequences
from trainers.config import PRESETS, TrainConfig, schedule_warnings
from trainers.config_migrate import RENAMED
from trainers.config_resample import FLAT_FIELDS, METHODS
from trainers.ddp_launch import add_distributed_arguments, launch, pop_distributed_arguments, read_launch_file, run_rank
from trainers.preflight import preflight, requested_world_size

HELP = "train an SAE on a model's activations (presets: " + ", ".join(PRESETS) + ")"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="gelu-1l-run1", choices=sorted(PRESETS), help="starting settings")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<preset>)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--data", default=None,
                        help="data source (default 'demo'): 'demo', a token file (.npy, .pt, .safetensors, .parquet) "
                             "of rows, a folder of .parquet shards, or hub:REPO[@REV] (e.g. hub:NeelNanda/c4-code-tokenized-2b, "
                             "downloaded through huggingface_hub)")
    parser.add_argument("--tokens", dest="tokens_deprecated", default=None, metavar="SOURCE",
                        help="deprecated spelling of --data (in other commands --tokens is a count of tokens)")
    parser.add_argument("--model", default=None, help="'demo', a local model folder or a TransformerLens name")
    parser.add_argument("--bos", type=int, default=None, help="BOS token id for --tokens FILE (default: the tokenizer's)")
    parser.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    add_distributed_arguments(parser)  # --nproc, --ddp-timeout, --ddp-backend (trainers.ddp_launch)
    group = parser.add_argument_group("config overrides (TrainConfig fields; default: the preset's value)")
    docs = field_docs()
    for f in dataclasses.fields(TrainConfig):
        flags = {f"--{f.name}", f"--{f.name.replace('_', '-')}"}
        doc = docs.get(f.name, "").replace("%", "%%")
        group.add_argument(*sorted(flags), dest=f.name, default=None, metavar="VALUE", help=doc)
    opts = parser.add_argument_group("resampling options (of the --resample method named in brackets)")
    for flat, (method, name) in FLAT_FIELDS.items():
        doc = field_docs(METHODS[method]).get(name, "").replace("%", "%%")
        opts.add_argument(f"--{flat}", f"--{flat.replace('_', '-')}", dest=flat, default=None, metavar="VALUE",
                          help=f"[{method}] {doc}")
    old = parser.add_argument_group("deprecated schedule flags (counted steps; converted to tokens with a warning)")
    for name, new in RENAMED.items():
        old.add_argument(f"--{name}", f"--{name.replace('_', '-')}", dest=name, default=None, metavar="VALUE",
                         help=f"use --{new.replace('_', '-')}")



def field_docs(cls: type = TrainConfig) -> dict[str, str]:
    """The docstring under each field of a config dataclass (the flags' help texts)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore[union-attr]
    return docs



def run(args: argparse.Namespace) -> int:
    """Resolve the flags into typed values (refusing bad ones before anything is loaded or spawned), then train on one
    process, relaunch on --nproc ranks, or run as one rank (`trainers.ddp_launch`)."""
    nproc, ddp, launch_file = pop_distributed_arguments(args)
    if launch_file is not None:  # a rank started by `launch`: the parent resolved and checked everything
        return run_rank(*read_launch_file(launch_file))
    data_source(args)
    inputs = inputs_from_args(args)
    preflight(inputs, nproc)
    cfg = config_from_args(args)  # a bad value is refused here, before any rank is spawned
    if requested_world_size(None) == 1:  # the launcher (or the only process), not each torchrun worker
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        for warning in schedule_warnings(cfg):
            logging.getLogger(__name__).warning("%s", warning)
    if requested_world_size(None) > 1:  # started by torchrun with the training flags
        return run_rank(cfg, inputs, ddp)
    if (nproc or 1) > 1:
        return launch(cfg, inputs, nproc or 1, ddp)
    return train_single(cfg, inputs)


def train_single(cfg: TrainConfig, inputs: RunInputs) -> int:
    """The single-process run of `run`."""
    from sae_analysis.io.model import load_model
    from trainers.evaluate import ModelEvaluator
    from trainers.source import ModelActivations
    from trainers.train import train

    model = load_model(inputs.model, device=cfg.device)
    train_seqs, eval_seqs = load_sequences(inputs.data, cfg, model, inputs.bos)
    source = ModelActivations(model, train_seqs, hook_name=cfg.hook_name, model_batch=cfg.model_batch,
                              autocast=cfg.model_autocast, wrap=cfg.end_of_data == "wrap")
    evaluator = ModelEvaluator(model, eval_seqs, hook_name=cfg.hook_name, batch_size=min(cfg.model_batch, 64))
    result = train(cfg, source, out_dir=inputs.out, evaluator=evaluator, resume=inputs.resume, progress=inputs.progress)
    logging.getLogger(__name__).info("%s after %d steps (%d tokens); final SAE in %s", result.stopped, result.step,
                                     result.tokens, inputs.out / "final")
    return 0 if result.stopped != "interrupted" else 130
