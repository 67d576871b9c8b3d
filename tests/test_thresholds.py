"""Threshold rules and CalibratedDetector: guarantees, fallbacks, splits, errors."""

import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anomalib_lite import CalibratedDetector, PCADetector
from anomalib_lite.autoencoder import ConvAutoencoderDetector
from anomalib_lite.dense import AutoencoderDetector
from anomalib_lite.thresholds import (
    CalibrationWarning,
    conformal_p_values,
    conformal_threshold,
    labelled_threshold,
    quantile_threshold,
)

scores_1d = arrays(
    np.float64, st.integers(1, 60), elements=st.integers(-20, 20).map(lambda v: v / 4)
)


def _gaussian(seed, n, d=5):
    """Normal data: a fixed correlated Gaussian in R^d (seed 0 fixes the shape)."""
    A = np.random.default_rng(0).normal(size=(d, d))
    return np.random.default_rng(seed).normal(size=(n, d)) @ A


# ----------------------------------------------------------- conformal rule
@settings(max_examples=80, deadline=None)
@given(scores=scores_1d, alpha=st.floats(0.01, 0.99), new=scores_1d)
def test_conformal_threshold_is_the_conformal_rank(scores, alpha, new):
    n = scores.size
    # the most exceedances whose p-value m / (n + 1) is still <= alpha
    n_exceed = max(m for m in range(n + 1) if m == 0 or m / (n + 1.0) <= alpha)
    if n_exceed < 1:
        with pytest.raises(ValueError, match="needs at least ceil"):
            conformal_threshold(scores, alpha)
        return
    t = conformal_threshold(scores, alpha)
    k = n + 1 - n_exceed
    assert t == np.sort(scores)[k - 1]
    # at most n + 1 - k - 1 calibration scores lie strictly above it
    assert np.sum(scores > t) <= n - k
    # p <= alpha exactly where the anomaly score exceeds the threshold, ties included
    probe = np.r_[new, scores]
    np.testing.assert_array_equal(conformal_p_values(scores, probe) <= alpha, probe > t)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    share=st.floats(0.0, 1.0),
    side=st.sampled_from([-np.inf, 0.0, np.inf]),
    seed=st.integers(0, 2**16),
)
def test_predict_flags_exactly_p_at_most_alpha_next_to_a_rank(n, share, side, seed):
    # alpha at m / (n + 1) or one float either side of it, where rounding decides
    m = min(max(round(share * n), 1), n)
    alpha = float(np.nextafter(m / (n + 1.0), side)) if side else m / (n + 1.0)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + 6, 3))
    det = CalibratedDetector(
        PCADetector(n_components=1, trim_fraction=0),
        alpha=alpha,
        calibration_size=n,
        random_state=seed,
    )
    if 1 / (n + 1.0) > alpha:
        with pytest.raises(ValueError, match="needs at least ceil"):
            det.fit(X)
        return
    det.fit(X)
    X_new = np.vstack([rng.normal(size=(50, 3)), X])
    flagged = det.predict(X_new) == -1
    np.testing.assert_array_equal(flagged, det.p_values(X_new) <= alpha)


def test_alpha_a_rounding_error_below_a_rank_allows_no_extra_exceedance():
    alpha = 1 - 0.9  # 0.09999999999999998, just below 1 / 10
    # 9 scores would need p = 1 / 10 <= alpha for one exceedance: too few
    with pytest.raises(ValueError, match=r"Only 9 held-out .*ceil\(1 / alpha\) - 1 = 10"):
        conformal_threshold(np.arange(1.0, 10.0), alpha)
    assert conformal_threshold(np.arange(1.0, 11.0), alpha) == 10.0
    # with 19 scores one exceedance is allowed: 1 / 20 <= alpha < 2 / 20
    assert conformal_threshold(np.arange(1.0, 20.0), alpha) == 19.0
    X = _gaussian(0, 200)
    det = CalibratedDetector(
        PCADetector(n_components=2), alpha=alpha, calibration_size=19, random_state=0
    ).fit(X)
    X_new = _gaussian(1, 500)
    np.testing.assert_array_equal(det.predict(X_new) == -1, det.p_values(X_new) <= alpha)


def test_conformal_threshold_boundary_sizes():
    # alpha = 0.05 needs n >= 19: (19 + 1) * 0.05 = 1 exceedance allowed
    assert conformal_threshold(np.arange(19.0), 0.05) == 18.0
    with pytest.raises(ValueError, match=r"Only 18 held-out .*ceil\(1 / alpha\) - 1 = 19"):
        conformal_threshold(np.arange(18.0), 0.05)
    assert conformal_threshold(np.arange(99.0), 0.01) == 98.0
    with pytest.raises(ValueError, match="= 99"):
        conformal_threshold(np.arange(98.0), 0.01)
    # 1 / alpha overflows for a subnormal alpha: still the documented ValueError
    with pytest.raises(ValueError, match=r"alpha=1e-310 is too small"):
        conformal_threshold(np.arange(3.0), 1e-310)


