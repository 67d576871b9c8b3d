"""ONNX export: onnxruntime scores, decides and maps as the library does."""

import json
import logging
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from anomalib_lite import (  # noqa: E402
    AutoencoderDetector,
    CalibratedDetector,
    ConvAutoencoderDetector,
    DraemDetector,
    PCADetector,
    __version__,
)
from anomalib_lite.datasets import make_textures  # noqa: E402
from anomalib_lite.io import load  # noqa: E402
from anomalib_lite.nn import conv  # noqa: E402
from anomalib_lite.onnx import OPSET, export  # noqa: E402

CONV = {"max_iter": 2, "random_state": 0, "channels": (8, 16), "latent_dim": 8}
#: Largest difference allowed, relative to the largest absolute library value.
RTOL = 1e-5


def _digits():
    X, y = load_digits(return_X_y=True)
    return X[y == 0], X[y != 0][:40]


def _run(path, X):
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": X}), strict=True))


def _assert_same(det, path, X):
    """onnxruntime's outputs on ``X`` agree with the detector's public methods."""
    got = _run(path, X)
    score = det.score_samples(X)
    scale = np.abs(score).max()
    assert got["score"].dtype == np.float64 and got["score"].shape == (len(X),)
    np.testing.assert_allclose(got["score"], score, rtol=0, atol=RTOL * scale)
    np.testing.assert_allclose(got["decision"], det.decision_function(X), rtol=0, atol=RTOL * scale)
    np.testing.assert_array_equal(np.where(got["is_anomaly"], -1, 1), det.predict(X))
    inner = det.detector_ if isinstance(det, CalibratedDetector) else det
    if hasattr(inner, "anomaly_map"):
        maps = inner.anomaly_map(X)
        assert got["anomaly_map"].shape == maps.shape
        np.testing.assert_allclose(got["anomaly_map"], maps, rtol=0, atol=RTOL * np.abs(maps).max())
    else:
        assert "anomaly_map" not in got
    return got


def _export(det, tmp_path, name="model.onnx", **kwargs):
    return export(det, tmp_path / name, **kwargs)


def _both_batches(det, path, X):
    """A batch of one and a batch of many."""
    _assert_same(det, path, X[:1])
    return _assert_same(det, path, X)


@pytest.mark.parametrize("statistic", ["spe", "t2", "combined"])
def test_pca_on_digits_matches(statistic, tmp_path):
    normal, anomalous = _digits()
    det = PCADetector(n_components=10, statistic=statistic).fit(normal[:120])
    fresh = np.vstack([normal[120:], anomalous])
    path = _export(det, tmp_path, input_dtype="float64")
    got = _both_batches(det, path, fresh)
    assert got["is_anomaly"].any() and not got["is_anomaly"].all()


def test_pca_combined_score_is_float64_exact(tmp_path):
    # theta_[0] divides the SPE in float64: as a float32 constant it moved scores by ~5e-9.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)) * [3, 2, 1, 1, 1, 1]
    det = PCADetector(n_components=2, statistic="combined", trim_fraction=0).fit(X)
    assert np.float32(det.theta_[0]) != det.theta_[0]
    fresh = rng.normal(size=(200, 6))
    got = _run(_export(det, tmp_path, input_dtype="float64"), fresh)
    score = det.score_samples(fresh)
    np.testing.assert_allclose(got["score"], score, rtol=1e-12, atol=0)
    atol = 1e-12 * np.abs(score).max()
    np.testing.assert_allclose(got["decision"], det.decision_function(fresh), rtol=0, atol=atol)


def test_pca_random_float32_and_uint8_input(tmp_path):
    rng = np.random.default_rng(0)
    det = PCADetector(n_components=3).fit(rng.integers(0, 256, size=(80, 12)).astype(np.uint8))
    X8 = rng.integers(0, 256, size=(33, 12)).astype(np.uint8)
    _both_batches(det, _export(det, tmp_path, "u8.onnx", input_dtype="uint8"), X8)
    X32 = rng.normal(128, 60, size=(33, 12)).astype(np.float32)
    _both_batches(det, _export(det, tmp_path, "f32.onnx"), X32)


