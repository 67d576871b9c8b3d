"""DraemDetector: the segmenter's map and scores, training, files and quality."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from anomalib_lite import DraemDetector, PCADetector
from anomalib_lite.datasets import make_textures
from anomalib_lite.draem import focal_loss
from anomalib_lite.io import load, save
from anomalib_lite.metrics import pixel_roc_auc_score
from anomalib_lite.nn import ReconstructAndSegment, SegmentationNet

FAST = {
    "channels": (4, 8),
    "latent_dim": 4,
    "segmenter_width": 4,
    "max_iter": 3,
    "random_state": 0,
}
SHAPE = (12, 10)


def _images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.3, 0.6, size=(n, 1, 1))
    return level + 0.05 * rng.normal(size=(n, *SHAPE))


@pytest.fixture(scope="module")
def fitted():
    return DraemDetector(**FAST).fit(_images())


@settings(max_examples=30, deadline=None)
@given(
    X=st.integers(1, 6).flatmap(
        lambda n: arrays(np.float64, (n, *SHAPE), elements=st.floats(-5, 5, width=32))
    )
)
def test_map_is_a_probability_and_scores_reduce_it(fitted, X):
    maps = fitted.anomaly_map(X)
    assert maps.shape == X.shape and maps.dtype == np.float64
    assert ((maps >= 0) & (maps <= 1)).all()
    flat = maps.reshape(len(X), -1)
    scores = {}
    try:
        for image_score in ("max", "topk", "mean"):  # read when scoring
            scores[image_score] = -fitted.set_params(image_score=image_score).score_samples(X)
    finally:
        fitted.set_params(image_score="max")
    np.testing.assert_allclose(scores["max"], flat.max(1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scores["mean"], flat.mean(1), rtol=1e-6, atol=1e-7)
    assert (scores["mean"] <= scores["topk"] + 1e-7).all()
    assert (scores["topk"] <= scores["max"] + 1e-7).all()


def test_map_stays_a_probability_where_the_segmenter_is_sure():
    # The blur of a map of ones summed one float32 step above 1 (29x29 images,
    # smoothing 'auto'): the map and the scores went past the documented [0, 1].
    X = np.random.default_rng(0).uniform(0.3, 0.6, size=(10, 29, 29))
    det = DraemDetector(**{**FAST, "max_iter": 1}).fit(X)
    with torch.no_grad():
        det.module_.segmenter.head.bias.fill_(100.0)  # every pixel surely anomalous
    maps = det.anomaly_map(X[:2])
    assert maps.min() >= 0 and maps.max() == 1.0
    assert (-det.score_samples(X[:2]) == 1.0).all()


def test_reconstruction_is_the_autoencoders(fitted):
    X = _images(6, seed=1)
    rec = fitted.reconstruct(X)
    assert rec.shape == X.shape
    errors = ((X - rec) ** 2).reshape(len(X), -1).mean(1)
    np.testing.assert_allclose(fitted.reconstruction_error(X), errors, rtol=1e-4)
    assert isinstance(fitted.module_, ReconstructAndSegment)


def test_seeded_fits_agree_and_seeds_differ():
    X = _images()
    a = DraemDetector(**FAST).fit(X).anomaly_map(X[:4])
    b = DraemDetector(**FAST).fit(X).anomaly_map(X[:4])
    c = DraemDetector(**{**FAST, "random_state": 1}).fit(X).anomaly_map(X[:4])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_model_file_round_trip_keeps_the_maps(fitted, tmp_path):
    X = _images(5, seed=2)
    save(fitted, tmp_path / "draem.alm")
    loaded = load(tmp_path / "draem.alm")
    assert type(loaded) is DraemDetector
    assert loaded.segmenter_levels_ == fitted.segmenter_levels_
    np.testing.assert_array_equal(loaded.anomaly_map(X), fitted.anomaly_map(X))
    np.testing.assert_array_equal(loaded.score_samples(X), fitted.score_samples(X))


def test_warm_start_refuses_another_segmenter(fitted):
    det = clone(fitted).set_params(warm_start=True)
    det.fit(_images())
    det.set_params(segmenter_width=8)
    with pytest.raises(ValueError, match="segmenter_width"):
        det.fit(_images())


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"segmenter_width": 0}, ValueError, "segmenter_width"),
        ({"segmenter_width": 2.5}, TypeError, "segmenter_width"),
        ({"image_score": "smooth"}, ValueError, "image_score='smooth' is not supported"),
        ({"smoothing": -1.0}, ValueError, "smoothing"),
    ],
)
def test_bad_parameters_name_themselves(params, error, match):
    with pytest.raises(error, match=match):
        DraemDetector(**{**FAST, **params}).fit(_images(10))


def test_auto_margin_is_mirrored_at_every_depth(fitted):
    # Two levels: the autoencoder alone mirrors no margin there.
    assert fitted.margin_ == (2, 2)
    top, bottom, left, right = fitted.padding_
    assert min(top, bottom, left, right) >= 2


@pytest.mark.parametrize(("side", "levels"), [(2, 0), (3, 1), (4, 1), (5, 2), (64, 2)])
def test_segmenter_keeps_two_pixels_on_its_deepest_level(side, levels):
    det = DraemDetector(**{**FAST, "channels": (4,), "margin": 0, "max_iter": 1})
    det.fit(np.random.default_rng(0).uniform(size=(9, side, side)))
    assert det.segmenter_levels_ == levels
    assert det.anomaly_map(np.zeros((1, side, side))).shape == (1, side, side)


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    levels=st.integers(0, 2),
    in_channels=st.integers(1, 3),
)
def test_segmentation_net_keeps_any_size(h, w, levels, in_channels):
    net = SegmentationNet(in_channels, width=2, levels=levels).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, in_channels, h, w)).shape == (2, 1, h, w)


def test_focal_loss_is_cross_entropy_weighted_by_the_error():
    logits = torch.tensor([-3.0, -0.5, 0.5, 3.0])
    target = torch.tensor([0.0, 1.0, 0.0, 1.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), bce)
    # Confident right answers weigh almost nothing; a wrong one keeps most of its loss.
    easy = focal_loss(torch.tensor([6.0]), torch.tensor([1.0]))
    hard = focal_loss(torch.tensor([-2.0]), torch.tensor([1.0]))
    assert easy < 1e-6 < 0.5 < hard


def test_finds_and_localizes_texture_defects_better_than_pca():
    train = make_textures(100, image_size=32, anomaly_ratio=0.0, random_state=0)
    test = make_textures(80, image_size=32, anomaly_ratio=0.5, random_state=1)
    rows = test.images.reshape(len(test.images), -1)
    pca = PCADetector().fit(train.images.reshape(100, -1))
    pca_image = roc_auc_score(test.labels, -pca.score_samples(rows))
    pca_pixel = pixel_roc_auc_score(
        test.masks, ((rows - pca.reconstruct(rows)) ** 2).reshape(test.images.shape)
    )
    det = DraemDetector(max_iter=15, random_state=0).fit(train.images)
    assert roc_auc_score(test.labels, -det.score_samples(test.images)) > pca_image + 0.1
    assert pixel_roc_auc_score(test.masks, det.anomaly_map(test.images)) > pca_pixel + 0.02


def test_early_stopping_loss_rewards_finding_defects():
    X = make_textures(60, image_size=16, anomaly_ratio=0.0, random_state=0).images
    det = DraemDetector(max_iter=6, early_stopping=True, random_state=0).fit(X)
    assert all(entry["valid_loss"] is not None for entry in det.history_)
    val = det._placed(det._to_tensor(X[:20]))
    trained = det._eval_loss(val)
    assert det._eval_loss(val) == trained  # the same defects every call
    head = det.module_.segmenter.head
    with torch.no_grad():  # a segmenter that calls every pixel normal
        head.weight.zero_()
        head.bias.fill_(-30.0)
    assert det._eval_loss(val) > trained


def test_partial_fit_trains_on_each_batch():
    X = _images()
    det = DraemDetector(**FAST)
    det.partial_fit(X[:20]).partial_fit(X[20:])
    assert det.n_iter_ == 2
    assert det.anomaly_map(X[:3]).shape == (3, *SHAPE)


def test_forged_segmenter_depth_is_refused_before_building(fitted):
    state = fitted._get_state()
    for forged in (10**6, -1, 2.0, None):
        state["segmenter_levels_"] = forged
        with pytest.raises(ValueError, match="segmenter_levels_"):
            DraemDetector()._set_state(state)


def test_interrupted_fit_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    X = _images()
    params = {**FAST, "max_iter": 4}
    path = tmp_path / "draem.model"

    def interrupt(detector, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    det = DraemDetector(**params, checkpoint_path=str(path), callbacks=[interrupt])
    with pytest.warns(UserWarning, match="interrupted"):
        det.fit(X)
    assert det.n_iter_ == 2
    saved = load(path).n_iter_
    assert 1 <= saved <= 2
    epochs = []

    def count(detector, record):
        epochs.append(record["epoch"])

    resumed = DraemDetector(**params, checkpoint_path=str(path), warm_start=True, callbacks=[count])
    resumed.fit(X)
    assert resumed.n_iter_ == 4 and len(epochs) == 4 - saved  # continued, not refitted
    reference = DraemDetector(**params).fit(X)
    np.testing.assert_array_equal(resumed.anomaly_map(X[:4]), reference.anomaly_map(X[:4]))


def test_predict_refuses_a_score_its_threshold_was_not_set_on():
    X = _images()
    det = DraemDetector(**FAST).fit(X)
    assert det.offset_scoring_ == {"image_score": "max", "smoothing": det._sigma()}
    assert np.isfinite(det.set_params(image_score="mean").score_samples(X)).all()
    with pytest.raises(ValueError, match="offset_ was set on scores computed with"):
        det.predict(X)
    det.set_params(image_score="max").predict(X)