def test_p_values_hand_computed():
    cal = [1.0, 2.0, 2.0, 3.0]
    p = conformal_p_values(cal, [0.0, 2.0, 2.5, 3.0, 4.0])
    np.testing.assert_allclose(p, [5 / 5, 4 / 5, 2 / 5, 2 / 5, 1 / 5])


def test_p_values_refuse_nan_on_either_side():
    with pytest.raises(ValueError, match=r"anomaly_scores contains NaN at 1 of 2 .*index 0"):
        conformal_p_values([1.0, 2.0, 3.0], [np.nan, 2.0])
    with pytest.raises(ValueError, match=r"calibration_scores contains NaN"):
        conformal_p_values([1.0, np.nan, 3.0], [2.0])


def test_p_values_rank_infinite_scores():
    # +inf: a sample whose score overflowed; no calibration score reaches it
    p = conformal_p_values([1.0, 2.0, 3.0], [np.inf, -np.inf, 2.0])
    np.testing.assert_allclose(p, [1 / 4, 1.0, 3 / 4])
    np.testing.assert_allclose(conformal_p_values([1.0, np.inf], [np.inf, 5.0]), [2 / 3, 2 / 3])
    assert conformal_p_values([1.0, 2.0], []).shape == (0,)


@settings(max_examples=50, deadline=None)
@given(
    cal=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20),
    test=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20),
)
def test_p_values_of_infinities_are_the_limits_of_large_scores(cal, test):
    big = conformal_p_values(cal, [1e300, -1e300])
    np.testing.assert_array_equal(conformal_p_values(cal, [np.inf, -np.inf]), big)
    p = conformal_p_values(cal, test)
    assert np.all((p >= 1 / (len(cal) + 1)) & (p <= 1))


def test_labelled_calibration_with_an_overflowing_anomaly():
    X = np.random.default_rng(0).normal(size=(80, 4))
    X[-1] = 1e300  # a labelled anomaly far outside the training range
    y = np.r_[np.zeros(79, int), 1]
    with pytest.warns(UserWarning, match="overflowed"):
        det = CalibratedDetector(PCADetector(n_components=2), method="f1").fit(X, y)
    assert np.isfinite(det.threshold_)
    with pytest.warns(UserWarning, match="overflowed"):
        assert det.predict(X[-1:])[0] == -1
    conformal = CalibratedDetector(PCADetector(n_components=2), method="conformal").fit(X[:-1])
    n_cal = len(conformal.calibration_scores_)
    with pytest.warns(UserWarning, match="overflowed"):
        assert conformal.p_values(X[-1:]) == pytest.approx(1 / (n_cal + 1))
    assert labelled_threshold([0.1, 0.2, np.inf], [0, 0, 1]) == 0.2


def test_quantile_threshold_is_numpy_quantile():
    rng = np.random.default_rng(0)
    s = rng.normal(size=50)
    assert quantile_threshold(s, 0.1) == np.quantile(s, 0.9)


def test_quantile_threshold_of_huge_scores_of_both_signs():
    # the interpolation b - a overflows between scores near -+1.8e308
    s = np.array([-1.5e308, 1.5e308])
    for alpha, expected in [(0.05, 1.35e308), (0.5, 0.0), (0.999999, -1.5e308 + 3e302)]:
        t = quantile_threshold(s, alpha)
        assert np.isfinite(t) and s[0] <= t <= s[1]
        assert t == pytest.approx(expected, rel=1e-9, abs=1e293)


@settings(max_examples=150, deadline=None)
@given(
    scores=arrays(
        np.float64,
        st.integers(1, 8),
        elements=st.floats(-1.7e308, 1.7e308) | st.sampled_from([-1.7e308, -1e308, 1e308]),
    ),
    alpha=st.floats(0.001, 0.999),
)
def test_quantile_threshold_lies_within_the_scores(scores, alpha):
    t = quantile_threshold(scores, alpha)
    assert scores.min() <= t <= scores.max()


@pytest.mark.parametrize(
    ("func", "args", "error", "match"),
    [
        (conformal_threshold, ([1.0, np.nan], 0.5), ValueError, "contains NaN"),
        (conformal_threshold, ([1.0, np.inf], 0.5), ValueError, "infinite values"),
        (quantile_threshold, ([1.0, -np.inf], 0.5), ValueError, "infinite values"),
        (conformal_threshold, ([], 0.5), ValueError, "non-empty 1-D"),
        (conformal_threshold, ([1.0, 2.0], 1.0), ValueError, r"alpha=1.0 must be in \(0, 1\)"),
        (quantile_threshold, ([1.0], "0.1"), TypeError, "alpha must be a float"),
        (labelled_threshold, ([1.0, 2.0], [0, 0]), ValueError, "needs labelled anomalies"),
        (labelled_threshold, ([1.0, 2.0], [0, 2]), ValueError, "only 0"),
        (
            labelled_threshold,
            ([0.1, 0.2, 0.9], [0, 1]),
            ValueError,
            "y has 2 labels but anomaly_scores has 3 scores",
        ),
    ],
)
def test_rule_input_errors(func, args, error, match):
    with pytest.raises(error, match=match):
        func(*args)


