"""Which rows a trimmed fit keeps."""

import math

import numpy as np

#: Tukey's far-out fence: ``Q3 + FENCE_IQRS * (Q3 - Q1)``.
FENCE_IQRS = 3.0


def n_kept(n, trim_fraction, minimum=1):
    """Rows kept out of ``n`` when the worst ``trim_fraction`` of them are left out.

    ``floor(trim_fraction * n)`` rows are left out, the product rounded to 9
    decimals first so that float error does not change the count (``0.7 * 10``
    leaves out 7 rows, not 6). At least ``minimum`` rows are kept.

    Examples
    --------
    >>> n_kept(10, 0.7), n_kept(64, 0.2), n_kept(4, 0.2), n_kept(3, 0.9, minimum=2)
    (3, 52, 4, 2)
    """
    return max(minimum, n - math.floor(round(trim_fraction * n, 9)))


def within_fence(scores):
    """Mask of the scores at or below Tukey's far-out fence ``Q3 + 3 IQR``.

    The quartiles are numpy's (linear interpolation) of the finite scores;
    ``+inf`` lies beyond the fence. When the interquartile range is not
    positive (most scores tie), there is no spread to measure from, and every
    score is kept.

    Examples
    --------
    >>> within_fence(np.array([1.0, 2.0, 3.0, 4.0, 50.0])).tolist()
    [True, True, True, True, False]
    >>> within_fence(np.array([1.0, 1.0, 1.0, 1.0, 50.0])).tolist()
    [True, True, True, True, True]
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    if finite.size < 2:
        return np.ones(scores.shape, dtype=bool)
    q1, q3 = np.percentile(finite, [25, 75])
    iqr = q3 - q1
    if not iqr > 0:
        return np.ones(scores.shape, dtype=bool)
    return scores <= q3 + FENCE_IQRS * iqr
