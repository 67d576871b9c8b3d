"""anomalib_lite: anomaly detection trained on normal data, images first.

Learn the shape of normal data, then call whatever lies far from it an
anomaly. Every detector follows scikit-learn's outlier-detector API.
"""

from . import io as io
from .autoencoder import ConvAutoencoderDetector
from .base import BaseDetector
from .dense import AutoencoderDetector
from .pca import PCADetector
from .thresholds import CalibratedDetector

__version__ = "0.1.0"

__all__ = [
    "AutoencoderDetector",
    "BaseDetector",
    "CalibratedDetector",
    "ConvAutoencoderDetector",
    "PCADetector",
    "__version__",
]
