"""Pure torch modules of the library's detectors (no scikit-learn inside)."""

from .augmentation import random_shift
from .conv import ConvAutoencoder, UnfoldedConvTranspose2d
from .corruption import defect_masks, paste_defects
from .dense import DenseAutoencoder
from .dropout import GeneratorDropout
from .functional import conv_transpose2d_unfolded, gaussian_blur, ssim_map
from .segmentation import ReconstructAndSegment, SegmentationNet

__all__ = [
    "ConvAutoencoder",
    "DenseAutoencoder",
    "GeneratorDropout",
    "ReconstructAndSegment",
    "SegmentationNet",
    "UnfoldedConvTranspose2d",
    "conv_transpose2d_unfolded",
    "defect_masks",
    "gaussian_blur",
    "paste_defects",
    "random_shift",
    "ssim_map",
]
