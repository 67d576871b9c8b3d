"""Anomaly scorers and image metrics: signs, hand-computed cases, invariants."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.metrics import get_scorer as sklearn_get_scorer
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from anomalib_lite import PCADetector
from anomalib_lite.metrics import (
    anomaly_average_precision,
    anomaly_f1,
    anomaly_precision,
    anomaly_recall,
    anomaly_roc_auc,
    aupro_score,
    best_f1_score,
    get_scorer,
    get_scorer_names,
    pixel_roc_auc_score,
    pro_curve,
)


def _labelled(seed=0, n_normal=150, n_anomalous=15, shift=2.0):
    """Normal data near a plane in R^4 and anomalies pushed off it."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 4))
    X = rng.normal(size=(n_normal + n_anomalous, 2)) @ basis
    X += 0.1 * rng.normal(size=X.shape)
    X[n_normal:] += shift * rng.normal(size=(n_anomalous, 4))
    y = np.r_[np.zeros(n_normal, int), np.ones(n_anomalous, int)]
    return X, y


# ------------------------------------------------------------------ scorers
def test_sklearn_roc_auc_scorer_inverts_while_ours_does_not():
    X, y = _labelled()
    det = PCADetector(n_components=2).fit(X[:100])
    X_test, y_test = X[100:], y[100:]
    auc = roc_auc_score(y_test, -det.score_samples(X_test))
    assert auc > 0.9
    assert anomaly_roc_auc(det, X_test, y_test) == pytest.approx(auc)
    # scikit-learn ranks by decision_function (higher = more normal) against y == 1
    assert sklearn_get_scorer("roc_auc")(det, X_test, y_test) == pytest.approx(1 - auc)


def test_threshold_free_scorers_match_sklearn_metrics_on_anomaly_scores():
    X, y = _labelled(seed=1)
    det = PCADetector(n_components=2).fit(X[:100])
    anomaly_score = -det.score_samples(X[100:])
    from sklearn.metrics import average_precision_score

    assert anomaly_average_precision(det, X[100:], y[100:]) == pytest.approx(
        average_precision_score(y[100:], anomaly_score)
    )


def test_label_scorers_count_predict_minus_one_as_detection():
    X, y = _labelled(seed=2, shift=1.0)
    det = PCADetector(n_components=2, contamination=0.1).fit(X[:100])
    X_test, y_test = X[100:], y[100:]
    flagged = det.predict(X_test) == -1
    assert 0 < flagged.sum() < len(flagged)
    assert anomaly_f1(det, X_test, y_test) == pytest.approx(f1_score(y_test, flagged))
    assert anomaly_recall(det, X_test, y_test) == pytest.approx(recall_score(y_test, flagged))
    assert anomaly_precision(det, X_test, y_test) == pytest.approx(precision_score(y_test, flagged))


def test_scorers_do_not_depend_on_the_threshold_sign_convention():
    """Shifting offset_ changes predict but not the ranking scorers."""
    X, y = _labelled(seed=3)
    det = PCADetector(n_components=2).fit(X[:100])
    auc, ap = anomaly_roc_auc(det, X[100:], y[100:]), anomaly_average_precision(det, X, y)
    det.offset_ += 123.0
    assert anomaly_roc_auc(det, X[100:], y[100:]) == auc
    assert anomaly_average_precision(det, X, y) == ap


def test_precision_is_zero_when_nothing_is_flagged():
    X, y = _labelled(seed=4)
    det = PCADetector(n_components=2).fit(X[:100])
    det.offset_ = -1e12  # flags nothing
    assert anomaly_precision(det, X, y) == 0.0
    assert anomaly_recall(det, X, y) == 0.0
    assert anomaly_f1(det, X, y) == 0.0


def test_get_scorer_by_name_and_unknown_names():
    assert get_scorer_names() == [
        "anomaly_average_precision",
        "anomaly_f1",
        "anomaly_precision",
        "anomaly_recall",
        "anomaly_roc_auc",
    ]
    assert get_scorer("anomaly_roc_auc") is anomaly_roc_auc
    assert get_scorer(anomaly_f1) is anomaly_f1
    with pytest.raises(ValueError, match=r"'roc_auc' is not an anomaly scorer.*1 - AUC"):
        get_scorer("roc_auc")


