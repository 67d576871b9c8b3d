"""``python -m anomalib_lite``: the ``anomalib-lite`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
