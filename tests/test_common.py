"""Checks every detector of the library must pass: scikit-learn's estimator
checks and the shared contract."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from anomalib_lite import (
    AutoencoderDetector,
    CalibratedDetector,
    ConvAutoencoderDetector,
    PCADetector,
)
from anomalib_lite._torch_detector import TorchDetector

# Labels, where given, must be 0 (normal) or 1 (anomaly); these checks pass
# other labels on purpose and the detectors reject them by design.
_LABEL_CHECKS = {
    "check_estimators_dtypes": "passes labels [1, 2]; labels must be 0 (normal) / 1 (anomaly)",
    "check_classifier_data_not_an_array": "passes labels [1, 2]; labels must be 0 / 1",
    "check_fit2d_1feature": "passes labels [1, 2]; labels must be 0 / 1",
}


# The torch detectors score in float32 batches: a subset's scores agree with
# the full batch's to about 1e-7 relative (matrix-product blocking depends on
# the batch size), not to the check's rtol=1e-7.
_FLOAT32_CHECKS = {
    "check_methods_subset_invariance": "float32 batched inference agrees to ~1e-7 "
    "relative across batch compositions, not exactly",
}


def _expected_failed_checks(estimator):
    if isinstance(estimator, TorchDetector):
        return {**_LABEL_CHECKS, **_FLOAT32_CHECKS}
    return dict(_LABEL_CHECKS)


#: Every detector of the library, with parameters that keep the checks fast.
DETECTORS = [
    PCADetector(),
    PCADetector(n_components=1, statistic="t2"),
    PCADetector(n_components=2, statistic="combined", contamination=0.1),
    PCADetector(n_components=1, trim_fraction=0.2),
    PCADetector(n_components=2, trim_fraction="auto"),
    AutoencoderDetector(hidden_sizes=(4,), latent_dim=2, max_iter=3, random_state=0),
    # Rows read as one-pixel-high images, so that the checks' 2-D data of any
    # width are valid images.
    ConvAutoencoderDetector(
        image_shape=(1, -1), channels=(4,), latent_dim=2, max_iter=3, random_state=0
    ),
    # Half the normal rows calibrate, so that the checks' smallest data sets
    # (a few rows) still hold the 3 scores a conformal alpha of 0.3 needs.
    CalibratedDetector(
        PCADetector(n_components=1), alpha=0.3, calibration_size=0.5, random_state=0
    ),
    CalibratedDetector(PCADetector(n_components=1), method="quantile", random_state=0),
    CalibratedDetector(PCADetector(n_components=1), method="analytic", alpha=0.1),
]


@parametrize_with_checks(DETECTORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def _data(seed=0, n=60, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d))


def _comparable(params):
    """Parameters with nested estimators (meta-estimators) compared by their own."""
    return {
        k: (type(v), _comparable(v.get_params())) if hasattr(v, "get_params") else v
        for k, v in params.items()
    }


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: type(d).__name__)
def test_clone_and_pickle_give_identical_scores(detector):
    X = _data()
    fitted = clone(detector).fit(X)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(fitted.score_samples(X), restored.score_samples(X))
    assert restored.offset_ == fitted.offset_
    refit = clone(fitted).fit(X)
    np.testing.assert_array_equal(fitted.score_samples(X), refit.score_samples(X))
    assert _comparable(clone(fitted).get_params()) == _comparable(fitted.get_params())


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: type(d).__name__)
def test_fit_learns_from_normal_rows_only(detector):
    X = _data()
    y = np.zeros(len(X), dtype=int)
    y[:10] = 1
    with_labels = clone(detector).fit(np.vstack([X, 100 + X[:10]]), np.r_[y * 0, np.ones(10, int)])
    normals_only = clone(detector).fit(X)
    np.testing.assert_allclose(with_labels.score_samples(X), normals_only.score_samples(X))
    assert with_labels.offset_ == pytest.approx(normals_only.offset_)


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: type(d).__name__)
def test_caller_data_is_not_modified(detector):
    X = _data()
    X_copy = X.copy()
    det = clone(detector).fit(X)
    det.predict(X)
    det.score_samples(X)
    np.testing.assert_array_equal(X, X_copy)


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: type(d).__name__)
def test_read_only_and_non_contiguous_input_work(detector):
    X = np.asfortranarray(_data(n=80, d=10))[:, ::2]
    X.setflags(write=False)
    det = clone(detector).fit(X)
    np.testing.assert_allclose(det.score_samples(X), det.score_samples(np.ascontiguousarray(X)))
