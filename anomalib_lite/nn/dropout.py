"""Dropout whose masks come from a given random generator."""

import numbers

import torch
from torch import nn

__all__ = ["GeneratorDropout"]


def check_dropout(p, name):
    """Refuse a dropout probability ``p`` that is not a number in [0, 1), naming it
    ``name``: ``float()`` would take ``"0.3"`` and False, and torch fail on the string."""
    if not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(p).__name__} {p!r}.")
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p!r}.")


class GeneratorDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` that draws its masks from ``generator``.

    Masks are drawn on the CPU and moved to the input's device, so that a
    seeded generator gives the same masks on every device and the global
    torch RNG is left alone (it is used while ``generator`` is None).

    Parameters
    ----------
    p : float, default=0.5
        Probability of zeroing an element, in [0, 1).

    Attributes
    ----------
    generator : torch.Generator or None
        CPU generator of the masks; set it before training.

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
        check_dropout(p, "p")
        super().__init__(p)
        self.generator = None

    def forward(self, x):
        """``x`` with dropped elements zeroed and the others rescaled (training mode)."""
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty(x.shape, dtype=x.dtype, device="cpu")
        mask.bernoulli_(keep, generator=self.generator)
        return x * mask.to(x.device).div_(keep)