# ----------------------------------------------------------- labelled rules
def _all_cuts(scores):
    """Every flagged set a threshold can produce: flag scores > t."""
    u = np.unique(scores)
    return [scores > t for t in np.r_[u[0] - 1, u]]


@settings(max_examples=80, deadline=None)
@given(
    scores=arrays(np.float64, st.integers(2, 40), elements=st.integers(0, 12).map(float)),
    seed=st.integers(0, 2**16),
    target=st.sampled_from([0.3, 0.5, 0.9, 1.0]),
)
def test_labelled_thresholds_are_optimal_over_every_cut(scores, seed, target):
    y = np.random.default_rng(seed).integers(0, 2, size=scores.size)
    y[0], y[-1] = 1, 0
    pos, neg = y == 1, y == 0
    cuts = _all_cuts(scores)

    def f1(c):
        return 2 * np.sum(c & pos) / (c.sum() + pos.sum())

    flagged = scores > labelled_threshold(scores, y, method="f1")
    assert f1(flagged) == pytest.approx(max(f1(c) for c in cuts))

    def youden(c):
        return c[pos].mean() - c[neg].mean()

    flagged = scores > labelled_threshold(scores, y, method="youden")
    assert youden(flagged) == pytest.approx(max(youden(c) for c in cuts))

    flagged = scores > labelled_threshold(scores, y, method="recall", target_recall=target)
    reaching = [c.sum() for c in cuts if c[pos].mean() >= target - 1e-12]
    assert flagged[pos].mean() >= target - 1e-12
    assert flagged.sum() == min(reaching)


@settings(max_examples=80, deadline=None)
@given(
    base=st.floats(0.5, 1000.0, width=32),
    ulps=arrays(np.int32, st.integers(2, 12), elements=st.integers(0, 4)),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    method=st.sampled_from(["f1", "youden"]),
)
def test_labelled_threshold_flags_its_cut_in_the_scores_dtype(base, ulps, seed, dtype, method):
    # scores a few units in the last place apart, where a float64 midpoint can
    # round onto the higher score when compared in float32 or float16
    start = np.asarray(base, dtype=dtype)
    scores = np.array([start] * ulps.size)
    for i, n in enumerate(ulps):
        for _ in range(n):
            scores[i] = np.nextafter(scores[i], dtype(np.inf))
    y = np.random.default_rng(seed).integers(0, 2, size=scores.size)
    y[0], y[-1] = 1, 0
    t = labelled_threshold(scores, y, method=method)
    flagged = scores > t
    np.testing.assert_array_equal(flagged, scores.astype(np.float64) > t)
    wide = scores.astype(np.float64)
    rule = wide > labelled_threshold(wide, y, method=method)  # float64 chooses the same cut
    np.testing.assert_array_equal(flagged, rule)


def test_labelled_threshold_of_adjacent_float32_scores():
    lo = np.nextafter(np.float32(1.0), np.float32(2))  # an odd last bit: the midpoint ties
    hi = np.nextafter(lo, np.float32(2))
    s = np.array([0.5, lo, hi], dtype=np.float32)
    t = labelled_threshold(s, [0, 0, 1])
    assert (s > t).tolist() == [False, False, True]
    # flagging every sample: the cut lies below the lowest score in float32 too
    s = np.array([lo, hi, 2.0], dtype=np.float32)
    assert (s > labelled_threshold(s, [1, 0, 1])).all()


def test_labelled_threshold_sits_half_way_between_classes():
    t = labelled_threshold([0.1, 0.2, 0.3, 0.8, 0.9], [0, 0, 0, 1, 1], method="youden")
    assert t == pytest.approx(0.55)


def test_youden_threshold_of_equal_merit_flags_the_fewest():
    # J = 1/3 flagging 1, 3 or 5 samples; in floats 3/3 - 2/3 rounds above 1/3 - 0/3
    t = labelled_threshold([6, 5, 4, 3, 2, 1], [1, 0, 1, 0, 1, 0], method="youden")
    assert t == 5.5


@settings(max_examples=300, deadline=None)
@given(
    labels=st.lists(st.integers(0, 1), min_size=2, max_size=16),
    ties=st.integers(1, 4),
    method=st.sampled_from(["f1", "youden"]),
)
def test_labelled_threshold_of_equal_merit_flags_the_fewest(labels, ties, method):
    y = np.array([1, *labels, 0])
    scores = np.arange(y.size, 0, -1) // ties * 1.0  # decreasing, some tied
    pos, n_pos, n_neg = y == 1, int(y.sum()), int((y == 0).sum())

    def merit(c):  # exact, as a fraction
        tp, fp = int(np.sum(c & pos)), int(np.sum(c & ~pos))
        if method == "f1":
            return Fraction(2 * tp, int(c.sum()) + n_pos)
        return Fraction(tp, n_pos) - Fraction(fp, n_neg)

    cuts = _all_cuts(scores)
    best = max(merit(c) for c in cuts)
    flagged = scores > labelled_threshold(scores, y, method=method)
    assert merit(flagged) == best
    assert flagged.sum() == min(c.sum() for c in cuts if merit(c) == best)


