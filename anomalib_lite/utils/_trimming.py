"""How many rows a trimmed fit keeps."""

import math


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