@pytest.mark.parametrize("which", ["pca", "autoencoder"])
def test_export_under_another_default_device(which, tmp_path):
    """'meta' stands in for a GPU as torch's default device: the graph is built on
    the CPU from the detector's arrays, and scores as the detector does."""
    X = np.random.default_rng(0).normal(size=(50, 4))
    det = (
        PCADetector(n_components=2)
        if which == "pca"
        else AutoencoderDetector(hidden_sizes=(8,), max_iter=2, random_state=0)
    ).fit(X)
    before = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        path = _export(det, tmp_path)
    finally:
        torch.set_default_device(before)
    _both_batches(det, path, X.astype(np.float32))


def test_export_keeps_the_exporters_notices_out_of_the_callers_log(tmp_path, caplog):
    """An application that logs at INFO gets no notices from the exporter or its
    graph optimizer, and their loggers keep the levels they had."""
    names = ("torch.onnx", "onnxscript", "onnx_ir")
    levels = [logging.getLogger(name).level for name in names]
    det = PCADetector(n_components=3).fit(np.random.default_rng(0).normal(size=(40, 12)))
    with caplog.at_level(logging.INFO):
        _export(det, tmp_path)
    assert not [
        r for r in caplog.records if r.name.split(".")[0] in ("torch", "onnxscript", "onnx_ir")
    ]
    assert [logging.getLogger(name).level for name in names] == levels


@pytest.mark.parametrize("statistic", ["spe", "t2", "combined", "max"])
@pytest.mark.parametrize("shape", [(9, 7), (1, 9, 7), (3, 6, 5)])
def test_pca_on_images_exports_its_anomaly_map(statistic, shape, tmp_path):
    rng = np.random.default_rng(5)
    det = PCADetector(n_components=4, statistic=statistic).fit(rng.normal(size=(60, *shape)))
    fresh = rng.normal(size=(11, *shape)).astype(np.float32)
    got = _both_batches(det, _export(det, tmp_path), fresh)
    assert got["anomaly_map"].shape == (11, *shape[-2:])


@pytest.mark.parametrize("statistic", ["spe", "max", "auto"])
@pytest.mark.parametrize("shape", [(9, 7), (1, 12, 10), (3, 6, 5)])
def test_pca_exports_its_smoothed_anomaly_map(shape, statistic, tmp_path):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, *shape)) * np.linspace(2, 0.5, shape[-1])
    det = PCADetector(n_components=4, smoothing=1.5, statistic=statistic, random_state=0).fit(X)
    assert det.energy_scale_ != 1 and (det.edge_scale_ > 1).any()
    fresh = rng.normal(size=(11, *shape)).astype(np.float32)
    got = _both_batches(det, _export(det, tmp_path), fresh)
    assert got["anomaly_map"].shape == (11, *shape[-2:])
    det.set_params(smoothing=0.5)
    with pytest.raises(ValueError, match=r"smoothing=0\.5 .*set after fit"):
        export(det, tmp_path / "other.onnx")


def test_a_threshold_near_zero_is_kept_in_the_graph(tmp_path):
    # Data in small units: an offset_ within 1e-8 of 0, which the exporter's optimizer
    # dropped as "x - 0", so that every sample with a positive SPE was an anomaly.
    rng = np.random.default_rng(0)
    det = PCADetector(n_components=2).fit(rng.normal(size=(60, 5)) * 1e-5)
    assert 0 < -det.offset_ < 1e-8
    fresh = rng.normal(size=(200, 5)) * 1e-5
    got = _run(_export(det, tmp_path, input_dtype="float64"), fresh)
    decision = det.decision_function(fresh)
    np.testing.assert_allclose(
        got["decision"], decision, rtol=0, atol=1e-12 * np.abs(decision).max()
    )
    np.testing.assert_array_equal(np.where(got["is_anomaly"], -1, 1), det.predict(fresh))
    assert 0 < got["is_anomaly"].mean() < 0.5


