"""Pure torch modules of the library's detectors (no scikit-learn inside)."""

from .conv import ConvAutoencoder
from .dense import DenseAutoencoder
from .dropout import GeneratorDropout
from .functional import gaussian_blur, ssim_map

__all__ = ["ConvAutoencoder", "DenseAutoencoder", "GeneratorDropout", "gaussian_blur", "ssim_map"]
