"""Dropout whose masks come from a given random generator."""

import torch
from torch import nn

__all__ = ["GeneratorDropout"]


class GeneratorDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` that draws its masks from ``generator``.

    In training mode each element is zeroed with probability ``p`` and the
    others are scaled by ``1 / (1 - p)``, as by :class:`torch.nn.Dropout`; in
    evaluation mode the layer is the identity. The masks are drawn on the CPU
    from :attr:`generator` and moved to the input's device, so that a seeded
    CPU generator gives the same masks on every device and the global torch
    RNG is left alone. With ``generator=None`` (the default) the global RNG
    is used.

    Parameters
    ----------
    p : float, default=0.5
        Probability of zeroing an element, in [0, 1).

    Attributes
    ----------
    generator : torch.Generator or None
        CPU generator of the masks; set it before training, e.g. from the
        detector that owns the network.

    Examples
    --------
    >>> import torch
    >>> from anomalib_lite.nn import GeneratorDropout
    >>> layer = GeneratorDropout(0.5)
    >>> layer.generator = torch.Generator().manual_seed(0)
    >>> y = layer(torch.ones(2, 4))
    >>> sorted(set(y.flatten().tolist()))
    [0.0, 2.0]
    >>> torch.equal(layer.eval()(torch.ones(2, 4)), torch.ones(2, 4))
    True
    """

    def __init__(self, p=0.5):
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p!r}.")
        super().__init__(p)
        self.generator = None

    def forward(self, x):
        """``x`` with dropped elements zeroed and the others rescaled (training mode)."""
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty(x.shape, dtype=x.dtype).bernoulli_(keep, generator=self.generator)
        return x * mask.to(x.device).div_(keep)