def test_scorers_refuse_folds_without_both_classes_and_bad_labels():
    X, y = _labelled()
    det = PCADetector(n_components=2).fit(X[:100])
    with pytest.raises(ValueError, match=r"holds no anomaly.*StratifiedKFold"):
        anomaly_roc_auc(det, X[:100], y[:100])
    with pytest.raises(ValueError, match="holds no anomaly"):
        anomaly_recall(det, X[:100], y[:100])
    with pytest.raises(ValueError, match="holds no normal sample"):
        anomaly_roc_auc(det, X[150:], y[150:])
    with pytest.raises(ValueError, match=r"only 0 \(normal\) and 1 \(anomaly\)"):
        anomaly_roc_auc(det, X, np.where(y == 1, -1, 1))
    with pytest.raises(TypeError, match="expected labels 0"):
        anomaly_f1(det, X, np.array(["a"] * len(X)))
    # one label must not broadcast over every prediction, nor a short y fail in numpy
    for scorer in (anomaly_f1, anomaly_recall, anomaly_precision):
        for y_short in ([1], y[:-1]):
            with pytest.raises(ValueError, match=r"y_true has \d+ labels but predict returned"):
                scorer(det, X, y_short)


class _ColumnPredict(OutlierMixin, BaseEstimator):
    """A detector whose ``predict`` returns a column, shape (n_samples, 1)."""

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return np.where(np.asarray(X)[:, :1] > 0, -1, 1)


def test_label_scorers_refuse_predictions_that_are_not_1d():
    X = np.array([[1.0], [1.0], [-1.0], [-1.0]])
    y = np.array([1, 1, 0, 0])  # a column of perfect predictions must not broadcast to 0.5
    for scorer in (anomaly_f1, anomaly_recall, anomaly_precision):
        with pytest.raises(ValueError, match=r"predict returned shape \(4, 1\); expected a 1-D"):
            scorer(_ColumnPredict(), X, y)


def test_scorers_are_picklable():
    import pickle

    X, y = _labelled()
    det = PCADetector(n_components=2).fit(X[:100])
    restored = pickle.loads(pickle.dumps(anomaly_roc_auc))
    assert restored(det, X[100:], y[100:]) == anomaly_roc_auc(det, X[100:], y[100:])


@settings(max_examples=60, deadline=None)
@given(
    scores=arrays(np.float64, st.integers(2, 30), elements=st.integers(-5, 5).map(float)),
    seed=st.integers(0, 2**16),
)
def test_best_f1_is_the_best_f1_over_all_thresholds(scores, seed):
    y = np.random.default_rng(seed).integers(0, 2, size=scores.size)
    y[0] = 1

    def f1(flagged):
        return 2 * np.sum(flagged & (y == 1)) / (flagged.sum() + np.sum(y == 1))

    brute = max(f1(scores >= t) for t in np.r_[np.unique(scores), np.inf])
    assert best_f1_score(y, scores) == pytest.approx(brute)


# ------------------------------------------------------------ image metrics
def test_pro_curve_hand_computed_with_regions_of_different_size():
    # regions {0, 1} (size 2) and {3} (size 1); pixels 2 and 4 are normal
    mask = np.array([[1, 1, 0, 1, 0]], dtype=bool)
    amap = np.array([[0.9, 0.2, 0.8, 0.7, 0.1]])
    fpr, pro, thr = pro_curve(mask, amap)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.8, 0.7, 0.2, 0.1])
    # The pixel TPR at FPR 0.5 and threshold 0.7 is 2/3; each region counts equally in PRO.
    assert aupro_score(mask, amap, max_fpr=1.0) == pytest.approx(0.5 * 0.25 + 0.5 * 1.0)
    # below FPR 0.5 the curve sits at 0.25
    assert aupro_score(mask, amap, max_fpr=0.3) == pytest.approx(0.25)


def test_aupro_interpolates_at_the_integration_limit():
    mask = np.array([[1, 0, 0, 1]], dtype=bool)  # two one-pixel regions
    amap = np.array([[0.9, 0.1, 0.5, 0.4]])
    fpr, pro, _ = pro_curve(mask, amap)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 0.5, 1, 1])
    assert aupro_score(mask, amap) == pytest.approx(0.5)
    assert aupro_score(mask, amap, max_fpr=1.0) == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    # (0.5, 0.5) -> (0.5, 1): a limit at 0.75 integrates 0.5 * 0.5 + 0.25 * 1
    assert aupro_score(mask, amap, max_fpr=0.75) == pytest.approx((0.25 + 0.25) / 0.75)


def test_regions_are_eight_connected_within_an_image_only():
    mask = np.zeros((2, 3, 3), dtype=bool)
    mask[0, 0, 0] = mask[0, 1, 1] = mask[0, 1, 2] = True  # one diagonal-connected region
    mask[1, 0, 0] = True  # same place, other image: a second region
    amap = np.zeros((2, 3, 3))
    amap[0, 0, 0] = 1.0  # flags one pixel of the 3-pixel region first
    _, pro, _ = pro_curve(mask, amap)
    # with 4-connectivity it would be (1 + 0 + 0) / 3 regions; 8-connected: (1/3 + 0) / 2
    assert pro[1] == pytest.approx((1 / 3) / 2)