# ------------------------------------------------------- CalibratedDetector
def _false_alarm_rates(method, detector, n_trials=150, n_fit=60, alpha=0.1):
    """Mean false-alarm rate on fresh normal data over seeded random splits."""
    fresh = _gaussian(10_000, 4000)
    rates = []
    for seed in range(n_trials):
        det = CalibratedDetector(
            detector, method=method, alpha=alpha, calibration_size=19, random_state=seed
        ).fit(_gaussian(seed, n_fit))
        rates.append(np.mean(det.predict(fresh) == -1))
    return np.mean(rates), np.std(rates) / np.sqrt(n_trials)


def test_conformal_false_alarm_rate_is_at_most_alpha_on_average():
    """The finite-sample guarantee, checked over 150 seeded splits.

    With 19 calibration scores and alpha = 0.1 the conformal threshold is the
    18th smallest: the expected false-alarm rate is exactly 1 - 18 / 20 = 0.1.
    The plain quantile interpolates at position 0.9 * 18 = 16.2 (from 0),
    between the 17th and 18th smallest, so its expected rate is about
    0.1 + 0.8 / 20 = 0.14.
    """
    alpha = 0.1
    conformal, se_c = _false_alarm_rates("conformal", PCADetector(n_components=2), alpha=alpha)
    quantile, se_q = _false_alarm_rates("quantile", PCADetector(n_components=2), alpha=alpha)
    print(
        f"mean false-alarm rate: conformal {conformal:.4f} (se {se_c:.4f}), "
        f"quantile {quantile:.4f} (se {se_q:.4f}); alpha = {alpha}"
    )
    assert conformal <= alpha + 3 * se_c
    # the guarantee is tight: at least alpha - 1 / (n + 1) for continuous scores
    assert conformal >= alpha - 1 / 20 - 3 * se_c
    assert quantile > alpha + 3 * se_q


def test_conformal_guarantee_holds_for_a_small_autoencoder():
    """The guarantee needs no model assumption: a barely trained network will do."""
    fresh = _gaussian(10_000, 2000)
    rates = {"conformal": [], "quantile": []}
    for seed in range(40):
        for method, found in rates.items():
            det = CalibratedDetector(
                AutoencoderDetector(
                    hidden_sizes=(8,),
                    latent_dim=2,
                    max_iter=4,
                    early_stopping=False,
                    random_state=seed,
                ),
                method=method,
                alpha=0.1,
                calibration_size=19,
                refit=False,
                random_state=seed,
            ).fit(_gaussian(seed, 60))
            found.append(np.mean(det.predict(fresh) == -1))
    conformal, quantile = np.mean(rates["conformal"]), np.mean(rates["quantile"])
    se = np.std(rates["conformal"]) / np.sqrt(40)
    print(
        f"autoencoder mean false-alarm rate: conformal {conformal:.4f} (se {se:.4f}), "
        f"quantile {quantile:.4f}; alpha = 0.1"
    )
    assert conformal <= 0.1 + 3 * se
    assert quantile > conformal  # same splits and models, a lower threshold


def test_calibrates_a_conv_autoencoder_on_image_stacks():
    from sklearn.datasets import load_digits

    X, digit = load_digits(return_X_y=True)
    images = (X / 16.0).reshape(-1, 8, 8)
    det = CalibratedDetector(
        ConvAutoencoderDetector(channels=(8,), latent_dim=8, max_iter=3, random_state=0),
        alpha=0.1,
        random_state=0,
    ).fit(images[digit == 1][:150])
    new = images[digit == 1][150:]
    assert det.predict(new).shape == (len(new),)
    np.testing.assert_array_equal(det.p_values(new) <= 0.1, det.predict(new) == -1)
    assert det.calibration_scores_.size == 38  # ceil(0.25 * 150)


def test_image_stacks_count_their_pixels_as_features_and_the_detector_checks_shape():
    images = np.random.default_rng(0).normal(size=(100, 4, 6))
    det = CalibratedDetector(PCADetector(n_components=2), random_state=0).fit(images)
    assert det.n_features_in_ == det.detector_.n_features_in_ == 24
    assert det.sample_shape_ == (4, 6)
    with pytest.raises(ValueError, match=r"samples of shape \(5, 6\).*sample_shape_=\(4, 6\)"):
        det.predict(np.zeros((2, 5, 6)))


