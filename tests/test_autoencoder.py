"""ConvAutoencoderDetector: layouts, training control, checkpoints and quality."""

import itertools
import json
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted
from torch import nn

from anomalib_lite import ConvAutoencoderDetector, DraemDetector, _torch_detector
from anomalib_lite.autoencoder import (
    DEFECT_STRENGTH,
    MARGIN_LEVELS,
    SMOOTH_WIDTH,
    reduce_map,
)
from anomalib_lite.io import load, save
from anomalib_lite.nn import ConvAutoencoder
from anomalib_lite.nn.functional import gaussian_blur
from anomalib_lite.utils import _choice
from anomalib_lite.utils._maps import EDGE_DEPTH, edge_distance, edge_scale

FAST = {
    "channels": (4, 8),
    "latent_dim": 4,
    "max_iter": 3,
    "batch_size": 16,
    "early_stopping": False,
    "random_state": 0,
}


def _images(n=48, h=12, w=12, channels=None, seed=0):
    """Smooth synthetic images: a random level plus a random horizontal ramp."""
    rng = np.random.default_rng(seed)
    shape = (n, 1 if channels is None else channels, h, w)
    level = rng.uniform(0.3, 0.6, size=(n, shape[1], 1, 1))
    slope = rng.uniform(-0.02, 0.02, size=(n, shape[1], 1, 1))
    X = level + slope * np.arange(w) + 0.01 * rng.normal(size=shape)
    return X[:, 0] if channels is None else X


@pytest.fixture(scope="module")
def fitted():
    return ConvAutoencoderDetector(**FAST).fit(_images())


# ------------------------------------------------------------------ layouts
@pytest.mark.parametrize(
    ("layout", "shape"),
    [
        ("gray", (10, 9)),
        ("gray", (7, 13)),
        ("chw", (3, 8, 8)),
        ("rows", (9, 11)),
        ("rows", (2, 8, 6)),
    ],
)
def test_every_method_for_each_layout(layout, shape):
    h, w = shape[-2:]
    c = shape[0] if len(shape) == 3 else None
    images = _images(n=20, h=h, w=w, channels=c)
    if layout == "rows":
        X = images.reshape(len(images), -1)
        det = ConvAutoencoderDetector(image_shape=shape, **FAST)
    else:
        X = images
        det = ConvAutoencoderDetector(**FAST)
    det.fit(X)
    n = len(X)
    assert det.input_shape_ == (c or 1, h, w)
    assert det.n_features_in_ == X[0].size
    for method in ("score_samples", "decision_function", "reconstruction_error"):
        out = getattr(det, method)(X)
        assert out.shape == (n,) and out.dtype == np.float64 and np.isfinite(out).all()
    assert set(np.unique(det.predict(X))) <= {-1, 1}
    rec = det.reconstruct(X)
    assert rec.shape == X.shape and rec.dtype == np.float64
    maps = det.anomaly_map(X)
    assert maps.shape == (n, h, w) and maps.dtype == np.float64 and (maps >= 0).all()
    # With no smoothing the anomaly map, times the edge scale, averages to the
    # reconstruction error.
    raw = clone(det).set_params(smoothing=0.0).fit(X)
    assert raw.edge_scale_.shape == (h, w) and raw.edge_scale_.dtype == np.float32
    np.testing.assert_allclose(
        (raw.anomaly_map(X) * raw.edge_scale_).mean(axis=(1, 2)),
        raw.reconstruction_error(X),
        rtol=1e-5,
    )
    err = ((X - rec) ** 2).reshape(n, -1).mean(1)
    np.testing.assert_allclose(det.reconstruction_error(X), err, rtol=1e-4, atol=1e-9)


def test_odd_sizes_are_padded_not_resized():
    # Two levels: no mirrored margin, edge padding to a multiple of 4.
    det = ConvAutoencoderDetector(**FAST).fit(_images(h=13, w=10))
    assert det.margin_ == (0, 0)
    assert det.padding_ == (1, 2, 1, 1)
    assert det.module_.input_size == (16, 12)
    assert det.anomaly_map(_images(n=2, h=13, w=10)).shape == (2, 13, 10)
    # A mirrored margin of 2, then edge padding to a multiple of 4.
    wide = ConvAutoencoderDetector(**FAST, margin=2).fit(_images(h=13, w=10))
    assert wide.margin_ == (2, 2)
    assert wide.padding_ == (3, 4, 3, 3)
    assert wide.module_.input_size == (20, 16)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 24),
    w=st.integers(2, 24),
    levels=st.integers(1, 3),
    margin=st.one_of(st.just("auto"), st.integers(0, 30)),
)
def test_network_sees_the_image_mirrored_into_its_margin(h, w, levels, margin):
    params = {**FAST, "channels": (4,) * levels, "margin": margin, "max_iter": 1}
    X = _images(n=4, h=h, w=w, seed=h * w)
    if min(h, w) < 2 ** (levels - 1):
        with pytest.raises(ValueError, match="too small"):
            ConvAutoencoderDetector(**params).fit(X)
        return
    det = ConvAutoencoderDetector(**params).fit(X)
    # 'auto' mirrors a margin for networks of MARGIN_LEVELS levels or more only.
    wanted = (2 ** (levels - 1) if levels >= MARGIN_LEVELS else 0) if margin == "auto" else margin
    assert det.margin_ == (min(wanted, h - 1), min(wanted, w - 1))
    seen = []
    hook = det.module_.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0]))
    maps = det.anomaly_map(X)
    hook.remove()
    x = seen[0][:, 0].numpy()
    top, bottom, left, right = det.padding_
    assert x.shape[1] % 2**levels == 0 and x.shape[2] % 2**levels == 0
    assert (x.shape[1], x.shape[2]) == (h + top + bottom, w + left + right)
    z = (X - det.channel_mean_[0]) / det.channel_scale_[0]
    np.testing.assert_allclose(x[:, top : top + h, left : left + w], z, rtol=1e-5, atol=1e-5)
    m_h, m_w = det.margin_
    for i in range(1, m_h + 1):  # row top - i mirrors row top + i, the edge row unrepeated
        np.testing.assert_array_equal(x[:, top - i], x[:, top + i])
    for j in range(1, m_w + 1):
        np.testing.assert_array_equal(x[:, :, left - j], x[:, :, left + j])
    assert maps.shape == (4, h, w)


def test_auto_architecture_follows_image_size():
    # The first level of a deeper network gets 16 channels, the image being largest there.
    # side, channels, code, mirrored margin
    sizes = [
        (8, (64,), 16, 0),
        (28, (16, 64), 49, 0),
        (32, (16, 32, 64), 64, 4),
        (64, (16, 32, 32, 64), 128, 8),
    ]
    for side, channels, latent_dim, margin in sizes:
        params = {**FAST, "channels": None, "latent_dim": None, "max_iter": 1}
        params["batch_size"] = "auto"
        det = ConvAutoencoderDetector(**params).fit(_images(n=4, h=side, w=side))
        assert det.channels_ == channels
        # One code number per 16 pixels up to 64, then one per 32; at least 16.
        assert det.latent_dim_ == det.module_.latent_dim == latent_dim
        assert det.batch_size_ == 8
        assert det.margin_ == (margin, margin)
        # The image side halves to 4 to 7 pixels; a mirrored margin adds one.
        assert min(det.module_.code_size) in (range(5, 9) if margin else range(4, 8))


@given(n=st.integers(1, 5000), divisor=st.integers(1, 50))
def test_auto_batch_size_is_a_clipped_fraction_of_the_samples(n, divisor):
    low, high = _torch_detector.AUTO_BATCH
    size = _torch_detector.auto_batch_size(n, "auto", divisor)
    assert low <= size <= high
    assert size <= _torch_detector.auto_batch_size(n + 1, "auto", divisor)
    if low * divisor <= n < (high + 1) * divisor:
        assert size == n // divisor
    assert _torch_detector.auto_batch_size(n, 7, divisor) == 7


def test_auto_batch_size_is_a_tenth_of_the_images_and_a_twentieth_of_the_rows():
    from anomalib_lite import AutoencoderDetector

    images = _images(n=200, h=8, w=8)
    params = {**FAST, "max_iter": 1, "batch_size": "auto"}
    assert ConvAutoencoderDetector(**params).fit(images).batch_size_ == 20
    rows = images.reshape(200, -1)
    dense = AutoencoderDetector(hidden_sizes=(8,), latent_dim=4, max_iter=1, batch_size="auto")
    assert dense.fit(rows).batch_size_ == 10


def test_a_warm_start_resolves_batch_size_auto_on_its_own_data():
    det = ConvAutoencoderDetector(**{**FAST, "max_iter": 1, "batch_size": 4}).fit(_images(n=12))
    det.set_params(batch_size="auto", warm_start=True).fit(_images(n=200))
    assert det.batch_size_ == 20
    assert det.set_params(batch_size=8).fit(_images(n=200)).batch_size_ == 8


def test_uint8_images_are_numbers_in_input_units():
    X8 = (_images() * 255).round().astype(np.uint8)
    a = ConvAutoencoderDetector(**FAST).fit(X8)
    b = ConvAutoencoderDetector(**FAST).fit(X8.astype(np.float64))
    np.testing.assert_allclose(a.score_samples(X8), b.score_samples(X8.astype(float)), rtol=1e-4)
    np.testing.assert_allclose(a.channel_mean_, X8.mean(), rtol=1e-6)
    # Reconstructions come back on the input's scale, as PCADetector's do, so
    # that input | reconstruction pictures and differences agree.
    rec = a.reconstruct(X8)
    assert rec.dtype == np.float64 and 50 < rec.mean() < 205
    np.testing.assert_allclose(
        a.reconstruction_error(X8), ((X8 - rec) ** 2).reshape(len(X8), -1).mean(1), rtol=1e-3
    )


def test_read_only_images_are_handed_to_torch_as_writable_copies(fitted, tmp_path):
    # torch warns (once per process) when given a read-only array, such as a
    # memory-mapped file; the network's input is a copy of such a batch.
    path = tmp_path / "images.npy"
    np.save(path, _images(n=6, seed=3).astype(np.float32))
    X = np.load(path, mmap_mode="r")
    assert not X.flags.writeable
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not writable.*")
        fitted._to_tensor(X)
    np.testing.assert_array_equal(fitted.score_samples(X), fitted.score_samples(np.array(X)))
    assert not X.flags.writeable  # the caller's array is left as it was


