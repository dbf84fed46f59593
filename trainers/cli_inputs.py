"""What `sae-analysis train`'s flags resolve to, shared by the single-process path (`trainers.cli`) and each rank of a
data-parallel run (`trainers.ddp_launch`): the training config (a preset or a saved run, plus overrides), the run's
inputs (`RunInputs`: folder, model, data source) and the data source's token sequences (`--data`: 'demo', a token file
or folder, or hub:REPO[@REV]). Only `trainers.cli` reads the argparse namespace; everything below it gets these typed
values."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_analysis.errors import UsageError
from trainers.checkpoint import read_state_meta
from trainers.config import TrainConfig, preset
from trainers.config_migrate import RENAMED
from trainers.config_resample import FLAT_FIELDS


def data_source(args: argparse.Namespace) -> str:
    """`--data`, or the deprecated `--tokens SOURCE` (with a warning); sets `args.data` and clears the alias."""
    old = vars(args).pop("tokens_deprecated", None)
    if old is not None:
        if args.data is not None and args.data != old:
            raise UsageError(f"--tokens {old} and --data {args.data} disagree: give only --data")
        warnings.warn("`sae-analysis train --tokens SOURCE` is deprecated: use --data SOURCE", FutureWarning, stacklevel=2)
        logging.getLogger(__name__).warning("--tokens SOURCE is deprecated: use --data SOURCE")
        args.data = old
    args.data = args.data or "demo"
    return args.data


@dataclass(frozen=True)
class RunInputs:
    """Everything but the training config that a training command needs (resolved from the flags by `inputs_from_args`;
    travels to data-parallel ranks inside the launch file, `trainers.ddp_launch`)."""

    out: Path
    """The run folder."""
    model: str
    """'demo', a local model folder or a TransformerLens name."""
    data: str = "demo"
    """'demo', a token file or folder, or hub:REPO[@REV]."""
    bos: int | None = None
    """BOS token id for a token file (None: the tokenizer's)."""
    resume: bool = False
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "out": str(self.out)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunInputs:
        return cls(**{**d, "out": Path(d["out"])})


def inputs_from_args(args: argparse.Namespace) -> RunInputs:
    """The run's inputs from the flags (after `data_source`)."""
    return RunInputs(out=Path(args.out or f"runs/{args.preset}"), model=args.model or preset_or_saved_model(args),
                     data=args.data or "demo", bos=args.bos, resume=bool(args.resume), progress=not args.no_progress)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset with the flags given; with --resume and a saved run, the saved config with the flags given."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)} | set(RENAMED) | set(FLAT_FIELDS)  # RENAMED: deprecated
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    meta = read_state_meta(Path(args.out or f"runs/{args.preset}")) if args.resume else None
    base = TrainConfig.from_dict(meta["cfg"]) if meta is not None else preset(args.preset)
    return base.with_overrides(overrides, flat_flags=True)


def preset_or_saved_model(args: argparse.Namespace) -> str:
    """The model_name of the saved run (with --resume) or of the preset, when --model is not given."""
    meta = read_state_meta(Path(args.out or f"runs/{args.preset}")) if args.resume else None
    return str(meta["cfg"]["model_name"]) if meta is not None else preset(args.preset).model_name


def hub_sequences(spec: str, cfg: TrainConfig, bos: int | None) -> tuple[Any, Any]:
    """`hub:REPO[@REVISION]`: every sequence of the dataset's train split (downloaded once into the huggingface_hub
    cache), cut into seq_len with BOS first as the original did, then permuted with the run's seed."""
    from sae_analysis.io.tokens import hub_tokens
    from trainers.source import permute_sequences

    repo, _, revision = spec.removeprefix("hub:").partition("@")
    seqs = hub_tokens(repo, n_seq=None, seq_len=cfg.seq_len, bos_token_id=bos, revision=revision or None)
    seqs = permute_sequences(seqs, cfg.seed)
    return seqs, seqs  # no held-out split in the original: evaluation samples the training pool


def load_sequences(spec: str, cfg: TrainConfig, model: Any, bos: int | None) -> tuple[Any, Any]:
    """(training sequences, evaluation sequences) for `--data`."""
    from sae_analysis.io.tokens import load_token_file, reshape_rows
    from trainers.source import permute_sequences

    if spec == "demo":
        from sae_analysis.io.demo import demo_tokens

        return demo_tokens("train", seq_len=cfg.seq_len), demo_tokens("eval", seq_len=cfg.seq_len)
    if bos is None:
        bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    if spec.startswith("hub:"):
        return hub_sequences(spec, cfg, bos)
    seqs = permute_sequences(reshape_rows(load_token_file(spec), cfg.seq_len, bos), cfg.seed)
    return seqs, seqs  # no held-out split in the original: evaluation samples the training pool (REPLICATION.md §2)


__all__ = ["RunInputs", "inputs_from_args", "data_source", "config_from_args", "preset_or_saved_model", "hub_sequences",
           "load_sequences"]
