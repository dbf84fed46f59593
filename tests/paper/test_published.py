"""The published-value table (paper.published.PUBLISHED), row by row: each row is paired with a documented key that
measures what the published value describes, its number matches its text, and what REPLICATION.md §11 marks
unconfirmed is shown as unconfirmed in report.md."""

from __future__ import annotations

import inspect
import re

import pytest

from paper.published import PUBLISHED, Published
from paper.report import PHASE_KEYS, RESULT_KEYS, write_report
from sae_analysis.metrics import RARE_FREQ
from sae_analysis.table import COMPARE_KEYS, KEYS, summarize

DOCS = {"runs": KEYS, "compare": COMPARE_KEYS, "phase": PHASE_KEYS}
UNCONFIRMED = {"Reconstruction score (zero ablation)", "ULF changepoint in training"}
"""§11 rows whose value is unconfirmed: the ≈92% score, the ≈1.6B-token 'phase transition'."""


def doc(row: Published) -> str:
    section, key = row.key.split(".")
    assert section in RESULT_KEYS and section in DOCS, row
    assert key in DOCS[section], f"{row.quantity}: {key} is not a documented {section} key"
    return DOCS[section][key]


@pytest.mark.parametrize("row", PUBLISHED, ids=lambda r: r.quantity)
def test_row_is_paired_with_the_key_that_measures_it(row):
    assert row.definition.lower() in doc(row).lower(), (row.quantity, doc(row))
    assert (row.value is None) == (row.tag == "—" or row.tag == "[extension]") or row.value == "no confirmed value"
    if row.value is None:
        assert row.number is None


@pytest.mark.parametrize("row", [r for r in PUBLISHED if r.number is not None], ids=lambda r: r.quantity)
def test_row_number_is_its_text(row):
    """The number is what the quoted text says: the first percentage for '%', B tokens for 'tok', the first number else."""
    if row.value == "none":
        assert row.number == 0
    elif row.unit == "%":
        pct = re.search(r"(\d+(?:\.\d+)?)%", row.value)
        assert pct is not None and float(pct.group(1)) == pytest.approx(100 * row.number, abs=0.05 + 1e-9)
    elif row.unit == "tok":
        assert float(re.search(r"(\d+(?:\.\d+)?)B", row.value).group(1)) * 1e9 == row.number
    else:
        assert float(re.search(r"\d+(?:\.\d+)?", row.value).group()) == row.number


def test_thresholds_in_row_labels_are_the_ones_the_keys_use():
    ulf = next(r for r in PUBLISHED if r.key == "runs.ulf_fraction")
    assert "freq < 1e-4" in ulf.quantity and RARE_FREQ == 1e-4
    assert inspect.signature(summarize).parameters["ulf_threshold"].default == RARE_FREQ
    below = next(r for r in PUBLISHED if r.key == "runs.frac_below_1e-6")
    assert "1e-6" in below.quantity and "< 1e-6" in below.value and "< 1e-6" in KEYS["frac_below_1e-6"]


def test_ulf_rows_pair_the_95_percent_with_co_firing_not_with_the_cosine():
    """§11's 95% is '95% of ULF latents fire on one input': a co-firing share, not the cos > 0.95 fraction."""
    by_key = {r.key: r for r in PUBLISHED}
    cofire, cos = by_key["runs.ulf_max_frac_active"], by_key["runs.ulf_enc_frac_cos_above_095"]
    assert cofire.value == "95% of ULF latents fire on one input" and cofire.number == 0.95
    assert cos.value is None and cos.number is None
    assert [r for r in PUBLISHED if r.value and "95%" in r.value] == [cofire]


def test_class_split_is_approximate_and_the_finer_numbers_only_quoted():
    rows = {r.key: r for r in PUBLISHED if r.key in ("runs.frac_1_sparse", "runs.frac_10_sparse", "runs.frac_dense")}
    assert [rows[k].value for k in ("runs.frac_1_sparse", "runs.frac_10_sparse", "runs.frac_dense")] == ["≈4%", "≈4%", "≈92%"]
    assert all(r.tag == "[Neel] approximate" for r in rows.values())
    for r in PUBLISHED:
        for finer in ("92.1%", "3.9%", "4.0%"):
            if finer in (r.value or ""):
                pytest.fail(f"{r.quantity}: the finer split {finer} may only appear as a quoted, unconfirmed note")
            if finer in r.note:
                assert "quoted, unconfirmed" in r.note
    assert "quoted, unconfirmed" in rows["runs.frac_dense"].note
    nonrare = [r for r in PUBLISHED if r.key.startswith("runs.frac_") and r.key.endswith("_nonrare")]
    assert nonrare and all(r.value is None for r in nonrare)  # the post's fractions are over all latents (§9.1)


def test_unconfirmed_values_say_so_in_the_report(tmp_path):
    assert {r.quantity for r in PUBLISHED if "unconfirmed" in r.tag} == UNCONFIRMED
    ulf = next(r for r in PUBLISHED if r.key == "runs.ulf_fraction")
    assert "60%" not in ulf.value and "≈60% is quoted in summaries, unconfirmed" in ulf.note
    results = {"source": {"label": "t", "note": "n", "kind": "demo"}, "figures": {},
               "runs": {"a": {k.split(".")[1]: 0.5 for k in (r.key for r in PUBLISHED) if k.startswith("runs.")}},
               "intervals": {"a": {"frac_dense": {"estimate": 0.5, "low": 0.4, "high": 0.6, "resampled": "latents",
                                                  "n_units": 10, "n_resamples": 100}}},
               "compare": {"ulf_direction_cos": 0.9}, "phase": {"changepoint_tokens": 1.5e9}}  # fmt: skip
    path = tmp_path / "report.md"
    write_report(results, path)
    lines = {line.split(" | ")[0].removeprefix("| "): line for line in path.read_text().splitlines() if line.startswith("| ")}
    for r in PUBLISHED:
        line = lines[r.quantity]
        assert r.tag in line and (r.value or "none published") in line
        if r.quantity in UNCONFIRMED:
            assert "| unconfirmed |" in line
    assert "a: 50.0% [40.0%, 60.0%]" in lines["Dense decoders (all latents)"]
    assert "1.5B tokens" in lines["ULF changepoint in training"]
