"""How many rows one scoring batch holds."""

from sklearn import get_config


def rows_per_batch(bytes_per_row, batch_size=None):
    """Rows scored at once: ``batch_size`` or what fits in ``working_memory``."""
    if batch_size is not None:
        return batch_size
    working_memory = get_config()["working_memory"] * 2**20
    return int(max(1, min(8192, working_memory // max(1, bytes_per_row))))
