"""Demo-recipe sweep driver (issue #13): train one named row into /work/runs/ROW, summarise it, print the table.

    python research/demo_sweep.py run ROW [--seed N] [--resume]   # train (each seed) into $SWEEP_RUNS/ROW/seed<N>
    python research/demo_sweep.py summarize ROW [--tokens N]       # measure -> docs/demo_research/rows/ROW.json
    python research/demo_sweep.py queue ROW [ROW ...]              # run --resume + summarize each, in order (resumable)
    python research/demo_sweep.py table                            # the markdown table of every summarised row
    python research/demo_sweep.py list                             # the rows and what they change

Rows are defined in `research/rows.py`; measurements in `research/measure.py`. Runs live outside git ($SWEEP_RUNS, default
/work/runs); summaries (small JSON, plus float16 frequency snapshots for the data-exhaustion rows) are committed. Every
training process uses one thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from research.rows import ROWS  # noqa: E402
from trainers import TrainConfig  # noqa: E402

RUNS = Path(os.environ.get("SWEEP_RUNS", "/work/runs"))
ROW_DIR = ROOT / "docs" / "demo_research" / "rows"
log = logging.getLogger("demo_sweep")


def run_dir(row: str, seed: int) -> Path:
    return RUNS / row / f"seed{seed}"


def finished(row: str, seed: int) -> bool:
    """The run wrote its final SAE with the row's current config."""
    path = run_dir(row, seed) / "final" / "trainer_cfg.json"
    if not path.exists():
        return False
    saved = TrainConfig.from_dict(json.loads(path.read_text())).to_dict()  # runs saved in the flat form too
    wanted = ROWS[row].config(seed).to_dict()
    return all(saved.get(k) == v for k, v in wanted.items() if k != "d_in")


def run(row: str, seed: int, *, resume: bool) -> str:
    """Train one seed of one row (resuming from its trainer state with `resume`); returns how it stopped."""
    from sae_analysis.io import load_model
    from sae_analysis.io.demo import demo_tokens
    from trainers import ModelActivations, ModelEvaluator, permute_sequences, train

    spec, cfg, out = ROWS[row], ROWS[row].config(seed), run_dir(row, seed)
    if resume and finished(row, seed):
        log.info("%s seed %d: already finished in %s", row, seed, out)
        return "done"
    torch.set_num_threads(1)
    model = load_model("demo")
    rows = permute_sequences(demo_tokens("train", seq_len=cfg.seq_len), seed)
    if spec.slice_seqs is not None:
        rows = rows[: spec.slice_seqs]
    source = ModelActivations(model, rows, hook_name=cfg.hook_name, model_batch=cfg.model_batch,
                              wrap=cfg.end_of_data == "wrap")
    evaluator = ModelEvaluator(model, demo_tokens("eval", seq_len=cfg.seq_len), hook_name=cfg.hook_name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "row.json").write_text(json.dumps({"row": row, "seed": seed, "note": spec.note, "slice_seqs": spec.slice_seqs,
                                              "train_rows": int(len(rows)), "cfg": cfg.to_dict()}, indent=1))
    result = train(cfg, source, out_dir=out, evaluator=evaluator, resume=resume, progress=False)
    log.info("%s seed %d: stopped=%s after %d steps (%d tokens)", row, seed, result.stopped, result.step, result.tokens)
    return result.stopped


def first_repeat_tokens(cfg, slice_tokens: int) -> int:
    """Training tokens served before the first refill that gets no fresh activations (trainers.buffer: a first fill of
    buffer_size rows, then a refill of buffer_size / 2 rows after each half is served): from there on 'freeze' serves the
    last pool, 'wrap' the second epoch, 'stop' only the not-yet-served rows."""
    half = cfg.buffer_size // 2
    return half * ((slice_tokens - cfg.buffer_size) // half + 1)


def export_exhaustion(row: str) -> Path:
    """Commit-sized copy of a data-exhaustion row's frequency snapshots (paper/data/demo_exhaustion/<row>.npz)."""
    from paper.exhaustion import EXHAUSTION_DIR, write_exhaustion_snapshots
    from sae_analysis.io.runs import read_frequency_snapshots

    spec, seed = ROWS[row], ROWS[row].seeds[0]
    cfg = spec.config(seed)
    tokens, logf = read_frequency_snapshots(run_dir(row, seed))
    slice_tokens = spec.slice_seqs * cfg.seq_len
    every = cfg.resample.every_tokens
    resamples = [k * every for k in range(1, cfg.num_tokens // every + 1)]
    return write_exhaustion_snapshots(EXHAUSTION_DIR / f"{row}.npz", tokens, logf, policy=cfg.end_of_data,
                                      exhausted_tokens=first_repeat_tokens(cfg, slice_tokens), slice_tokens=slice_tokens,
                                      snapshot_tokens=cfg.resample_freq_tokens, resample_tokens=resamples)


def summarize(row: str, n_tokens: int) -> Path:
    from research.measure import summarize_row

    if row == "committed":  # the committed demo SAEs themselves (their shipped metrics.jsonl and freq snapshots)
        from sae_analysis.io import demo_dir

        runs = [demo_dir() / "seed1", demo_dir() / "seed2"]
    else:
        runs = [run_dir(row, s) for s in ROWS[row].seeds if (run_dir(row, s) / "final").exists()]
    summary = summarize_row(row, runs, n_tokens=n_tokens)
    if row in ROWS and ROWS[row].slice_seqs is not None and runs:
        summary["exhaustion_snapshots"] = str(export_exhaustion(row).relative_to(ROOT))
    ROW_DIR.mkdir(parents=True, exist_ok=True)
    path = ROW_DIR / f"{row}.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    log.info("wrote %s", path)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("row", choices=sorted(ROWS))
    r.add_argument("--seed", type=int, action="append", help="default: every seed of the row")
    r.add_argument("--resume", action="store_true")
    s = sub.add_parser("summarize")
    s.add_argument("row", choices=["committed", *sorted(ROWS)])
    s.add_argument("--tokens", type=int, default=1_048_576, help="held-out tokens for frequencies (default 2^20)")
    q = sub.add_parser("queue")
    q.add_argument("rows", nargs="+", choices=sorted(ROWS))
    q.add_argument("--tokens", type=int, default=1_048_576)
    q.add_argument("--resummarize", action="store_true", help="measure rows that already have a summary again")
    sub.add_parser("table")
    sub.add_parser("list")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.cmd == "run":
        for seed in args.seed or ROWS[args.row].seeds:
            run(args.row, seed, resume=args.resume)
    elif args.cmd == "summarize":
        summarize(args.row, args.tokens)
    elif args.cmd == "queue":
        for row in args.rows:
            if any(run(row, seed, resume=True) == "interrupted" for seed in ROWS[row].seeds):
                log.warning("interrupted: the queue stops here; rerun the same command to resume")
                return
            if (ROW_DIR / f"{row}.json").exists() and not args.resummarize:
                continue
            try:
                summarize(row, args.tokens)
            except Exception:  # a failed measurement must not stop the queue's next training run
                log.exception("summarize %s failed; rerun: python research/demo_sweep.py summarize %s", row, row)
    elif args.cmd == "table":
        from research.measure import markdown_table

        sys.stdout.write(markdown_table(sorted(ROW_DIR.glob("*.json"))) + "\n")
    else:
        for name, spec in ROWS.items():
            sys.stdout.write(f"{name:16s} seeds={spec.seeds} slice={spec.slice_seqs} {spec.note}; changes {spec.changes}\n")


if __name__ == "__main__":
    main()
