"""Tukey's upper fence, and which rows a trimmed fit keeps."""

import math

import numpy as np

#: Tukey's inner fence ``Q3 + 1.5 IQR``: ``contamination='auto'`` flags beyond it.
INNER_FENCE_IQRS = 1.5
#: Tukey's far-out fence ``Q3 + 3 IQR``: a trimmed refit leaves out rows beyond it.
FAR_OUT_FENCE_IQRS = 3.0


def tukey_fence(scores, k):
    """Tukey's upper fence ``Q3 + k * (Q3 - Q1)`` and the spread ``Q3 - Q1``.

    The quartiles are numpy's of the finite scores, so ``+inf`` does not move
    the fence; with fewer than two finite scores the fence is ``+inf``.

    Examples
    --------
    >>> tukey_fence([1.0, 2.0, 3.0, 4.0, 5.0, np.inf], 1.5)
    (7.0, 2.0)
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    if finite.size < 2:
        return math.inf, 0.0
    q1, q3 = np.percentile(finite, [25, 75])
    return float(q3 + k * (q3 - q1)), float(q3 - q1)


def share_of(n, fraction):
    """``fraction * n`` rounded to 9 decimals: the rows a share stands for as it is
    written (``0.07 * 100`` is 7.000000000000001 in floats), to be rounded down or up."""
    return round(float(fraction) * n, 9)


def n_kept(n, trim_fraction, minimum=1):
    """Rows kept out of ``n`` when the worst ``trim_fraction`` of them are left out.

    ``floor(trim_fraction * n)`` rows go, the product rounded to 9 decimals
    first so that ``0.7 * 10`` leaves out 7, not 6; at least ``minimum`` stay.

    Examples
    --------
    >>> n_kept(10, 0.7), n_kept(64, 0.2), n_kept(4, 0.2), n_kept(3, 0.9, minimum=2)
    (3, 52, 4, 2)
    """
    return max(minimum, n - math.floor(share_of(n, trim_fraction)))


def within_fence(scores):
    """Mask of the scores at or below Tukey's far-out fence ``Q3 + 3 IQR``.

    With no spread (most scores tie) every score is kept.

    Examples
    --------
    >>> within_fence(np.array([1.0, 2.0, 3.0, 4.0, 50.0])).tolist()
    [True, True, True, True, False]
    >>> within_fence(np.array([1.0, 1.0, 1.0, 1.0, 50.0])).tolist()
    [True, True, True, True, True]
    """
    scores = np.asarray(scores, dtype=np.float64)
    fence, iqr = tukey_fence(scores, FAR_OUT_FENCE_IQRS)
    if not (math.isfinite(fence) and iqr > 0):
        return np.ones(scores.shape, dtype=bool)
    return scores <= fence
