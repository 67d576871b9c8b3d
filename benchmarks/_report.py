"""Helpers that the benchmark scripts share for writing their tables."""

import os
import platform
import shlex
import sys
from pathlib import Path


def command_line(script, argv=None):
    """The shell command that reproduces a run: ``python benchmarks/<script> <args>``.

    ``argv`` defaults to this process's arguments, as ``argparse`` reads them.
    """
    args = [f"benchmarks/{Path(script).name}", *(argv or sys.argv[1:])]
    return "python " + " ".join(shlex.quote(a) for a in args)


def cpu_model():
    """The processor's name (Linux's ``/proc/cpuinfo``), else what :mod:`platform` says.

    Pages name it because timings, and the last digits of long fits, depend on the
    processor: torch picks its float32 kernels by the instruction set.
    """
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_line(load_before, load_after, *, python=False):
    """``Machine: <arch> (<processor>, <kernels>), <n> CPUs, torch <v>; load average <a>
    at the start and <b> at the end``.

    ``load_before`` and ``load_after`` are :func:`os.getloadavg` tuples; the
    caller ends the sentence. ``python=True`` names the Python version too.
    """
    import torch

    kernels = torch.backends.cpu.get_cpu_capability()
    pieces = [f"{platform.machine()} ({cpu_model()}, {kernels} kernels)", f"{os.cpu_count()} CPUs"]
    if python:
        pieces.append(f"Python {platform.python_version()}")
    pieces.append(f"torch {torch.__version__}")
    return (
        f"Machine: {', '.join(pieces)}; load average {load_before[0]:.1f} at the start "
        f"and {load_after[0]:.1f} at the end"
    )


def write_page(path, lines):
    """Write the page ``lines`` (joined by newlines) to ``path``, its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
