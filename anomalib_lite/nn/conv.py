"""Convolutional autoencoder for images."""

import itertools
import math

import torch
from torch import nn

from ._sizes import positive_sizes
from .functional import conv_transpose2d_unfolded

__all__ = ["ConvAutoencoder", "UnfoldedConvTranspose2d"]

#: Whether ``torch.export`` is tracing: a graph exported from the network directly
#: gets the plain kernel too.
_is_exporting = torch.compiler.is_exporting


class UnfoldedConvTranspose2d(nn.ConvTranspose2d):
    """:class:`torch.nn.ConvTranspose2d` computed on the CPU by a matrix product and a fold.

    The same layer as its base class, to rounding. Batched CPU input with
    ``groups=1`` runs :func:`~anomalib_lite.nn.functional.conv_transpose2d_unfolded`,
    faster than oneDNN's kernel for few output channels; the rest runs the base, and
    so does a layer whose ``unfolded`` is False or a ``torch.export`` trace, so that an
    exported graph holds one plain ``ConvTranspose`` (more runtimes support it, and
    onnxruntime runs it faster).

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn.conv import UnfoldedConvTranspose2d
    >>> layer = UnfoldedConvTranspose2d(8, 1, 4, stride=2, padding=1)
    >>> x = torch.randn(3, 8, 7, 7)
    >>> ref = torch.nn.functional.conv_transpose2d(x, layer.weight, layer.bias, 2, 1)
    >>> tuple(layer(x).shape), bool(torch.allclose(layer(x), ref, atol=1e-5))
    ((3, 1, 14, 14), True)
    """

    #: False runs the base class's kernel always: :func:`anomalib_lite.onnx.export` sets
    #: it on its copy of the network rather than rely on torch to tell that it traces.
    unfolded = True

    def forward(self, input, output_size=None):
        """Transposed convolution of ``input``; ``output_size`` as in the base class."""
        unfolded = self.unfolded and output_size is None and self.groups == 1 and input.dim() == 4
        if not unfolded or input.device.type != "cpu" or _is_exporting():
            return super().forward(input, output_size)
        return conv_transpose2d_unfolded(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.dilation,
        )


def _activation_gain(act):
    """He gain of activation module ``act``: ReLU's, leaky ReLU's at its slope, else 1."""
    if isinstance(act, nn.LeakyReLU):
        return nn.init.calculate_gain("leaky_relu", act.negative_slope)
    if isinstance(act, nn.ReLU):
        return nn.init.calculate_gain("relu")
    return 1.0


def _fan_in(layer):
    """Input channels times kernel area of a convolution, or a linear layer's inputs."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * math.prod(layer.kernel_size)


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder with a dense bottleneck.

    Strided convolutions halve the size at each level, a linear layer maps
    the last feature map to the code, and transposed convolutions mirror the
    encoder. The output has no activation (inputs are expected standardized).
    The weights start He-initialized (:meth:`reset_parameters`).

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    input_size : tuple of int
        ``(H, W)`` of the input; each must be divisible by ``2 ** len(channels)``.
    channels : sequence of int, default=(16, 32)
        Feature channels of each encoder level; the decoder reverses them.
    latent_dim : int, default=32
        Size of the code.
    act_layer : callable, default=nn.ReLU
        Activation layer factory called without arguments, e.g.
        ``functools.partial(nn.LeakyReLU, 0.2)``.
    norm_layer : type of nn.Module or None, default=None
        Built as ``norm_layer(n_channels)`` after each convolution, e.g.
        ``nn.BatchNorm2d``; None uses no normalization.

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn import ConvAutoencoder
    >>> net = ConvAutoencoder(1, (28, 28), channels=(8, 16), latent_dim=10)
    >>> x = torch.zeros(5, 1, 28, 28)
    >>> tuple(net.encode(x).shape), tuple(net(x).shape)
    ((5, 10), (5, 1, 28, 28))
    """

    def __init__(
        self,
        in_channels,
        input_size,
        channels=(16, 32),
        latent_dim=32,
        *,
        act_layer=nn.ReLU,
        norm_layer=None,
    ):
        super().__init__()
        channels = tuple(channels)
        if not channels:
            raise ValueError("channels must hold at least one level, got ().")
        in_channels, (height, width), channels, latent_dim = positive_sizes(
            in_channels=in_channels,
            input_size=tuple(input_size),
            channels=channels,
            latent_dim=latent_dim,
        )
        factor = 2 ** len(channels)
        if height % factor or width % factor:
            raise ValueError(
                f"input_size={(height, width)} must be divisible by 2 ** len(channels) = "
                f"{factor}; pad the input or use fewer levels."
            )
        self.in_channels = int(in_channels)
        self.input_size = (height, width)
        self.channels = channels
        self.latent_dim = int(latent_dim)
        self.code_size = (height // factor, width // factor)

        def block(conv, n_out, act=True):
            layers = [conv]
            if norm_layer is not None:
                layers.append(norm_layer(n_out))
            if act:
                layers.append(act_layer())
            return layers

        enc = []
        n_in = self.in_channels
        for n_out in channels:
            enc += block(nn.Conv2d(n_in, n_out, 3, stride=2, padding=1), n_out)
            n_in = n_out
        self.encoder = nn.Sequential(*enc)
        n_flat = channels[-1] * math.prod(self.code_size)
        self.to_code = nn.Linear(n_flat, self.latent_dim)
        self.from_code = nn.Sequential(nn.Linear(self.latent_dim, n_flat), act_layer())
        dec = []
        for n_in, n_out in itertools.pairwise(channels[::-1]):
            dec += block(nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1), n_out)
        # Few output channels, where oneDNN's kernel is slow on the CPU.
        dec.append(UnfoldedConvTranspose2d(channels[0], self.in_channels, 4, stride=2, padding=1))
        self.decoder = nn.Sequential(*dec)
        self._gain = _activation_gain(act_layer())
        self.reset_parameters()

    def reset_parameters(self, generator=None):
        """He-initialize the network, drawing from ``generator`` (None: the global RNG).

        Each convolution, transposed convolution and linear layer draws its
        weights from N(0, gain² / fan-in), fan-in being its input channels times
        its kernel area, gain that of the activation after it (1 for the code
        and the output, which have none); biases start at 0. PyTorch's default
        draws smaller weights, so that the signal shrinks through every level:
        training then sits on a blurry plateau for a number of epochs that
        varies with the seed, and some seeds leave it too late to converge.
        Normalization layers are reset.
        """
        last = (self.to_code, self.decoder[-1])
        with torch.no_grad():
            for layer in self.modules():
                if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    gain = 1.0 if any(layer is m for m in last) else self._gain
                    std = gain / math.sqrt(_fan_in(layer))
                    layer.weight.normal_(0.0, std, generator=generator)
                    layer.bias.zero_()
                elif layer is not self and hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()

    def encode(self, x):
        """Code of each image: tensor of shape ``(n, latent_dim)``."""
        return self.to_code(self.encoder(x).flatten(1))

    def decode(self, z):
        """Images decoded from codes: tensor of shape ``(n, in_channels, H, W)``."""
        h = self.from_code(z).unflatten(1, (self.channels[-1], *self.code_size))
        return self.decoder(h)

    def forward(self, x):
        """Reconstruction of ``x``, a tensor of the same shape."""
        return self.decode(self.encode(x))