def test_channels_last_input_is_refused_with_a_hint():
    X = np.moveaxis(_images(n=6, channels=3), 1, -1)
    with pytest.raises(ValueError, match=r"looks channels-last.*np\.moveaxis\(X, -1, 1\)"):
        ConvAutoencoderDetector(**FAST).fit(X)


def test_wrong_image_size_or_channels_at_predict(fitted):
    with pytest.raises(
        ValueError, match=r"\(1, 10, 12\), but .* fitted on images of shape \(1, 12, 12\)"
    ):
        fitted.predict(_images(n=2, h=10))
    with pytest.raises(ValueError, match=r"\(3, 12, 12\), but .* \(1, 12, 12\)"):
        fitted.predict(_images(n=2, channels=3))


def test_wrong_row_width_at_predict():
    det = ConvAutoencoderDetector(image_shape=(12, 12), **FAST).fit(_images().reshape(48, -1))
    with pytest.raises(
        ValueError, match="X has 100 features, but ConvAutoencoderDetector is expecting 144"
    ):
        det.predict(np.zeros((2, 100)))


@pytest.mark.parametrize(
    ("X", "params", "message"),
    [
        (np.zeros((4, 9)), {}, r"X is 2-D .* pass image_shape=\(H, W\)"),
        (np.zeros((4, 3, 3)), {"channels": (2, 4, 8, 16)}, "at least 8x8 pixels"),
        (np.zeros((4, 10)), {"image_shape": (3, 3)}, "needs 9 features per row, but X has 10"),
        (np.zeros((4, 2, 3, 3)), {"image_shape": (3, 3)}, "X must be 2-D"),
        (np.zeros((4, 2, 3, 3, 3)), {}, "got 5-D X"),
        (np.zeros((4, 10)), {"image_shape": (3, -1)}, "not a multiple of 3"),
        (np.zeros((4, 9)), {"image_shape": (0, 9)}, "positive sizes"),
        (np.zeros((4, 9)), {"image_shape": "3x3"}, "image_shape must be None or a tuple"),
        (np.zeros((4, 8, 8)), {"image_score": "median"}, "image_score='median' is not supported"),
        (np.zeros((4, 8, 8)), {"loss": "l1"}, "loss='l1' is not supported"),
        (np.zeros((4, 8, 8)), {"corruption": "noise"}, "corruption='noise' is not supported"),
        (np.zeros((4, 8, 8)), {"corruption": True}, "expected None .* or 'defects'"),
        (np.zeros((4, 8, 8)), {"augmentation": "flip"}, "augmentation='flip' is not supported"),
        (
            np.zeros((4, 8, 8)),
            {"augmentation": ["shift"]},
            "expected .auto. .*, .shift. .* or None",
        ),
        (
            np.zeros((4, 8, 8)),
            {"learning_rate": "step"},
            "learning_rate='step' is not supported; expected one of",
        ),
        (np.zeros((4, 8, 8)), {"channels": ()}, r"channels=\(\) needs at least one entry"),
        # Unordered or unsized: which level gets which width is not said.
        (np.zeros((4, 8, 8)), {"channels": {4, 8}}, "channels must be None or a tuple of ints"),
        (np.zeros((4, 8, 8)), {"channels": {4: 8}}, "channels must be None or a tuple of ints"),
        (np.zeros((4, 8, 8)), {"channels": np.array(4)}, "channels must be None or a tuple"),
        (
            np.zeros((4, 8, 8)),
            {"learning_rate_init": -1.0},
            r"learning_rate_init=-1.0 must be in \(0",
        ),
        (np.zeros((4, 8, 8)), {"max_iter": 0}, "max_iter=0 must be >= 1"),
        (np.zeros((4, 8, 8)), {"weight_decay": -0.5}, r"weight_decay=-0.5 must be in \[0"),
        (np.zeros((4, 8, 8)), {"weight_decay": None}, "weight_decay must be a float"),
        (
            np.zeros((4, 8, 8)),
            {"weight_decay": 250.0},
            r"weight_decay=250.0 times learning_rate_init=0.004 must be below 1",
        ),
        (np.zeros((4, 8, 8)), {"negative_slope": -0.1}, r"negative_slope=-0.1 must be in \[0"),
        (np.zeros((4, 8, 8)), {"margin": -1}, "margin=-1 must be >= 0"),
        (np.zeros((4, 8, 8)), {"margin": 1.5}, "margin must be 'auto' or an int"),
        (
            np.zeros((4, 8, 8)),
            {"margin": "wide"},
            "margin='wide' is not supported; expected 'auto'",
        ),
        (np.zeros((4, 8, 8)), {"device": "cuda:99"}, "cuda:99"),
        (np.zeros((4, 8, 8)), {"early_stopping": "yes"}, "early_stopping must be a bool"),
        (np.zeros((4, 8, 8)), {"n_threads": 0}, "n_threads=0 must be >= 1"),
        (
            np.zeros((4, 8, 8)),
            {"checkpoint_path": 3},
            "checkpoint_path must be None or a file path",
        ),
    ],
)
def test_input_and_parameter_errors(X, params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ConvAutoencoderDetector(**{**FAST, **params}).fit(X)


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        (print, r"callbacks must be None or a list of callables, got builtin_function_or_method"),
        ("log", "callbacks must be None or a list of callables, got str 'log'"),
        ([print, 3], r"callbacks\[1\] is a int \(3\), not a callable"),
    ],
)
def test_callbacks_must_be_a_list_of_callables(callbacks, message):
    with pytest.raises(TypeError, match=message):
        ConvAutoencoderDetector(**{**FAST, "callbacks": callbacks}).fit(_images())


def test_callbacks_see_every_epoch_and_leave_the_fit_unchanged():
    X = _images()
    calls = []

    def record(detector, entry):
        calls.append((detector, entry))
        detector.score_samples(X[:5])  # scoring during training changes nothing

    det = ConvAutoencoderDetector(**{**FAST, "callbacks": [record], "early_stopping": True})
    det.fit(X)
    assert [d for d, _ in calls] == [det] * det.n_iter_
    assert [entry for _, entry in calls] == det.history_
    calls[0][1]["train_loss"] = None  # a copy: the history is not touched
    assert det.history_[0]["train_loss"] is not None
    det.partial_fit(X)
    assert len(calls) == det.n_iter_ == FAST["max_iter"] + 1
    plain = ConvAutoencoderDetector(**{**FAST, "early_stopping": True}).fit(X)
    losses = [(h["train_loss"], h["valid_loss"]) for h in det.history_[:-1]]
    assert losses == [(h["train_loss"], h["valid_loss"]) for h in plain.history_]
    np.testing.assert_array_equal(
        ConvAutoencoderDetector(**{**FAST, "callbacks": [record]}).fit(X).score_samples(X),
        ConvAutoencoderDetector(**FAST).fit(X).score_samples(X),
    )


@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_callback_returning_true_stops_the_fit_after_that_epoch(early_stopping):
    X = _images()
    seen = []

    def stop_at_two(detector, entry):
        seen.append(entry["epoch"])
        return entry["epoch"] == 2

    params = {**FAST, "max_iter": 6, "early_stopping": early_stopping}
    det = ConvAutoencoderDetector(**params, callbacks=[stop_at_two, lambda d, e: None]).fit(X)
    assert det.n_iter_ == len(det.history_) == 2 and seen == [1, 2]
    assert np.isfinite(det.offset_)  # the fit ended cleanly
    det.set_params(warm_start=True, callbacks=None).fit(X)  # a stopped run is over
    assert det.n_iter_ == 2 + 6


def test_callbacks_clone_and_are_not_saved(tmp_path):
    def callback(detector, entry):
        return None

    det = ConvAutoencoderDetector(**{**FAST, "callbacks": [callback]})
    assert clone(det).get_params()["callbacks"] == [callback]
    det.fit(_images())
    path = tmp_path / "model"
    save(det, path)
    assert load(path).callbacks is None  # code is never saved
    assert det.callbacks == [callback]


def test_the_held_out_images_need_room_to_train_on():
    X = np.random.default_rng(0).random((3, 8, 8))
    with pytest.raises(ValueError, match=r"holds out 2 rows .* n_samples=2 leaves none"):
        ConvAutoencoderDetector(**{**FAST, "validation_fraction": 0.1}).fit(X, [0, 0, 1])
    ConvAutoencoderDetector(**FAST).fit(X, [0, 0, 1])  # 'auto' holds none out ...
    with pytest.raises(ValueError, match=r"early_stopping=True .* validation_fraction=0 holds"):
        ConvAutoencoderDetector(**{**FAST, "early_stopping": True, "validation_fraction": 0}).fit(X)
    det = ConvAutoencoderDetector(**{**FAST, "early_stopping": True}).fit(_images(n=40))
    assert len(det._held_out(40)[0]) == 4  # ... but a tenth with early stopping


# ------------------------------------------------- determinism and training
def test_fixed_random_state_is_bit_for_bit_and_leaves_global_rngs_alone():
    X = _images()
    torch_state, torch_seed = torch.get_rng_state(), torch.initial_seed()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global RNG)
    a = ConvAutoencoderDetector(**{**FAST, "early_stopping": True}).fit(X)
    b = ConvAutoencoderDetector(**{**FAST, "early_stopping": True}).fit(X)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert torch.initial_seed() == torch_seed
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert a.history_ == [
        {**h, "seconds": g["seconds"]} for h, g in zip(b.history_, a.history_, strict=True)
    ]
    c = ConvAutoencoderDetector(**{**FAST, "random_state": 1}).fit(X)
    assert not np.array_equal(a.score_samples(X), c.score_samples(X))


