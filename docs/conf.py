"""Sphinx configuration of the anomalib_lite documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
Pages are MyST Markdown; the API reference is generated from the numpydoc
docstrings by autodoc. Nothing is downloaded during the build.
"""

import re
import sys
from pathlib import Path

# Document the package of this source tree, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anomalib_lite

project = "anomalib_lite"
author = "anomalib_lite developers"
copyright = "anomalib_lite developers"
version = release = anomalib_lite.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: ```python blocks are highlighted; ```{code-block} text or ```bash
# blocks are shown, not run, by the docs test. Headings get anchors for links.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "dollarmath"]

# autodoc and numpydoc: the docstrings are the reference. autosummary only
# draws summary tables (no stub pages are generated into the source tree).
autosummary_generate = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"anomalib_lite {release}"
html_theme_options = {
    "description": "Anomaly detection trained on normal data only, images first.",
    "page_width": "1100px",
}


# In reST a word ending in "_" is a link, so the fitted-attribute names in
# shapes such as "ndarray of shape (n_features_in_,)" would be broken links.
# Escape them before numpydoc parses the docstring (lower priority runs first).
_SHAPE_NAME = re.compile(r"(?<=[(, ])([A-Za-z]\w*?)_(?=[,)])")


def _escape_shape_names(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if "shape (" in line or "shape=(" in line:
            lines[i] = _SHAPE_NAME.sub(r"\1\\_", line)


# The benchmark scripts write docs/benchmarks*.md. performance.md lists those
# that exist in its toctree, where the line BENCHMARK_PAGES stands, so that a
# tree in which none has been generated yet still builds without a warning.
_BENCHMARK_MARKER = "BENCHMARK_PAGES"


def _list_benchmark_pages(app, docname, source):
    if docname == "performance":
        pages = sorted(p.stem for p in Path(app.srcdir).glob("benchmarks*.md"))
        source[0] = source[0].replace(_BENCHMARK_MARKER, "\n".join(pages))


def setup(app):
    app.connect("autodoc-process-docstring", _escape_shape_names, priority=400)
    app.connect("source-read", _list_benchmark_pages)
