"""`sae-analysis demo build [--quick] [--out DIR] [--work DIR] [--resume]`: regenerate the embedded demo suite.
`sae-analysis demo sparsity [--out DIR]`: re-measure its stored latent frequencies on the whole held-out split."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "regenerate the embedded demo suite (tiny model + two SAE seeds), offline, from the Python stdlib"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the `demo` subcommand."""
    sub = parser.add_subparsers(dest="demo_command", required=True)
    build = sub.add_parser(
        "build", help="train the demo model and SAEs and export them (resumable)",
        description="Regenerate the embedded demo suite from the running Python's standard library: train the byte-level "
                    "1-layer GELU model (d_model 128, d_mlp 512; ~6 min on 2 CPU cores), two 4,096-latent SAEs on its "
                    "blocks.0.mlp.hook_post (~16 min each), then measure and export them with a manifest (every latent "
                    "counted on the 3.2M held-out tokens: ~5-8 min): about 45 min in all. Interrupted? Run again with "
                    "--resume: finished stages are reused and the SAE runs continue from their last checkpoint.",
    )  # fmt: skip
    build.add_argument("--quick", action="store_true", help="tiny sizes (about a minute); never writes the packaged demo")
    build.add_argument("--out", type=Path, default=None,
                       help="export folder (default: sae_analysis/data/demo of this source checkout; required with --quick or "
                            "when sae_analysis is installed from a wheel)")
    build.add_argument("--work", type=Path, default=None,
                       help="folder for intermediate training state (default: ./runs/demo-build for the packaged demo, "
                            "else <out>.work beside the export folder)")
    build.add_argument("--resume", action="store_true", help="reuse completed stages and resume interrupted SAE runs")
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    build.add_argument("--only-seed", type=int, default=None,
                       help="only train the language model (or reuse it) and this seed's SAE, without exporting; run one "
                            "process per seed to train seeds in parallel, then `demo build --resume` to export")
    build.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (1 per process is fastest when several processes share few cores)")
    sparsity = sub.add_parser(
        "sparsity", help="re-measure the stored latent frequencies (sparsity.safetensors) on the whole held-out split",
        description="Count every latent of each seed on the whole eval split of the demo corpus (about 3.2M tokens, so "
                    "frequencies resolve ~3e-7), write sparsity.safetensors and record the token count in the manifest. "
                    "No training; a few minutes on 2 cores. `demo build` does the same at export.",
    )  # fmt: skip
    sparsity.add_argument("--out", type=Path, default=None, help="suite folder (default: the packaged demo)")


def run(args: argparse.Namespace) -> int:
    """Run `demo build`; returns the process exit status."""
    from trainers.demo.build import run_build, train_one_seed
    from trainers.demo.config import full_config, quick_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.demo_command == "sparsity":
        from trainers.demo.sparsity import remeasure_suite

        target = args.out if args.out is not None else checkout_demo_dir()
        if target is None:
            print("demo sparsity: pass --out DIR (this sae_analysis is an installed copy, not a checkout)", file=sys.stderr)
            return 2
        headline = remeasure_suite(target)["headline"]
        print(f"stored frequencies rewritten on {headline['sparsity_tokens']:,} held-out tokens: mean dead "
              f"{headline['sae_mean_frac_dead']:.2%}, below 1e-6 {headline['sae_mean_frac_below_1e-6']:.2%}")
        return 0
    if args.quick and (args.out is None or args.out.resolve() == checkout_demo_dir()):
        print("demo build --quick needs --out DIR outside sae_analysis/data/demo (the quick variant never overwrites the "
              "committed demo)", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else checkout_demo_dir()
    if out is None:
        print("demo build: pass --out DIR: the default writes into a source checkout's sae_analysis/data/demo, and this "
              "sae_analysis is an installed copy, not a checkout", file=sys.stderr)
        return 2
    work = args.work
    if work is None:
        work = Path.cwd() / "runs" / "demo-build" if args.out is None else out.parent / f"{out.name}.work"
    cfg = quick_config() if args.quick else full_config()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.only_seed is not None:
        run_dir = train_one_seed(cfg, work, args.only_seed, resume=args.resume, progress=not args.no_progress)
        print(f"seed {args.only_seed} trained in {run_dir}; export with `demo build --resume`")
        return 0
    manifest = run_build(cfg, out, work, resume=args.resume, progress=not args.no_progress)
    print(f"demo suite written to {out}")
    for key, value in manifest["headline"].items():
        print(f"  {key}: {value}")
    return 0


def checkout_demo_dir() -> Path | None:
    """The demo folder of the source checkout this code runs from, or None for an installed copy: the build writes into
    a checkout (whose git history then records the new suite) or into --out, never into site-packages."""
    from sae_analysis.io.demo_paths import demo_dir

    folder = demo_dir()
    return folder if (folder.parents[2] / "pyproject.toml").is_file() else None


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m trainers.demo`), without the `sae-analysis` dispatcher."""
    parser = argparse.ArgumentParser(prog="sae-analysis demo", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
