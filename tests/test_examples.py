"""Every example script runs, in its fast mode, so that none can rot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _celeba_dir(folder):
    """A small CelebA-layout folder of drawn faces (CelebA itself is not downloaded)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _celeba_layout import make_celeba_layout
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return make_celeba_layout(folder, 300, glasses_ratio=0.4, random_state=0)


#: Arguments naming the data of the examples that read a user's copy of a data set.
DATA_ARGS = {"faces_with_glasses": lambda tmp: ["--celeba-dir", str(_celeba_dir(tmp / "data"))]}


def _run(script, *args):
    env = dict(os.environ, ANOMALIB_LITE_FAST="1", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_in_fast_mode(script, tmp_path):
    data = DATA_ARGS.get(script.stem, lambda tmp: [])(tmp_path)
    result = _run(script, "--fast", "--output-dir", str(tmp_path), *data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("*.png")), "the example wrote no figure"


def test_faces_with_glasses_without_celeba_explains_and_fails(tmp_path):
    result = _run(ROOT / "examples" / "faces_with_glasses.py", "--fast", "--output-dir", tmp_path)
    assert result.returncode == 2
    assert "needs CelebA, which it does not download" in result.stderr
    assert "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html" in result.stderr
    assert not list(tmp_path.iterdir()), "it must not fall back to other data"
