"""Dask: chunked scoring, model search on a real cluster, and the optional import."""

import ast
import importlib
import importlib.util
import pickle
import sys
import warnings
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

import anomalib_lite
from anomalib_lite import CalibratedDetector, PCADetector
from anomalib_lite.autoencoder import ConvAutoencoderDetector
from anomalib_lite.datasets import load_images
from anomalib_lite.dense import AutoencoderDetector

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
        dashboard_address=":0",
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


_DASK_PACKAGES = ("dask", "distributed", "dask_ml")


def _auroc(estimator, X, y):
    """ROC-AUC with anomalies (1) as the positive class; higher is better."""
    return roc_auc_score(y, -estimator.score_samples(X))


# ------------------------------------------------------- optional import
def test_only_the_dask_module_imports_dask():
    package = Path(anomalib_lite.__file__).parent
    for source in package.rglob("*.py"):
        if source.name == "dask.py" and source.parent == package:
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert not any(n.split(".")[0] in _DASK_PACKAGES for n in names), (source, names)


def test_missing_dask_raises_an_error_naming_the_extra(monkeypatch):
    for name in _DASK_PACKAGES:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "anomalib_lite.dask")
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[dask\]\""):
        importlib.import_module("anomalib_lite.dask")


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


@pytest.fixture(scope="module")
def small_zoo(digits):
    """Every detector, fitted fast on digit rows; the conv detector on images too."""
    X, _ = digits
    rows = X[:120]
    return [
        (PCADetector(n_components=5).fit(rows), rows),
        (AutoencoderDetector(hidden_sizes=(8,), max_iter=2, random_state=0).fit(rows), rows),
        (
            CalibratedDetector(PCADetector(n_components=5), method="quantile").fit(rows),
            rows,
        ),
        (
            ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(
                rows.reshape(-1, 8, 8)
            ),
            rows.reshape(-1, 8, 8),
        ),
    ]


def test_score_array_gives_empty_results_for_empty_chunks(small_zoo):
    for det, X in small_zoo:
        darr = da.from_array(X, chunks=(30, *X.shape[1:]))
        keep = da.from_array(np.arange(len(X)) >= 30, chunks=30)  # empties chunk 0
        selected = darr[keep]
        selected.compute_chunk_sizes()
        assert selected.chunks[0] == (0, 30, 30, 30)
        for method in METHODS:
            if not callable(getattr(det, method, None)):
                continue
            result = score_array(det, selected, method=method)
            expected = getattr(det, method)(X[30:])
            computed = result.compute(scheduler="synchronous")
            assert computed.shape == expected.shape and computed.dtype == expected.dtype
            np.testing.assert_allclose(computed, expected, rtol=1e-5, atol=1e-6)


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