def test_conformal_guarantee_holds_for_a_third_party_detector():
    """Any detector with score_samples: scikit-learn's IsolationForest."""
    fresh = _gaussian(10_000, 2000)
    rates = []
    for seed in range(30):
        det = CalibratedDetector(
            IsolationForest(n_estimators=10, random_state=seed),
            alpha=0.2,
            calibration_size=14,  # (14 + 1) * 0.2 = 3 exceedances: exact level 0.2
            random_state=seed,
        ).fit(_gaussian(seed, 50))
        rates.append(np.mean(det.predict(fresh) == -1))
    se = np.std(rates) / np.sqrt(len(rates))
    assert np.mean(rates) <= 0.2 + 3 * se
    # Tight too: a threshold that flags nothing would pass the bound above.
    assert np.mean(rates) >= 0.2 - 1 / 15 - 3 * se


def test_p_values_agree_with_predict_for_conformal():
    X = _gaussian(0, 300)
    det = CalibratedDetector(PCADetector(n_components=2), alpha=0.1, random_state=0).fit(X)
    X_new = np.vstack([_gaussian(1, 200), 5 * _gaussian(2, 20)])
    p = det.p_values(X_new)
    assert p.min() >= 1 / 76 and p.max() <= 1.0
    np.testing.assert_array_equal(p <= 0.1, det.predict(X_new) == -1)


def test_split_is_reproducible_and_depends_on_random_state():
    X = _gaussian(0, 200)
    a = CalibratedDetector(PCADetector(n_components=2), random_state=3).fit(X)
    b = CalibratedDetector(PCADetector(n_components=2), random_state=3).fit(X)
    c = CalibratedDetector(PCADetector(n_components=2), random_state=4).fit(X)
    np.testing.assert_array_equal(a.calibration_scores_, b.calibration_scores_)
    assert a.threshold_ == b.threshold_
    assert not np.array_equal(a.calibration_scores_, c.calibration_scores_)


def test_calibration_size_as_share_and_count():
    X = _gaussian(0, 101)
    det = CalibratedDetector(PCADetector(n_components=2), calibration_size=0.25, random_state=0)
    assert det.fit(X).calibration_scores_.size == 26  # ceil(0.25 * 101)
    assert det.set_params(calibration_size=40).fit(X).calibration_scores_.size == 40
    # the conformal model is the split model: it learned from the other 61 rows
    assert det.detector_.n_samples_fit_ == 61
    assert not det.refitted_


@pytest.mark.parametrize("size", [0.25, np.float64(0.25), np.float32(0.25), np.float16(0.25)])
def test_calibration_share_of_any_float_type(size):
    X = _gaussian(0, 101)
    det = CalibratedDetector(PCADetector(n_components=2), calibration_size=size, random_state=0)
    assert det.fit(X).calibration_scores_.size == 26  # ceil(0.25 * 101)


@settings(max_examples=60, deadline=None)
@given(percent=st.integers(1, 99), n_normal=st.integers(2, 1000))
@example(percent=7, n_normal=100)  # 0.07 * 100 == 7.000000000000001 in floats
@example(percent=14, n_normal=50)
@example(percent=57, n_normal=100)
def test_calibration_share_is_rounded_up_from_the_share_as_written(percent, n_normal):
    n_cal = math.ceil(Fraction(percent, 100) * n_normal)
    det = CalibratedDetector(PCADetector(), calibration_size=percent / 100, random_state=0)
    if n_cal >= n_normal:
        with pytest.raises(ValueError, match="leaves none to train on"):
            det._split(n_normal)
        return
    train, cal = det._split(n_normal)
    assert (cal.size, train.size) == (n_cal, n_normal - n_cal)


def test_calibration_share_of_a_product_just_above_an_integer():
    det = CalibratedDetector(
        PCADetector(n_components=2, trim_fraction=0),
        method="quantile",
        calibration_size=0.07,
        refit=False,
    )
    assert det.fit(_gaussian(0, 100)).calibration_scores_.size == 7  # not 8
    assert det.detector_.n_samples_fit_ == 93


@pytest.mark.parametrize("method", ["conformal", "quantile"])
def test_a_held_out_row_that_overflows_is_refused_as_a_row_of_x(method):
    # The split model never trains on the calibration part, so its magnitude check
    # does not see a huge value there; the error must name X, whatever the split.
    X, y = _with_anomalies()
    det = CalibratedDetector(PCADetector(n_components=2), method=method, random_state=0)
    _, cal = det._split(200)
    X[cal[0]] = 1e200
    with (
        pytest.warns(UserWarning, match="overflowed"),
        pytest.raises(ValueError, match=r"1 of the 50 held-out normal rows of X .*Rescale X"),
    ):
        det.fit(X, y)
    assert not hasattr(det, "threshold_")


