"""The documentation builds without a warning, and every code block in it runs.

Each ```python block of a docs/*.md page (and of README.md) runs in order, in
one fresh interpreter per page, in a temporary working directory; blocks
marked otherwise (```bash, ```{code-block} text, ...) are shown, not run.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")

# Runs the blocks of one page in a fresh namespace, each compiled with the
# page's name and line numbers, so that a traceback points into the page.
_RUNNER = """
import json, sys
page, blocks = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__main__"}
for line, code in blocks:
    exec(compile("\\n" * line + code, page, "exec"), namespace)
"""


def python_blocks(text):
    """``(line, code)`` of each fenced block whose info string is exactly ``python``.

    ``line`` is the 0-based line of the block's first code line.
    """
    blocks, lines = [], text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match["fence"], match["info"]
        end = i + 1
        while end < len(lines) and not re.match(rf"^{re.escape(fence)}\s*$", lines[end]):
            end += 1
        if info == "python":
            blocks.append((i + 1, "".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


def test_python_blocks_are_extracted_and_others_are_not():
    text = (
        "# Page\n"
        "```python\nx = 1\n```\n"
        "```bash\nrm -rf /\n```\n"
        "```{code-block} python\nraise SystemExit\n```\n"
        "````markdown\n```python\nnot run\n```\n````\n"
        "```python\ny = x + 1\n```\n"
    )
    assert python_blocks(text) == [(2, "x = 1\n"), (16, "y = x + 1\n")]


def test_the_pages_hold_code_to_run():
    assert PAGES[-1].name == "README.md"
    assert python_blocks(PAGES[-1].read_text(encoding="utf-8")), "README lost its quickstart"
    for page in ["index", "idea", "choosing", "model_selection", "anomaly_maps", "own_images"]:
        assert python_blocks((DOCS / f"{page}.md").read_text(encoding="utf-8")), page


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_code_blocks_of_page_run(page, tmp_path):
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps([str(page), blocks]), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(spec)],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_every_example_is_listed():
    listed = (DOCS / "examples.md").read_text(encoding="utf-8")
    for script in sorted((ROOT / "examples").glob("*.py")):
        assert f"`{script.name}`" in listed, f"docs/examples.md does not mention {script.name}"


def test_site_builds_without_warnings(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    for name in ["PCADetector", "ConvAutoencoderDetector", "CalibratedDetector", "aupro_score"]:
        assert name in api
    assert (tmp_path / "html" / "_static" / "textures_pca_vs_autoencoder.png").is_file()


def test_api_pages_import_with_the_docs_extra_alone():
    # The site build imports every module docs/api.md documents; with the docs extra
    # alone, the optional packages of the other extras are missing.
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]
    docs = {re.split(r"[\[<>=]", r)[0] for r in extras["docs"]}
    others = {re.split(r"[\[<>=]", r)[0] for k, v in extras.items() if k != "docs" for r in v}
    missing = sorted(name.replace("-", "_") for name in others - docs)
    modules = re.findall(r"automodule:: (\S+)", (ROOT / "docs" / "api.md").read_text())
    code = (
        "import importlib, sys\n"
        f"sys.modules.update(dict.fromkeys({missing!r}))\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dask" in docs and "anomalib_lite.dask" in modules
