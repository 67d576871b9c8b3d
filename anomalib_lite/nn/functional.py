"""Image similarity maps used as losses and anomaly maps, a transposed convolution,
and padding with a deterministic backward."""

import math
import numbers

import torch
import torch.nn.functional as F

from ..utils._maps import blur_kernel_size

__all__ = ["conv_transpose2d_unfolded", "gaussian_blur", "pad_by_slices", "ssim_map"]


def _gaussian_kernel(size, sigma, dtype, device):
    half = (size - 1) / 2.0
    t = torch.arange(size, dtype=dtype, device=device) - half
    # At least the dtype's smallest normal number: a sigma so small that 2 sigma^2
    # rounds to 0 gives the identity kernel, not 0 / 0 at the centre.
    k = torch.exp(-(t * t) / max(2.0 * sigma * sigma, torch.finfo(dtype).tiny))
    return k / k.sum()


def gaussian_blur(x, sigma, size=None):
    """Separable Gaussian blur of ``(n, C, H, W)`` images, borders reflected.

    Parameters
    ----------
    x : torch.Tensor of shape (n, C, H, W)
        Images.
    sigma : float
        Standard deviation of the Gaussian in pixels.
    size : int or None, default=None
        Odd kernel size; None uses ``2 * ceil(3 * sigma) + 1``. Either is
        shrunk along each axis to the largest odd size within its side, so an
        axis of 1 or 2 pixels is not blurred.

    Returns
    -------
    torch.Tensor of the same shape as ``x``.

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn.functional import gaussian_blur
    >>> x = torch.ones(1, 1, 5, 5)
    >>> torch.allclose(gaussian_blur(x, 1.0), x)
    True
    """
    if not isinstance(sigma, numbers.Real) or isinstance(sigma, bool):
        # float() would take "1.0" or True silently
        raise TypeError(f"sigma must be a number, got {type(sigma).__name__} {sigma!r}.")
    sigma = float(sigma)
    if not sigma >= 0 or math.isinf(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}.")
    height, width = x.shape[-2:]
    if size is not None:  # None: about 3 sigma each way (blur_kernel_size)
        if not isinstance(size, numbers.Integral) or isinstance(size, bool):
            raise TypeError(f"size must be an odd int or None, got {type(size).__name__} {size!r}.")
        if size < 1 or size % 2 == 0:
            # An even kernel has no centre: the output would grow by a pixel.
            raise ValueError(f"size must be an odd int >= 1 or None, got {size}.")
    size_h = blur_kernel_size(sigma, height, size)
    size_w = blur_kernel_size(sigma, width, size)
    n_channels = x.shape[1]
    out = x
    if size_h > 1:
        k = _gaussian_kernel(size_h, sigma, x.dtype, x.device).view(1, 1, -1, 1)
        out = F.pad(out, (0, 0, size_h // 2, size_h // 2), mode="reflect")
        out = F.conv2d(out, k.expand(n_channels, 1, -1, 1), groups=n_channels)
    if size_w > 1:
        k = _gaussian_kernel(size_w, sigma, x.dtype, x.device).view(1, 1, 1, -1)
        out = F.pad(out, (size_w // 2, size_w // 2, 0, 0), mode="reflect")
        out = F.conv2d(out, k.expand(n_channels, 1, 1, -1), groups=n_channels)
    return out


def ssim_map(x, y, data_range=1.0, sigma=1.5, size=7):
    """Per-pixel structural similarity (SSIM) of two image batches.

    The local means, variances and covariance are Gaussian-weighted
    (Wang et al., 2004), with constants ``C1 = (0.01 L)^2`` and
    ``C2 = (0.03 L)^2`` for the data range ``L``.

    Parameters
    ----------
    x, y : torch.Tensor of shape (n, C, H, W)
        Images to compare.
    data_range : float, default=1.0
        Range ``L`` of the pixel values.
    sigma : float, default=1.5
        Standard deviation of the Gaussian window.
    size : int, default=7
        Window size (odd), shrunk to fit small images.

    Returns
    -------
    torch.Tensor of shape (n, C, H, W)
        SSIM at each pixel: 1 where the images agree, lower where they differ.

    References
    ----------
    .. [1] Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image
       quality assessment: from error visibility to structural similarity",
       IEEE Trans. Image Process. 13(4), 2004.

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn.functional import ssim_map
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(ssim_map(x, x), torch.ones_like(x)))
    True
    """
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    stacked = gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), sigma, size)
    mu_x, mu_y, xx, yy, xy = stacked.chunk(5, dim=1)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def conv_transpose2d_unfolded(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1
):
    """2-D transposed convolution as one matrix product and a col2im (``F.fold``).

    :func:`torch.nn.functional.conv_transpose2d` with ``groups=1``, to
    rounding: each pixel's channels times the weight give the block it
    scatters, and ``fold`` sums the blocks. On the CPU it beats oneDNN's
    kernel when ``out_channels`` is small.

    Parameters
    ----------
    x : torch.Tensor of shape (n, in_channels, H, W)
        Input, contiguous or channels-last (either works without a copy).
    weight : torch.Tensor of shape (in_channels, out_channels, kH, kW)
        Weight, laid out as :class:`torch.nn.ConvTranspose2d` holds it.
    bias : torch.Tensor of shape (out_channels,) or None, default=None
        Added to every output pixel.
    stride, padding, output_padding, dilation : int or tuple of int
        As in :func:`torch.nn.functional.conv_transpose2d`.

    Returns
    -------
    torch.Tensor of shape (n, out_channels, H_out, W_out)
        ``H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) +
        output_padding + 1``, and likewise ``W_out``.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from anomalib_lite.nn.functional import conv_transpose2d_unfolded
    >>> gen = torch.Generator().manual_seed(0)
    >>> x, w = torch.randn(2, 8, 5, 5, generator=gen), torch.randn(8, 1, 4, 4, generator=gen)
    >>> y = conv_transpose2d_unfolded(x, w, stride=2, padding=1)
    >>> ref = F.conv_transpose2d(x, w, stride=2, padding=1)
    >>> tuple(y.shape), bool(torch.allclose(y, ref, atol=1e-5))
    ((2, 1, 10, 10), True)
    """
    n, c_in, height, width = x.shape
    c_out, k_h, k_w = weight.shape[1:]
    stride, padding, output_padding, dilation = (
        (v, v) if isinstance(v, int) else tuple(v)
        for v in (stride, padding, output_padding, dilation)
    )
    out_size = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + o + 1
        for size, s, p, d, k, o in zip(
            (height, width), stride, padding, dilation, (k_h, k_w), output_padding, strict=True
        )
    )
    w = weight.reshape(c_in, c_out * k_h * k_w)
    if x.is_contiguous():
        cols = w.t() @ x.reshape(n, c_in, height * width)
    else:
        cols = (x.permute(0, 2, 3, 1).reshape(n, height * width, c_in) @ w).transpose(1, 2)
    if all(o < s for o, s in zip(output_padding, stride, strict=True)):
        out = F.fold(cols, out_size, (k_h, k_w), dilation=dilation, padding=padding, stride=stride)
    else:
        # output padding >= stride (allowed with dilation): fold unpadded, then crop or extend
        (p_h, p_w), (o_h, o_w) = padding, output_padding
        full = (out_size[0] + 2 * p_h - o_h, out_size[1] + 2 * p_w - o_w)
        out = F.fold(cols, full, (k_h, k_w), dilation=dilation, stride=stride)
        out = F.pad(out, (-p_w, o_w - p_w, -p_h, o_h - p_h))
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


def pad_by_slices(x, pad, mode):
    """``F.pad(x, pad, mode)`` for ``mode`` ``'reflect'`` or ``'replicate'`` on the
    last two dimensions, ``pad = (left, right, top, bottom)``, built from slices,
    flips and concatenations.

    The values are F.pad's; the backward is deterministic on CUDA too, where the
    backward of F.pad's two modes adds into the input atomically, in an order that
    varies between runs. Reflection needs each pad below its side's length; a
    negative pad (F.pad's crop) or any other ``mode`` raises ValueError.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> x = torch.arange(12.0).reshape(1, 1, 3, 4)
    >>> bool((pad_by_slices(x, (2, 1, 1, 2), "reflect") == F.pad(x, (2, 1, 1, 2), "reflect")).all())
    True
    """
    if mode not in ("reflect", "replicate"):
        # anything but 'reflect' would otherwise be padded as 'replicate'
        raise ValueError(f"mode must be 'reflect' or 'replicate', got {mode!r}.")
    if min(pad) < 0:
        # F.pad crops by a negative pad; the slices would grow the image instead.
        raise ValueError(f"pad must hold sizes >= 0 (left, right, top, bottom), got {pad!r}.")

    def side(t, before, after, dim):
        n = t.shape[dim]
        if mode == "reflect":
            head = t.narrow(dim, 1, before).flip(dim)
            tail = t.narrow(dim, n - 1 - after, after).flip(dim)
        else:  # expand's backward is a sum, not an indexed add
            head = t.narrow(dim, 0, 1).expand(*t.shape[:dim], before, *t.shape[dim + 1 :])
            tail = t.narrow(dim, n - 1, 1).expand(*t.shape[:dim], after, *t.shape[dim + 1 :])
        return torch.cat([head, t, tail], dim)

    left, right, top, bottom = pad
    return side(side(x, left, right, x.dim() - 1), top, bottom, x.dim() - 2)
