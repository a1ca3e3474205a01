"""Classical vessel-segmentation baselines to compare DARL with.

- ``frangi_vesselness``: Frangi's multi-scale Hessian vesselness (dark or bright vessels,
  scales in pixels, optional field of view); ``hessian_eigenvalues``: its scale-normalised
  Hessian eigenvalues.
- ``otsu_threshold``, ``fraction_threshold``: global thresholds of a score map computed inside
  a field of view (Otsu; a vessel-fraction / percentile rule).
"""

from darlkit.baselines.frangi import frangi_vesselness, hessian_eigenvalues
from darlkit.baselines.thresholds import fraction_threshold, otsu_threshold

__all__ = ["frangi_vesselness", "hessian_eigenvalues", "otsu_threshold", "fraction_threshold"]
