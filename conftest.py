"""pytest configuration shared by the tests and the doctests of the package."""

import importlib.util

# The Dask helpers' doctests need the optional `dask` extra.
collect_ignore = []
if importlib.util.find_spec("dask") is None or importlib.util.find_spec("distributed") is None:
    collect_ignore.append("anomalib_lite/dask.py")

# The ONNX export's doctests need the optional `onnx` extra.
if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript", "onnxruntime")):
    collect_ignore.append("anomalib_lite/onnx.py")
