"""Faults a production line meets: extreme values, concurrent scoring, repeats.

The value ranges tested here are those documented in docs/bad_input.md.
"""

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from anomalib_lite import AutoencoderDetector, ConvAutoencoderDetector, PCADetector
from anomalib_lite.base import MAX_TRAINING_MAGNITUDE

D = 6


def _train(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)) @ rng.normal(size=(D, D))


@pytest.fixture(scope="module")
def train_rows():
    """The rows tests/conftest.py's ``fitted_detectors`` are fitted on."""
    return _train()


@pytest.fixture(scope="module")
def detectors(fitted_detectors, train_rows):
    """The shared fitted detectors, and PCADetector with its other statistics."""
    others = {
        "pca-t2": PCADetector(n_components=2, statistic="t2"),
        "pca-combined": PCADetector(n_components=2, statistic="combined"),
    }
    return {**fitted_detectors, **{name: det.fit(train_rows) for name, det in others.items()}}


#: Inputs within these bounds get finite scores from a detector trained on
#: data of unit scale (docs/bad_input.md, "Value ranges").
FINITE_WITHIN = {
    "pca": 1e150,
    "pca-t2": 1e150,
    "pca-combined": 1e150,
    "autoencoder": 1e15,
    "conv": 1e15,
    "calibrated": 1e150,
}

any_finite = st.floats(allow_nan=False, allow_infinity=False)
wide = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _rows(elements):
    return arrays(np.float64, st.tuples(st.integers(1, 6), st.just(D)), elements=elements)


