"""Plotting layer: numpy arrays in, matplotlib Axes (or Figure, for multi-panel pages) out, one shared style.

Contract (STYLE.md §2, seaborn's): data first, everything else keyword-only; `ax=None` draws on `plt.gca()`; multi-panel
functions take `fig=None` (a new Figure) and return it. Every function takes `source=` and labels its output
"source: ...". Nothing here imports torch or sae_analysis, loads checkpoints or saves files (paper_figures.py does that).
"""

from figures.case_study import CaseStudy, plot_case_study, plot_logit_effect, plot_neuron_weights, plot_top_contexts
from figures.exhaustion import plot_data_exhaustion
from figures.frequency import (
    plot_freq_vs_freq,
    plot_frequency_histogram,
    plot_frequency_histograms,
    plot_phase_curve,
    plot_phase_transition,
)
from figures.geometry import plot_enc_dec_cosine, plot_null_space, plot_singular_values
from figures.rare_tokens import plot_rare_tokens, rare_tokens_html
from figures.reconstruction import plot_loss_vs_floor
from figures.sparsity import (
    plot_baseline_sparsity,
    plot_enc_vs_dec_top1,
    plot_fve_histograms,
    plot_fve_page,
    plot_kurtosis,
    plot_top_vs_next9,
)
from figures.style import use_style
from figures.training import plot_training_curves
from figures.ulf import plot_rare_cosine, plot_rare_directions, plot_rare_projection, plot_rare_scatter
from figures.weights import (
    plot_bias_norm_panels,
    plot_by_commonness,
    plot_commonness_page,
    plot_top_features,
    plot_vs_frequency,
)

__all__ = [
    "CaseStudy",
    "plot_baseline_sparsity",
    "plot_bias_norm_panels",
    "plot_by_commonness",
    "plot_commonness_page",
    "plot_case_study",
    "plot_data_exhaustion",
    "plot_enc_dec_cosine",
    "plot_enc_vs_dec_top1",
    "plot_freq_vs_freq",
    "plot_fve_histograms",
    "plot_fve_page",
    "plot_frequency_histogram",
    "plot_frequency_histograms",
    "plot_kurtosis",
    "plot_logit_effect",
    "plot_loss_vs_floor",
    "plot_neuron_weights",
    "plot_null_space",
    "plot_phase_curve",
    "plot_phase_transition",
    "plot_rare_cosine",
    "plot_rare_directions",
    "plot_rare_projection",
    "plot_rare_scatter",
    "plot_rare_tokens",
    "plot_singular_values",
    "plot_top_contexts",
    "plot_top_features",
    "plot_top_vs_next9",
    "plot_training_curves",
    "plot_vs_frequency",
    "rare_tokens_html",
    "use_style",
]
