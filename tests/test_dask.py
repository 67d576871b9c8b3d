"""Dask: chunked scoring, model search on a real cluster, and the optional import."""

import pickle
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from anomalib_lite import PCADetector

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from anomalib_lite.dask import METHODS, score_array, score_files  # noqa: E402


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client():
    """A real two-process cluster, one thread per worker, shut down at the end."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        assert cluster.status.name == "closed"


@pytest.fixture(scope="module")
def digits():
    """Digits scaled to [0, 1]; 8 is the normal class (label 0), the rest anomalies."""
    X, d = load_digits(return_X_y=True)
    return X / 16.0, (d != 8).astype(int)


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return PCADetector(n_components=10).fit(X, y)


def _per_chunk(detector, X, chunks, method="score_samples"):
    """What one process computes chunk by chunk: the reference for exact equality."""
    bounds = np.cumsum((0, *chunks))
    return np.concatenate([getattr(detector, method)(X[a:b]) for a, b in pairwise(bounds)])


def _auroc(estimator, X, y):
    """ROC-AUC with anomalies (1) as the positive class; higher is better."""
    return roc_auc_score(y, -estimator.score_samples(X))


# ------------------------------------------------------- optional import
def test_library_imports_without_dask():
    code = (
        "import sys\n"
        "for name in ('dask', 'distributed', 'dask_ml'):\n"
        "    sys.modules[name] = None\n"
        "import anomalib_lite\n"
        "assert not any(m.startswith('dask') for m in sys.modules if sys.modules[m])\n"
        "try:\n"
        "    import anomalib_lite.dask\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "anomalib_lite[dask]" in out.stdout


# -------------------------------------------------------- score_array
@pytest.mark.parametrize("method", [m for m in METHODS if m != "anomaly_map"])
def test_score_array_equals_detector_chunk_by_chunk(fitted, digits, method):
    X, _ = digits
    darr = da.from_array(X, chunks=(400, -1))
    result = score_array(fitted, darr, method=method)
    expected = getattr(fitted, method)(X)
    assert result.shape == expected.shape
    assert result.dtype == expected.dtype
    assert result.chunks == (darr.chunks[0],)
    computed = result.compute(scheduler="synchronous")
    np.testing.assert_array_equal(computed, _per_chunk(fitted, X, darr.chunks[0], method))
    np.testing.assert_allclose(computed, expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_score_array_invariant_to_chunking(fitted, digits, data):
    X, _ = digits
    n = data.draw(st.integers(1, 300), label="n")
    cuts = data.draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=6, unique=True))
    cuts = [c for c in cuts if c < n]
    bounds = [0, *sorted(cuts), n]
    chunks = tuple(b - a for a, b in pairwise(bounds))
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    Xn = X[:n].astype(dtype)
    result = score_array(fitted, da.from_array(Xn, chunks=(chunks, -1)))
    assert result.chunks == (chunks,)
    scores = result.compute(scheduler="synchronous")
    assert scores.shape == (n,) and scores.dtype == np.float64
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, fitted.score_samples(Xn), rtol=1e-9, atol=1e-10)


def test_score_array_is_lazy(fitted):
    def fail():
        raise AssertionError("the data was loaded before compute()")

    darr = da.from_delayed(dask.delayed(fail)(), shape=(10, 64), dtype=np.float64)
    result = score_array(fitted, darr)
    assert result.shape == (10,)


def test_score_array_ships_the_detector_once(fitted, digits):
    X, _ = digits
    result = score_array(fitted, da.from_array(X, chunks=(50, -1)))
    assert result.npartitions == 36
    graph_bytes = len(pickle.dumps(dict(result.__dask_graph__())))
    detector_bytes = len(pickle.dumps(fitted))
    data_bytes = X.nbytes
    assert graph_bytes < data_bytes + 2 * detector_bytes


def test_score_array_rechunks_feature_axis_only_when_asked(fitted, digits):
    X, _ = digits
    darr = da.from_array(X, chunks=(500, 16))
    with pytest.raises(ValueError, match=r"chunked along axes \[1\].*rechunk=True"):
        score_array(fitted, darr)
    result = score_array(fitted, darr, rechunk=True)
    assert result.chunks == (darr.chunks[0],)
    np.testing.assert_array_equal(
        result.compute(scheduler="synchronous"),
        _per_chunk(fitted, X, darr.chunks[0]),
    )


def test_score_array_pipeline(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), PCADetector(n_components=5)).fit(X, y)
    darr = da.from_array(X, chunks=(600, -1))
    result = score_array(pipe, darr, method="decision_function")
    np.testing.assert_array_equal(
        result.compute(scheduler="synchronous"),
        _per_chunk(pipe, X, darr.chunks[0], "decision_function"),
    )
    with pytest.raises(ValueError, match=r"reconstruction_error.*not a method of Pipeline"):
        score_array(pipe, darr, method="reconstruction_error")


def test_score_array_with_dask_ml_parallel_post_fit(digits):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = digits
    wrapped = wrappers.ParallelPostFit(PCADetector(n_components=10)).fit(X, y)
    darr = da.from_array(X, chunks=(500, -1))
    expected = _per_chunk(wrapped.estimator, X, darr.chunks[0], "predict")
    np.testing.assert_array_equal(wrapped.predict(darr).compute(scheduler="synchronous"), expected)
    # score_array reaches the methods ParallelPostFit does not forward.
    scores = score_array(wrapped, darr, method="score_samples")
    np.testing.assert_array_equal(
        scores.compute(scheduler="synchronous"),
        _per_chunk(wrapped.estimator, X, darr.chunks[0]),
    )


@pytest.mark.parametrize(
    ("make_input", "kwargs", "error", "match"),
    [
        (lambda X: X, {}, TypeError, r"X must be a dask.array.Array, got ndarray"),
        (lambda X: da.from_array(X[:, 0]), {}, ValueError, r"sample axis and at least one"),
        (lambda X: da.from_array(X.astype(str)), {}, TypeError, r"dtype <U.*numeric"),
        (lambda X: da.from_array(X), {"method": "score"}, ValueError, r"method='score'.*one of"),
        (lambda X: da.from_array(X), {"method": "anomaly_map"}, ValueError, r"not a method of"),
        (lambda X: da.from_array(X), {"rechunk": "yes"}, TypeError, r"rechunk must be a bool"),
        (lambda X: da.from_array(X[:, :5]), {}, ValueError, r"5 features.*expecting 64"),
    ],
)
def test_score_array_rejects_bad_input(fitted, digits, make_input, kwargs, error, match):
    X, _ = digits
    with pytest.raises(error, match=match):
        score_array(fitted, make_input(X), **kwargs)


def test_score_array_unknown_chunks_and_unfitted(digits):
    X, _ = digits
    darr = da.from_array(X, chunks=(500, -1))
    masked = darr[darr[:, 0] >= 0]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        score_array(PCADetector().fit(X), masked)
    with pytest.raises(NotFittedError):
        score_array(PCADetector(), darr)


# -------------------------------------------------------- score_files
def _write_pngs(folder, images):
    from PIL import Image

    paths = []
    for i, image in enumerate(images):
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _load_rows(files):
    """Read grayscale PNGs as float rows in [0, 1]."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(f), dtype=np.float64).ravel() / 255 for f in files])


