"""The pieces behind `paper_figures.py`: where checkpoints come from, the on-disk cache, the cached computations, the report.

    sources.py   demo / hub / smoke `Source`s and the auto fallback (`resolve_source`)
    cache.py     computed arrays (.npz) and numbers (.json), written atomically
    context.py   one run's settings, cache and lazily loaded source (`Context`)
    compute.py   cached calls into `sae_analysis` (no formulas of their own)
    report.py    results.json keys, report.md beside the post's values, manifest.json

`paper_figures.py` keeps only the figure registry and the CLI (STYLE.md §2).
"""