def test_pca_map_weights_near_one_are_kept_in_the_graph(tmp_path):
    # A small smoothing makes energy_scale_ a step from 1, which the exporter's optimizer
    # dropped as "x * 1": the maps moved by ~6e-7 of their largest value.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3, 5, 6)) * np.linspace(2, 0.5, 6)
    det = PCADetector(n_components=2, smoothing="auto", statistic="max").fit(X)
    assert det.energy_scale_ != 1 and abs(det.energy_scale_ - 1) < 1e-5
    got = _run(_export(det, tmp_path, input_dtype="float64"), X[:5])
    maps = det.anomaly_map(X[:5])
    np.testing.assert_allclose(got["anomaly_map"], maps, rtol=0, atol=1e-12 * maps.max())
    np.testing.assert_allclose(got["score"], det.score_samples(X[:5]), rtol=1e-12)


def test_dense_autoencoder_on_digits_matches(tmp_path):
    normal, anomalous = _digits()
    det = AutoencoderDetector(max_iter=3, random_state=0).fit(normal[:120])
    fresh = np.vstack([normal[120:], anomalous])
    _both_batches(det, _export(det, tmp_path, input_dtype="float64"), fresh)


@pytest.mark.parametrize("image_score", ["topk", "auto", "mean", "smooth", "max"])
def test_conv_odd_size_uint8_images_match(image_score, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(30, 13, 11)).astype(np.uint8)
    det = ConvAutoencoderDetector(**CONV, image_score=image_score).fit(X)
    fresh = rng.integers(0, 256, size=(9, 13, 11)).astype(np.uint8)
    path = _export(det, tmp_path, input_dtype="uint8", input_shape=(13, 11))
    _both_batches(det, path, fresh)


@pytest.mark.parametrize("image_score", ["max", "topk", "mean"])
def test_draem_odd_size_uint8_images_match(image_score, tmp_path):
    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, size=(30, 13, 11)).astype(np.uint8)
    det = DraemDetector(**CONV, segmenter_width=4, image_score=image_score).fit(X)
    fresh = rng.integers(0, 256, size=(9, 13, 11)).astype(np.uint8)
    path = _export(det, tmp_path, input_dtype="uint8", input_shape=(13, 11))
    _both_batches(det, path, fresh)


def test_conv_colour_images_match(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(30, 3, 12, 10)).astype(np.float32)
    det = ConvAutoencoderDetector(**CONV, smoothing=0.7).fit(X)
    path = _export(det, tmp_path)
    _both_batches(det, path, rng.uniform(size=(7, 3, 12, 10)).astype(np.float32))


def test_conv_flat_rows_and_explicit_layouts_match(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(30, 1, 9, 8)).astype(np.float32)
    det = ConvAutoencoderDetector(**CONV).fit(X)
    fresh = rng.uniform(size=(5, 1, 9, 8)).astype(np.float32)
    _both_batches(det, _export(det, tmp_path, "chw.onnx"), fresh)  # sample_shape_ (1, 9, 8)
    _both_batches(det, _export(det, tmp_path, "hw.onnx", input_shape=(9, 8)), fresh[:, 0])
    rows = ConvAutoencoderDetector(**CONV, image_shape=(9, 8)).fit(X.reshape(30, -1))
    assert rows.sample_shape_ == (72,)
    _both_batches(rows, _export(rows, tmp_path, "rows.onnx"), fresh.reshape(5, -1))


@pytest.mark.parametrize("corruption", [None, "defects"])
def test_conv_on_textures_matches(corruption, tmp_path):
    # Training on pasted defects changes the weights only: the graph scores as the library.
    X, y = make_textures(60, image_size=32, anomaly_ratio=0.3, random_state=0, return_X_y=True)
    det = ConvAutoencoderDetector(**CONV, corruption=corruption).fit(X[y == 0][:30])
    fresh = np.vstack([X[y == 0][30:], X[y == 1]]).astype(np.float32)
    _both_batches(det, _export(det, tmp_path, input_shape=(32, 32)), fresh)


