"""The pieces behind `paper_figures.py`: where checkpoints come from, the on-disk cache, the cached computations, the report.

    sources.py   demo / hub / smoke `Source`s and the auto fallback (`resolve_source`)
    cache.py     computed arrays (.npz) and numbers (.json), written atomically
    context.py   one run's settings, cache and lazily loaded source (`Context`)
    compute.py   cached calls into `sae_analysis` (no formulas of their own)
    compute_inventory.py   the same for the figures issue #12 added (F4/F5 pairs, F11, F19, F22)
    inventory.py the figure functions of F4/F5, F9-F12, F14, F16, F19, F22 (registered in paper_figures.FIGURES)
    plotting.py  the one-Axes wrapper and `thresholds()`: the analysis cuts the figures draw, read from sae_analysis
    report.py    results.json keys, report.md beside the post's values, manifest.json

`paper_figures.py` keeps only the figure registry and the CLI (STYLE.md §2).
"""
