"""Every example script runs, in its fast mode, so that none can rot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_in_fast_mode(script, tmp_path):
    env = dict(os.environ, ANOMALIB_LITE_FAST="1", MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, str(script), "--fast", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("*.png")), "the example wrote no figure"