def test_calibrated_detectors_export_their_threshold(tmp_path):
    normal, anomalous = _digits()
    fresh = np.vstack([normal[120:], anomalous])
    pca = CalibratedDetector(PCADetector(n_components=8), alpha=0.2, random_state=0)
    pca.fit(normal[:120])
    path = _export(pca, tmp_path, "pca.onnx", input_dtype="float64")
    _both_batches(pca, path, fresh)
    images = normal.reshape(-1, 8, 8)
    conv = CalibratedDetector(ConvAutoencoderDetector(**CONV), alpha=0.2, random_state=0)
    conv.fit(images[:120])
    fresh_images = fresh.reshape(-1, 8, 8).astype(np.float32)
    conv_path = _export(conv, tmp_path, "conv.onnx", input_shape=(8, 8))
    got = _both_batches(conv, conv_path, fresh_images)
    assert "anomaly_map" in got
    threshold = _metadata(path)["anomalib_lite.threshold"]
    assert float(threshold) == pca.threshold_


def test_nested_calibrated_detectors_export_the_outer_threshold(tmp_path):
    # A CalibratedDetector wraps any detector, a calibrated one too: the graph scores
    # with the innermost detector and decides with the outermost threshold.
    normal, anomalous = _digits()
    images = normal.reshape(-1, 8, 8)
    inner = CalibratedDetector(PCADetector(n_components=8), alpha=0.2, random_state=0)
    det = CalibratedDetector(inner, method="quantile", alpha=0.1, random_state=1)
    det.fit(images[:120])
    fresh = np.vstack([normal[120:], anomalous]).reshape(-1, 8, 8)
    got = _both_batches(det, _export(det, tmp_path, input_dtype="float64"), fresh)
    assert "anomaly_map" in got
    assert det.offset_ != det.detector_.offset_  # the outer threshold is the one exported


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8)])
def test_calibrated_image_detector_exports_in_its_fitted_layout_by_default(shape, tmp_path):
    # The inner detector's sample_shape_ is (1, 8, 8) either way; the wrapper takes the layout
    # it was fitted on.
    rng = np.random.default_rng(7)
    X = rng.uniform(size=(24, *shape)).astype(np.float32)
    cal = CalibratedDetector(ConvAutoencoderDetector(**CONV), alpha=0.3, random_state=0).fit(X)
    assert cal.sample_shape_ == shape
    path = _export(cal, tmp_path)
    assert json.loads(_metadata(path)["anomalib_lite.input_shape"]) == ["n", *shape]
    _both_batches(cal, path, rng.uniform(size=(6, *shape)).astype(np.float32))


def _metadata(path):
    return {p.key: p.value for p in onnx.load(os.fspath(path)).metadata_props}


def test_graph_has_opset_dynamic_batch_and_metadata(tmp_path):
    X = np.random.default_rng(4).uniform(size=(20, 8, 8))
    det = ConvAutoencoderDetector(**CONV).fit(X)
    path = _export(det, tmp_path)
    model = onnx.load(os.fspath(path))
    onnx.checker.check_model(model)
    assert {o.domain: o.version for o in model.opset_import}[""] == OPSET
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    # the transposed convolutions export as such, not as the CPU's matmul-and-fold
    assert "Col2Im" not in {node.op_type for node in model.graph.node}
    meta = _metadata(path)
    assert meta["anomalib_lite.version"] == __version__
    assert meta["anomalib_lite.detector"] == "ConvAutoencoderDetector"
    assert json.loads(meta["anomalib_lite.params"])["channels"] == [8, 16]
    assert json.loads(meta["anomalib_lite.input_shape"]) == ["n", 1, 8, 8]
    assert meta["anomalib_lite.input_dtype"] == "float32"
    assert float(meta["anomalib_lite.offset"]) == det.offset_
    assert [o.name for o in model.graph.output] == [
        "score",
        "decision",
        "is_anomaly",
        "anomaly_map",
    ]


