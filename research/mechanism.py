"""Item 4 of issue #13: is the rare cluster's shared encoder direction, and the seeds' agreement on it, the anti-mean-input
direction, or what else?

    python research/mechanism.py [ROW ...] [--tokens N] [--out docs/demo_research/mechanism.json]

For every seed of every ROW (a finished sweep row under $SWEEP_RUNS, or `committed` for the shipped demo SAEs), on the
first N held-out tokens (default 2^17 = 131,072, held in memory once and shared by every SAE; the ULF threshold 1e-4 is
then ~13 firings): the ULF set (freq < 1e-4), the median cosine of its encoders with their mean mu (item 4(a)), the
decoders' likewise, and mu's cosine with candidate directions:

* m = E[x] - b_dec, the centred mean input (Anthropic's February-2024 account of ultra-low-frequency latents,
  REPLICATION.md §9.3: an encoder with w . m < 0 has an effective negative bias); also the median member's cosine with m;
* E[x] itself; sign(m) and m / rms(x - b_dec) (per coordinate): where Adam's per-coordinate normalisation takes a
  gradient that is (x - b_dec) on average, for consistent and for noisy gradients; and g, the centred input averaged
  over the ULF latents' own firings (weighted by how many fire on each token: the inputs whose L1 gradient moves them).

For two seeds: the cosine of their mu (item 4(b)), and the same cosine after removing from both the span of a set of
candidate directions (`measure.residual_cosine`): what the seeds share beyond those; with the residual's share of |mu|.

By firing count (on the N tokens): each member's cosine with -m / rms, median per bin (0 firings, 1-2, 3 to the ULF
threshold). `--over-training ROW`: the same measures at every training checkpoint of the row's seed 1 (ULF set from the
checkpoint's own stored frequencies, measured by the trainer on 262,144 held-out tokens): does the shared component grow
with training?
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from research.demo_sweep import ROWS, run_dir  # noqa: E402
from research.measure import (  # noqa: E402
    HOOK,
    SEQ_LEN,
    centred_mean_input,
    mean_input_alignment,
    member_cosines,
    residual_cosine,
)
from sae_analysis.activations import hook_activations, token_batches  # noqa: E402
from sae_analysis.io import demo_dir, load_model, load_sae  # noqa: E402
from sae_analysis.io.demo import demo_tokens  # noqa: E402
from sae_analysis.io.readers import atomic_write  # noqa: E402
from sae_analysis.metrics import RARE_FREQ  # noqa: E402
from sae_analysis.similarity import direction_cosine  # noqa: E402
from sae_analysis.ulf import ulf_cluster, ulf_mask  # noqa: E402

CHUNK = 8192
N_PCS = 10


def folders(row: str) -> list[Path]:
    if row == "committed":
        return [demo_dir() / "seed1", demo_dir() / "seed2"]
    return [run_dir(row, s) / "final" for s in ROWS[row].seeds if (run_dir(row, s) / "final").is_dir()]


def adam_mean_direction(sae, mean_x: torch.Tensor, sq_x: torch.Tensor) -> torch.Tensor:
    """m / rms(x - b_dec) per coordinate, from E[x] and E[x^2]: where Adam's per-coordinate normalisation takes a
    gradient that is (x - b_dec) on average."""
    b = sae.b_dec.detach().float()
    return centred_mean_input(sae, mean_x) / (sq_x - 2 * b * mean_x + b**2).clamp_min(1e-12).sqrt()


@torch.no_grad()
def seed_mechanism(sae, xs: torch.Tensor, mean_x: torch.Tensor, sq_x: torch.Tensor) -> tuple[dict, dict[str, torch.Tensor]]:
    """One SAE on the held activations `xs` [n, d_in]: ULF set, mu, and mu's cosine with the candidate directions."""
    counts = torch.zeros(sae.cfg.d_sae)
    for i in range(0, len(xs), CHUNK):
        counts += (sae.encode_pre(xs[i : i + CHUNK]) > 0).sum(0)
    mask = ulf_mask(counts / len(xs), RARE_FREQ)
    g, weight = torch.zeros(sae.cfg.d_in, dtype=torch.float64), 0.0
    for i in range(0, len(xs), CHUNK):
        x = xs[i : i + CHUNK]
        n_firing = (sae.encode_pre(x)[:, mask] > 0).sum(1).double()
        g += n_firing @ (x - sae.b_dec).double()
        weight += float(n_firing.sum())
    enc, dec = ulf_cluster(sae.W_enc.T.float(), mask), ulf_cluster(sae.W_dec.float(), mask)
    m = centred_mean_input(sae, mean_x)
    dirs = {"mu": enc.mean_direction, "m": m, "g": (g / max(weight, 1.0)).float(), "sign_m": torch.sign(m),
            "adam_m": adam_mean_direction(sae, mean_x, sq_x)}
    cos = {f"cos_mu_{k}": direction_cosine(dirs["mu"], dirs.get(k, mean_x)) for k in ("E[x]", "sign_m", "adam_m", "g")}
    each = member_cosines(sae, mask, dirs["adam_m"])
    cos["ulf_enc_cos_adam_m_median"] = float(each.median())
    firings = counts[mask]
    threshold = int(RARE_FREQ * len(xs))
    bins = {"0": firings == 0, "1-2": (firings >= 1) & (firings <= 2), f"3-{threshold}": firings >= 3}
    cos["ulf_enc_cos_adam_m_median_by_firings"] = {k: [int(b.sum()), float(each[b].median()) if b.any() else None]
                                                   for k, b in bins.items()}  # fmt: skip
    return {"n_ulf": int(mask.sum()), "frac_ulf": float(mask.double().mean()),
            "ulf_enc_cos_median": float(enc.cos_with_mean.median()), "ulf_dec_cos_median": float(dec.cos_with_mean.median()),
            **mean_input_alignment(sae, mask, mean_x), **cos}, dirs  # fmt: skip