def test_history_and_fitted_state_are_plain_values(fitted):
    assert fitted.n_iter_ == 3 and len(fitted.history_) == 3
    assert isinstance(fitted.module_, ConvAutoencoder) and not fitted.module_.training
    assert fitted.device_ == ("cuda" if torch.cuda.is_available() else "cpu")
    for entry in fitted.history_:
        assert set(entry) == {
            "epoch",
            "train_loss",
            "valid_loss",
            "learning_rate",
            "seconds",
            "undone",
        }
    json.dumps(fitted.history_)
    for name, value in vars(fitted).items():
        if name.endswith("_") and name != "module_":
            assert isinstance(value, (int, float, str, tuple, list, dict, np.ndarray)), name
    json.dumps(fitted.image_score_aucs_)


def test_early_stopping_keeps_the_best_validation_epoch():
    det = ConvAutoencoderDetector(
        **{**FAST, "early_stopping": True, "max_iter": 30, "n_iter_no_change": 2, "tol": 1e9}
    ).fit(_images())
    # tol is huge, so no epoch after the first counts as an improvement: the
    # run stops after 1 + n_iter_no_change epochs.
    assert det.n_iter_ == 3
    losses = [h["valid_loss"] for h in det.history_]
    assert det.best_loss_ == min(losses)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_loss_spike_late_in_training_leaves_the_best_epochs_weights(early_stopping, monkeypatch):
    # Spikes are not undone here, so that the rule for the weights a run ends with
    # is tested alone: a spike under tenfold is never undone.
    monkeypatch.setattr(ConvAutoencoderDetector, "_spike_factor", math.inf)
    weights = []

    def spike(det, record):
        weights.append({k: v.clone() for k, v in det.module_.state_dict().items()})
        if record["epoch"] == 3:  # a loss spike: every weight blown up
            with torch.no_grad():
                for p in det.module_.parameters():
                    p.mul_(3.0)

    params = {**FAST, "max_iter": 6, "n_iter_no_change": 100, "early_stopping": early_stopping}
    det = ConvAutoencoderDetector(**params, callbacks=[spike]).fit(_images())
    key = "valid_loss" if early_stopping else "train_loss"
    losses = [h[key] for h in det.history_]
    best = int(np.argmin(losses))
    assert det.n_iter_ == 6 and best < 5  # the run went on past its best epoch
    assert det.best_loss_ == losses[best]
    for name, value in det.module_.state_dict().items():
        torch.testing.assert_close(value, weights[best][name], rtol=0, atol=0)


def test_loss_goes_down_on_average():
    det = ConvAutoencoderDetector(**{**FAST, "max_iter": 30, "batch_size": 8}).fit(_images())
    losses = [h["train_loss"] for h in det.history_]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


@pytest.mark.parametrize("loss", ["ssim", "mse+ssim"])
def test_ssim_losses_train(loss):
    det = ConvAutoencoderDetector(**{**FAST, "loss": loss, "max_iter": 4}).fit(_images())
    assert np.isfinite(det.score_samples(_images(n=3))).all()
    assert det.history_[-1]["train_loss"] < det.history_[0]["train_loss"]


def test_partial_fit_counts_epochs_and_continues_the_fit():
    X = _images()
    det = ConvAutoencoderDetector(**FAST).fit(X)
    before = det.reconstruction_error(X).mean()
    det.partial_fit(X)
    assert det.n_iter_ == 4 and len(det.history_) == 4
    assert det.history_[-1]["learning_rate"] == det.learning_rate_init
    scratch = ConvAutoencoderDetector(**FAST).partial_fit(X)
    assert scratch.n_iter_ == 1
    # One more epoch from the trained weights beats one epoch from scratch.
    assert det.reconstruction_error(X).mean() < scratch.reconstruction_error(X).mean()
    assert det.reconstruction_error(X).mean() < 1.5 * before
    with pytest.raises(ValueError, match=r"\(1, 10, 12\), but"):
        det.partial_fit(_images(h=10))


def test_warm_start_trains_max_iter_more_epochs():
    X = _images()
    det = ConvAutoencoderDetector(**FAST).fit(X)
    first = det.module_.state_dict()["to_code.weight"].clone()
    det.set_params(warm_start=True).fit(X)
    assert det.n_iter_ == 6 and len(det.history_) == 6
    assert not torch.equal(first, det.module_.state_dict()["to_code.weight"])
    cold = clone(det).set_params(warm_start=False).fit(X)
    assert cold.n_iter_ == 3


def test_thread_count_is_set_during_fit_and_restored(monkeypatch):
    seen = []
    original = ConvAutoencoderDetector._epoch

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ConvAutoencoderDetector, "_epoch", spy)
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    ConvAutoencoderDetector(**{**FAST, "n_threads": target}).fit(_images())
    assert seen == [target] * 3
    assert torch.get_num_threads() == before


def test_verbose_logs_each_epoch_and_silent_by_default(caplog):
    with caplog.at_level(logging.DEBUG, logger="anomalib_lite"):
        ConvAutoencoderDetector(**FAST).fit(_images())
    assert not caplog.records
    with caplog.at_level(logging.INFO, logger="anomalib_lite"):
        ConvAutoencoderDetector(**{**FAST, "verbose": 1}).fit(_images())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "epoch 2/3: train loss" in messages[1] and "s left" in messages[1]


def test_overlapping_verbose_fits_both_log_and_leave_the_logger_as_it_was(caplog):
    """Verbose fits in two threads share the level they set: the one that ends
    first does not silence the other, nor does the last leave the level set."""
    logger = logging.getLogger("anomalib_lite")
    level = logger.level
    entered, go = threading.Event(), threading.Event()

    def hold(det, record):
        if not entered.is_set():
            entered.set()
            assert go.wait(60)

    first = threading.Thread(
        target=ConvAutoencoderDetector(**{**FAST, "verbose": 1}, callbacks=[hold]).fit,
        args=(_images(),),
    )
    first.start()
    assert entered.wait(60)
    second_done = threading.Event()

    def second():
        def release(det, record):
            if record["epoch"] == 1:
                go.set()
                first.join()  # the first fit ends while this one runs

        ConvAutoencoderDetector(**{**FAST, "verbose": 1}, callbacks=[release]).fit(_images())
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join()
    assert second_done.is_set()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("anomalib_lite")]
    assert sum("epoch 3/3" in m for m in messages) == 2  # both fits to their end
    assert logger.level == level and not logger.handlers


# ------------------------------------------- interruption and divergence
def _interrupt_at(monkeypatch, call):
    """Raise KeyboardInterrupt on the ``call``-th training batch."""
    calls = {"n": 0}
    original = ConvAutoencoderDetector._train_loss

    def loss(self, out, x):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(self, out, x)

    monkeypatch.setattr(ConvAutoencoderDetector, "_train_loss", loss)


def test_keyboard_interrupt_keeps_last_epoch_and_warm_start_finishes(monkeypatch):
    X = _images()
    params = {**FAST, "max_iter": 5, "early_stopping": True}
    reference = ConvAutoencoderDetector(**params).fit(X)
    # 43 training images in batches of 16: 3 batches plus 1 validation batch
    # per epoch; the 10th call is inside epoch 3.
    _interrupt_at(monkeypatch, 10)
    det = ConvAutoencoderDetector(**params)
    with pytest.warns(UserWarning, match="interrupted .* after 2 epochs.*warm_start=True"):
        det.fit(X)
    assert det.n_iter_ == 2 and len(det.history_) == 2
    assert np.isfinite(det.score_samples(X)).all() and hasattr(det, "offset_")
    monkeypatch.undo()
    det.set_params(warm_start=True).fit(X)
    assert det.n_iter_ == 5
    np.testing.assert_array_equal(det.score_samples(X), reference.score_samples(X))


def test_interrupt_while_choosing_the_image_score_keeps_the_trained_weights(monkeypatch):
    X = _images(n=12, h=8, w=8)
    reference = ConvAutoencoderDetector(**FAST).fit(X)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_choice, "paste_defects", interrupted)  # called after training
    det = ConvAutoencoderDetector(**FAST)
    with pytest.warns(UserWarning, match="epoch 3 without"), pytest.raises(KeyboardInterrupt):
        det.fit(X)
    assert det.n_iter_ == 3 and np.isfinite(det.score_samples(X)).all()
    monkeypatch.undo()
    det.set_params(warm_start=True).fit(X)
    assert det.n_iter_ == 3 and det.image_score_ == reference.image_score_
    np.testing.assert_array_equal(det.score_samples(X), reference.score_samples(X))


def test_interrupt_before_the_first_epoch_propagates(monkeypatch):
    _interrupt_at(monkeypatch, 1)
    det = ConvAutoencoderDetector(**FAST)
    with pytest.raises(KeyboardInterrupt):
        det.fit(_images())
    with pytest.raises(NotFittedError):
        check_is_fitted(det)


def test_divergence_raises_and_suggests_a_lower_learning_rate():
    det = ConvAutoencoderDetector(
        **{**FAST, "learning_rate_init": 1e12, "learning_rate": "constant"}
    )
    with pytest.raises(
        FloatingPointError, match=r"diverged.*Lower learning_rate_init \(now 1e\+12\)"
    ):
        det.fit(_images())
    with pytest.raises(NotFittedError):
        check_is_fitted(det)


@pytest.mark.parametrize("max_iter", [1, 2])
def test_divergence_in_the_last_step_of_an_epoch_is_told_as_divergence(max_iter):
    # One step per epoch: its loss is measured before the step that wrecks the weights,
    # so only their output shows it, after the last epoch or after the one kept.
    det = ConvAutoencoderDetector(
        **{**FAST, "max_iter": max_iter, "learning_rate_init": 1e30, "learning_rate": "constant"}
    )
    with pytest.raises(
        FloatingPointError, match=r"after epoch 1 the network's output .*not finite"
    ):
        det.fit(_images(n=12, h=8, w=8))
    with pytest.raises(NotFittedError):
        check_is_fitted(det)


def test_divergence_in_partial_fit_keeps_a_model_that_scores():
    X = _images()
    det = ConvAutoencoderDetector(**{**FAST, "learning_rate": "constant"}).partial_fit(X)
    scores = det.score_samples(X)
    det.set_params(learning_rate_init=1e30)
    with pytest.raises(FloatingPointError, match="keeps the weights of epoch 1"):
        det.partial_fit(X)
    assert det.n_iter_ == 1 and np.isfinite(det.offset_)
    np.testing.assert_array_equal(det.score_samples(X), scores)
    assert set(np.unique(det.predict(X))) <= {-1, 1}