def test_score_array_pipeline_that_refuses_zeros(digits):
    """A pipeline taking logarithms refuses the zeros the output shape is found
    from; the first sample of X tells it instead."""
    X, y = digits
    X = X + 0.5  # positive, so that the logarithm is finite
    pipe = make_pipeline(FunctionTransformer(np.log), PCADetector(n_components=5)).fit(X, y)
    darr = da.from_array(X, chunks=(600, -1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log(0) of the zeros is not the user's concern
        result = score_array(pipe, darr)
    np.testing.assert_array_equal(
        result.compute(scheduler="synchronous"), _per_chunk(pipe, X, darr.chunks[0])
    )
    with pytest.raises(ValueError, match="features"):
        score_array(pipe, da.from_array(X[:, :10], chunks=(600, -1)))


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


def test_score_files_refuses_a_set_of_paths(fitted, png_files):
    paths, _ = png_files
    for unordered in (set(paths), frozenset(paths)):
        with pytest.raises(TypeError, match=r"paths must be a sequence.*sorted\(paths\)"):
            score_files(fitted, unordered, loader=_load_rows)
    # a mapping's keys keep their order: accepted, like any other iterable
    keys = dict.fromkeys(paths[:4]).keys()
    np.testing.assert_array_equal(
        score_files(fitted, keys, loader=_load_rows).compute(scheduler="synchronous"),
        fitted.score_samples(_load_rows(paths[:4])),
    )


def test_score_files_refuses_a_loader_that_returns_masked_entries(fitted, png_files):
    paths, _ = png_files

    def masked_rows(files):
        return np.ma.masked_greater(_load_rows(files), 0.5)

    result = score_files(fitted, paths[:4], loader=masked_rows)
    with pytest.raises(ValueError, match=r"img_000\.png.*masked array with masked entries"):
        result.compute(scheduler="synchronous")

    def nothing_masked(files):
        return np.ma.masked_array(_load_rows(files))

    np.testing.assert_array_equal(
        score_files(fitted, paths[:4], loader=nothing_masked).compute(scheduler="synchronous"),
        fitted.score_samples(_load_rows(paths[:4])),
    )


def test_score_files_reports_a_file_of_another_size(fitted, png_files, tmp_path):
    paths, _ = png_files
    odd = _write_pngs(tmp_path, [np.zeros((9, 9), np.uint8)])[0]
    result = score_files(fitted, [*paths[:3], odd], files_per_chunk=3, loader=_load_rows)
    with pytest.raises(ValueError, match=r"img_000.png.*shape \(1, 81\); expected \(1, 64\)"):
        result.compute(scheduler="synchronous")


def test_score_files_skipping_unreadable_files_reports_a_file_of_another_size(png_files, tmp_path):
    paths, images = png_files
    conv = ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(images)
    odd = tmp_path / "odd.png"
    _write_pngs(tmp_path, [np.zeros((9, 9), np.uint8)])[0].rename(odd)
    result = score_files(conv, [*paths[:3], odd], files_per_chunk=4, on_error="warn")
    with pytest.raises(ValueError, match=r"odd\.png.*shape \(1, 9, 9\); expected \(1, 8, 8\)"):
        result.compute(scheduler="synchronous")


def _read_npy(files):
    return np.stack([np.load(f) for f in files])


def test_score_files_refuses_a_chunk_whose_dtype_would_wrap(tmp_path):
    rows = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4)
    paths = [tmp_path / f"{i}.npy" for i in range(6)]
    for i, (row, path) in enumerate(zip(rows, paths, strict=True)):
        np.save(path, row if i < 3 else row.astype(np.uint16) * 300)  # 16-bit from file 3
    det = PCADetector(n_components=2).fit(_read_npy(paths).astype(float))
    result = score_files(det, paths, files_per_chunk=3, loader=_read_npy)
    with pytest.raises(ValueError, match=r"3\.npy.*gave dtype uint16 with values.*uint8"):
        result.compute(scheduler="synchronous")
    # A dtype that holds the first file's values is taken.
    widened = score_files(det, paths[3:] + paths[:3], files_per_chunk=3, loader=_read_npy)
    np.testing.assert_array_equal(
        widened.compute(scheduler="synchronous"),
        _per_chunk(det, _read_npy(paths[3:] + paths[:3]), (3, 3)),
    )


def test_score_files_takes_a_chunk_whose_cast_only_rounds(tmp_path):
    rows = np.random.default_rng(0).normal(size=(6, 4))
    paths = [tmp_path / f"{i}.npy" for i in range(6)]
    for i, (row, path) in enumerate(zip(rows, paths, strict=True)):
        np.save(path, row.astype(np.float32) if i < 3 else row)  # float64 from file 3
    det = PCADetector(n_components=2).fit(rows)
    result = score_files(det, paths, files_per_chunk=3, loader=_read_npy)
    np.testing.assert_array_equal(
        result.compute(scheduler="synchronous"),
        _per_chunk(det, _read_npy(paths).astype(np.float32), (3, 3)),
    )
    # 8-bit values in a 16-bit array fit the first file's uint8 as they are.
    for i, path in enumerate(paths):
        np.save(path, np.arange(4, dtype=np.uint8 if i < 3 else np.uint16) + i)
    small = score_files(det, paths, files_per_chunk=3, loader=_read_npy)
    np.testing.assert_array_equal(
        small.compute(scheduler="synchronous"),
        _per_chunk(det, _read_npy(paths).astype(np.uint8), (3, 3)),
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"color_mode": "bgr"}, ValueError, "color_mode='bgr' is not supported"),
        ({"size": -3}, ValueError, r"size=\(-3, -3\)"),
        ({"return_paths": True}, TypeError, "no return_paths"),
    ],
)
def test_score_files_skipping_unreadable_files_names_a_bad_loader_keyword(
    png_files, kwargs, error, match
):
    paths, images = png_files
    conv = ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(images)
    with pytest.raises(error, match=match):
        score_files(conv, paths, on_error="warn", **kwargs)


