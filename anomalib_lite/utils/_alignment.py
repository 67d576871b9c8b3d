"""How much of a set of images' fine detail lies at the same pixels in every image:
what ``augmentation='auto'`` reads to tell aligned images from unaligned ones."""

import numpy as np

from ._maps import blur

#: Images read, evenly spaced through the set, and how many are blurred at a time.
ALIGNMENT_IMAGES = 1000
ALIGNMENT_CHUNK = 128


def common_detail(images, sigma):
    """Share of the fine detail of ``images`` that is common to all of them.

    An image's fine detail is the image minus its Gaussian blur of ``sigma``
    pixels. The share is the energy of the mean detail over the mean energy of
    each image's detail, corrected for the ``1 / n`` that ``n`` independent
    details leave in their mean: about 0 for textures whose pattern lies
    anywhere (random-phase grain), near 1 for images aligned to the pixel
    (solar cells whose grid lines fall on the same pixels), and in between for
    objects placed roughly alike (digits). 1 where the images hold no detail, or
    are too few to tell (one image).

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W)
        Images, standardized (each channel about zero mean and unit variance);
        at most ``ALIGNMENT_IMAGES`` of them, evenly spaced, are read.
    sigma : float
        Width in pixels of the blur that the detail is measured against.

    Returns
    -------
    share : float
        In [0, 1].
    """
    n = images.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, ALIGNMENT_IMAGES)).round().astype(int))
    total = np.zeros(images.shape[1:])
    energy = 0.0
    for start in range(0, len(rows), ALIGNMENT_CHUNK):
        chunk = np.asarray(images[rows[start : start + ALIGNMENT_CHUNK]], dtype=np.float64)
        detail = chunk - blur(chunk, sigma)
        total += detail.sum(axis=0)
        energy += float(np.square(detail).sum())
    n = len(rows)
    if n < 2 or not energy > 0:
        return 1.0
    share = float(np.square(total / n).sum()) / (energy / n)
    return float(np.clip((n * share - 1) / (n - 1), 0.0, 1.0))