def test_a_batch_that_diverges_at_once_leaves_the_model_as_it_was():
    # No epoch of the call finished: weights, threshold, record and optimizer state
    # stay as they were, so that the stream goes on as if the batch had been skipped.
    X = _images()
    det = ConvAutoencoderDetector(**FAST).fit(X)
    offset, scores = det.offset_, det.score_samples(X)
    with pytest.raises(FloatingPointError, match="training loss of epoch 4 is nan"):
        det.partial_fit(X * 1e30)
    assert det.offset_ == offset and det.n_iter_ == len(det.history_) == 3
    np.testing.assert_array_equal(det.score_samples(X), scores)
    skipped = ConvAutoencoderDetector(**FAST).fit(X).partial_fit(X)
    np.testing.assert_array_equal(det.partial_fit(X).score_samples(X), skipped.score_samples(X))


def test_a_last_step_that_ruins_the_weights_of_a_partial_fit_leaves_the_model_as_it_was():
    # One step per epoch: the ruin shows only in the output, after the epoch is counted.
    X = _images(n=12, h=8, w=8)
    det = ConvAutoencoderDetector(**{**FAST, "max_iter": 1, "learning_rate": "constant"})
    det.fit(X)
    offset, scores = det.offset_, det.score_samples(X)
    det.set_params(learning_rate_init=1e30)
    with pytest.raises(FloatingPointError, match="after epoch 2 the network's output"):
        det.partial_fit(X)
    assert det.offset_ == offset and det.n_iter_ == len(det.history_) == 1
    np.testing.assert_array_equal(det.score_samples(X), scores)


def test_divergence_after_the_first_epoch_keeps_a_model_that_scores(monkeypatch):
    original = ConvAutoencoderDetector._train_loss
    calls = {"n": 0}

    def loss(self, out, x):  # 3 batches per epoch: NaN from epoch 2 on
        calls["n"] += 1
        value = original(self, out, x)
        return value * math.nan if calls["n"] > 3 else value

    monkeypatch.setattr(ConvAutoencoderDetector, "_train_loss", loss)
    X = _images()
    det = ConvAutoencoderDetector(**{**FAST, "max_iter": 3})
    with pytest.raises(FloatingPointError, match="keeps the weights of epoch 1"):
        det.fit(X)
    assert det.n_iter_ == 1 and np.isfinite(det.offset_) and det.image_score_ in ("max", "smooth")
    assert set(np.unique(det.predict(X))) <= {-1, 1}


def test_channels_first_images_a_few_pixels_wide_are_told_how_to_pass():
    """Images (n, 2, 8, 4) look channels-last; the message names the way through,
    which reads them as they are, while (n, H, W, 3) images stay refused."""
    X = _images(n=6, h=8, w=4, channels=2)
    with pytest.raises(ValueError, match=r"looks channels-last.*image_shape=\(2, 8, 4\)") as exc:
        ConvAutoencoderDetector(**FAST).fit(X)
    assert "X.reshape(len(X), -1)" in str(exc.value)
    rows = ConvAutoencoderDetector(**{**FAST, "channels": (4,), "image_shape": (2, 8, 4)})
    assert rows.fit(X.reshape(len(X), -1)).input_shape_ == (2, 8, 4)
    with pytest.raises(ValueError, match="looks channels-last"):
        ConvAutoencoderDetector(**FAST).fit(np.moveaxis(_images(n=6, channels=3), 1, -1))


def test_a_failed_fit_leaves_the_detector_as_it_was():
    X = _images()
    det = ConvAutoencoderDetector(**FAST).fit(X)
    scores = det.score_samples(X)
    with pytest.raises(ValueError, match="too small"):
        det.fit(_images(h=1, w=1))
    with pytest.raises(ValueError, match="random_state"):
        det.set_params(random_state="seed").fit(X)
    det.set_params(random_state=FAST["random_state"])
    np.testing.assert_array_equal(det.score_samples(X), scores)
    det.set_params(warm_start=True)
    with pytest.raises(ValueError, match="fitted on images of shape"):
        det.fit(_images(h=12, w=13))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(det)).score_samples(X), scores)
    fresh = ConvAutoencoderDetector(**FAST)
    with pytest.raises(ValueError, match="too small"):
        fresh.fit(_images(h=1, w=1))
    with pytest.raises(NotFittedError):
        fresh.score_samples(X)


def test_partial_fit_needs_two_normal_rows():
    X = _images(n=8)
    det = ConvAutoencoderDetector(**FAST).partial_fit(X)
    offset = det.offset_
    with pytest.raises(ValueError, match="1 normal sample to learn from; at least 2"):
        det.partial_fit(X[:1])
    with pytest.raises(ValueError, match="1 normal sample to learn from; at least 2"):
        det.partial_fit(X[:3], y=[0, 1, 1])
    assert det.offset_ == offset


def test_a_refit_on_other_images_reads_nothing_of_the_previous_fit():
    seen = []

    def scores_during_training(model, entry):
        seen.append(model.score_samples(_images(n=2, h=model.input_shape_[1], w=16)))

    det = ConvAutoencoderDetector(**{**FAST, "callbacks": [scores_during_training]})
    det.fit(_images(h=12, w=16)).fit(_images(h=16, w=16))
    assert det.edge_scale_.shape == (16, 16) and all(np.isfinite(s).all() for s in seen)


def test_channels_as_an_array_continue_with_partial_fit():
    X = _images(n=8)
    det = ConvAutoencoderDetector(**{**FAST, "channels": np.array([4, 8])}).partial_fit(X)
    assert det.partial_fit(X).n_iter_ == 2


def test_partial_fit_refusing_another_network_says_what_would_continue_it():
    X = _images(n=8)
    det = ConvAutoencoderDetector(**FAST).fit(X).set_params(latent_dim=8)
    # partial_fit continues whatever warm_start is: setting it to False (it is) cannot help.
    with pytest.raises(ValueError, match=r"^partial_fit continues the fitted network") as info:
        det.partial_fit(X)
    message = str(info.value)
    assert "built with latent_dim=4" in message and "set it back to continue" in message
    assert "set warm_start=False" not in message and "fit with warm_start=False" in message
    with pytest.raises(ValueError, match=r"^warm_start continues .* set warm_start=False"):
        det.set_params(warm_start=True).fit(X)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"smoothing": "wide"}, TypeError, "smoothing must be 'auto' or a float"),
        ({"smoothing": -1.0}, ValueError, "smoothing=-1.0 must be in"),
        ({"n_threads": 0}, ValueError, "n_threads=0 must be >= 1"),
        ({"projection_steps": -1}, ValueError, "projection_steps=-1 must be >= 0"),
        ({"projection_steps": 2.0}, TypeError, "projection_steps must be an int"),
        ({"projection_steps": 2, "projection_penalty": -0.1}, ValueError, "projection_penalty"),
        ({"projection_penalty": float("nan")}, ValueError, "projection_penalty=nan must be"),
    ],
)
def test_parameters_read_when_scoring_are_checked_when_scoring(fitted, params, error, match):
    det = pickle.loads(pickle.dumps(fitted)).set_params(**params)
    with pytest.raises(error, match=match):
        det.score_samples(_images(n=2))


@pytest.mark.parametrize(
    ("budget_rows", "expected"),
    [(None, [100]), (40, [40, 40, 20]), (10, [16] * 6 + [4])],
    ids=["default budget", "40 rows fit", "floor at batch_size_"],
)
def test_scoring_batches_are_sized_by_activation_memory(fitted, monkeypatch, budget_rows, expected):
    X = _images(n=100, seed=4)
    methods = ("score_samples", "anomaly_map", "reconstruct", "reconstruction_error")
    one_batch = {m: getattr(fitted, m)(X) for m in methods}
    if budget_rows is not None:
        monkeypatch.setattr(_torch_detector, "SCORING_MEMORY", budget_rows * fitted._run.row_bytes)
    sizes = []
    original = ConvAutoencoderDetector._forward

    def spy(self, X, **kwargs):
        sizes.append(len(X))
        return original(self, X, **kwargs)

    monkeypatch.setattr(ConvAutoencoderDetector, "_forward", spy)
    assert fitted.batch_size_ == 16
    for method in methods:
        sizes.clear()
        out = getattr(fitted, method)(X)
        assert sizes == expected, method
        np.testing.assert_allclose(out, one_batch[method], rtol=1e-5, atol=1e-7, err_msg=method)


def test_scoring_batch_rows_stay_within_the_budget_and_the_cap(fitted, monkeypatch):
    rows = fitted._batch_rows(None)
    assert rows == min(
        _torch_detector.MAX_SCORING_ROWS, _torch_detector.SCORING_MEMORY // fitted._run.row_bytes
    )
    # A network too large for the budget still scores batch_size_ rows at a time.
    monkeypatch.setattr(_torch_detector, "SCORING_MEMORY", 1)
    assert fitted._batch_rows(None) == fitted.batch_size_


# -------------------------------------------------------------- pickling
def test_pickle_after_training_gives_identical_scores(fitted):
    X = _images(n=10, seed=5)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.score_samples(X), fitted.score_samples(X))
    np.testing.assert_array_equal(restored.anomaly_map(X), fitted.anomaly_map(X))
    assert restored.offset_ == fitted.offset_