def test_refit_uses_every_normal_row_where_the_method_allows():
    X = _gaussian(0, 200)
    det = CalibratedDetector(
        PCADetector(n_components=2, trim_fraction=0), method="quantile", random_state=0
    )
    det.fit(X)
    assert det.refitted_ and det.detector_.n_samples_fit_ == 200
    with pytest.raises(ValueError, match="p-values need the model that scored"):
        det.p_values(X)
    det.set_params(refit=False).fit(X)
    assert not det.refitted_ and det.detector_.n_samples_fit_ == 150
    assert det.p_values(X).shape == (200,)


def test_analytic_method_uses_the_pca_control_limit_on_all_rows():
    X = _gaussian(0, 300)
    pca = PCADetector(n_components=2, trim_fraction=0)
    det = CalibratedDetector(pca, method="analytic", alpha=0.01).fit(X)
    reference = PCADetector(n_components=2, trim_fraction=0, control_limit=0.01).fit(X)
    assert det.offset_ == pytest.approx(reference.offset_)
    assert det.detector_.n_samples_fit_ == 300 and det.calibration_scores_ is None
    with pytest.raises(ValueError, match="fitted without a holdout"):
        det.p_values(X)
    # inside a Pipeline the final step's limit is used
    pipe = CalibratedDetector(
        make_pipeline(StandardScaler(), PCADetector(n_components=2)), method="analytic"
    ).fit(X)
    assert pipe.threshold_ == pytest.approx(pipe.detector_[-1].analytic_limit(0.05))


def test_analytic_method_needs_an_analytic_limit():
    with pytest.raises(TypeError, match=r"analytic_limit.*IsolationForest"):
        CalibratedDetector(IsolationForest(), method="analytic").fit(_gaussian(0, 50))


def _with_anomalies(seed=0, n_normal=200, n_anomalous=12):
    X = np.vstack([_gaussian(seed, n_normal), 4 * _gaussian(seed + 1, n_anomalous)])
    y = np.r_[np.zeros(n_normal, int), np.ones(n_anomalous, int)]
    return X, y


@pytest.mark.parametrize("method", ["f1", "youden", "recall"])
def test_labelled_methods_fall_back_to_conformal_with_a_warning(method):
    X = _gaussian(0, 200)
    det = CalibratedDetector(PCADetector(n_components=2), method=method, random_state=0)
    with pytest.warns(CalibrationWarning, match=f"method='{method}' needs labelled anomalies"):
        det.fit(X, np.zeros(200, int))
    conformal = CalibratedDetector(PCADetector(n_components=2), random_state=0).fit(X)
    assert det.method_ == "conformal"
    assert det.threshold_ == conformal.threshold_
    # never "flag everything"
    assert np.mean(det.predict(X) == -1) < 0.2


@pytest.mark.parametrize("method", ["f1", "youden", "recall"])
def test_labelled_threshold_without_a_normal_sample_says_why_it_needs_one(method):
    # The message of the detectors' fit ("detectors learn from normal samples") does not
    # fit a threshold function.
    with pytest.raises(ValueError, match=r"every sample as an anomaly.*separates anomalies"):
        labelled_threshold([0.1, 0.5, 0.9], [1, 1, 1], method=method)


def test_labelled_methods_put_every_anomaly_in_calibration():
    X, y = _with_anomalies()
    det = CalibratedDetector(
        PCADetector(n_components=2, trim_fraction=0),
        method="recall",
        target_recall=1.0,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.fit(X, y)
    assert det.method_ == "recall"
    # all 12 anomalies were calibrated on, so recall 1 holds on them
    assert np.all(det.predict(X[y == 1]) == -1)
    # and the model learned from normal rows only, then was refit on all 200
    assert det.detector_.n_samples_fit_ == 200


def test_f1_threshold_beats_the_training_quantile_on_labelled_data():
    X, y = _with_anomalies(seed=5)
    X_test, y_test = _with_anomalies(seed=50)
    tuned = CalibratedDetector(PCADetector(n_components=2), method="f1", random_state=0)
    tuned.fit(X, y)
    naive = PCADetector(n_components=2, contamination=0.2).fit(X[y == 0])
    f1_tuned = f1_score(y_test, tuned.predict(X_test) == -1)
    f1_naive = f1_score(y_test, naive.predict(X_test) == -1)
    assert f1_tuned > f1_naive


def test_decision_predict_and_float32_input():
    X = _gaussian(0, 200).astype(np.float32)
    det = CalibratedDetector(PCADetector(n_components=2), alpha=0.1, random_state=0).fit(X)
    scores = det.score_samples(X)
    assert scores.dtype == np.float64 and scores.shape == (200,)
    np.testing.assert_allclose(det.decision_function(X), scores - det.offset_)
    np.testing.assert_array_equal(det.predict(X), np.where(scores - det.offset_ >= 0, 1, -1))
    np.testing.assert_allclose(scores, det.detector_.score_samples(X))
    assert det.offset_ == -det.threshold_


def test_grid_search_reaches_inner_parameters():
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from anomalib_lite.metrics import anomaly_roc_auc

    X, y = _with_anomalies(n_normal=240, n_anomalous=15)
    search = GridSearchCV(
        CalibratedDetector(PCADetector(), random_state=0),
        {"detector__n_components": [1, 2, 4]},
        scoring=anomaly_roc_auc,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    best = search.best_params_["detector__n_components"]
    # Each value reached the inner detector: it fitted that many components, and the
    # candidates score apart (an ignored parameter would tie them).
    assert search.best_estimator_.detector_.n_components_ == best
    assert len(set(search.cv_results_["mean_test_score"])) == 3
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"method": "otsu"}, ValueError, "method='otsu' is not supported; expected one of"),
        ({"alpha": 0.0}, ValueError, r"alpha=0.0 must be in \(0, 1\)"),
        ({"alpha": "5%"}, TypeError, "alpha must be a float"),
        ({"target_recall": 1.5}, ValueError, r"target_recall=1.5 must be in \(0, 1\]"),
        ({"calibration_size": 1.0}, ValueError, r"calibration_size=1.0 must be in \(0, 1\)"),
        ({"calibration_size": 0}, ValueError, "calibration_size=0 must be >= 1"),
        ({"calibration_size": "all"}, TypeError, "calibration_size must be a float"),
        ({"calibration_size": 200}, ValueError, "leaves none to train on"),
        ({"refit": "yes"}, TypeError, "refit must be a bool"),
        ({"alpha": 0.01}, ValueError, r"Only 50 held-out .* = 99 of them"),
    ],
)
def test_parameter_errors(params, error, match):
    det = CalibratedDetector(PCADetector(n_components=2), **params)
    with pytest.raises(error, match=match):
        det.fit(_gaussian(0, 200))