def _check_well_formed(det, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # overflow warnings are expected
        scores = det.score_samples(X)
        decision = det.decision_function(X)
        labels = det.predict(X)
    assert scores.shape == (len(X),) and scores.dtype == np.float64
    assert not np.any(np.isnan(scores))
    assert not np.any(scores == np.inf)  # overflow only ever means "maximally anomalous"
    np.testing.assert_array_equal(decision, scores - det.offset_)
    np.testing.assert_array_equal(labels, np.where(decision >= 0, 1, -1))
    return scores


@pytest.mark.parametrize("name", list(FINITE_WITHIN))
@wide
@given(X=_rows(any_finite))
def test_scores_are_never_nan_for_any_finite_input(detectors, name, X):
    scores = _check_well_formed(detectors[name], X)
    assert np.all(np.isfinite(scores) | (scores == -np.inf))


@pytest.mark.parametrize("name", list(FINITE_WITHIN))
@wide
@given(data=st.data())
def test_scores_are_finite_within_the_documented_range(detectors, name, data):
    bound = FINITE_WITHIN[name]
    X = data.draw(_rows(st.floats(-bound, bound)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        scores = detectors[name].score_samples(X)
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", list(FINITE_WITHIN))
def test_overflow_is_maximally_anomalous_with_a_warning(detectors, name):
    det = detectors[name]
    X = np.vstack([np.full(D, 1.5e308), _train(n=3, seed=1)])
    with pytest.warns(UserWarning, match="1 of 4 samples overflowed float64"):
        scores = det.score_samples(X)
    assert scores[0] == -np.inf and np.all(np.isfinite(scores[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert det.predict(X)[0] == -1


#: Per-sample outputs besides the scores: each follows the overflow rule.
OUTPUTS = ("reconstruct", "reconstruction_error", "anomaly_map")


def _outputs_of(det):
    return [m for m in OUTPUTS if callable(getattr(det, m, None))]


@pytest.mark.parametrize("name", list(FINITE_WITHIN))
@wide
@given(X=_rows(any_finite))
def test_other_outputs_are_never_nan_for_any_finite_input(detectors, name, X):
    det = detectors[name]
    for method in _outputs_of(det):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # overflow warnings are expected
            values = getattr(det, method)(X)
        assert len(values) == len(X) and not np.any(np.isnan(values)), method


@pytest.mark.parametrize("name", list(FINITE_WITHIN))
def test_every_output_overflows_to_inf_with_a_warning(detectors, name):
    det = detectors[name]
    X = np.vstack([np.full(D, 1.5e308), _train(n=3, seed=1)])
    X[0, 1] = 3e38  # finite in float32 too
    for method in _outputs_of(det):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = getattr(det, method)(X)
        overflowed = [w for w in caught if "overflowed" in str(w.message)]
        assert not np.isnan(values).any() and np.all(np.isfinite(values[1:]))
        # a squared error of 1.5e308 overflows; a projection need not
        assert np.isinf(values[0]).any() or method == "reconstruct"
        assert bool(overflowed) == bool(np.isinf(values[0]).any()), method
        if overflowed:
            assert f"1 of 4 samples overflowed float64 while computing {method}" in str(
                overflowed[0].message
            )


def test_conv_anomaly_map_of_one_huge_pixel_is_inf_not_nan():
    images = np.random.default_rng(0).uniform(0.4, 0.6, size=(24, 8, 8))
    det = ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(images)
    probe = images[:2].copy()
    probe[0, 3, 3] = 3e38
    with pytest.warns(UserWarning, match="1 of 2 samples overflowed.*anomaly_map"):
        maps = det.anomaly_map(probe)
    assert maps[0, 3, 3] == np.inf and not np.isnan(maps).any()
    assert np.all(np.isfinite(maps[1]))


@settings(max_examples=12, deadline=None)
@given(log_scale=st.floats(-45, 29))
@example(log_scale=-45.0)  # values below float32's smallest subnormal
@example(log_scale=29.0)  # squared errors far beyond float32's largest number
def test_autoencoders_refuse_or_see_a_100x_anomaly_at_any_scale(log_scale):
    rng = np.random.default_rng(0)
    scale = 10.0**log_scale
    images = rng.uniform(0.4, 0.6, size=(24, 8, 8)) * scale
    anomaly = images[:1].copy()
    anomaly[0, 2:6, 2:6] *= 100
    conv = ConvAutoencoderDetector(channels=(4,), max_iter=2, random_state=0)
    dense = AutoencoderDetector(hidden_sizes=(8,), max_iter=2, random_state=0)
    raw = AutoencoderDetector(hidden_sizes=(8,), max_iter=1, standardize=False)
    rows = images.reshape(24, -1)
    # standardized in float64 first: the dense detector works at any scale
    assert dense.fit(rows).predict(anomaly.reshape(1, -1))[0] == -1
    for det, data, probe in [(conv, images, anomaly), (raw, rows, None)]:
        try:
            det.fit(data)
        except ValueError as exc:
            assert "Rescale X" in str(exc)
            # only data the float32 errors cannot hold is refused
            assert scale < 1e-14 if "underflow" in str(exc) else scale > 1e16
            continue
        # what the float32 errors cannot hold is never accepted
        assert 1e-17 < scale < 1e18
        if probe is not None:
            assert det.predict(probe)[0] == -1, scale


def test_autoencoders_refuse_variation_lost_to_float32_precision():
    images = 1.0 + np.random.default_rng(0).uniform(size=(24, 8, 8)) * 1e-9
    with pytest.raises(ValueError, match=r"beyond float32 precision.*X - X\.mean\(\)"):
        ConvAutoencoderDetector(channels=(4,), max_iter=1).fit(images)
    # standardized in float64 first: the dense detector learns such data
    AutoencoderDetector(hidden_sizes=(4,), max_iter=1).fit(images.reshape(24, -1))


def _unit(n=40, seed=0):
    X = _train(n=n, seed=seed)
    return X / np.abs(X).max()


#: Scales of the training data at which PCA's analytic control limits are computed.
PCA_LIMIT_SCALES = (1e-50, MAX_TRAINING_MAGNITUDE)


@settings(max_examples=20, deadline=None)
@given(
    log_scale=st.floats(np.log10(PCA_LIMIT_SCALES[0]), np.log10(PCA_LIMIT_SCALES[1])),
    statistic=st.sampled_from(["spe", "t2", "combined"]),
    seed=st.integers(0, 2**16),
)
def test_pca_fits_and_limits_anywhere_in_the_documented_range(log_scale, statistic, seed):
    scale = 10.0**log_scale
    X = _unit(seed=seed) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or division warning
        det = PCADetector(n_components=2, statistic=statistic, control_limit=0.05).fit(X)
        scores = det.score_samples(X)
    assert np.all(np.isfinite(scores))
    # the analytic limit is equivariant: SPE scales with the variance, the others not at all
    ref = PCADetector(n_components=2, statistic=statistic, control_limit=0.05).fit(_unit(seed=seed))
    unit = scale**2 if statistic == "spe" else 1.0
    assert det.offset_ / unit == pytest.approx(ref.offset_, rel=1e-8)


@settings(max_examples=20, deadline=None)
@given(
    log_scale=st.floats(-300, np.log10(MAX_TRAINING_MAGNITUDE)),
    statistic=st.sampled_from(["spe", "t2", "combined"]),
)
def test_pca_limit_is_finite_or_a_clear_error_at_any_scale(log_scale, statistic):
    X = _unit() * 10.0**log_scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "explains all the variance"
        try:
            det = PCADetector(n_components=2, statistic=statistic, control_limit=0.05).fit(X)
        except ValueError as exc:
            assert "Rescale X" in str(exc)
            return
    assert np.isfinite(det.offset_)


@pytest.mark.parametrize("scale", [1e31, 1e100, 1e300])
def test_training_values_beyond_the_range_raise(scale):
    with pytest.raises(ValueError, match=r"training accepts values within \+-1e\+30"):
        PCADetector(n_components=2).fit(_train() * scale)
    with pytest.raises(ValueError, match=r"training accepts values within \+-1e\+30"):
        PCADetector(n_components=2).partial_fit(_train() * scale)


# --------------------------------------------------------------- threads
@pytest.mark.parametrize("name", list(FINITE_WITHIN))
def test_concurrent_scoring_matches_sequential_scoring(detectors, name):
    det = detectors[name]
    rng = np.random.default_rng(7)
    batches = [rng.normal(size=(int(rng.integers(1, 80)), D)) for _ in range(24)]
    methods = ["score_samples", "decision_function", "predict"]
    if hasattr(det, "reconstruction_error"):
        methods.append("reconstruction_error")
    threads_before = torch.get_num_threads()
    for method in methods:
        func = getattr(det, method)
        sequential = [func(b) for b in batches]
        with ThreadPoolExecutor(max_workers=6) as pool:
            concurrent = list(pool.map(func, batches))
        for seq, con in zip(sequential, concurrent, strict=True):
            np.testing.assert_array_equal(con, seq)
    # the torch detectors set their thread count per call and restore it
    assert torch.get_num_threads() == threads_before


@pytest.mark.parametrize("name", list(FINITE_WITHIN))
def test_repeated_scoring_is_bit_identical(detectors, name):
    det = detectors[name]
    X = _train(n=50, seed=3)
    first = det.score_samples(X)
    for _ in range(3):
        np.testing.assert_array_equal(det.score_samples(X), first)


@pytest.mark.parametrize("first_out", [0, 1])
def test_overlapping_fits_in_threads_give_back_the_callers_thread_count(first_out):
    """torch's thread count is process-wide, and a thread takes it up at its first
    torch call: a fit's thread started while another fit runs finds that fit's
    count. Whichever ends first, the last fit out gives the process back the count
    the first one in found, and both score as fits run one after the other."""
    X = _train(n=40)
    before = torch.get_num_threads()
    caller = 2 if before != 2 else 3
    torch.set_num_threads(caller)
    entered = [threading.Event(), threading.Event()]
    go = [threading.Event(), threading.Event()]
    scores = {}

    def fit(i):
        def hold(det, record):
            if not entered[i].is_set():
                entered[i].set()
                assert go[i].wait(60)

        det = AutoencoderDetector(max_iter=2, random_state=i, n_threads=1 + i, callbacks=[hold])
        scores[i] = det.fit(X).score_samples(X)

    def count_in_a_new_thread():
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return seen[0]

    try:
        threads = [threading.Thread(target=fit, args=(i,)) for i in (0, 1)]
        threads[0].start()
        assert entered[0].wait(60)
        threads[1].start()  # its first torch call finds fit 0's count
        assert entered[1].wait(60)  # both fits are in their first epoch
        for i in (first_out, 1 - first_out):
            go[i].set()
            threads[i].join()
        assert torch.get_num_threads() == caller
        assert count_in_a_new_thread() == caller
        for i in (0, 1):
            expected = AutoencoderDetector(max_iter=2, random_state=i, n_threads=1 + i)
            np.testing.assert_array_equal(scores[i], expected.fit(X).score_samples(X))
    finally:
        torch.set_num_threads(before)