def test_graph_holds_plain_transposed_convolutions_where_torch_does_not_tell_it_traces(
    tmp_path, monkeypatch
):
    # Without torch telling that it traces (torch 2.6 and older could not), the exporter's
    # copy of the network runs the plain kernel, and the detector's keeps its fast one.
    monkeypatch.setattr(conv, "_is_exporting", lambda: False)
    X = np.random.default_rng(4).uniform(size=(20, 8, 8))
    det = ConvAutoencoderDetector(**CONV).fit(X)
    model = onnx.load(os.fspath(_export(det, tmp_path)))
    ops = {node.op_type for node in model.graph.node}
    assert "ConvTranspose" in ops and "Col2Im" not in ops
    layers = [m for m in det.module_.modules() if isinstance(m, conv.UnfoldedConvTranspose2d)]
    assert layers and all(m.unfolded for m in layers)


@pytest.fixture(scope="module")
def exported_conv(tmp_path_factory):
    rng = np.random.default_rng(6)
    det = ConvAutoencoderDetector(**CONV).fit(
        rng.integers(0, 256, size=(30, 9, 7)).astype(np.uint8)
    )
    path = tmp_path_factory.mktemp("onnx") / "conv.onnx"
    return det, export(det, path, input_dtype="uint8", input_shape=(9, 7))


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_uint8_batch_scores_as_the_library(exported_conv, data):
    det, path = exported_conv
    n = data.draw(st.integers(1, 12), label="n")
    X = data.draw(arrays(np.uint8, (n, 9, 7)), label="X")
    _assert_same(det, path, X)


def test_decision_keeps_the_offset_in_float64(exported_conv):
    # A score far smaller than the offset: a float32 offset would be off by 1e-3.
    det, path = exported_conv
    X = np.full((1, 9, 7), 122, np.uint8)
    assert abs(det.offset_) > 100 * abs(det.score_samples(X)[0])
    _assert_same(det, path, X)


@pytest.fixture(scope="module")
def pca():
    return PCADetector(n_components=2).fit(np.random.default_rng(5).normal(size=(40, 5)))


