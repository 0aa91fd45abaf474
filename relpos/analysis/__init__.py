"""PART's capabilities (off-grid reconstruction, patch uncertainty, symmetry) and plots.

The functions in :mod:`~relpos.analysis.pairs`, :mod:`~relpos.analysis.reconstruction`,
:mod:`~relpos.analysis.uncertainty` and :mod:`~relpos.analysis.symmetry` return tensors and
work for any number of span axes; :mod:`relpos.analysis.plots` draws them and any classifier's
confusion matrix (matplotlib is imported only when a plot function runs). The sleep hypnogram
is in :mod:`relpos.sleep.plots`.
"""

from relpos.analysis.pairs import (
    RelativePredictor,
    all_pairs,
    placements,
    predict_all_pairs,
    true_all_pairs,
)
from relpos.analysis.plots import (
    plot_confusion,
    plot_reconstruction,
    plot_symmetry,
    plot_uncertainty,
)
from relpos.analysis.reconstruction import ReconstructionResult, paste_tokens, reconstruct
from relpos.analysis.symmetry import negative_symmetry_score, symmetry_error, symmetry_matrices
from relpos.analysis.uncertainty import (
    UncertaintyResult,
    patch_uncertainty,
    predicted_variance,
    uncertainty_all,
)

__all__ = [
    "ReconstructionResult",
    "RelativePredictor",
    "UncertaintyResult",
    "all_pairs",
    "negative_symmetry_score",
    "paste_tokens",
    "patch_uncertainty",
    "placements",
    "plot_confusion",
    "plot_reconstruction",
    "plot_symmetry",
    "plot_uncertainty",
    "predict_all_pairs",
    "predicted_variance",
    "reconstruct",
    "symmetry_error",
    "symmetry_matrices",
    "true_all_pairs",
    "uncertainty_all",
]
