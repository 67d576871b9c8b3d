"""The detectors the tests share: one list, fast parameters, small fitted fixtures.

* :func:`detector_kinds` gives one detector of each kind, by name.
* :data:`DETECTORS` adds the variants that reach the other code paths of
  ``PCADetector`` and ``CalibratedDetector``; the contract tests run on it.
* A test that takes a ``detector`` argument runs once per entry of
  :data:`DETECTORS` (unfitted), one that takes ``torch_detector`` once per
  torch detector among them; one that takes ``kind`` runs once per name of
  :func:`detector_kinds`; one that takes ``estimator`` and ``check`` runs
  scikit-learn's estimator checks on :data:`DETECTORS`.
* The ``new_detectors`` fixture gives :func:`detector_kinds`; the
  ``fitted_detectors`` fixture fits them on ``train_rows``, which a test
  module may override with its own data.
"""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from anomalib_lite import (
    AutoencoderDetector,
    CalibratedDetector,
    ConvAutoencoderDetector,
    DraemDetector,
    PCADetector,
)
from anomalib_lite._torch_detector import TorchDetector


def detector_kinds():
    """One new, unfitted detector of each kind, by name, with fast parameters."""
    return {
        "pca": PCADetector(n_components=2),
        "autoencoder": AutoencoderDetector(
            hidden_sizes=(4,), latent_dim=2, max_iter=3, random_state=0
        ),
        # Rows read as one-pixel-high images, so that 2-D data of any width
        # are valid images.
        "conv": ConvAutoencoderDetector(
            image_shape=(1, -1), channels=(4,), latent_dim=2, max_iter=3, random_state=0
        ),
        "calibrated": CalibratedDetector(
            PCADetector(n_components=1), method="quantile", random_state=0
        ),
        # A few epochs leave its bounded probabilities with a light tail, past
        # which contamination='auto' (Tukey's fence) finds nothing on the
        # checks' blobs; a fixed contamination flags the fraction they expect.
        "draem": DraemDetector(
            image_shape=(1, -1),
            channels=(4,),
            latent_dim=2,
            segmenter_width=2,
            max_iter=3,
            contamination=0.1,
            random_state=0,
        ),
    }


#: Every detector of the library, with the variants the contract tests cover.
DETECTORS = [
    *detector_kinds().values(),
    # Every contract holds with a corrupting fit, with one fixed image score
    # rather than the one chosen after training, and with images projected
    # before they are scored.
    ConvAutoencoderDetector(
        image_shape=(1, -1),
        channels=(4,),
        latent_dim=2,
        max_iter=3,
        corruption="defects",
        augmentation="shift",
        image_score="topk",
        projection_steps=3,
        random_state=0,
    ),
    PCADetector(),
    PCADetector(n_components=1, statistic="t2"),
    PCADetector(n_components=2, statistic="combined", contamination=0.1),
    PCADetector(n_components=1, trim_fraction=0.2),
    PCADetector(n_components=2, trim_fraction="auto"),
    # Half the normal rows calibrate, so that the checks' smallest data sets
    # (a few rows) still hold the 3 scores a conformal alpha of 0.3 needs.
    CalibratedDetector(
        PCADetector(n_components=1), alpha=0.3, calibration_size=0.5, random_state=0
    ),
    CalibratedDetector(PCADetector(n_components=1), method="analytic", alpha=0.1),
]

# Labels, where given, must be 0 (normal) or 1 (anomaly); these checks pass
# other labels on purpose and the detectors reject them by design.
_LABEL_CHECKS = {
    "check_estimators_dtypes": "passes labels [1, 2]; labels must be 0 (normal) / 1 (anomaly)",
    "check_classifier_data_not_an_array": "passes labels [1, 2]; labels must be 0 / 1",
    "check_fit2d_1feature": "passes labels [1, 2]; labels must be 0 / 1",
}


def expected_failed_checks(estimator):
    """scikit-learn checks a detector fails by design, with the reason.

    The marks are strict: a check listed here that passes fails the run.
    """
    return dict(_LABEL_CHECKS)


def _name(detector):
    return type(detector).__name__


def pytest_generate_tests(metafunc):
    names = metafunc.fixturenames
    if "detector" in names:
        metafunc.parametrize("detector", DETECTORS, ids=_name)
    if "torch_detector" in names:
        torch_detectors = [d for d in DETECTORS if isinstance(d, TorchDetector)]
        metafunc.parametrize("torch_detector", torch_detectors, ids=_name)
    if "kind" in names:
        metafunc.parametrize("kind", list(detector_kinds()))
    if "estimator" in names and "check" in names:
        mark = parametrize_with_checks(
            DETECTORS, expected_failed_checks=expected_failed_checks, xfail_strict=True
        )
        metafunc.parametrize(*mark.args, **mark.kwargs)


@pytest.fixture
def new_detectors():
    """:func:`detector_kinds`: one new, unfitted detector of each kind, by name."""
    return detector_kinds()


@pytest.fixture(scope="module")
def train_rows():
    """Training rows of ``fitted_detectors``: 80 standard normal rows of 5 features."""
    return np.random.default_rng(0).normal(size=(80, 5))


@pytest.fixture(scope="module")
def fitted_detectors(train_rows):
    """One detector of each kind, by name, fitted on ``train_rows``."""
    return {name: det.fit(train_rows) for name, det in detector_kinds().items()}