def test_detector_must_be_a_detector():
    with pytest.raises(TypeError, match="detector must be an outlier detector"):
        CalibratedDetector(StandardScaler()).fit(_gaussian(0, 50))


def test_a_detector_class_is_refused_by_name():
    with pytest.raises(TypeError, match=r"detector must be an instance .*PCADetector\(\)"):
        CalibratedDetector(PCADetector).fit(_gaussian(0, 50))


class _DistanceToMean:
    """A duck-typed detector: fit, score_samples and get_params, no BaseEstimator."""

    def fit(self, X, y=None):
        self.mean_ = np.mean(X, axis=0)
        return self

    def score_samples(self, X):
        return -np.sum((np.asarray(X) - self.mean_) ** 2, axis=1)

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self


def test_a_duck_typed_detector_without_sklearn_tags_is_wrapped():
    X, X_new = _gaussian(0, 200), _gaussian(1, 100)
    det = CalibratedDetector(_DistanceToMean(), alpha=0.1, random_state=0).fit(X)
    assert det.calibration_scores_.shape == (50,)
    np.testing.assert_array_equal(det.predict(X_new) == -1, det.p_values(X_new) <= 0.1)


def test_unfitted_template_is_left_untouched():
    template = PCADetector(n_components=2)
    det = CalibratedDetector(template, random_state=0).fit(_gaussian(0, 100))
    assert not hasattr(template, "pca_")
    assert det.detector_ is not template
    assert clone(det).get_params()["detector"].get_params() == template.get_params()


# ------------------------------------------------------------------- docs
def test_example_measures_what_the_docs_claim():
    """examples/plot_threshold_calibration.py, fast: conformal meets its target."""
    import importlib.util

    from sklearn.datasets import load_digits

    path = Path(__file__).parents[1] / "examples" / "plot_threshold_calibration.py"
    spec = importlib.util.spec_from_file_location("plot_threshold_calibration", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    X, digit = load_digits(return_X_y=True)
    rates = example.false_alarm_rates(X, digit, n_repeats=3)
    alphas = np.array(example.ALPHAS)
    conformal, _ = rates["conformal (held-out)"]
    training, _ = rates["contamination (training top-k%)"]
    assert np.all(conformal <= alphas + 0.03)
    # the training-score rule raises more false alarms than it promises
    assert np.all(training > conformal) and np.all(training > alphas)


@pytest.mark.parametrize(
    ("rule", "scores", "error", "name"),
    [
        (conformal_threshold, ["a", "b"], TypeError, "calibration_scores"),
        (quantile_threshold, np.arange(30) + 5j, ValueError, "calibration_scores"),
        (conformal_p_values, [[1.0] * 30, ["x"]], TypeError, "anomaly_scores"),
        (labelled_threshold, [[0.1, "x"], [0, 1]], TypeError, "anomaly_scores"),
    ],
    ids=["strings", "complex", "string p-value", "labelled strings"],
)
def test_scores_that_are_not_real_numbers_are_refused_by_name(rule, scores, error, name):
    # Complex scores lost their imaginary part with only numpy's ComplexWarning.
    args = (scores, 0.1) if rule in (conformal_threshold, quantile_threshold) else scores
    with pytest.raises(error, match=name):
        rule(*args)


# ------------------------------------------------------------ wrapping
def test_a_wrapped_pipeline_gets_the_dataframe_as_given():
    # Columns by name, a text column for an encoder and NaN for an imputer: the
    # Pipeline validates X itself, so the wrapper must not convert it first.
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    df["kind"] = rng.choice(["x", "y"], 200)
    df.loc[::17, "a"] = np.nan
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b", "c"]),
            ("cat", OneHotEncoder(sparse_output=False), ["kind"]),
        ]
    )
    pipe = make_pipeline(columns, PCADetector(n_components=2))
    det = CalibratedDetector(pipe, random_state=0).fit(df)
    assert det.calibration_scores_.shape == (50,)
    np.testing.assert_array_equal(det.feature_names_in_, ["a", "b", "c", "kind"])
    assert set(det.predict(df.iloc[:20])) <= {-1, 1}
    with pytest.raises(ValueError, match="feature names"):
        det.predict(df[["b", "a", "c", "kind"]])


