"""Validation of the layer sizes the modules are built from."""


def positive_sizes(**sizes):
    """Each keyword as an int or tuple of ints, all >= 1; ValueError naming the first
    that is not, as a layer of no units would fail deep inside torch."""
    out = []
    for name, value in sizes.items():
        values = tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)
        if any(v < 1 for v in values):
            raise ValueError(f"{name} must hold sizes >= 1, got {value!r}.")
        out.append(values if isinstance(value, (tuple, list)) else values[0])
    return out