def test_network_uses_leaky_relus_of_the_given_slope(fitted):
    acts = [type(m) for m in fitted.module_.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    assert acts and set(acts) == {nn.LeakyReLU}
    assert fitted.negative_slope == 0.2
    assert all(m.negative_slope == 0.2 for m in fitted.module_.modules() if type(m) in acts)
    X = _images()
    plain = ConvAutoencoderDetector(**{**FAST, "negative_slope": 0.0}).fit(X)
    assert {m.negative_slope for m in plain.module_.modules() if type(m) in acts} == {0.0}
    assert not np.array_equal(plain.reconstruct(X), fitted.reconstruct(X))


def test_partial_fit_resumes_an_optimizer_state_saved_unfused():
    X = _images()
    det = ConvAutoencoderDetector(**FAST).fit(X)
    assert det._run.optimizer["param_groups"][0]["fused"] is True
    # As saved by a run on a device without the fused kernel.
    state = det._run.optimizer
    state["param_groups"] = [{**g, "fused": None, "foreach": False} for g in state["param_groups"]]
    det.partial_fit(X)
    assert det._run.optimizer["param_groups"][0]["fused"] is True
    steps_per_epoch = math.ceil(len(X) / FAST["batch_size"])
    steps = {float(v["step"]) for v in det._run.optimizer["state"].values()}
    assert steps == {4.0 * steps_per_epoch}


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_model_from_a_gpu_loads_on_a_cpu_only_machine(fitted):
    X = _images(n=10, seed=5)
    state = fitted.__getstate__()
    state["device_"] = "cuda:0"  # as pickled on a GPU machine: weights are on the CPU
    blob = pickle.dumps(state)
    restored = ConvAutoencoderDetector.__new__(ConvAutoencoderDetector)
    with pytest.warns(UserWarning, match="not available here; it is loaded on the CPU"):
        restored.__setstate__(pickle.loads(blob))
    assert restored.device_ == "cpu"
    np.testing.assert_array_equal(restored.score_samples(X), fitted.score_samples(X))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_pickles_weights_on_the_cpu():
    X = _images()
    det = ConvAutoencoderDetector(**{**FAST, "device": "cuda"}).fit(X)
    assert det.device_.startswith("cuda")
    state = det.__getstate__()
    assert all(isinstance(w, np.ndarray) for w in state["_weights"].values())
    restored = pickle.loads(pickle.dumps(det))
    np.testing.assert_allclose(restored.score_samples(X), det.score_samples(X), rtol=1e-6)
    cpu = pickle.loads(pickle.dumps(det))
    cpu.module_.to("cpu")
    np.testing.assert_allclose(cpu.score_samples(X), det.score_samples(X), rtol=1e-4)


# ----------------------------------------------------------- checkpoints
def test_checkpoint_is_written_atomically_in_a_safe_format(tmp_path):
    path = tmp_path / "ckpt" / "model.pt"
    X = _images()
    det = ConvAutoencoderDetector(**{**FAST, "checkpoint_path": path}).fit(X)
    saved = load(path)  # a model file, readable without pickle
    assert type(saved) is ConvAutoencoderDetector and saved.n_iter_ == 3
    assert saved.checkpoint_path is None  # a model file names no file to write
    np.testing.assert_array_equal(saved.reconstruct(X), det.reconstruct(X))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp files left
    # The same detector may refit over its own checkpoint.
    det.fit(_images())


def test_existing_files_are_never_overwritten(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("precious")
    with pytest.raises(
        ValueError, match="already exists and an existing file is never overwritten"
    ):
        ConvAutoencoderDetector(**{**FAST, "checkpoint_path": path}).fit(_images())
    with pytest.raises(ValueError, match="not a readable anomalib_lite checkpoint"):
        ConvAutoencoderDetector(**{**FAST, "checkpoint_path": path, "warm_start": True}).fit(
            _images()
        )
    assert path.read_text() == "precious"


def test_a_checkpoint_replaced_since_is_not_overwritten(tmp_path):
    """The claim is on the version of the file a detector wrote or loaded: a copy
    that resumed from it and wrote on, or a user's file put there, is kept."""
    path = tmp_path / "model.pt"
    X = _images()
    det = ConvAutoencoderDetector(**{**FAST, "checkpoint_path": path}).fit(X)
    resumed = clone(det).set_params(warm_start=True).fit(X)
    assert resumed.n_iter_ == load(path).n_iter_ == 2 * det.n_iter_
    written = path.read_bytes()
    with pytest.raises(ValueError, match="already exists and an existing file is never"):
        det.fit(X)
    assert path.read_bytes() == written and load(path).n_iter_ == 2 * det.n_iter_
    resumed.fit(X)  # the last writer may still refit over it
    path.write_bytes(b"a user's own file")
    with pytest.raises(ValueError, match="already exists and an existing file is never"):
        resumed.fit(X)
    assert path.read_bytes() == b"a user's own file"


def test_checkpoint_resume_needs_the_same_architecture(tmp_path):
    path = tmp_path / "model.pt"
    ConvAutoencoderDetector(**{**FAST, "checkpoint_path": path}).fit(_images())
    other = ConvAutoencoderDetector(
        **{**FAST, "checkpoint_path": path, "warm_start": True, "latent_dim": 5}
    )
    with pytest.raises(
        ValueError, match="written with latent_dim=4 but this detector has latent_dim=5"
    ):
        other.fit(_images())


_SLOW_FIT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from anomalib_lite import ConvAutoencoderDetector, DraemDetector, _torch_detector

    original = ConvAutoencoderDetector._train_loss

    def slow_loss(self, out, x):
        time.sleep(0.1)
        return original(self, out, x)

    ConvAutoencoderDetector._train_loss = slow_loss
    X = np.load({data!r})
    ConvAutoencoderDetector(**{params!r}).fit(X)
    """
)


def test_killed_fit_resumes_from_its_checkpoint(tmp_path):
    X = _images()
    np.save(tmp_path / "X.npy", X)
    path = tmp_path / "model.pt"
    params = {**FAST, "max_iter": 12, "early_stopping": True, "checkpoint_path": str(path)}
    script = tmp_path / "fit.py"
    root = str(Path(__file__).parents[1])
    script.write_text(_SLOW_FIT.format(root=root, data=str(tmp_path / "X.npy"), params=params))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        saved = 0
        while saved < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            if path.exists():
                saved = load(path).n_iter_
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the fit ended before it was killed"
    saved = load(path)
    assert 2 <= saved.n_iter_ < 12
    resumed = ConvAutoencoderDetector(**{**params, "warm_start": True}).fit(X)
    assert resumed.n_iter_ == 12
    assert resumed.history_[: saved.n_iter_] == saved.history_
    reference = ConvAutoencoderDetector(**{**params, "checkpoint_path": None}).fit(X)
    np.testing.assert_array_equal(resumed.score_samples(X), reference.score_samples(X))


# -------------------------------------------------------------- invariants
@pytest.fixture(scope="module")
def small_fitted():
    return ConvAutoencoderDetector(**FAST).fit(_images(h=8, w=8))


@settings(max_examples=30, deadline=None)
@given(
    X=arrays(
        np.float64, st.tuples(st.integers(1, 12), st.just(8), st.just(8)), elements=st.floats(-2, 3)
    ),
    seed=st.integers(0, 1000),
)
def test_score_invariants(small_fitted, X, seed):
    det = small_fitted
    scores = det.score_samples(X)
    assert scores.shape == (len(X),) and scores.dtype == np.float64 and np.isfinite(scores).all()
    np.testing.assert_allclose(det.decision_function(X), scores - det.offset_)
    np.testing.assert_array_equal(det.predict(X), np.where(scores - det.offset_ >= 0, 1, -1))
    perm = np.random.default_rng(seed).permutation(len(X))
    np.testing.assert_allclose(det.score_samples(X[perm]), scores[perm], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(det.score_samples(X[:1]), scores[:1], rtol=1e-5, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(
    X=arrays(
        np.float64, st.tuples(st.integers(1, 6), st.just(8), st.just(8)), elements=st.floats(-2, 3)
    ),
    sigma=st.one_of(st.just(0.0), st.floats(0.1, 2.0)),
)
def test_smooth_score_is_the_mean_of_the_wider_smoothed_squared_residual(small_fitted, X, sigma):
    det = pickle.loads(pickle.dumps(small_fitted)).set_params(image_score="smooth", smoothing=sigma)
    residual = torch.from_numpy(X - det.reconstruct(X))[:, None]
    if sigma > 0:
        residual = gaussian_blur(residual, SMOOTH_WIDTH * sigma)
    expected = residual.square().mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(-det.score_samples(X), expected, rtol=1e-4, atol=1e-7)
    if sigma == 0:  # unsmoothed, it is the mean squared error
        np.testing.assert_allclose(
            -det.score_samples(X), det.reconstruction_error(X), rtol=1e-5, atol=1e-9
        )


def test_training_flag_rate_follows_contamination():
    X = _images(n=200)
    det = ConvAutoencoderDetector(**{**FAST, "contamination": 0.1}).fit(X)
    assert np.mean(det.predict(X) == -1) == pytest.approx(0.1, abs=0.02)


# --------------------------------------------------------------- anomalies
def test_anomaly_map_peaks_inside_a_planted_defect():
    X = _images(n=96, h=16, w=16)
    det = ConvAutoencoderDetector(**{**FAST, "max_iter": 15, "image_score": "max"}).fit(X)
    test = _images(n=6, h=16, w=16, seed=9)
    defect = test.copy()
    rows, cols = (
        [(3, 6), (9, 12), (2, 5), (10, 13), (5, 8), (1, 4)],
        [(9, 12), (2, 5), (3, 6), (10, 13), (5, 8), (11, 14)],
    )
    for i, ((r0, r1), (c0, c1)) in enumerate(zip(rows, cols, strict=True)):
        defect[i, r0:r1, c0:c1] += 0.5
    maps = det.anomaly_map(defect)
    for i, ((r0, r1), (c0, c1)) in enumerate(zip(rows, cols, strict=True)):
        r, c = np.unravel_index(np.argmax(maps[i]), maps[i].shape)
        assert r0 <= r < r1 and c0 <= c < c1, (i, r, c)
    for image_score in ("mean", "smooth", "max", "topk"):
        det.set_params(image_score=image_score)
        assert (det.score_samples(defect) < det.score_samples(test)).all(), image_score


def _digits_task(normal=0):
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8) / 16.0
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    return X_tr[y_tr == normal], X_te, (y_te != normal).astype(int)


def test_digits_roc_auc_floor():
    X_train, X_test, y_test = _digits_task(normal=0)
    det = ConvAutoencoderDetector(channels=(16,), latent_dim=16, max_iter=15, random_state=0)
    det.fit(X_train)
    assert roc_auc_score(y_test, -det.score_samples(X_test)) > 0.98


@pytest.mark.parametrize("normal", [3, 5])
def test_held_out_threshold_holds_on_new_digits(normal):
    """A fence on a tenth of the images held out of training flags few new normal
    digits and most other digits; the default fence, on the training images,
    flags most new normal ones."""
    X_train, X_test, y_test = _digits_task(normal)
    held_out = ConvAutoencoderDetector(validation_fraction=0.1, random_state=0).fit(X_train)
    flagged = held_out.predict(X_test) == -1
    assert flagged[y_test == 0].mean() < 0.25
    assert flagged[y_test == 1].mean() > 0.9
    on_training = ConvAutoencoderDetector(random_state=0).fit(X_train)
    assert (on_training.predict(X_test[y_test == 0]) == -1).mean() > 0.5


def test_pipeline_and_grid_search_on_rows():
    X, y = load_digits(return_X_y=True)
    rows = np.vstack([X[y == 3], X[y != 3][::8]])
    labels = np.r_[np.zeros((y == 3).sum(), int), np.ones(len(X[y != 3][::8]), int)]
    pipe = make_pipeline(
        FunctionTransformer(lambda X: X / 16.0),
        ConvAutoencoderDetector(image_shape=(8, 8), **{**FAST, "channels": (16,), "max_iter": 10}),
    )

    def auc(est, X, y):
        return roc_auc_score(y, -est.score_samples(X))

    search = GridSearchCV(
        pipe,
        {"convautoencoderdetector__latent_dim": [4, 16]},
        scoring=auc,
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search.fit(rows, labels)
    assert search.best_score_ > 0.85
    assert search.predict(rows).shape == (len(rows),)


# ------------------------------------------------ corruption and schedules
def test_constant_then_cosine_holds_the_rate_then_decays_to_zero():
    det = ConvAutoencoderDetector(
        **{**FAST, "max_iter": 10, "learning_rate": "constant-then-cosine", "n_iter_no_change": 10}
    ).fit(_images())
    rates = [h["learning_rate"] for h in det.history_]
    lr = det.learning_rate_init
    assert rates[:7] == [lr] * 7  # the last step of epoch 7 is still within the first 70%
    assert all(a > b for a, b in itertools.pairwise(rates[6:]))
    assert rates[-1] < 0.05 * lr


@given(
    schedule=st.sampled_from(["constant", "cosine", "constant-then-cosine"]),
    progress=st.floats(0, 1, exclude_max=True),
)
@example(schedule="cosine", progress=0.0495)  # the end of the warm-up
def test_no_schedule_goes_past_learning_rate_init(schedule, progress):
    # The cosine warm-up ended at 1.02 times the rate in runs of more than 1000 steps.
    factor = ConvAutoencoderDetector(learning_rate=schedule)._lr_factor(progress)
    assert 0 <= factor <= 1


def test_corruption_trains_on_repaired_targets_reproducibly(monkeypatch):
    X = _images()
    # Unshifted, so that every target is a training image as it is.
    params = {**FAST, "corruption": "defects", "augmentation": None}
    clean = ConvAutoencoderDetector(**{**FAST, "augmentation": None}).fit(X)
    a = ConvAutoencoderDetector(**params).fit(X)
    b = ConvAutoencoderDetector(**params).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert not np.array_equal(a.score_samples(X), clean.score_samples(X))
    # The network sees corrupted inputs, but every target is the clean batch.
    batches, targets = [], []
    corrupt, train_loss = ConvAutoencoderDetector._corrupt, ConvAutoencoderDetector._train_loss

    def record_inputs(self, xb, gen):
        out = corrupt(self, xb, gen)
        batches.append((xb.detach().clone(), out.detach().clone()))
        return out

    def record_targets(self, out, x):
        targets.append(x.detach().clone())
        return train_loss(self, out, x)

    monkeypatch.setattr(ConvAutoencoderDetector, "_corrupt", record_inputs)
    monkeypatch.setattr(ConvAutoencoderDetector, "_train_loss", record_targets)
    det = ConvAutoencoderDetector(**{**params, "max_iter": 1}).fit(X)
    train = det._to_tensor(X).flatten(1)
    assert len(batches) == len(targets) > 0
    for (clean_batch, _), target in zip(batches, targets, strict=True):
        assert torch.equal(target, clean_batch)
        rows = target.contiguous().flatten(1)
        assert (rows[:, None] == train[None]).all(-1).any(1).all()  # training images
    assert any(not torch.equal(inputs, clean) for clean, inputs in batches)


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(4, 20),
    w=st.integers(4, 20),
    channels=st.sampled_from([None, 3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_training_defects_lie_in_the_image_blended_at_one_strength_and_mirrored(
    h, w, channels, seed
):
    X = _images(n=8, h=h, w=w, channels=channels, seed=seed % 1000)
    params = {**FAST, "max_iter": 1, "corruption": "defects", "margin": 2}
    det = ConvAutoencoderDetector(**params).fit(X)
    assert max(det.margin_) > 0
    xb = det._preprocess(torch.from_numpy(X.astype(np.float32)))
    pasted, masks = det._paste_defects(xb, torch.Generator().manual_seed(seed))
    blended, blend_masks = det._blend_defects(xb, torch.Generator().manual_seed(seed))
    assert torch.equal(blend_masks, masks)
    for out in (pasted, blended):
        assert out.shape == xb.shape and masks.shape == (8, 1, h, w)
        # The padding is laid from the pasted images, as scoring lays it from an input.
        assert torch.equal(det._pad(det._crop(out)), out)
        keep = ~masks.expand_as(det._crop(out))
        assert torch.equal(det._crop(out)[keep], det._crop(xb)[keep])
    # Each image's defect is blended in at one strength within DEFECT_STRENGTH.
    low, high = DEFECT_STRENGTH
    for x, full, part in zip(xb, pasted, blended, strict=True):
        moved = (full - x).abs() > 1e-2
        if moved.any():
            strength = (part - x)[moved] / (full - x)[moved]
            assert low - 1e-4 <= strength.min() <= strength.max() <= high + 1e-4
            assert strength.max() - strength.min() < 1e-3


def test_corruption_augmentation_and_schedule_survive_io_and_pickle(tmp_path):
    X = _images()
    det = ConvAutoencoderDetector(
        **FAST,
        corruption="defects",
        augmentation="shift",
        learning_rate="constant-then-cosine",
    ).fit(X)
    save(det, tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.get_params()["corruption"] == "defects"
    assert loaded.get_params()["augmentation"] == "shift"
    assert loaded.get_params()["learning_rate"] == "constant-then-cosine"
    np.testing.assert_array_equal(loaded.score_samples(X), det.score_samples(X))
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.anomaly_map(X), det.anomaly_map(X))


def _waves(seed, offsets, side=16):
    """A random-phase pattern of four plane waves, seen from each ``(dy, dx)`` in
    ``offsets``: each image is the pattern moved by its offset."""
    rng = np.random.default_rng(seed)
    freq, phase = rng.uniform(0.05, 0.25, size=(4, 2)), rng.uniform(0, 2 * np.pi, 4)
    y, x = np.mgrid[:side, :side]
    return np.stack(
        [
            sum(
                np.cos(2 * np.pi * (fy * (y + dy) + fx * (x + dx)) + p)
                for (fy, fx), p in zip(freq, phase, strict=True)
            )
            for dy, dx in offsets
        ]
    )


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_shift_augmentation_learns_a_pattern_wherever_it_lies(seed):
    """Trained on one pattern where it lies, a network flags the pattern moved by a
    pixel; trained on shifted batches, it reconstructs the moved pattern far more
    closely."""
    X = _waves(seed, [(0, 0)] * 64) + 0.05 * np.random.default_rng(seed).normal(size=(64, 16, 16))
    moved = _waves(seed, [(1, 0), (0, 1), (-1, 0), (0, -1), (1, -1), (-1, 1)])
    params = {"channels": (8, 16), "latent_dim": 8, "max_iter": 10, "batch_size": 16}
    ratios = {}
    for augmentation in (None, "shift"):
        det = ConvAutoencoderDetector(**params, augmentation=augmentation, random_state=seed)
        det.fit(X)
        assert det._max_shift() == (1, 1)
        ratios[augmentation] = det.score_samples(moved).mean() / det.score_samples(X[:6]).mean()
    # Over 40 seeds: 12 to 67 times without shifts, 0.9 to 4.5 with them, and a
    # ratio of the two of at least 4.8.
    assert ratios[None] > 5 and ratios["shift"] < ratios[None] / 3, ratios


def test_auto_augmentation_shifts_a_pattern_that_lies_anywhere_and_not_aligned_images(
    tmp_path,
):
    rng = np.random.default_rng(0)
    aligned = _waves(0, [(0, 0)] * 48) + 0.1 * rng.normal(size=(48, 16, 16))
    anywhere = _waves(0, rng.integers(0, 16, size=(48, 2)))
    params = {"channels": (4, 8), "latent_dim": 4, "max_iter": 1, "random_state": 0}
    fits = {
        name: ConvAutoencoderDetector(**params).fit(X)
        for name, X in (("aligned", aligned), ("anywhere", anywhere))
    }
    assert fits["aligned"].common_detail_ > 0.5 and fits["aligned"].augmentation_ is None
    assert fits["anywhere"].common_detail_ < 0.05
    assert fits["anywhere"].augmentation_ == "shift"
    # augmentation is read when training: another value names another choice.
    assert fits["aligned"].set_params(augmentation="shift").augmentation_ == "shift"
    assert fits["anywhere"].set_params(augmentation=None).augmentation_ is None
    fits["anywhere"].set_params(augmentation="auto")
    save(fits["anywhere"], tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.common_detail_ == fits["anywhere"].common_detail_
    assert loaded.augmentation_ == "shift"
    with pytest.raises(NotFittedError):
        _ = ConvAutoencoderDetector().augmentation_
    # The segmenter's training has no augmentation to choose.
    assert not hasattr(DraemDetector(**params).fit(aligned), "common_detail_")


def test_shift_augmentation_trains_on_shifted_copies_reproducibly(monkeypatch):
    X = _images(n=32, h=12, w=20)
    params = {**FAST, "augmentation": "shift", "margin": 2}
    a = ConvAutoencoderDetector(**params).fit(X)
    b = ConvAutoencoderDetector(**params).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert not np.array_equal(
        a.score_samples(X),
        ConvAutoencoderDetector(**FAST, margin=2, augmentation=None).fit(X).score_samples(X),
    )
    # Input and target are the same shifted batch, its margin laid again from it.
    pairs = []
    train_loss = ConvAutoencoderDetector._train_loss

    def record(self, out, x):
        pairs.append(x.detach().clone())
        return train_loss(self, out, x)

    monkeypatch.setattr(ConvAutoencoderDetector, "_train_loss", record)
    det = ConvAutoencoderDetector(**{**params, "max_iter": 2}).fit(X)
    assert det._max_shift() == (1, 1)
    images = torch.from_numpy(X.astype(np.float32))[:, None]
    images = (images - float(det.channel_mean_[0])) / float(det.channel_scale_[0])
    moved = 0
    for target in pairs:
        assert torch.equal(det._pad(det._crop(target)), target)
        crop = det._crop(target)
        # Every image of the batch is a training image moved by one offset in [-1, 1].
        found = {
            (dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if all(
                torch.isclose(
                    img[..., 1:-1, 1:-1],
                    images[..., 1 + dy : 11 + dy, 1 + dx : 19 + dx],
                    atol=1e-5,
                )
                .flatten(1)
                .all(1)
                .any()
                for img in crop
            )
        }
        assert found, "a batch that is no shifted copy of the training images"
        moved += (0, 0) not in found
    assert moved > 0


@pytest.mark.parametrize("corruption", [None, "defects"])
def test_default_training_digits_roc_auc_floor(corruption):
    X_train, X_test, y_test = _digits_task(normal=3)
    det = ConvAutoencoderDetector(corruption=corruption, random_state=0).fit(X_train)
    scores = -det.score_samples(X_test)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    assert roc_auc_score(y_test, scores) > 0.98


# ------------------------------------------------------------- image score
def _planted(X, seed=0):
    """``X`` with a bright 3x3 square at a random place in every image."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    for img in out:
        r, c = rng.integers(0, X.shape[-2] - 3), rng.integers(0, X.shape[-1] - 3)
        img[r : r + 3, c : c + 3] += 0.5
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 40),
    st.integers(1, 40),
    st.floats(0.001, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_topk_image_score_averages_the_worst_share_of_a_map(n, height, width, share, seed):
    # 'topk' is the mean of the ceil(share * pixels) largest values, at least 16
    # (a 4x4 patch) and at most the whole map; it lies between the mean and the max.
    maps = torch.from_numpy(np.random.default_rng(seed).exponential(size=(n, height, width)))
    got = reduce_map(maps, "topk", top_fraction=share).numpy()
    pixels = height * width
    k = min(pixels, max(16, math.ceil(share * pixels)))
    flat = np.sort(maps.numpy().reshape(n, -1), axis=1)[:, ::-1]
    np.testing.assert_allclose(got, flat[:, :k].mean(1), rtol=1e-12)
    assert (got <= flat[:, 0] + 1e-12).all() and (got >= flat.mean(1) - 1e-12).all()


def test_topk_image_score_of_the_detector_averages_the_worst_percent():
    # the default share is 1%: on a 64x64 map, the 41 worst pixels
    maps = torch.zeros(1, 64, 64, dtype=torch.float64)
    maps.view(-1)[:41] = 1.0
    maps.view(-1)[41:60] = 0.5
    assert reduce_map(maps, "topk").item() == 1.0
    assert reduce_map(maps, "topk", top_fraction=0.05).item() < 1.0


def _ring_means(maps, depth):
    """Mean of ``maps`` ``(H, W)`` on each of the outer ``depth`` rings, and further in."""
    distance = edge_distance(*maps.shape)
    return [maps[distance == d].mean() for d in range(depth)], maps[distance >= depth].mean()


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    edge=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**16),
)
def test_edge_scale_evens_the_outer_rings_out_to_the_inside(height, width, edge, seed):
    # A mean map whose edge is `edge` times as high as its inside, with noise.
    rng = np.random.default_rng(seed)
    distance = edge_distance(height, width)
    depth = math.ceil(min(height, width) / EDGE_DEPTH)
    maps = rng.uniform(0.5, 1.5, size=(height, width)) * np.where(distance < depth, edge, 1.0)
    scale = edge_scale(maps)
    assert scale.shape == (height, width) and scale.dtype == np.float32
    assert (scale >= 1).all() and (scale[distance >= depth] == 1).all()
    if not (distance >= depth).any():  # no inside to compare the edge with
        assert (scale == 1).all()
        return
    rings, inside = _ring_means(maps, depth)
    evened, _ = _ring_means(maps / scale, depth)
    for d in range(depth):
        assert np.unique(scale[distance == d]).size == 1  # one divisor per ring
        # a ring above the inside is divided down to it; one below is left alone
        np.testing.assert_allclose(evened[d], min(rings[d], inside), rtol=1e-6)


