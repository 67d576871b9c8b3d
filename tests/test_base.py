"""The shared contract: input validation, labels and thresholds."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

from anomalib_lite import CalibratedDetector, PCADetector
from anomalib_lite.base import auto_threshold


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(40, 4))


@pytest.fixture
def fitted(X):
    return PCADetector(n_components=2).fit(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(X, bad):
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        PCADetector().fit(X)


def test_non_finite_values_at_scoring_raise(fitted, X):
    X = X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fitted.score_samples(X)


def test_wrong_feature_count_names_expected_and_got(fitted):
    with pytest.raises(ValueError, match="X has 3 features, but PCADetector is expecting 4"):
        fitted.predict(np.zeros((2, 3)))


def test_empty_input_raises(fitted):
    with pytest.raises(ValueError, match="0 sample"):
        PCADetector().fit(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="0 sample"):
        fitted.score_samples(np.zeros((0, 4)))


def test_one_dimensional_input_raises(X):
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        PCADetector().fit(X[:, 0])


def test_single_training_sample_raises():
    with pytest.raises(ValueError, match="1 sample"):
        PCADetector().fit(np.zeros((1, 4)))


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "X has dtype <U1; expected a numeric"),
        (np.array([[b"a", b"b"], [b"c", b"d"]]), TypeError, "X has dtype |S1"),
        (np.array([[1.0, "x"], [2.0, 3.0]], dtype=object), TypeError, "entry that is not a number"),
        (np.ones((3, 2)) + 1j, ValueError, "Complex data not supported"),
    ],
)
def test_non_numeric_dtypes_raise(data, error, match):
    with pytest.raises(error, match=match.replace("|", r"\|")):
        PCADetector().fit(data)


def test_object_array_of_numbers_is_accepted(X):
    scores = PCADetector(n_components=2).fit(X.astype(object)).score_samples(X)
    np.testing.assert_allclose(scores, PCADetector(n_components=2).fit(X).score_samples(X))


def test_not_fitted_raises(X):
    for method in ("score_samples", "decision_function", "predict", "reconstruct"):
        with pytest.raises(NotFittedError):
            getattr(PCADetector(), method)(X)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        ([0, 1, 2] * 10 + [0] * 10, r"only 0 \(normal\) and 1 \(anomaly\); got values \[0, 1, 2\]"),
        ([1] * 40, "every sample as an anomaly"),
        ([0] * 39, "y has 39 labels but X has 40 samples"),
        (np.zeros((40, 2)), "1-D array of labels"),
        (["a"] * 40, "Unknown label type"),
        # A masked label is neither: np.asarray would read the value under the mask.
        (np.ma.masked_array([0] * 38 + [1, 1], mask=[1] + [0] * 39), "y is a masked array"),
    ],
)
def test_bad_labels_raise(X, y, match):
    with pytest.raises((ValueError, TypeError), match=match):
        PCADetector().fit(X, y)


@pytest.mark.parametrize(
    ("contamination", "error", "match"),
    [
        (0.0, ValueError, r"contamination=0.0 must be in \(0, 0.5\]"),
        (0.7, ValueError, r"contamination=0.7 must be in \(0, 0.5\]"),
        ("often", ValueError, "contamination='often' is not a valid option"),
        (None, TypeError, "contamination must be 'auto' or a float"),
    ],
)
def test_bad_contamination_raises(X, contamination, error, match):
    with pytest.raises(error, match=match):
        PCADetector(contamination=contamination).fit(X)


def test_object_labels_are_refused_with_the_conversion():
    # Not converted silently (a column of text would be too), but the message says how.
    y = np.array([0, 1] * 20, dtype=object)
    with pytest.raises(TypeError, match=r"dtype object.*pass y\.astype\(int\)"):
        PCADetector(n_components=2).fit(np.random.default_rng(0).normal(size=(40, 4)), y)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("column", [False, True])
def test_sparse_labels_are_refused_by_name(X, fmt, column):
    # np.asarray wraps a sparse matrix in a 0-d object array: the message said "got shape ()".
    y = sp.random(1, 40, density=0.1, format=fmt, random_state=0) > 0
    with pytest.raises(TypeError, match=r"y is a sparse .*expected a dense 1-D array.*toarray"):
        PCADetector(n_components=2).fit(X, y.T if column else y)


def test_boolean_labels_mean_anomaly(X):
    y = np.zeros(40, dtype=bool)
    y[:5] = True
    a = PCADetector(n_components=2).fit(X, y)
    b = PCADetector(n_components=2).fit(X[5:])
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X))


def test_auto_contamination_is_tukeys_fence(X, fitted):
    anomaly = -fitted.score_samples(X)
    q1, q3 = np.percentile(anomaly, [25, 75])
    assert fitted.offset_ == pytest.approx(-(q3 + 1.5 * (q3 - q1)))
    assert auto_threshold(anomaly) == pytest.approx(q3 + 1.5 * (q3 - q1))


def test_dataframe_feature_names_are_kept(X):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    det = PCADetector(n_components=2).fit(df)
    np.testing.assert_array_equal(det.feature_names_in_, ["a", "b", "c", "d"])
    with pytest.warns(UserWarning, match="feature names"):
        det.score_samples(X)
    with pytest.raises(ValueError, match="feature names"):
        det.score_samples(df[["b", "a", "c", "d"]])


def test_fit_predict_uses_labels(X):
    y = np.zeros(40, dtype=int)
    y[:4] = 1
    Xa = X.copy()
    Xa[:4] += 50
    labels = PCADetector(n_components=2).fit_predict(Xa, y)
    assert np.all(labels[:4] == -1)


def test_fit_returns_self(X):
    det = PCADetector(n_components=2)
    assert det.fit(X) is det


# ------------------------------------------------------- failed fits
def _pca():
    return PCADetector(n_components=2)


def _calibrated():
    return CalibratedDetector(PCADetector(n_components=2), alpha=0.2, random_state=0)


_rng = np.random.default_rng(1)
#: Refits that fail after X is validated, by which point the old code had set
#: n_features_in_ (and sample_shape_) from the rejected X.
FAILING_REFITS = {
    "y of the wrong length": (_rng.normal(size=(20, 3)), np.zeros(7)),
    "constant rows": (np.ones((20, 3)),),
    "constant images": (np.ones((20, 3, 3)),),
}


@pytest.mark.parametrize("args", FAILING_REFITS.values(), ids=FAILING_REFITS.keys())
@pytest.mark.parametrize("shape", [(4,), (4, 4)], ids=["rows", "images"])
@pytest.mark.parametrize("make", [_pca, _calibrated])
def test_failed_refit_leaves_the_detector_as_it_was(make, shape, args):
    X = np.random.default_rng(0).normal(size=(40, *shape))
    det = make().fit(X)
    before = dict(vars(det))
    scores, labels = det.score_samples(X), det.predict(X)
    with pytest.raises(ValueError):
        det.fit(*args)
    assert vars(det).keys() == before.keys()
    assert all(vars(det)[k] is v for k, v in before.items())
    np.testing.assert_array_equal(det.score_samples(X), scores)
    np.testing.assert_array_equal(det.predict(X), labels)


@pytest.mark.parametrize("args", FAILING_REFITS.values(), ids=FAILING_REFITS.keys())
@pytest.mark.parametrize("make", [_pca, _calibrated])
def test_failed_first_fit_leaves_the_detector_unfitted(make, args):
    det = make()
    before = dict(vars(det))
    with pytest.raises(ValueError):
        det.fit(*args)
    assert vars(det) == before
    with pytest.raises(NotFittedError):
        det.predict(args[0])


@pytest.mark.parametrize("contamination", ["auto", 0.1])
def test_no_threshold_is_set_on_non_finite_training_scores(contamination):
    """The last guard of every fit: the autoencoders refuse data whose float32 errors
    would overflow before training, but a threshold is never NaN or infinite."""
    det = PCADetector(contamination=contamination)
    with pytest.raises(ValueError, match=r"1 of 3 training samples got a non-finite.*Rescale X"):
        det._fitted_offset(np.array([1.0, np.inf, 2.0]))
