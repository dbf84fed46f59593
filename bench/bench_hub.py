"""Time `paper_figures.py --source hub` per figure against a full-size local replica of the four Hub repositories.

    python bench/bench_hub.py --root /tmp/bench_hub --tokens 65536                  # this checkout
    python bench/bench_hub.py --root /tmp/bench_hub --tokens 65536 --before 594f006 # and a base commit, for comparison
    python bench/bench_hub.py --root /tmp/bench_hub --tokens 65536 --offline-rerun  # then again, offline from the cache

The replica (tests/hub_replica.py with FULL: 2048 x 16384 SAEs for checkpoints 9-25 and 47, a gelu-1l-shaped model with
d_vocab 48,262 and a real byte-level BPE tokenizer, parquet token shards; random weights) is written once under
ROOT/repos (about 2.3 GB, never committed) and served over the Hub protocol on 127.0.0.1 (tests/hubserver.py). Each
variant runs in its own process with an empty huggingface_hub cache, so downloads are included. The base commit's code
is exported with `git archive` into ROOT/code-<commit>. Results: ROOT/bench-<label>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the test fixtures' replica builder and Hub server, not a package import

from hub_replica import FULL, build_replica  # noqa: E402
from hubserver import HubServer  # noqa: E402


def _code_dir(root: Path, commit: str | None) -> Path:
    if commit is None:
        return REPO_ROOT
    target = root / f"code-{commit}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def run_variant(root: Path, label: str, code: Path, argv: list[str], endpoint: str, cache_of: str | None = None) -> dict:
    """One paper_figures.py run in a fresh process and output folder; wall time, per-figure seconds and statuses, load
    average. With a fresh huggingface_hub cache (downloads included), or with `cache_of`: offline (HF_HUB_OFFLINE=1)
    from the cache that variant's run filled."""
    out, home = root / f"out-{label}", root / f"hf-{cache_of or label}"
    for folder in (out,) if cache_of else (out, home):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    offline = "1" if cache_of else "0"
    env = os.environ | {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_OFFLINE": offline, "PYTHONPATH": str(code)}
    env.pop("HF_HUB_CACHE", None)
    load_before, start, cpu_before = os.getloadavg(), time.perf_counter(), _children_cpu_s()
    cmd = [sys.executable, "-c", _RUNNER, str(code / "paper_figures.py"), "--source", "hub", "--out", str(out), *argv]
    done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _children_cpu_s() - cpu_before
    (root / f"log-{label}.txt").write_text(done.stdout + done.stderr)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {"figures": {}}
    peak = json.loads(done.stdout.strip().splitlines()[-1]).get("peak_rss_mb") if done.stdout.strip() else None
    return {"label": label, "code": str(code), "argv": argv, "rc": done.returncode, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "threads": torch_threads(),
            "peak_rss_mb": peak, "load_before": load_before, "load_after": os.getloadavg(),
            "figures": {n: {"status": s["status"], "seconds": s.get("seconds"), "reason": s.get("reason", "")[:120]}
                        for n, s in results["figures"].items()}}  # fmt: skip


def _children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def torch_threads() -> int:
    """Threads the child's torch uses (its default: the cores this process may run on)."""
    return len(os.sched_getaffinity(0))


_RUNNER = """
import json, resource, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit:
    pass
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
"""Runs paper_figures.py as __main__ and prints the process's peak RSS (MB) as the last stdout line."""


def table(runs: list[dict]) -> str:
    names = list(dict.fromkeys(n for r in runs for n in r["figures"]))
    head = "| figure | " + " | ".join(r["label"] for r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    for n in names:
        cells = []
        for r in runs:
            f = r["figures"].get(n, {})
            cells.append(f"{f['seconds']:.1f} s" if f.get("status") == "drawn" else f.get("status", "-"))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("| **wall (incl. loading)** | " + " | ".join(f"**{r['wall_s']:.0f} s**" for r in runs) + " |")
    lines.append("| CPU time / threads (≈ wall on an idle machine) | " + " | ".join(
        f"{r['cpu_s'] / r['threads']:.0f} s" for r in runs if "cpu_s" in r) + " |")  # fmt: skip
    lines.append("| peak RSS | " + " | ".join(f"{r['peak_rss_mb'] or 0:.0f} MB" for r in runs) + " |")
    lines.append("| load average before / after | " + " | ".join(
        f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f}" for r in runs) + " |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=Path("/tmp/bench_hub"))
    p.add_argument("--tokens", type=int, default=65_536)
    p.add_argument("--loss-seqs", type=int, default=None, help="default: the script's (256)")
    p.add_argument("--before", default=None, help="a commit to time as well (exported with git archive)")
    p.add_argument("--only-before", action="store_true", help="time only the --before commit")
    p.add_argument("--offline-rerun", action="store_true",
                   help="after each variant, run it again offline (HF_HUB_OFFLINE=1) from the cache it filled, fresh output")
    args = p.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    if not (args.root / "repos" / ".complete").exists():
        start = time.perf_counter()
        build_replica(args.root / "repos", FULL)
        (args.root / "repos" / ".complete").write_text("")
        print(f"built the full-size replica in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    argv = ["--tokens", str(args.tokens), "--formats", "png"] + (["--loss-seqs", str(args.loss_seqs)] if args.loss_seqs else [])
    variants = [] if args.only_before else [("after", None)]
    variants += [(f"before-{args.before}", args.before)] if args.before else []
    runs = []
    with HubServer(args.root / "repos") as server:
        for label, commit in variants:
            runs.append(run_variant(args.root, label, _code_dir(args.root, commit), argv, server.endpoint))
            (args.root / f"bench-{label}.json").write_text(json.dumps(runs[-1], indent=2))
            print(f"{label}: rc {runs[-1]['rc']}, {runs[-1]['wall_s']} s", file=sys.stderr)
            if args.offline_rerun:
                runs.append(run_variant(args.root, f"{label}-offline", _code_dir(args.root, commit), argv, server.endpoint,
                                        cache_of=label))
                (args.root / f"bench-{label}-offline.json").write_text(json.dumps(runs[-1], indent=2))
                print(f"{label}-offline: rc {runs[-1]['rc']}, {runs[-1]['wall_s']} s", file=sys.stderr)
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
