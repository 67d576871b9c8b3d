"""anomalib_lite: anomaly detection trained on normal data, images first.

Every detector follows scikit-learn's outlier-detector API. The torch detectors
are imported on first use, so that the PCA baseline does not import torch.
"""

import importlib

from . import io as io
from ._version import __version__
from .base import BaseDetector
from .pca import PCADetector
from .thresholds import CalibratedDetector

__all__ = [
    "AutoencoderDetector",
    "BaseDetector",
    "CalibratedDetector",
    "ConvAutoencoderDetector",
    "DraemDetector",
    "PCADetector",
    "__version__",
]

#: Names imported on first access, and the submodule that defines each.
_LAZY = {
    "ConvAutoencoderDetector": "autoencoder",
    "AutoencoderDetector": "dense",
    "DraemDetector": "draem",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
