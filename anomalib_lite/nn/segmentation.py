"""Networks that segment anomalies: a small U-Net, and an autoencoder joined to one."""

import torch
import torch.nn.functional as F
from torch import nn

from ._sizes import is_int, positive_sizes

__all__ = ["ReconstructAndSegment", "SegmentationNet"]


def _double_conv(n_in, n_out, act_layer, norm_layer):
    layers = []
    for a, b in ((n_in, n_out), (n_out, n_out)):
        layers.append(nn.Conv2d(a, b, 3, padding=1))
        if norm_layer is not None:
            layers.append(norm_layer(b))
        layers.append(act_layer())
    return nn.Sequential(*layers)


class SegmentationNet(nn.Module):
    """A small U-Net: one logit per pixel.

    Each level holds two 3x3 convolutions; the encoder halves the size
    (max pooling, rounding up) and doubles the channels at each level, and
    the decoder upsamples to the size of the matching encoder level and
    concatenates its features (skip connections). Any input size works; in
    training, BatchNorm needs more than one value per channel on the deepest
    level (``ceil(side / 2 ** levels) >= 2``, or more than one image).

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    width : int, default=16
        Channels of the first level.
    levels : int, default=2
        Down-sampling steps.
    act_layer : callable, default=nn.ReLU
        Activation layer factory called without arguments.
    norm_layer : type of nn.Module or None, default=nn.BatchNorm2d
        Built as ``norm_layer(n_channels)`` after each convolution; None uses none.

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn import SegmentationNet
    >>> net = SegmentationNet(2, width=4)
    >>> tuple(net(torch.zeros(3, 2, 13, 10)).shape)
    (3, 1, 13, 10)
    """

    def __init__(
        self, in_channels, width=16, levels=2, *, act_layer=nn.ReLU, norm_layer=nn.BatchNorm2d
    ):
        super().__init__()
        in_channels, width = positive_sizes(in_channels=in_channels, width=width)
        if not is_int(levels):
            # int() would truncate 1.5 to 1 level silently
            raise TypeError(f"levels must be an int >= 0, got {levels!r}.")
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels!r}.")
        widths = [width * 2**i for i in range(int(levels) + 1)]
        self.down = nn.ModuleList()
        n_in = in_channels
        for w in widths:
            self.down.append(_double_conv(n_in, w, act_layer, norm_layer))
            n_in = w
        self.up = nn.ModuleList(
            _double_conv(deep + skip, skip, act_layer, norm_layer)
            for deep, skip in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x):
        """Logit of each pixel being anomalous: tensor of shape ``(n, 1, H, W)``."""
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, skips[-2::-1], strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


class ReconstructAndSegment(nn.Module):
    """An autoencoder and a segmentation network that reads the input beside its
    reconstruction, as in DRAEM (Zavrtanik et al., ICCV 2021).

    The reconstruction is detached before the segmentation network reads it,
    so that each network trains on its own loss.

    Parameters
    ----------
    autoencoder : nn.Module
        Maps ``(n, C, H, W)`` to a reconstruction of the same shape.
    segmenter : nn.Module
        Maps ``(n, 2 * C, H, W)`` to ``(n, 1, H, W)`` logits.

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn import ConvAutoencoder, ReconstructAndSegment, SegmentationNet
    >>> net = ReconstructAndSegment(
    ...     ConvAutoencoder(1, (16, 16), channels=(4,), latent_dim=2), SegmentationNet(2, width=4)
    ... )
    >>> tuple(net(torch.zeros(3, 1, 16, 16)).shape)
    (3, 2, 16, 16)
    """

    def __init__(self, autoencoder, segmenter):
        super().__init__()
        self.autoencoder = autoencoder
        self.segmenter = segmenter

    def forward(self, x):
        """The reconstruction's ``C`` channels followed by one channel of logits."""
        rec = self.autoencoder(x)
        logits = self.segmenter(torch.cat([x, rec.detach()], 1))
        return torch.cat([rec, logits], 1)