@pytest.fixture(scope="module")
def png_files(tmp_path_factory, digits):
    X, _ = digits
    images = np.rint(X[:45].reshape(-1, 8, 8) * 255).astype(np.uint8)
    return _write_pngs(tmp_path_factory.mktemp("pngs"), images), images


def test_score_files_matches_in_memory_scores(fitted, png_files):
    paths, images = png_files
    result = score_files(fitted, paths, files_per_chunk=10, loader=_load_rows)
    assert result.chunks == ((10, 10, 10, 10, 5),)
    rows = images.reshape(len(images), -1) / 255
    np.testing.assert_array_equal(
        result.compute(scheduler="synchronous"), _per_chunk(fitted, rows, result.chunks[0])
    )


def _flatten(images):
    return images.reshape(len(images), -1)


def test_score_files_reads_with_load_images_by_default(digits, png_files):
    paths, images = png_files
    rows = images.reshape(len(images), -1).astype(np.float32) / 255
    pipe = make_pipeline(FunctionTransformer(_flatten), PCADetector(n_components=5)).fit(
        images.astype(np.float32) / 255
    )
    result = score_files(pipe, paths, files_per_chunk=20, dtype="float32")
    np.testing.assert_array_equal(
        result.compute(scheduler="synchronous"), _per_chunk(pipe[-1], rows, result.chunks[0])
    )


