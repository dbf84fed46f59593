"""Prepare a `demo build --resume` work folder from a finished research row, so that the demo is rebuilt from the row's
two runs instead of training them again (their configs equal the build's seed configs once `trainers/demo/config.py`
carries the row's change; `finished_run_verdict` then says 'reuse').

    python research/rebuild_from_row.py WORK ROW        # committed LM + the row's seed1 / seed2 runs, copied into WORK
    python -m trainers.demo build --resume --work WORK  # after setting the row's change in trainers/demo/config.py

Stop the research queues first: every row derives its config from trainers/demo/config.py when it resumes.
The LM stage reuses the committed model: its state dict and, from the committed manifest, its metrics (`lm_metrics.json`,
checked against the build's LM config).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from safetensors.torch import save_file  # noqa: E402

from research.demo_sweep import run_dir  # noqa: E402
from research.rows import ROWS  # noqa: E402
from sae_analysis.io import demo_dir, load_model  # noqa: E402
from trainers.demo.config import full_config  # noqa: E402
from trainers.demo.lm import make_model  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path)
    p.add_argument("row", choices=sorted(ROWS))
    args = p.parse_args()
    cfg, manifest = full_config(), json.loads((demo_dir() / "manifest.json").read_text())
    lm = {**manifest["model"], "corpus_fingerprint": manifest["corpus"]["fingerprint"]}
    if lm["lm_config"] != dataclasses.asdict(cfg.lm):
        sys.exit("the committed LM was built with another LM config than trainers/demo/config.py's: retrain it (demo build)")
    state = {k: v.contiguous() for k, v in load_model("demo").state_dict().items()}
    if set(state) != set(make_model(cfg.lm).state_dict()):
        sys.exit("the committed model's parameters differ from the build's LM: retrain it (demo build)")
    (args.work / "lm").mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.work / "lm" / "state_dict.safetensors"))
    (args.work / "lm" / "lm_metrics.json").write_text(json.dumps(lm, indent=1))
    for seed in cfg.seeds:
        src, dst = run_dir(args.row, seed), args.work / "sae" / f"seed{seed}"
        if not (src / "final").exists():
            sys.exit(f"{src} has not finished: run `python research/demo_sweep.py run {args.row} --resume` first")
        if not dst.exists():
            shutil.copytree(src, dst)
    sys.stderr.write(f"prepared {args.work}: now set the row's change in trainers/demo/config.py and run "
                     f"`python -m trainers.demo build --resume --work {args.work}`\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