def test_edge_scale_is_one_without_a_usable_inside():
    assert (edge_scale(np.ones((1, 9))) == 1).all()  # every pixel is on the edge
    assert (edge_scale(np.pad(np.zeros((6, 6)), 2, constant_values=1.0)) == 1).all()
    overflowed = np.ones((16, 16))
    overflowed[0, 0] = np.inf
    assert edge_scale(overflowed)[0, 0] == 1
    assert (edge_scale(np.full((16, 16), np.nan)) == 1).all()


def test_edge_scale_of_a_fit_evens_its_own_residual_along_the_edge():
    X = _images(n=60, h=16, w=16)
    for image_score in ("auto", "topk"):  # set whatever the image score
        det = ConvAutoencoderDetector(**{**FAST, "image_score": image_score}).fit(X)
        rings, inside = _ring_means(det.anomaly_map(X).mean(0), math.ceil(16 / EDGE_DEPTH))
        assert max(rings) <= inside * (1 + 1e-5)


def test_edge_scale_comes_from_every_training_image_across_scoring_batches(monkeypatch):
    monkeypatch.setattr(_torch_detector, "SCORING_MEMORY", 1)  # batch_size_ rows per batch
    X = _images(n=60, h=16, w=16)
    det = ConvAutoencoderDetector(**FAST).fit(X)
    assert det.batch_size_ < len(X) and (det.edge_scale_ > 1).any()
    residual = det.anomaly_map(X) * det.edge_scale_
    np.testing.assert_allclose(det.edge_scale_, edge_scale(residual.mean(0)), rtol=1e-5)