def test_score_files_takes_return_paths_false(fitted, png_files):
    paths, images = png_files
    conv = ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(images)
    result = score_files(conv, paths[:4], return_paths=False).compute(scheduler="synchronous")
    np.testing.assert_array_equal(result, conv.score_samples(images[:4]))


def test_score_files_skips_a_listed_folder_wherever_it_stands(png_files, tmp_path):
    paths, images = png_files
    conv = ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(images)
    folder = tmp_path / "sub"
    folder.mkdir()
    expected = conv.score_samples(images[:3])
    for at in (0, 1):
        listed = [*paths[:3]]
        listed.insert(at, folder)
        with pytest.warns(UserWarning, match="sub"):
            result = score_files(conv, listed, files_per_chunk=2, on_error="warn").compute(
                scheduler="synchronous"
            )
        assert np.isnan(result[at])
        np.testing.assert_allclose(np.delete(result, at), expected, rtol=1e-6)


def _pngs_with_a_corrupt_file(folder, images):
    paths = _write_pngs(folder, images)
    paths[3].write_bytes(b"not a png")
    return paths


def test_score_files_skipped_file_gives_nan_and_keeps_the_others_in_place(tmp_path, digits):
    X, _ = digits
    images = np.rint(X[:12].reshape(-1, 8, 8) * 255).astype(np.uint8)
    paths = _pngs_with_a_corrupt_file(tmp_path, images)
    conv = ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(images)
    good = np.r_[0:3, 4:12]
    for method, missing in [("score_samples", np.nan), ("predict", 0), ("anomaly_map", np.nan)]:
        result = score_files(conv, paths, method=method, files_per_chunk=5, on_error="warn")
        with pytest.warns(UserWarning, match=r"1 of the 5 files.*skipped.*img_003\.png"):
            computed = result.compute(scheduler="synchronous")
        expected = getattr(conv, method)(images[good])
        assert computed.shape == (12, *expected.shape[1:])
        np.testing.assert_array_equal(computed[3], missing)
        np.testing.assert_allclose(computed[good], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"Cannot read image file.*img_003\.png"):
        score_files(conv, paths, files_per_chunk=5).compute(scheduler="synchronous")


def test_score_files_with_an_unreadable_first_file_and_a_skipping_loader(tmp_path, digits):
    X, _ = digits
    images = np.rint(X[:6].reshape(-1, 8, 8) * 255).astype(np.uint8)
    paths = _write_pngs(tmp_path, images)
    paths[0].write_bytes(b"not a png")
    conv = ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(images)
    with pytest.warns(UserWarning, match="img_000"):
        scores = score_files(conv, paths, on_error="warn").compute(scheduler="synchronous")
    assert np.isnan(scores[0]) and np.all(np.isfinite(scores[1:]))

    def skipping(files):  # drops unreadable files: the results cannot stay in place
        return load_images(files, on_error="warn")

    result = score_files(conv, paths[1:] + paths[:1], files_per_chunk=6, loader=skipping)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="one image per path"):
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
def _sys_path(action, folder):
    if action == "insert":
        sys.path.insert(0, folder)
    else:
        sys.path.remove(folder)