def test_score_files_rejects_bad_paths(fitted, png_files, tmp_path):
    paths, _ = png_files
    with pytest.raises(TypeError, match=r"sequence of file paths.*glob"):
        score_files(fitted, str(tmp_path), loader=_load_rows)
    with pytest.raises(ValueError, match="paths is empty"):
        score_files(fitted, [], loader=_load_rows)
    with pytest.raises(ValueError, match="files_per_chunk=0"):
        score_files(fitted, paths, files_per_chunk=0, loader=_load_rows)
    with pytest.raises(TypeError, match="loader must be callable"):
        score_files(fitted, paths, loader="pillow")


def test_score_files_reports_a_file_of_another_size(fitted, png_files, tmp_path):
    paths, _ = png_files
    odd = _write_pngs(tmp_path, [np.zeros((9, 9), np.uint8)])[0]
    result = score_files(fitted, [*paths[:3], odd], files_per_chunk=3, loader=_load_rows)
    with pytest.raises(ValueError, match=r"img_000.png.*shape \(1, 81\); expected \(1, 64\)"):
        result.compute(scheduler="synchronous")


# ------------------------------------------------------- on a cluster
def test_chunked_scoring_on_cluster_equals_single_process(client, fitted, digits, png_files):
    X, _ = digits
    darr = da.from_array(X, chunks=(300, -1))
    for method in ("score_samples", "predict"):
        lazy = score_array(fitted, darr, method=method)
        on_cluster = client.compute(lazy).result()
        np.testing.assert_array_equal(on_cluster, lazy.compute(scheduler="synchronous"))
        np.testing.assert_array_equal(on_cluster, _per_chunk(fitted, X, darr.chunks[0], method))
    paths, _ = png_files
    lazy = score_files(fitted, paths, files_per_chunk=8, loader=_load_rows)
    np.testing.assert_array_equal(
        client.compute(lazy).result(), lazy.compute(scheduler="synchronous")
    )


def _search(n_jobs):
    return GridSearchCV(
        make_pipeline(StandardScaler(), PCADetector()),
        {"pcadetector__n_components": [2, 5, 0.8], "pcadetector__statistic": ["spe", "combined"]},
        scoring=_auroc,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        n_jobs=n_jobs,
    )


def test_grid_search_on_processes_and_on_dask_equals_sequential(client, digits):
    X, y = digits
    sequential = _search(None).fit(X, y)
    on_loky = _search(-1).fit(X, y)
    with joblib.parallel_backend("dask"):
        on_dask = _search(-1).fit(X, y)
    for search in (on_loky, on_dask):
        assert search.best_params_ == sequential.best_params_
        for split in range(3):
            key = f"split{split}_test_score"
            np.testing.assert_array_equal(search.cv_results_[key], sequential.cv_results_[key])
        np.testing.assert_array_equal(search.decision_function(X), sequential.decision_function(X))
    # The best model is a useful one, not an artefact of the search.
    assert sequential.best_score_ > 0.9


# ---------------------------------------------------------- benchmark
def test_benchmark_fast_mode_writes_its_table(tmp_path):
    script = Path(__file__).parents[1] / "benchmarks" / "bench_dask_scoring.py"
    report = tmp_path / "benchmarks_dask.md"
    result = subprocess.run(
        [sys.executable, str(script), "--fast", "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text()
    assert "--fast" in text
    for way in ("single process", "threads", "LocalCluster 2x1"):
        assert f"| {way} | 1,000 | 1 |" in text
        assert f"| {way} | 4,000 | 1 |" in text
    assert "| PCADetector |" in text
