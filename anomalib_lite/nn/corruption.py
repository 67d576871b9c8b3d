"""Synthetic defects pasted into image batches, to train an autoencoder to repair them."""

import math
from numbers import Real

import torch
import torch.nn.functional as F

__all__ = ["DEFECT_AREA", "DEFECT_FILLS", "defect_masks", "paste_defects"]

#: What fills a defect: a shifted patch of another image of the batch, the
#: image itself shifted in intensity, Gaussian noise, or one grey level.
DEFECT_FILLS = ("patch", "shift", "noise", "flat")
#: Sides of the coarse noise grids whose upsampled level sets shape the
#: masks: a small grid gives one or two large blobs, a large grid many small ones.
MASK_GRIDS = (2, 3, 4, 6, 8)
#: Range of the fraction of an image that a defect covers, by default.
DEFECT_AREA = (0.01, 0.25)


def _draw(shape, generator, device, dtype=torch.float32):
    """Uniform [0, 1) numbers drawn on the generator's device, moved to ``device``;
    ``dtype`` explicit, so that a process's float64 default does not leak into a batch."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def _is_real(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_area(area):
    """``area`` as ``(low, high)`` floats, refused unless ``0 < low <= high <= 1``."""
    if isinstance(area, (str, bytes)) or not hasattr(area, "__len__") or len(area) != 2:
        raise TypeError(f"area must be a pair (low, high) of floats, got {area!r}.")
    low, high = area
    if not (_is_real(low) and _is_real(high)):
        raise TypeError(f"area must be a pair (low, high) of floats, got {area!r}.")
    if not 0 < low <= high <= 1:
        raise ValueError(
            f"area={area!r} must be a fraction range (low, high) with 0 < low <= high <= 1."
        )
    return float(low), float(high)


def _check_probability(probability):
    if not _is_real(probability):
        raise TypeError(
            f"probability must be a float in [0, 1], got "
            f"{type(probability).__name__} {probability!r}."
        )
    if not (math.isfinite(probability) and 0 <= probability <= 1):
        raise ValueError(f"probability={probability!r} must be in [0, 1].")
    return float(probability)


def defect_masks(n, height, width, generator, *, area=DEFECT_AREA, device="cpu"):
    """Random blob-shaped masks covering a random fraction of each image.

    Uniform noise on a coarse grid (one of ``MASK_GRIDS`` sides per call) is
    upsampled bicubically to ``(height, width)``; each mask holds the pixels
    of its image's highest values, as many as a fraction drawn uniformly from
    ``area`` of the pixels (at least one).

    Parameters
    ----------
    n, height, width : int
        Number and size of the masks.
    generator : torch.Generator
        Source of every random draw.
    area : tuple of float, default=(0.01, 0.25)
        Range ``(low, high)`` of the fraction of pixels each mask covers,
        ``0 < low <= high <= 1``.
    device : str or torch.device, default='cpu'
        Device of the returned masks.

    Returns
    -------
    masks : torch.Tensor of bool, shape (n, 1, height, width)

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn.corruption import defect_masks
    >>> masks = defect_masks(4, 16, 16, torch.Generator().manual_seed(0))
    >>> tuple(masks.shape), bool(masks.flatten(1).any(1).all())
    ((4, 1, 16, 16), True)
    """
    low, high = _check_area(area)
    pick = torch.randint(len(MASK_GRIDS), (1,), generator=generator, device=generator.device)
    grid = MASK_GRIDS[int(pick)]
    noise = _draw((n, 1, grid + 1, grid + 1), generator, device)
    smooth = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=True)
    flat = smooth.flatten(1)
    fraction = low + (high - low) * _draw((n,), generator, device)
    count = (fraction * height * width).long().clamp(1, height * width)
    threshold = flat.sort(dim=1, descending=True).values.gather(1, (count - 1)[:, None])
    return (flat >= threshold).view(n, 1, height, width)


def paste_defects(x, generator, *, probability=0.5, area=DEFECT_AREA):
    """Paste a synthetic defect into a random subset of a batch of images.

    Each image gets a defect with ``probability``: a blob from
    :func:`defect_masks` filled with one of ``DEFECT_FILLS``, drawn
    uniformly: the pixels of another image of the batch at a random shift
    (``'patch'``), the image's own pixels shifted by 0.5 to 2 (``'shift'``,
    either sign), standard Gaussian noise (``'noise'``) or one level drawn
    between the batch's minimum and maximum (``'flat'``). The amounts are
    in the units of ``x``, meant to be standardized images. ``x`` itself is
    not changed: an autoencoder trained to map the result back to ``x``
    learns to repair what does not belong rather than to copy its input.

    Parameters
    ----------
    x : torch.Tensor of shape (n, C, H, W)
        Images, standardized (each channel about zero mean, unit variance).
    generator : torch.Generator
        Source of every random draw, so that a seeded generator gives the
        same defects on every device.
    probability : float, default=0.5
        Chance, in [0, 1], that an image gets a defect.
    area : tuple of float, default=(0.01, 0.25)
        Range ``(low, high)`` of the fraction of an image a defect covers,
        ``0 < low <= high <= 1``.

    Returns
    -------
    corrupted : torch.Tensor
        A new tensor of the shape, dtype and device of ``x``, equal to it
        outside ``masks``.
    masks : torch.Tensor of bool, shape (n, 1, H, W)
        Where a defect was placed; empty for images left as they were. A
        pasted patch may equal what it covers (another image's blank ground,
        or the image itself in a batch of one), so not every masked pixel
        need change.

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn.corruption import paste_defects
    >>> x = torch.zeros(8, 1, 16, 16)
    >>> out, masks = paste_defects(x, torch.Generator().manual_seed(0), probability=1.0)
    >>> bool((out[~masks.expand_as(out)] == 0).all()), bool(masks.flatten(1).any(1).all())
    (True, True)
    """
    probability = _check_probability(probability)
    n, _, height, width = x.shape
    device = x.device
    if n == 0:  # nothing to paste into, nor another image to take a patch from
        return x.clone(), torch.zeros((0, 1, height, width), dtype=torch.bool, device=device)
    masks = defect_masks(n, height, width, generator, area=area, device=device)
    masks &= (_draw((n,), generator, device) < probability).view(n, 1, 1, 1)
    fill = (_draw((n,), generator, device) * len(DEFECT_FILLS)).long().view(n, 1, 1, 1)
    on = generator.device  # every draw on the generator's device (see _draw)
    shift_y, shift_x = (
        int(v) for v in torch.randint(0, max(height, width), (2,), generator=generator, device=on)
    )
    other = int(torch.randint(1, max(n, 2), (1,), generator=generator, device=on)) % n
    patch = torch.roll(x, (other, shift_y % height, shift_x % width), (0, 2, 3))
    # Not torch.where(..., -1.0, 1.0): two Python scalars take torch's default dtype,
    # float64 in some processes, and the fills of a float32 batch would follow.
    sign = 1.0 - 2.0 * (_draw((n,), generator, device) < 0.5).to(torch.float32)
    shifted = x + ((0.5 + 1.5 * _draw((n,), generator, device)) * sign).view(n, 1, 1, 1)
    noise = torch.randn(x.shape, generator=generator, device=on, dtype=x.dtype).to(device)
    low, high = x.min(), x.max()
    flat = (low + (high - low) * _draw((n, 1, 1, 1), generator, device)).expand_as(x)
    content = torch.where(fill == 0, patch, shifted)
    content = torch.where(fill == 2, noise, content)
    content = torch.where(fill == 3, flat, content)
    return torch.where(masks, content.to(x.dtype), x), masks