def row_mechanism(row: str, xs: torch.Tensor, mean_x: torch.Tensor, sq_x: torch.Tensor, pcs: list[torch.Tensor]) -> dict:
    seeds, dirs = {}, []
    for folder in folders(row):
        sae = load_sae(folder, dtype=torch.float32)
        out, d = seed_mechanism(sae, xs, mean_x, sq_x)
        seeds[folder.parent.name if folder.name == "final" else folder.name] = out
        dirs.append(d)
    report = {"row": row, "n_tokens": len(xs), "seeds": seeds}
    if len(dirs) == 2:
        a, b = dirs[0]["mu"], dirs[1]["mu"]
        ms, gs = [d["m"] for d in dirs], [d["g"] for d in dirs]
        signs, adams = [d["sign_m"] for d in dirs], [d["adam_m"] for d in dirs]
        sets = {"m": ms, "m_E[x]": [*ms, mean_x], f"m_E[x]_pc1-{N_PCS}": [*ms, mean_x, *pcs], "sign_m": signs,
                "adam_m": adams, "g": gs,
                f"all (m, E[x], pc1-{N_PCS}, sign_m, adam_m, g)": [*ms, mean_x, *pcs, *signs, *adams, *gs]}  # fmt: skip
        report["rare_dir_cos_seeds"] = direction_cosine(a, b)
        report["rare_dir_cos_seeds_beyond"] = {k: residual_cosine(a, b, v) for k, v in sets.items()}
        q = torch.linalg.qr(torch.stack([v.double() for v in adams], 1))[0]
        report["mu_share_beyond_adam_m"] = [float((u.double() - q @ (q.T @ u.double())).norm() / u.double().norm())
                                            for u in (a, b)]  # fmt: skip
        report["centred_mean_input_cos_seeds"] = direction_cosine(ms[0], ms[1])
    return report


@torch.no_grad()
def over_training(row: str, mean_x: torch.Tensor, sq_x: torch.Tensor) -> list[dict]:
    """At every checkpoint of the row's seed 1: the ULF set of its stored frequencies, the members' median cosine with
    their mean, and mu's / the median member's cosine with -m / rms (the direction of the final measure)."""
    from sae_analysis.frequency import frequencies_from_log10

    out = []
    for ck in sorted((run_dir(row, ROWS[row].seeds[0]) / "checkpoints").iterdir()):
        sae = load_sae(ck, dtype=torch.float32)
        freq = frequencies_from_log10(sae.log10_density, str(ck)).freq
        mask = ulf_mask(freq, RARE_FREQ)
        adam_m = adam_mean_direction(sae, mean_x, sq_x).double()
        enc = ulf_cluster(sae.W_enc.T.float(), mask)
        each = member_cosines(sae, mask, adam_m)
        out.append({"tokens": int(ck.name), "frac_ulf": float(mask.double().mean()),
                    "ulf_enc_cos_median": float(enc.cos_with_mean.median()),
                    "cos_mu_adam_m": direction_cosine(enc.mean_direction, adam_m.float()),
                    "ulf_enc_cos_adam_m_median": float(each.median())})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows", nargs="*", default=["committed"], choices=["committed", *sorted(ROWS)])
    p.add_argument("--tokens", type=int, default=2**17)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "demo_research" / "mechanism.json")
    p.add_argument("--over-training", action="append", default=[], choices=sorted(ROWS), metavar="ROW",
                   help="also measure every training checkpoint of ROW's seed 1 (repeatable)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model("demo")
    tokens = demo_tokens("eval", -(-args.tokens // SEQ_LEN), seq_len=SEQ_LEN)
    with torch.no_grad():
        xs = torch.cat([hook_activations(model, b, HOOK).reshape(-1, model.cfg.d_mlp).float() for b in token_batches(tokens, 32)])
    mean_x, sq_x = xs.mean(0), xs.pow(2).mean(0)
    evecs = torch.linalg.eigh(torch.cov(xs.T.double()))[1]
    pcs = [evecs[:, -1 - i].float() for i in range(N_PCS)]  # the top principal components of the activations
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    for row in args.rows:
        report[row] = row_mechanism(row, xs, mean_x, sq_x, pcs)
        save(args.out, report)
        sys.stdout.write(json.dumps(report[row]) + "\n")
    for row in args.over_training:
        report.setdefault("over_training", {})[row] = over_training(row, mean_x, sq_x)
        save(args.out, report)
        sys.stdout.write(json.dumps(report["over_training"][row]) + "\n")


def save(path: Path, report: dict) -> None:
    """Atomically, after each row: nothing is lost if the run is stopped."""
    text = json.dumps(report, indent=1) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


if __name__ == "__main__":
    main()