def test_benchmark_fast_mode_writes_its_table(client, tmp_path, monkeypatch):
    path = Path(__file__).parents[1] / "benchmarks" / "bench_dask_scoring.py"
    spec = importlib.util.spec_from_file_location("bench_dask_scoring", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_dask_scoring", bench)
    spec.loader.exec_module(bench)
    # Its chunk generator runs on the workers: let them import the script.
    client.run(_sys_path, "insert", str(path.parent))
    report = tmp_path / "benchmarks_dask.md"
    try:
        bench.main(["--fast", "--scheduler", client.scheduler.address, "--output", str(report)])
    finally:
        client.run(_sys_path, "remove", str(path.parent))
    text = report.read_text()
    command = next(line for line in text.splitlines() if line.startswith("Command: "))
    assert command.startswith("Command: `python benchmarks/bench_dask_scoring.py --fast"), command
    for way in ("single process", "threads", "cluster 2x1"):
        assert f"| {way} | 1,000 | 1 |" in text
        assert f"| {way} | 4,000 | 1 |" in text
    assert text.count("| LocalCluster") == 0
    for name in ("PCADetector", "CalibratedDetector(PCADetector)", "ConvAutoencoderDetector"):
        assert f"| {name} |" in text


# ------------------------------------------------------ torch detectors
def _torch_threads(estimator, X, y):
    """Scorer: torch threads of this process inside the forward pass, times 1000,
    plus the threads outside it (the process-wide count the knob restores)."""
    import torch

    detector = estimator[-1] if hasattr(estimator, "steps") else estimator
    inside = []
    hook = detector.module_.register_forward_hook(lambda *_: inside.append(torch.get_num_threads()))
    try:
        estimator.score_samples(X)
    finally:
        hook.remove()
    return 1000 * max(inside) + torch.get_num_threads()


@pytest.fixture(scope="module")
def digit_images(digits):
    X, y = digits
    return X.reshape(-1, 8, 8)[:400], y[:400]


def _torch_search(n_jobs):
    return GridSearchCV(
        ConvAutoencoderDetector(max_iter=2, batch_size=64, random_state=0),
        {"latent_dim": [4, 8]},
        scoring={"auroc": _auroc, "threads": _torch_threads},
        refit="auroc",
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
        n_jobs=n_jobs,
    )


def test_torch_search_uses_one_thread_per_worker_and_equals_sequential(client, digit_images):
    X, y = digit_images
    n_workers = 2
    sequential = _torch_search(None).fit(X, y)
    with joblib.parallel_backend("loky", n_jobs=n_workers):
        on_loky = _torch_search(n_workers).fit(X, y)
    with joblib.parallel_backend("dask"):
        on_dask = _torch_search(n_workers).fit(X, y)
    for search in (sequential, on_loky, on_dask):
        for split in range(2):
            key = f"split{split}_test_%s"
            np.testing.assert_array_equal(
                search.cv_results_[key % "auroc"], sequential.cv_results_[key % "auroc"]
            )
            inside, outside = np.divmod(search.cv_results_[key % "threads"].astype(int), 1000)
            # n_threads=None: one torch thread per process while scoring (and fitting)...
            np.testing.assert_array_equal(inside, 1)
            # ...and no worker's own thread count multiplies the cores.
            if search is not sequential:
                assert np.all(outside * n_workers <= max(joblib.cpu_count(), n_workers))


def test_every_detector_scores_the_same_on_the_cluster(client, digits):
    X, y = digits
    images = X.reshape(-1, 8, 8)
    cases = [
        (CalibratedDetector(PCADetector(n_components=8), random_state=0), X, "decision_function"),
        (AutoencoderDetector(max_iter=2, random_state=0), X, "score_samples"),
        (ConvAutoencoderDetector(max_iter=2, random_state=0), images, "score_samples"),
        (ConvAutoencoderDetector(max_iter=2, random_state=0), images, "anomaly_map"),
        (
            make_pipeline(
                StandardScaler(), ConvAutoencoderDetector(image_shape=(8, 8), max_iter=2)
            ),
            X,
            "predict",
        ),
    ]
    for detector, data, method in cases:
        detector.fit(data, y)
        darr = da.from_array(data, chunks=(500, *data.shape[1:]))
        lazy = score_array(detector, darr, method=method)
        expected = getattr(detector, method)(data)
        assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
        on_cluster = client.compute(lazy).result()
        np.testing.assert_array_equal(on_cluster, lazy.compute(scheduler="synchronous"))
        np.testing.assert_array_equal(
            on_cluster, _per_chunk(detector, data, darr.chunks[0], method)
        )


def test_threaded_scheduler_runs_one_torch_thread_per_chunk(digits):
    import torch

    X, y = digits
    images = X.reshape(-1, 8, 8)
    det = ConvAutoencoderDetector(max_iter=1, random_state=0).fit(images, y)
    inside = []
    hook = det.module_.register_forward_hook(lambda *_: inside.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        lazy = score_array(det, da.from_array(images, chunks=(100, 8, 8)))
        scores = lazy.compute(scheduler="threads", num_workers=4)
    finally:
        hook.remove()
    # Four scheduler threads, each scoring with n_threads=None = one torch thread...
    assert len(inside) >= 18 and set(inside) == {1}
    # ...and the calling thread keeps its own count.
    assert torch.get_num_threads() == before
    np.testing.assert_array_equal(scores, lazy.compute(scheduler="synchronous"))