def test_energy_scale_weighs_both_parts_of_the_map_alike_on_the_training_images():
    X = _images(n=60, h=16, w=16)
    det = ConvAutoencoderDetector(**FAST).fit(X)
    means = det._outputs(
        X, lambda x, out, _: torch.stack([p.flatten(1).mean(1) for p in det._map_parts(x, out)], 1)
    ).mean(0)
    assert 0 < det.energy_scale_ < 1  # smoothing cancels part of the residual before squaring
    np.testing.assert_allclose(means[0], det.energy_scale_ * means[1], rtol=1e-5)


def test_the_map_keeps_a_thin_residual_that_alternates_in_sign():
    # A scratch across a grain: its residual changes sign from pixel to pixel, and
    # smoothing it before squaring cancels it; the smoothed square keeps it.
    det = ConvAutoencoderDetector(**{**FAST, "smoothing": 1.0}).fit(_images(n=60, h=16, w=16))
    x = torch.zeros(1, 1, *det._padded_size())
    out = x.clone()
    top, _, left, _ = det.padding_
    out[0, 0, top : top + 16, left + 8] = torch.tensor([1.0, -1.0] * 8)
    square, _ = det._map_parts(x, out)
    amap = det._pixel_map(x, out)[0] * torch.as_tensor(det.edge_scale_)
    on, off = amap[4:12, 8].mean(), amap[4:12, 2].mean()
    assert on > 20 * off and on > 3 * square[0, 4:12, 8].mean()


def test_auto_image_score_is_the_better_score_on_synthetic_defects():
    X = _images(n=60, h=16, w=16)
    det = ConvAutoencoderDetector(**{**FAST, "max_iter": 8}).fit(X)
    aucs = det.image_score_aucs_
    assert set(aucs) == {"max", "smooth"} and all(0 <= v <= 1 for v in aucs.values())
    expected = "smooth" if aucs["smooth"] > aucs["max"] else "max"
    assert det.image_score_ == expected
    test = np.vstack([_images(n=8, h=16, w=16, seed=3), _planted(_images(n=8, h=16, w=16))])
    chosen = det.score_samples(test)
    det.set_params(image_score=det.image_score_)  # the same fit, the score named
    np.testing.assert_array_equal(chosen, det.score_samples(test))
    det.set_params(image_score="mean")  # read when scoring
    assert not np.array_equal(chosen, det.score_samples(test))
    # The choice holds on defects it never saw: the chosen score tells the planted
    # squares from clean images at least about as well as the other one.
    labels = np.repeat([0, 1], 8)
    auc = {}
    for name in aucs:
        auc[name] = roc_auc_score(labels, -det.set_params(image_score=name).score_samples(test))
    assert auc[det.image_score_] >= max(auc.values()) - 0.05


@pytest.mark.parametrize(
    ("max_auc", "smooth_auc", "expected"),
    [(0.9, 0.9001, "smooth"), (0.9001, 0.9, "max"), (0.9, 0.9, "max")],
    ids=["smooth by a hair", "max by a hair", "exact tie"],
)
def test_auto_image_score_takes_the_higher_roc_auc_however_close(
    monkeypatch, max_auc, smooth_auc, expected
):
    given_aucs = iter([max_auc, smooth_auc])  # in the order of AUTO_IMAGE_SCORES
    monkeypatch.setattr(_choice, "roc_auc_score", lambda *_: next(given_aucs))
    det = ConvAutoencoderDetector(**FAST).fit(_images(n=30))
    assert det.image_score_aucs_ == {"max": max_auc, "smooth": smooth_auc}
    assert det.image_score_ == expected


