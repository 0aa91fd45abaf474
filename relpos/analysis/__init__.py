"""PART's capabilities (off-grid reconstruction, patch uncertainty, symmetry) and plots.

The functions in :mod:`relpos.analysis.capabilities` return tensors and work for any number of
span axes; :mod:`relpos.analysis.plots` draws them (matplotlib is imported only when a plot
function runs).
"""

from relpos.analysis.capabilities import (
    ReconstructionResult,
    RelativePredictor,
    UncertaintyResult,
    all_pairs,
    negative_symmetry_score,
    paste_tokens,
    patch_uncertainty,
    placements,
    predict_all_pairs,
    reconstruct,
    symmetry_error,
    symmetry_matrices,
    true_all_pairs,
    uncertainty_all,
)
from relpos.analysis.plots import (
    STAGE_ORDER,
    plot_confusion,
    plot_hypnogram,
    plot_reconstruction,
    plot_symmetry,
    plot_uncertainty,
)

__all__ = [
    "STAGE_ORDER",
    "ReconstructionResult",
    "RelativePredictor",
    "UncertaintyResult",
    "all_pairs",
    "negative_symmetry_score",
    "paste_tokens",
    "patch_uncertainty",
    "placements",
    "plot_confusion",
    "plot_hypnogram",
    "plot_reconstruction",
    "plot_symmetry",
    "plot_uncertainty",
    "predict_all_pairs",
    "reconstruct",
    "symmetry_error",
    "symmetry_matrices",
    "true_all_pairs",
    "uncertainty_all",
]