def test_pixel_roc_auc_hand_computed():
    mask = np.array([[[0, 1], [0, 0]]], dtype=bool)
    # the anomalous pixel beats 2 of 3 normal pixels and ties none
    assert pixel_roc_auc_score(mask, [[[0.1, 0.5], [0.9, 0.2]]]) == pytest.approx(2 / 3)
    # ties count half
    assert pixel_roc_auc_score(mask, [[[0.5, 0.5], [0.9, 0.2]]]) == pytest.approx(0.5)


@st.composite
def masks_and_maps(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    mask = draw(arrays(bool, (n, h, w)))
    if not mask.any():
        mask[0, 0, 0] = True
    if mask.all():
        mask[-1, -1, -1] = False
    # few distinct values, so that ties happen
    amap = draw(arrays(np.float64, (n, h, w), elements=st.integers(0, 6).map(float)))
    return mask, amap


@settings(max_examples=60, deadline=None)
@given(masks_and_maps())
def test_perfect_maps_score_one(data):
    mask, _ = data
    perfect = mask + 0.0
    assert pixel_roc_auc_score(mask, perfect) == 1.0
    assert aupro_score(mask, perfect) == 1.0


@settings(max_examples=60, deadline=None)
@given(masks_and_maps())
def test_metrics_are_invariant_to_increasing_transforms(data):
    mask, amap = data
    warped = np.exp(amap / 2.0) * 3.0 - 7.0
    assert pixel_roc_auc_score(mask, warped) == pytest.approx(pixel_roc_auc_score(mask, amap))
    assert aupro_score(mask, warped) == pytest.approx(aupro_score(mask, amap))
    np.testing.assert_allclose(pro_curve(mask, warped)[1], pro_curve(mask, amap)[1])


@settings(max_examples=60, deadline=None)
@given(masks_and_maps())
def test_pro_curve_matches_the_definition_at_every_threshold(data):
    mask, amap = data
    fpr, pro, thresholds = pro_curve(mask, amap)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12)
    assert fpr[-1] == 1.0 and pro[-1] == pytest.approx(1.0)
    eight = np.ones((3, 3), dtype=bool)
    for f, p, t in zip(fpr[1:], pro[1:], thresholds[1:], strict=True):
        flagged = amap >= t
        overlaps = []
        for image, hits in zip(mask, flagged, strict=True):
            labels, k = ndimage.label(image, structure=eight)
            overlaps += [hits[labels == r].mean() for r in range(1, k + 1)]
        assert p == pytest.approx(np.mean(overlaps))
        assert f == pytest.approx(flagged[~mask].mean())
    assert 0.0 <= aupro_score(mask, amap) <= 1.0


@settings(max_examples=40, deadline=None)
@given(masks_and_maps())
def test_pixel_roc_auc_is_the_flat_roc_auc(data):
    mask, amap = data
    assert pixel_roc_auc_score(mask, amap) == pytest.approx(
        roc_auc_score(mask.ravel(), amap.ravel())
    )


def test_image_metrics_validate_their_input():
    mask = np.zeros((2, 4, 4), dtype=bool)
    mask[0, 1, 1] = True
    amap = np.random.default_rng(0).random((2, 4, 4))
    with pytest.raises(ValueError, match="must match pixel for pixel"):
        aupro_score(mask, amap[:1])
    with pytest.raises(ValueError, match="no pixel as anomalous"):
        aupro_score(np.zeros_like(mask), amap)
    with pytest.raises(ValueError, match="every pixel as anomalous"):
        pixel_roc_auc_score(np.ones_like(mask), amap)
    with pytest.raises(ValueError, match="only 0 and 1"):
        pro_curve(mask * 2 + 0, amap)
    with pytest.raises(ValueError, match="anomaly_maps contains NaN at 1 pixels"):
        aupro_score(mask, np.where(mask, np.nan, amap))
    with pytest.raises(ValueError, match=r"\(n, H, W\) or \(H, W\)"):
        aupro_score(mask[..., None], amap[..., None])
    with pytest.raises(ValueError, match=r"max_fpr=0.0 must be in \(0, 1\]"):
        aupro_score(mask, amap, max_fpr=0.0)
    with pytest.raises(TypeError, match="expected real numbers"):
        aupro_score(mask, amap.astype(str))
    # a single (H, W) image is accepted
    assert aupro_score(mask[0], mask[0] + 0.0) == 1.0