def test_an_array_like_without_ndim_is_read():
    from sklearn.utils.estimator_checks import _NotAnArray

    X = _gaussian(0, 120)
    det = CalibratedDetector(PCADetector(n_components=2), random_state=0)
    np.testing.assert_array_equal(
        det.fit(_NotAnArray(X)).score_samples(X), clone(det).fit(X).score_samples(X)
    )


def test_an_overflow_of_the_wrapped_detector_warns_once():
    det = CalibratedDetector(PCADetector(n_components=1), random_state=0).fit(_gaussian(0, 200))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = det.score_samples(np.full((2, 5), 1.5e308))
    assert np.all(scores == -np.inf)
    assert len(caught) == 1 and "overflowed" in str(caught[0].message)


def test_the_wrapped_image_detector_keeps_its_maps_and_reconstructions():
    from anomalib_lite.visualization import reconstruction_panels

    X = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8)).astype(np.uint8)
    det = CalibratedDetector(PCADetector(n_components=3), alpha=0.25, random_state=0).fit(X)
    np.testing.assert_array_equal(det.anomaly_map(X[:3]), det.detector_.anomaly_map(X[:3]))
    np.testing.assert_array_equal(det.reconstruct(X[:3]), det.detector_.reconstruct(X[:3]))
    np.testing.assert_array_equal(
        det.reconstruction_error(X[:3]), det.detector_.reconstruction_error(X[:3])
    )
    panels = reconstruction_panels(det, X[:3])
    assert panels["map_kinds"] == {"CalibratedDetector": "anomaly map"}
    with pytest.raises(ValueError, match="shape"):
        det.anomaly_map(X[:3, :4])
    rows = CalibratedDetector(IsolationForest(random_state=0), random_state=0)
    assert not hasattr(rows.fit(_gaussian(0, 100)), "anomaly_map")


def test_a_wrapped_checkpoint_path_is_refused(tmp_path):
    inner = ConvAutoencoderDetector(max_iter=1, checkpoint_path=tmp_path / "ck.model")
    with pytest.raises(ValueError, match=r"checkpoint_path=.*Set checkpoint_path=None"):
        CalibratedDetector(inner, method="quantile").fit(np.zeros((8, 8, 8)))
    assert not (tmp_path / "ck.model").exists()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_images_reach_the_wrapped_detector_without_a_float_copy(dtype, monkeypatch):
    X = np.random.default_rng(0).integers(0, 200, size=(40, 8, 8)).astype(dtype)
    seen = []
    fit = PCADetector.fit

    def spy(self, X, y=None):
        seen.append(np.asarray(X).dtype)
        return fit(self, X, y)

    monkeypatch.setattr(PCADetector, "fit", spy)
    det = CalibratedDetector(PCADetector(n_components=3), alpha=0.25, random_state=0).fit(X)
    assert seen == [dtype]
    floats = CalibratedDetector(PCADetector(n_components=3), alpha=0.25, random_state=0)
    floats.fit(X.astype(np.float64))
    np.testing.assert_array_equal(det.score_samples(X), floats.score_samples(X))


def test_predict_refuses_a_wrapped_detector_scoring_otherwise_than_calibrated():
    X = _gaussian(0, 200)
    det = CalibratedDetector(PCADetector(n_components=2), alpha=0.2, random_state=0).fit(X)
    labels = det.predict(X)
    det.detector_.set_params(statistic="t2")
    with pytest.raises(ValueError, match=r"statistic='spe'.* now scores with statistic='t2'"):
        det.predict(X)
    det.detector_.set_params(statistic="spe")
    np.testing.assert_array_equal(det.predict(X), labels)


def test_a_foreign_detector_gets_sparse_rows_it_can_split():
    import scipy.sparse as sp

    X = _gaussian(0, 100)
    det = CalibratedDetector(IsolationForest(n_estimators=5, random_state=0), random_state=0)
    dense = clone(det).fit(X).score_samples(X)
    np.testing.assert_allclose(det.fit(sp.coo_matrix(X)).score_samples(sp.coo_matrix(X)), dense)
