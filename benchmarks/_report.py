"""Helpers that the benchmark scripts share for writing their tables."""

import shlex
import sys
from pathlib import Path


def command_line(script, argv=None):
    """The shell command that reproduces a run: ``python benchmarks/<script> <args>``.

    ``argv`` defaults to this process's arguments, as ``argparse`` reads them.
    """
    args = [f"benchmarks/{Path(script).name}", *(argv or sys.argv[1:])]
    return "python " + " ".join(shlex.quote(a) for a in args)
