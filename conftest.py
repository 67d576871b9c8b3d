"""pytest configuration shared by the tests and the doctests of the package."""

import importlib.util

# The Dask helpers' doctests need the optional `dask` extra.
collect_ignore = []
if importlib.util.find_spec("dask") is None or importlib.util.find_spec("distributed") is None:
    collect_ignore.append("anomalib_lite/dask.py")
