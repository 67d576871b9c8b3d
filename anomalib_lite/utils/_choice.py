"""The ``'auto'`` image score: the one that best tells training images from copies
with synthetic defects, shared by ConvAutoencoderDetector and PCADetector."""

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..metrics import _ranks
from ..nn.corruption import DEFECT_AREA, paste_defects

#: Each of up to ``CHOICE_IMAGES`` training images gives ``SYNTHETIC_COPIES``
#: copies with a synthetic defect blended in at ``SYNTHETIC_STRENGTH`` (defects
#: at full strength are found by every score, so they would not tell the scores
#: apart), ``SYNTHETIC_CHUNK`` images at a time. The higher ROC-AUC wins, however
#: close: where two scores came close on the benchmarks' real defects, a margin
#: in favour of one of them kept the worse.
SYNTHETIC_COPIES = 4
SYNTHETIC_STRENGTH = 0.5
SYNTHETIC_CHUNK = 64
CHOICE_IMAGES = 1000


def choice_sample(X, generator):
    """The rows of ``X`` the choice reads: all, or ``CHOICE_IMAGES`` drawn, in order."""
    if X.shape[0] <= CHOICE_IMAGES:
        return X
    order = torch.randperm(X.shape[0], generator=generator, device=generator.device)
    return X[np.sort(order[:CHOICE_IMAGES].numpy())]


def defective_copies(images, mean, scale, generator):
    """Chunks of copies of ``images`` ``(n, C, H, W)`` with a synthetic defect each,
    float32 in the units of ``images``: each chunk holds ``SYNTHETIC_COPIES`` copies
    of up to ``SYNTHETIC_CHUNK`` images, the first copy of each image first.

    The defects are pasted into the images standardized by the per-channel
    ``mean`` and ``scale`` (``(1, C, 1, 1)`` float32), as
    :func:`~anomalib_lite.nn.paste_defects` expects; chunks bound the memory of
    the copies and of its fills.
    """
    for start in range(0, images.shape[0], SYNTHETIC_CHUNK):
        z = torch.from_numpy((images[start : start + SYNTHETIC_CHUNK] - mean) / scale)
        z = z.repeat(SYNTHETIC_COPIES, 1, 1, 1)
        pasted, _ = paste_defects(z, generator, probability=1.0, area=DEFECT_AREA)
        z = z + SYNTHETIC_STRENGTH * (pasted - z)
        yield z.numpy() * scale + mean


def best_score(names, normal, defective):
    """``(name, aucs)``: the column of ``normal`` and ``defective`` ``(n, len(names))``
    scores whose ROC-AUC of the copies against the clean images is highest (the
    first on a tie), and every column's ROC-AUC by name."""
    labels = np.r_[np.zeros(normal.shape[0]), np.ones(defective.shape[0])]
    # Ranks: an overflowing score (inf, or NaN from inf - inf) ranks highest;
    # a training set whose own scores overflow is refused by the offset next.
    scores = np.nan_to_num(np.r_[normal, defective], nan=np.inf, posinf=np.inf)
    aucs = {s: float(roc_auc_score(labels, _ranks(scores[:, i]))) for i, s in enumerate(names)}
    return max(names, key=aucs.get), aucs