def test_auto_image_score_chooses_after_training_without_changing_it():
    X = _images(n=50)
    det = ConvAutoencoderDetector(**FAST).fit(X)
    fixed = ConvAutoencoderDetector(**{**FAST, "image_score": "topk"}).fit(X)
    for name, value in fixed.module_.state_dict().items():
        torch.testing.assert_close(det.module_.state_dict()[name], value, rtol=0, atol=0)
    assert fixed.image_score_ == "topk" and fixed.image_score_aucs_ == {}
    assert ConvAutoencoderDetector(**FAST).fit(X).image_score_aucs_ == det.image_score_aucs_


def test_auto_image_score_is_max_when_scored_before_the_first_choice():
    X = _images(n=50)
    seen = {"auto": [], "max": []}
    for image_score, scores in seen.items():

        def record(detector, _, scores=scores):
            scores.append(detector.score_samples(X[:4]))

        params = {**FAST, "image_score": image_score, "callbacks": [record]}
        ConvAutoencoderDetector(**params).fit(X)
    np.testing.assert_array_equal(seen["auto"][0], seen["max"][0])


def test_auto_image_score_chooses_on_a_seeded_subset_of_many_images(monkeypatch):
    X = _images(n=40)
    det = ConvAutoencoderDetector(**FAST).fit(X)
    monkeypatch.setattr(_choice, "CHOICE_IMAGES", 40)
    det._choose_scoring(X)
    everything = dict(det.image_score_aucs_)
    monkeypatch.setattr(_choice, "CHOICE_IMAGES", 10)
    det._choose_scoring(X)
    subset = dict(det.image_score_aucs_)
    det._choose_scoring(X)
    assert det.image_score_aucs_ == subset != everything
    # 10 clean images against 40 copies: AUCs on a grid of 1/400.
    assert all(round(v * 400, 6) == round(v * 400) for v in subset.values())


def test_auto_image_score_in_partial_fit_io_and_pickle(tmp_path):
    X = _images(n=40)
    det = ConvAutoencoderDetector(**FAST).partial_fit(X)
    assert set(det.image_score_aucs_) == {"max", "smooth"}
    first = dict(det.image_score_aucs_)
    det.partial_fit(_images(n=40, seed=5))
    assert det.image_score_aucs_ != first  # chosen anew on the new batch
    save(det, tmp_path / "auto.alm")
    loaded = load(tmp_path / "auto.alm")
    assert (loaded.image_score_, loaded.image_score_aucs_) == (
        det.image_score_,
        det.image_score_aucs_,
    )
    np.testing.assert_array_equal(loaded.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(det)).score_samples(X), det.score_samples(X)
    )
    fixed = ConvAutoencoderDetector(**{**FAST, "image_score": "max"}).partial_fit(X)
    assert (fixed.image_score_, fixed.image_score_aucs_) == ("max", {})


@pytest.mark.parametrize("cls", [ConvAutoencoderDetector, DraemDetector])
def test_image_score_set_after_fit_is_checked_when_scoring(cls):
    # image_score is read when scoring, so a value set after fit is checked there.
    det = cls(**{**FAST, "max_iter": 1}).fit(_images(16))
    det.set_params(image_score="median")
    with pytest.raises(ValueError, match="image_score='median' is not supported"):
        det.score_samples(_images(2))


def test_predict_refuses_a_score_its_threshold_was_not_set_on(tmp_path):
    # score_samples follows image_score and smoothing set after fit; offset_ does not.
    X = _images()
    det = ConvAutoencoderDetector(**{**FAST, "image_score": "max"}).fit(X)
    assert det.offset_scoring_ == {
        "image_score": "max",
        "smoothing": det._sigma(),
        "projection_steps": 0,
        "projection_penalty": None,
    }
    labels = det.predict(X)
    for changed in ({"image_score": "smooth"}, {"smoothing": 2.0}, {"projection_steps": 2}):
        det.set_params(**changed)
        assert np.isfinite(det.score_samples(X)).all()
        for method in (det.predict, det.decision_function):
            with pytest.raises(
                ValueError,
                match=r"offset_ was set on scores computed with "
                r"image_score='max', smoothing=[\d.]+, projection_steps=0, "
                r"projection_penalty=None, and .* now scores",
            ):
                method(X)
        det.set_params(image_score="max", smoothing="auto", projection_steps=0)
        np.testing.assert_array_equal(det.predict(X), labels)
    # Without steps the penalty is unused: another one keeps the threshold.
    np.testing.assert_array_equal(det.set_params(projection_penalty=5.0).predict(X), labels)
    # The mean squared error is not smoothed: another smoothing keeps its threshold.
    mean = ConvAutoencoderDetector(**{**FAST, "image_score": "mean"}).fit(X)
    before = mean.predict(X)
    np.testing.assert_array_equal(mean.set_params(smoothing=3.0).predict(X), before)
    # 'auto' is the fitted choice, so setting it again keeps the threshold.
    auto = ConvAutoencoderDetector(**FAST).fit(X)
    auto.set_params(image_score=auto.image_score_).predict(X)
    auto.set_params(image_score="auto").predict(X)
    restored = load(save(auto.set_params(image_score="mean"), tmp_path / "model"))
    with pytest.raises(ValueError, match="offset_ was set on scores"):
        restored.predict(X)


# ------------------------------------------------------------ projection
@pytest.fixture(scope="module")
def digits_fitted():
    """A default-sized fit on the digits 0, and every test digit, as 8x8 images."""
    digits = load_digits()
    images = digits.images
    train = images[digits.target == 0][:120]
    det = ConvAutoencoderDetector(max_iter=20, random_state=0).fit(train)
    return det, images[-300:]


def _objective(det, x, y, penalty):
    """Each image's ``||y - f(y)||^2 + penalty * ||y - x||_1`` in standardized units."""
    rec = det._crop(det.module_(y))
    y, x = det._crop(y), det._crop(x)
    return ((rec - y).square() + penalty * (y - x).abs()).flatten(1).sum(1)


@pytest.mark.parametrize("penalty", [0.0, 0.1])
def test_projection_lowers_the_objective_it_descends(digits_fitted, penalty):
    # On real digits (normal zeros and every other digit), 20 steps lower each
    # image's objective; the penalty keeps the moved image closer to the input.
    # (Adam's steps do not shrink with the gradient: with a penalty of 1, a digit
    # the network already reconstructs closely can end a little above its start.)
    det, images = digits_fitted
    x = det._preprocess(torch.as_tensor(images, dtype=torch.float32))
    y = det._project(det.module_, x, 20, penalty)
    with torch.no_grad():
        before, after = _objective(det, x, x, penalty), _objective(det, x, y, penalty)
    assert (after < before).all()
    moved = (det._crop(y) - det._crop(x)).abs().flatten(1).sum(1)
    assert moved.min() > 0
    if penalty:
        free = det._crop(det._project(det.module_, x, 20, 0.0))
        assert moved.mean() < (free - det._crop(x)).abs().flatten(1).sum(1).mean()


@settings(max_examples=20, deadline=None)
@given(
    X=arrays(
        np.float64, st.tuples(st.integers(1, 6), st.just(8), st.just(8)), elements=st.floats(-2, 3)
    ),
    steps=st.integers(1, 4),
)
def test_projected_scores_map_and_reconstruction_come_from_one_reconstruction(
    small_fitted, X, steps
):
    det = pickle.loads(pickle.dumps(small_fitted)).set_params(
        projection_steps=steps, image_score="mean", smoothing=0.0
    )
    rec = det.reconstruct(X)
    assert rec.shape == X.shape and np.isfinite(rec).all()
    error = ((X - rec) ** 2).reshape(len(X), -1).mean(1)
    np.testing.assert_allclose(det.reconstruction_error(X), error, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(-det.score_samples(X), error, rtol=1e-5, atol=1e-9)
    maps = det.anomaly_map(X) * det.edge_scale_
    np.testing.assert_allclose(maps, (X - rec) ** 2, rtol=1e-4, atol=1e-9)
    # No step moves nothing: the plain reconstruction.
    plain = det.set_params(projection_steps=0).reconstruct(X)
    assert not np.array_equal(plain, rec)


def test_projection_is_read_when_scoring_and_kept_by_files(tmp_path):
    X = _images(n=16)
    det = ConvAutoencoderDetector(**{**FAST, "projection_steps": 3}).fit(X)
    assert det.offset_scoring_["projection_steps"] == 3
    projected = det.score_samples(X)
    with torch.inference_mode():  # a caller's mode does not stop the projection
        np.testing.assert_array_equal(det.score_samples(X), projected)
    restored = load(save(det, tmp_path / "model"))
    np.testing.assert_array_equal(restored.score_samples(X), projected)
    np.testing.assert_array_equal(restored.predict(X), det.predict(X))
    assert not np.array_equal(det.set_params(projection_steps=0).score_samples(X), projected)


def test_the_divergence_check_reads_the_network_without_the_projection(monkeypatch):
    # The check after the last epoch asks whether the network's output is finite;
    # projecting its batch would only cost time.
    det = ConvAutoencoderDetector(**{**FAST, "projection_steps": 2}).fit(_images(n=16))

    def no_projection(*args):
        raise AssertionError("the divergence check projected its batch")

    monkeypatch.setattr(det, "_project", no_projection)
    det._check_output(det._validate_input(_images(n=16), reset=False))


def test_a_projecting_fit_chooses_its_scoring_as_a_plain_fit_does():
    # The 'auto' choice, energy_scale_ and edge_scale_ read the network's plain
    # output, and projecting trains the same weights: so the projecting fit makes
    # the plain fit's choice, and only its threshold reads the projection.
    X = load_digits().images[:150]
    plain = ConvAutoencoderDetector(max_iter=3, random_state=0).fit(X)
    projected = clone(plain).set_params(projection_steps=2).fit(X)
    for name, value in plain.module_.state_dict().items():
        torch.testing.assert_close(projected.module_.state_dict()[name], value, rtol=0, atol=0)
    assert projected.image_score_ == plain.image_score_
    assert projected.image_score_aucs_ == plain.image_score_aucs_
    assert projected.energy_scale_ == plain.energy_scale_
    np.testing.assert_array_equal(projected.edge_scale_, plain.edge_scale_)
    assert projected.offset_ != plain.offset_
