"""Validation of the layer sizes the modules are built from."""

import numbers


def is_int(v):
    """Whether ``v`` is an integer (numpy's too), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def positive_sizes(**sizes):
    """Each keyword as an int or tuple of ints, all >= 1; TypeError naming the first
    that holds something else (``int`` would truncate 2.5 to 2 silently), ValueError
    naming the first below 1, as a layer of no units would fail deep inside torch."""
    out = []
    for name, value in sizes.items():
        is_tuple = isinstance(value, (tuple, list))
        if not all(is_int(v) for v in (value if is_tuple else (value,))):
            raise TypeError(f"{name} must hold ints, got {value!r}.")
        values = tuple(int(v) for v in value) if is_tuple else (int(value),)
        if any(v < 1 for v in values):
            raise ValueError(f"{name} must hold sizes >= 1, got {value!r}.")
        out.append(values if is_tuple else values[0])
    return out