@pytest.mark.parametrize("metric", [pixel_roc_auc_score, pro_curve, aupro_score])
def test_image_metrics_refuse_masked_arrays_with_masked_entries(metric):
    mask = np.array([[0, 1, 0, 0]], dtype=bool)
    amap = np.array([[0.9, 0.5, 0.1, 0.2]])
    hidden = np.array([[1, 0, 0, 0]], dtype=bool)
    with pytest.raises(ValueError, match="anomaly_maps is a masked array with masked entries"):
        metric(mask, np.ma.masked_array(amap, mask=hidden))
    with pytest.raises(ValueError, match="masks is a masked array with masked entries"):
        metric(np.ma.masked_array(mask, mask=hidden), amap)
    # nothing masked: the data as it is
    unmasked = metric(np.ma.masked_array(mask), np.ma.masked_array(amap))
    np.testing.assert_equal(unmasked, metric(mask, amap))


# ---------------------------------------------------------- infinite scores
def test_scorers_rank_the_documented_overflow_output():
    X, y = _labelled(seed=4)
    det = PCADetector(n_components=2).fit(X[:100])
    X_test, y_test = X[100:].copy(), y[100:]
    anomalies = np.flatnonzero(y_test == 1)
    X_test[anomalies[0]] = 1.5e308  # overflows: score_samples -inf, as documented
    with pytest.warns(UserWarning, match="overflowed"):
        anomaly_score = -det.score_samples(X_test)
    assert anomaly_score[anomalies[0]] == np.inf
    finite = anomaly_score.copy()
    finite[anomalies[0]] = anomaly_score[np.isfinite(anomaly_score)].max() + 1.0
    for scorer, metric in [
        (anomaly_roc_auc, roc_auc_score),
        (anomaly_average_precision, average_precision_score),
    ]:
        with pytest.warns(UserWarning, match="overflowed"):
            assert scorer(det, X_test, y_test) == pytest.approx(metric(y_test, finite))
    assert best_f1_score(y_test, anomaly_score) == best_f1_score(y_test, finite)


def test_grid_search_records_no_nan_for_a_fold_that_overflows():
    X, y = _labelled(seed=5)
    X = X.copy()
    X[np.flatnonzero(y == 1)[:3]] = 1.5e308
    search = GridSearchCV(
        PCADetector(),
        {"n_components": [1, 2]},
        scoring=get_scorer("anomaly_roc_auc"),
        cv=StratifiedKFold(3),
        error_score="raise",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search.fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


class _FixedScores(OutlierMixin, BaseEstimator):
    """An outlier detector whose anomaly score of row ``[i]`` is ``scores[i]``."""

    def __init__(self, scores=None):
        self.scores = scores

    def fit(self, X, y=None):
        return self

    def decision_function(self, X):
        return -np.asarray(self.scores, dtype=float)[np.asarray(X)[:, 0]]


@settings(max_examples=50, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([-np.inf, -2.0, 0.0, 1.0, 3.0, np.inf])),
        min_size=2,
        max_size=30,
    ).filter(lambda rows: len({label for label, _ in rows}) == 2)
)
def test_rank_metrics_treat_infinities_as_extreme_ranks(data):
    y = np.array([label for label, _ in data])
    scores = np.array([score for _, score in data])
    stand_in = np.select([scores == np.inf, scores == -np.inf], [1e6, -1e6], scores)
    fixed, index = _FixedScores(scores), np.arange(len(y))[:, None]
    assert anomaly_roc_auc(fixed, index, y) == roc_auc_score(y, stand_in)
    assert anomaly_average_precision(fixed, index, y) == pytest.approx(
        average_precision_score(y, stand_in)
    )
    assert best_f1_score(y, scores) == best_f1_score(y, stand_in)
    masks = y.astype(bool).reshape(1, 1, -1)
    assert pixel_roc_auc_score(masks, scores.reshape(1, 1, -1)) == roc_auc_score(y, stand_in)
    assert aupro_score(masks, scores.reshape(1, 1, -1)) == aupro_score(
        masks, stand_in.reshape(1, 1, -1)
    )


def test_rank_metrics_refuse_nan():
    with pytest.raises(ValueError, match=r"anomaly_scores contains NaN.*no rank"):
        best_f1_score([0, 1], [np.nan, 1.0])
    with pytest.raises(ValueError, match="decision_function contains NaN"):
        anomaly_roc_auc(_FixedScores([np.nan, 1.0]), np.arange(2)[:, None], [0, 1])
