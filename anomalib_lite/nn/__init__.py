"""Pure torch modules of the library's detectors (no scikit-learn inside)."""

from .conv import ConvAutoencoder
from .dense import DenseAutoencoder
from .functional import gaussian_blur, ssim_map

__all__ = ["ConvAutoencoder", "DenseAutoencoder", "gaussian_blur", "ssim_map"]
