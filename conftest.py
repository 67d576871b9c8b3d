"""pytest configuration shared by the tests and the doctests of the package."""

import importlib.util
import os

# The Dask helpers' doctests need the optional `dask` extra.
collect_ignore = []
if importlib.util.find_spec("dask") is None or importlib.util.find_spec("distributed") is None:
    collect_ignore.append("anomalib_lite/dask.py")

# The ONNX export's doctests need the optional `onnx` extra.
if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript", "onnxruntime")):
    collect_ignore.append("anomalib_lite/onnx.py")


def pytest_xdist_auto_num_workers(config):
    """Workers for ``-n auto`` (pyproject's addopts): one per CPU this process may
    run on, which a container or ``taskset`` may limit below the machine's count,
    and at most 4, as more only add start-up time to a suite of this size."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS and Windows
        cpus = os.cpu_count() or 1
    return min(4, cpus)