def test_unfitted_detector_is_refused(tmp_path):
    with pytest.raises(NotFittedError, match=r"PCADetector is not fitted.*call fit"):
        export(PCADetector(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_checkpoint_without_a_threshold_is_refused(tmp_path):
    checkpoint = tmp_path / "run.model"
    images = _digits()[0][:40].reshape(-1, 8, 8)
    ConvAutoencoderDetector(**CONV, checkpoint_path=str(checkpoint)).fit(images)
    with pytest.raises(NotFittedError, match=r"no threshold.*Finish the fit"):
        export(load(checkpoint), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_pipeline_and_foreign_estimators_are_refused(pca, tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 5))
    pipe = make_pipeline(StandardScaler(), PCADetector()).fit(X)
    with pytest.raises(TypeError, match="Pipeline"):
        export(pipe, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="got StandardScaler"):
        export(StandardScaler().fit(X), tmp_path / "m.onnx")
    calibrated = CalibratedDetector(make_pipeline(StandardScaler(), PCADetector()), alpha=0.4)
    calibrated.fit(X)
    with pytest.raises(TypeError, match="Pipeline"):
        export(calibrated, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_existing_file_is_kept_unless_overwrite(pca, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export(pca, path)
    assert path.read_bytes() == b"precious"
    export(pca, path, overwrite=True)
    assert "score" in _run(path, np.zeros((1, 5), np.float32))
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_failed_write_leaves_no_file(pca, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        export(pca, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input_dtype": "int16"}, ValueError, r"input_dtype='int16'.*uint8"),
        ({"input_dtype": 3}, TypeError, "input_dtype must be"),
        ({"input_shape": (4,)}, ValueError, r"refuses input of shape \(n, 4\).*5 features"),
        ({"input_shape": "5"}, TypeError, "input_shape must be"),
        ({"input_shape": (0, 5)}, ValueError, r"input_shape=\(0, 5\) must hold"),
        ({"overwrite": "yes"}, TypeError, "overwrite must be a bool"),
    ],
)
def test_bad_arguments_are_refused(pca, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        export(pca, tmp_path / "m.onnx", **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_as_target_says_so(pca, tmp_path, overwrite):
    with pytest.raises(IsADirectoryError, match="path is a folder; pass a file path inside it"):
        export(pca, tmp_path, overwrite=overwrite)


def test_overflowing_pixels_are_inf_in_the_graph_as_in_anomaly_map(tmp_path):
    images = np.random.default_rng(7).random((20, 8, 8)).astype(np.float32)
    det = ConvAutoencoderDetector(**CONV).fit(images)
    path = _export(det, tmp_path, input_shape=(8, 8))
    X = images[:2].copy()
    X[0, 1, 1] = 3e38
    with pytest.warns(UserWarning, match="overflowed"):
        maps = det.anomaly_map(X)
    got = _run(path, X)["anomaly_map"]
    assert not np.isnan(got).any() and not np.isnan(maps).any()
    np.testing.assert_array_equal(np.isinf(got[0]), np.isinf(maps[0]))


@pytest.mark.parametrize("statistic", ["spe", "max"])
def test_pca_smoothed_map_is_inf_only_where_it_overflowed(statistic, tmp_path):
    # One pixel's square overflows float64: the library's blur spreads inf to its
    # neighbours only; a blur by products (0 * inf = NaN) spread it over the image.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 12, 10))
    det = PCADetector(n_components=2, smoothing=1.0, statistic=statistic).fit(X)
    path = _export(det, tmp_path, input_dtype="float64")
    fresh = X[:3].copy()
    fresh[0, 5, 4] = 1e155
    with pytest.warns(UserWarning, match="overflowed"):
        maps = det.anomaly_map(fresh)
    assert 0 < np.isinf(maps[0]).sum() < maps[0].size
    got = _run(path, fresh)
    np.testing.assert_array_equal(np.isinf(got["anomaly_map"]), np.isinf(maps))
    finite = np.isfinite(maps)
    scale = np.abs(maps[finite]).max()
    np.testing.assert_allclose(got["anomaly_map"][finite], maps[finite], rtol=0, atol=RTOL * scale)
    with pytest.warns(UserWarning, match="overflowed"):
        score = det.score_samples(fresh)
    np.testing.assert_allclose(got["score"], score, rtol=1e-12)


def test_missing_directory_is_refused(pca, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(pca, tmp_path / "no" / "m.onnx")


def test_missing_exporter_packages_name_the_extra(pca, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[onnx\]\""):
        export(pca, tmp_path / "m.onnx")


def test_export_refuses_a_score_the_threshold_was_not_set_on(tmp_path):
    X = np.random.default_rng(0).uniform(0.4, 0.6, size=(24, 8, 8))
    det = ConvAutoencoderDetector(max_iter=1, image_score="max", random_state=0).fit(X)
    det.set_params(image_score="mean")  # the graph would compare its scores with offset_
    with pytest.raises(ValueError, match="offset_ was set on scores computed with"):
        export(det, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("calibrated", [False, True])
def test_export_refuses_the_projection_whose_gradients_a_graph_lacks(calibrated, tmp_path):
    images = _digits()[0][:40].reshape(-1, 8, 8)
    det = ConvAutoencoderDetector(**CONV, projection_steps=2).fit(images)
    if calibrated:
        det = CalibratedDetector(det, method="quantile", random_state=0).fit(images)
    with pytest.raises(ValueError, match=r"projection_steps=2: .*does not compute"):
        export(det, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
