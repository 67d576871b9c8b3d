"""Fully connected autoencoder for tabular data."""

import itertools

from torch import nn

from ._sizes import positive_sizes
from .dropout import GeneratorDropout, check_dropout

__all__ = ["DenseAutoencoder"]


class DenseAutoencoder(nn.Module):
    """Multi-layer perceptron autoencoder.

    The encoder maps ``n_features`` inputs through ``hidden_sizes`` to a code
    of ``latent_dim`` numbers; the decoder mirrors it, with a linear output.

    Parameters
    ----------
    n_features : int
        Number of input features.
    hidden_sizes : sequence of int, default=(64,)
        Widths of the encoder's hidden layers; the decoder reverses them.
    latent_dim : int, default=8
        Size of the code.
    act_layer : type of nn.Module, default=nn.ReLU
        Activation layer class, built without arguments.
    norm_layer : type of nn.Module or None, default=None
        Normalization layer class built as ``norm_layer(width)`` after each
        hidden linear layer, e.g. ``nn.BatchNorm1d`` or ``nn.LayerNorm``.
    dropout : float, default=0.0
        Dropout probability after each hidden activation, in
        :class:`GeneratorDropout` layers (set their ``generator`` for seeded masks).

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn import DenseAutoencoder
    >>> net = DenseAutoencoder(10, hidden_sizes=(6,), latent_dim=2)
    >>> x = torch.zeros(4, 10)
    >>> tuple(net.encode(x).shape), tuple(net(x).shape)
    ((4, 2), (4, 10))
    """

    def __init__(
        self,
        n_features,
        hidden_sizes=(64,),
        latent_dim=8,
        *,
        act_layer=nn.ReLU,
        norm_layer=None,
        dropout=0.0,
    ):
        super().__init__()
        self.n_features, self.hidden_sizes, self.latent_dim = positive_sizes(
            n_features=n_features, hidden_sizes=tuple(hidden_sizes), latent_dim=latent_dim
        )
        check_dropout(dropout, "dropout")

        def stack(sizes):
            layers = []
            for n_in, n_out in itertools.pairwise(sizes[:-1]):
                layers.append(nn.Linear(n_in, n_out))
                if norm_layer is not None:
                    layers.append(norm_layer(n_out))
                layers.append(act_layer())
                if dropout:
                    layers.append(GeneratorDropout(dropout))
            layers.append(nn.Linear(sizes[-2], sizes[-1]))
            return nn.Sequential(*layers)

        sizes = (self.n_features, *self.hidden_sizes, self.latent_dim)
        self.encoder = stack(sizes)
        self.decoder = stack(sizes[::-1])

    def encode(self, x):
        """Code of each row: tensor of shape ``(n, latent_dim)``."""
        return self.encoder(x)

    def decode(self, z):
        """Rows decoded from codes: tensor of shape ``(n, n_features)``."""
        return self.decoder(z)

    def forward(self, x):
        """Reconstruction of ``x``, a tensor of the same shape."""
        return self.decode(self.encode(x))
