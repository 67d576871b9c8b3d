"""Random shifts of image batches, to train an autoencoder on patterns that lie anywhere."""

from numbers import Integral

import torch
import torch.nn.functional as F

__all__ = ["random_shift"]


def _check_shift(max_shift, height, width):
    """``max_shift`` as a pair ``(rows, columns)`` of ints, each below its side."""
    pair = (max_shift, max_shift) if isinstance(max_shift, Integral) else max_shift
    if (
        isinstance(pair, (str, bytes))
        or not hasattr(pair, "__len__")
        or len(pair) != 2
        or not all(isinstance(s, Integral) and not isinstance(s, bool) for s in pair)
    ):
        raise TypeError(
            f"max_shift must be an int or a pair (rows, columns) of ints, got {max_shift!r}."
        )
    rows, columns = (int(s) for s in pair)
    if not (0 <= rows < max(height, 1) and 0 <= columns < max(width, 1)):
        raise ValueError(
            f"max_shift={max_shift!r} must be >= 0 and below the image's sides "
            f"({height}, {width}): the border is mirrored from inside the image."
        )
    return rows, columns


def random_shift(x, max_shift, generator):
    """Move a batch of images by one random offset, mirroring the border.

    One offset ``(dy, dx)`` is drawn for the whole batch, each uniformly from
    the integers in ``[-max_shift, max_shift]`` of its axis; the pixels that
    the shift brings in from outside the image are its border mirrored (as
    ``F.pad(mode='reflect')`` lays it). Applied alike to an autoencoder's input
    and target, it teaches the network a pattern wherever it lies, rather than
    where it lay in the training images.

    Parameters
    ----------
    x : torch.Tensor of shape (n, C, H, W)
        Images.
    max_shift : int or tuple of (int, int)
        Largest shift in pixels, for both axes or as ``(rows, columns)``; each
        >= 0 and below its side (``H``, ``W``). 0 leaves that axis as it is.
    generator : torch.Generator
        Source of the draw, so that a seeded generator gives the same shifts on
        every device.

    Returns
    -------
    shifted : torch.Tensor
        A tensor of the shape, dtype and device of ``x``: ``shifted[..., i, j]``
        is ``x[..., i + dy, j + dx]`` where that lies in the image.

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn.augmentation import random_shift
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> out = random_shift(x, 1, torch.Generator().manual_seed(0))
    >>> offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    ...            if torch.equal(out[..., 1:3, 1:3], x[..., 1 + dy : 3 + dy, 1 + dx : 3 + dx])]
    >>> tuple(out.shape), len(offsets)
    ((1, 1, 4, 4), 1)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a 4-D tensor (n, C, H, W), got {type(x).__name__}.")
    if x.dim() != 4:
        raise ValueError(f"x must be a 4-D tensor (n, C, H, W), got shape {tuple(x.shape)}.")
    height, width = x.shape[-2:]
    rows, columns = _check_shift(max_shift, height, width)
    dy, dx = (
        int(torch.randint(-s, s + 1, (), generator=generator, device=generator.device))
        for s in (rows, columns)
    )
    if not (dy or dx):
        return x.clone()
    padded = F.pad(x, (columns, columns, rows, rows), mode="reflect")
    return padded[..., rows + dy : rows + dy + height, columns + dx : columns + dx + width]
