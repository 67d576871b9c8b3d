"""The peer benchmark runs in its smoke mode, so that it cannot rot.

PyOD is optional: its methods are skipped when it is not installed.
"""

import builtins
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
BENCH = ROOT / "benchmarks"
ODDS = ROOT.parent / "shared" / "data" / "odds"


@pytest.fixture
def bench_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import _peer_methods

    return _peer_methods


def test_bench_peers_fast_writes_tables_with_their_command(tmp_path):
    out = tmp_path / "peers.md"
    tasks = "digits,textures,odds" if ODDS.is_dir() else "digits,textures"
    args = [
        "--fast",
        "--tasks",
        tasks,
        "--methods",
        "PCADetector,ConvAutoencoderDetector,IsolationForest,PyOD PCA",
        "--classes",
        "0",
        "--tune",
        "digits",
        "--output",
        str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_peers.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "Produced by `python benchmarks/bench_peers.py --fast --tasks" in text
    assert text.count("<!-- task:") == len(tasks.split(","))
    assert "## One-class digits" in text
    assert "## Textures with planted defects" in text
    assert "| `PCADetector()` |" in text
    assert "| `IsolationForest()` |" in text
    assert "tuned" in text  # the GridSearchCV variant is reported
    assert "CPU:" in text and "torch" in text
    if ODDS.is_dir():
        assert "### ODDS, unsupervised protocol: ROC-AUC" in text
        # the convolutional detector needs images: not run on tables
        odds = text[text.index("## Tabular") :]
        assert "ConvAutoencoderDetector()" not in odds.split("## Notes")[0]
    # every number in the main digits table is a real measurement
    digits = text[text.index("## One-class digits") : text.index("Per-class ROC-AUC")]
    assert "nan" not in digits


def test_a_run_of_one_task_keeps_the_other_tasks_tables(bench_modules, tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        from bench_peers import write_report
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "b.md"
    old, new = "table-of-the-first-run", "table-of-the-second-run"
    write_report(out, {"digits": ["## One-class digits", "", old], "odds": ["## ODDS", "x"]})
    write_report(out, {"digits": ["## One-class digits", "", new]})
    text = out.read_text()
    assert new in text and old not in text
    assert "## ODDS" in text
    assert text.index("task:digits") < text.index("task:odds")


def test_pyod_methods_are_skipped_without_pyod(bench_modules, monkeypatch):
    real_import = builtins.__import__

    def no_pyod(name, *args, **kwargs):
        if name == "pyod" or name.startswith("pyod."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyod)
    names = [m.name for m in bench_modules.all_methods()]
    assert not any(n.startswith("PyOD") for n in names)
    assert "PCADetector()" in names and "IsolationForest()" in names


def test_every_method_scores_anomalies_higher(bench_modules):
    """The score each method reports ranks planted outliers above normal rows."""
    if not sys.platform.startswith("linux"):
        pytest.importorskip("psutil")  # memory is read from /proc on Linux
    rng = np.random.default_rng(0)
    train = rng.normal(size=(120, 8, 8)).astype(np.float32)
    test = np.concatenate([rng.normal(size=(40, 8, 8)), rng.normal(6.0, 1.0, size=(10, 8, 8))])
    labels = np.r_[np.zeros(40, int), np.ones(10, int)]
    sys.path.insert(0, str(BENCH))
    try:
        from bench_peers import evaluate
    finally:
        sys.path.remove(str(BENCH))
    for method in bench_modules.select(["PCADetector", "IsolationForest", "LocalOutlier"]):
        result = evaluate(method, train, test.astype(np.float32), labels, fast=True)
        assert result["auc"] > 0.9, method.name
        assert result["fit"] >= 0 and result["throughput"] > 0
