"""Anomaly-map steps shared by the detectors, in numpy: the edge correction, the
two-part map's combination and a Gaussian blur for numpy images."""

import math

import numpy as np
from scipy.ndimage import correlate1d

#: ``edge_scale`` covers the outer rings of pixels, 1/``EDGE_DEPTH`` of the smaller side deep.
EDGE_DEPTH = 8
#: Image side for which ``smoothing='auto'`` is 1 pixel; it scales with the side.
SMOOTHING_SIDE = 28


def edge_distance(height, width):
    """``(height, width)`` array of each pixel's distance to the nearest edge (0 on it)."""
    rows = np.minimum(np.arange(height), np.arange(height)[::-1])
    columns = np.minimum(np.arange(width), np.arange(width)[::-1])
    return np.minimum(rows[:, None], columns[None, :])


def edge_scale(mean_map):
    """Divisor of an anomaly map that evens out its normal level along the edges.

    ``mean_map`` ``(H, W)`` is the mean map of normal images. On each of the
    outer rings of pixels (1/``EDGE_DEPTH`` of the smaller side deep) the
    divisor is the ring's mean over the mean further in, when that is above 1;
    it is 1 on the other pixels, and everywhere when there is no inside or the
    inside's mean is not a positive finite number.
    """
    height, width = mean_map.shape
    distance = edge_distance(height, width)
    depth = math.ceil(min(height, width) / EDGE_DEPTH)
    scale = np.ones((height, width))
    inside = distance >= depth
    reference = mean_map[inside].mean() if inside.any() else np.nan
    if not (np.isfinite(reference) and reference > 0):
        return scale.astype(np.float32)
    for ring in range(depth):
        on_ring = distance == ring
        ratio = mean_map[on_ring].mean() / reference
        scale[on_ring] = ratio if np.isfinite(ratio) and ratio > 1 else 1.0
    return scale.astype(np.float32)


def combine_map_parts(square, energy, energy_scale):
    """The anomaly map from its two parts (arrays or tensors): their mean, the
    energy weighted by ``energy_scale``, so that both weigh the same on the
    training images; equal parts give that part back."""
    return (square + energy_scale * energy) / (1 + energy_scale)


def map_scales(square_total, energy_total, n_images):
    """``(energy_scale, edge_scale)`` of a two-part map from its parts summed over
    ``n_images`` normal images, each an ``(H, W)`` array: the weight that makes the
    energy sum to what the square does (1 where the sums are unusable), and
    :func:`edge_scale` of the mean map."""
    with np.errstate(over="ignore", invalid="ignore"):
        square, energy = float(np.sum(square_total)), float(np.sum(energy_total))
        usable = 0 < energy < math.inf and math.isfinite(square)
        energy_scale = square / energy if usable else 1.0
        mean_map = combine_map_parts(square_total, energy_total, energy_scale) / n_images
    return energy_scale, edge_scale(mean_map)


def auto_sigma(height, width):
    """``smoothing='auto'`` in pixels: 1 for images whose smaller side is
    ``SMOOTHING_SIDE``, in proportion for others."""
    return min(height, width) / SMOOTHING_SIDE


def blur_kernel_size(sigma, side, size=None):
    """Odd length of the Gaussian kernel along an axis of ``side`` pixels: ``size``,
    or about 3 sigma each way when None, shrunk to fit the axis (1 where no blur
    fits)."""
    if size is None:
        # 3 sigma capped at the side first: near the largest float, 3 sigma overflows.
        size = 2 * math.ceil(min(3.0 * sigma, side)) + 1
    return min(size, 2 * ((side - 1) // 2) + 1)


def gaussian_kernel(size, sigma):
    """Normalized float64 Gaussian weights of odd length ``size``."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    # A sigma so small that 2 sigma^2 rounds to 0 gives the identity kernel, not 0 / 0.
    k = np.exp(-(t * t) / max(2.0 * sigma * sigma, np.finfo(np.float64).tiny))
    return k / k.sum()


def mirror_taps(side, size):
    """``(size, side)`` int64 indices: row ``k`` holds the pixel that tap ``k`` of a
    kernel of odd length ``size`` reads for each pixel of an axis of ``side`` pixels,
    reflected at the borders without repeating the edge, as :func:`blur` (mode
    'mirror') reads them; ``size`` at most ``blur_kernel_size`` allows."""
    taps = np.arange(side)[None, :] + np.arange(size)[:, None] - size // 2
    return np.where(taps < 0, -taps, np.where(taps >= side, 2 * (side - 1) - taps, taps))


def blur(images, sigma):
    """Separable Gaussian blur of float64 images ``(..., H, W)``, borders reflected
    (the edge pixel not repeated), with the kernels of
    :func:`~anomalib_lite.nn.functional.gaussian_blur`."""
    out = np.asarray(images, dtype=np.float64)
    for axis in (-2, -1):
        size = blur_kernel_size(sigma, out.shape[axis])
        if size > 1:
            out = correlate1d(out, gaussian_kernel(size, sigma), axis=axis, mode="mirror")
    return out
