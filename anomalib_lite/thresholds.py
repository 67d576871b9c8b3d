"""Threshold rules set on held-out scores, and the meta-estimator that applies them.

A threshold taken from training scores (``contamination``) is optimistic for
flexible models, whose training scores are lower than those of new data.
:func:`conformal_threshold` bounds the false-alarm rate on new normal data by
``alpha``; :func:`quantile_threshold` is the plain quantile; :func:`labelled_threshold`
uses a few labelled anomalies. :class:`CalibratedDetector` applies them to any detector.
"""

import logging
import math
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing, check_random_state, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _num_samples, check_array, check_is_fitted, validate_data

from .base import BaseDetector
from .utils._ranking import cut_counts
from .utils._trimming import share_of
from .utils._validation import (
    check_bool,
    check_float,
    check_labels,
    check_numeric_dtype,
    check_option,
    check_scores,
)

__all__ = [
    "CalibratedDetector",
    "CalibrationWarning",
    "conformal_p_values",
    "conformal_threshold",
    "labelled_threshold",
    "quantile_threshold",
]

logger = logging.getLogger(__name__)

_METHODS = ("conformal", "quantile", "analytic", "f1", "youden", "recall")
_LABELLED = ("f1", "youden", "recall")
# Tolerance on target_recall * n_pos, so that e.g. 0.3 * 10 counts as exactly 3.
_RANK_TOL = 1e-9


class CalibrationWarning(UserWarning):
    """The requested calibration could not be applied as asked; see its message."""


def conformal_threshold(calibration_scores, alpha):
    """Split-conformal threshold on anomaly scores at false-alarm rate ``alpha``.

    The ``k``-th smallest of ``n`` held-out normal scores, ``k = n + 1 - m`` with
    ``m`` the largest integer such that ``m / (n + 1) <= alpha`` in floating point,
    i.e. ``k = ceil((n + 1)(1 - alpha))``. A new normal sample exchangeable with
    them scores strictly above it with probability at most ``alpha``, whatever
    the detector and the distribution. The comparison is the one
    :func:`conformal_p_values` makes, so a score exceeds the threshold exactly
    when its p-value is ``<= alpha``, also for an ``alpha`` such as ``1 - 0.9``
    that lies a rounding error below ``m / (n + 1)``.

    Parameters
    ----------
    calibration_scores : array-like of shape (n,)
        Anomaly scores (higher = more anomalous) of held-out normal samples.
    alpha : float
        Target false-alarm rate in (0, 1).

    Returns
    -------
    threshold : float
        Threshold on the anomaly score.

    Raises
    ------
    ValueError
        When ``n < ceil(1 / alpha) - 1``: then only a threshold that flags
        nothing keeps the bound.

    Examples
    --------
    >>> from anomalib_lite.thresholds import conformal_threshold
    >>> conformal_threshold(list(range(1, 20)), alpha=0.1)  # k = ceil(20 * 0.9) = 18
    18.0
    """
    scores = check_scores(calibration_scores, "calibration_scores")
    alpha = check_float(alpha, "alpha", low=0, high=1)
    n = scores.size
    n_exceed = _max_exceedances(n, alpha)  # n + 1 - k
    if n_exceed < 1:
        if not math.isfinite(1.0 / alpha):
            raise ValueError(
                f"alpha={alpha} is too small: the conformal threshold would need more "
                "held-out normal scores than a float can count (1 / alpha overflows)."
            )
        need = max(math.ceil(1.0 / alpha) - 2, 1)  # at most the answer: rounding is tiny
        while _max_exceedances(need, alpha) < 1:  # the smallest n that allows one
            need += 1
        raise ValueError(
            f"Only {n} held-out normal scores for alpha={alpha}: the conformal "
            f"threshold needs at least ceil(1 / alpha) - 1 = {need} of them, as "
            f"even the largest of {n} scores is exceeded by a new normal sample "
            f"with probability 1 / {n + 1} > alpha. Add normal data, raise "
            "calibration_size, raise alpha, or use method='quantile' (no guarantee)."
        )
    return float(np.sort(scores)[n - n_exceed])


def _max_exceedances(n, alpha):
    """The largest ``m`` with ``m / (n + 1.0) <= alpha``, compared as p-values are."""
    m = math.floor((n + 1) * alpha)
    while (m + 1) / (n + 1.0) <= alpha:
        m += 1
    while m > 0 and m / (n + 1.0) > alpha:
        m -= 1
    return m


def conformal_p_values(calibration_scores, anomaly_scores):
    """Conformal p-values of new samples against held-out normal scores.

    ``p(x) = (1 + #{i : s_i >= s(x)}) / (n + 1)`` where ``s_i`` are the ``n``
    calibration scores. Small means anomalous. For a new normal sample
    exchangeable with the calibration samples, ``P(p <= alpha) <= alpha`` for
    every ``alpha``, and ``p <= alpha`` exactly when the anomaly score exceeds
    :func:`conformal_threshold` at that ``alpha``.

    Parameters
    ----------
    calibration_scores : array-like of shape (n,)
        Anomaly scores of held-out normal samples.
    anomaly_scores : array-like of shape (m,)
        Anomaly scores of the samples to test.

    Returns
    -------
    p_values : ndarray of shape (m,)
        Values in ``[1 / (n + 1), 1]``.

    Raises
    ------
    ValueError
        When either side holds NaN, which has no rank. ``inf`` is accepted
        on both sides (a detector's score of a sample that overflowed): an
        infinite anomaly score is exceeded by no finite calibration score.

    Examples
    --------
    >>> from anomalib_lite.thresholds import conformal_p_values
    >>> conformal_p_values([1.0, 2.0, 3.0], [0.5, 2.5, 9.0]).tolist()
    [1.0, 0.5, 0.25]
    """
    cal = np.sort(check_scores(calibration_scores, "calibration_scores", allow_inf=True))
    check_numeric_dtype(anomaly_scores, "anomaly_scores")
    s = np.asarray(anomaly_scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"anomaly_scores must be a 1-D array of scores, got shape {s.shape}.")
    if s.size:
        check_scores(s, "anomaly_scores", allow_inf=True)
    at_least = cal.size - np.searchsorted(cal, s, side="left")
    return (1.0 + at_least) / (cal.size + 1.0)


def quantile_threshold(calibration_scores, alpha):
    """Empirical ``1 - alpha`` quantile of held-out normal anomaly scores.

    No guarantee: with ``n`` scores its false-alarm rate exceeds ``alpha`` by
    about ``(1 - 2 alpha) / (n + 1)``. Prefer :func:`conformal_threshold` when
    false alarms must stay below ``alpha``.

    Parameters
    ----------
    calibration_scores : array-like of shape (n,)
        Anomaly scores of held-out normal samples.
    alpha : float
        Target false-alarm rate in (0, 1).

    Returns
    -------
    threshold : float
        Threshold on the anomaly score.

    Examples
    --------
    >>> from anomalib_lite.thresholds import quantile_threshold
    >>> quantile_threshold(list(range(1, 20)), alpha=0.1)
    17.2
    """
    scores = check_scores(calibration_scores, "calibration_scores")
    alpha = check_float(alpha, "alpha", low=0, high=1)
    with np.errstate(over="ignore", invalid="ignore"):
        threshold = float(np.quantile(scores, 1.0 - alpha))
    if not math.isfinite(threshold):
        # Interpolating between scores of opposite sign near the float64 limit
        # overflows (their difference exceeds it); halved scores do not.
        threshold = 2.0 * float(np.quantile(scores / 2.0, 1.0 - alpha))
    return threshold


def labelled_threshold(anomaly_scores, y, *, method="f1", target_recall=0.9):
    """Threshold on anomaly scores chosen with labelled anomalies.

    Cuts lie half-way between two distinct scores (tied samples are flagged
    together); among cuts of equal merit the one with fewer alarms wins.

    Parameters
    ----------
    anomaly_scores : array-like of shape (n,)
        Anomaly scores, higher = more anomalous. Only their order counts, so
        ``inf`` (the score of a sample that overflowed) ranks above every
        finite score; NaN is refused.
    y : array-like of shape (n,)
        Labels, ``0`` = normal, ``1`` = anomaly; both must be present.
    method : {'f1', 'youden', 'recall'}, default='f1'
        Maximise the anomaly class's F1, or Youden's J = TPR - FPR (both
        classes weigh equally), or flag the fewest samples that reach
        ``target_recall``.
    target_recall : float, default=0.9
        Share of the anomalies to detect, in (0, 1]; used by ``'recall'``.

    Returns
    -------
    threshold : float
        Samples with an anomaly score strictly above it are flagged, also
        when compared in the scores' own float type (float32, float16): the
        cut is placed in that type, so it never rounds onto a score.

    Examples
    --------
    >>> from anomalib_lite.thresholds import labelled_threshold
    >>> labelled_threshold([0.1, 0.2, 0.3, 0.8, 0.9], [0, 0, 0, 1, 1], method="f1")
    0.55
    """
    method = check_option(method, "method", _LABELLED)
    target_recall = check_float(target_recall, "target_recall", low=0, high=1, closed="right")
    s = check_scores(anomaly_scores, "anomaly_scores", allow_inf=True)
    anomaly = ~check_labels(
        y,
        s.size,
        other="anomaly_scores has {n} scores",
        why="a labelled threshold separates anomalies from normal samples",
    )
    n_pos = int(anomaly.sum())
    if n_pos == 0:
        raise ValueError(
            f"method={method!r} needs labelled anomalies (y == 1) but y has none; "
            "use conformal_threshold or quantile_threshold on normal scores."
        )
    n_flagged, tp, fp, desc = cut_counts(anomaly, s)
    if method == "f1":
        best = int(np.argmax(2.0 * tp / (n_flagged + n_pos)))
    elif method == "youden":
        # J = tp / n_pos - fp / n_neg, compared exactly as n_pos * n_neg * J: in floats
        # cuts of equal J can differ by a rounding error, and one with more alarms would win.
        best = int(np.argmax(tp * (s.size - n_pos) - fp * n_pos))
    else:
        best = int(np.argmax(tp >= math.ceil(target_recall * n_pos - _RANK_TOL)))
    k = int(n_flagged[best])
    if k == 0:
        return float(desc[0])  # nothing above the largest score
    # The cut is placed in the scores' own float type: a float64 cut between two
    # adjacent float32 scores can round onto the higher one when compared in float32.
    dtype = _score_dtype(anomaly_scores)
    desc = desc.astype(dtype)  # exact: the scores came from this type
    if k == s.size:
        return float(np.nextafter(desc[-1], dtype.type(-np.inf)))
    hi, lo = desc[k - 1], desc[k]
    mid = lo / dtype.type(2) + hi / dtype.type(2)  # half-way, where floats allow
    return float(mid) if lo <= mid < hi else float(lo)


def _score_dtype(anomaly_scores):
    """The float type scores are compared in: their own if narrower than float64."""
    dtype = np.asarray(anomaly_scores).dtype
    return dtype if dtype.kind == "f" and dtype.itemsize < 8 else np.dtype(np.float64)


def _check_calibration_scores(cal_scores):
    """Refuse held-out normal rows that the split model could not score: it never
    trained on them, so its own check of the training values did not see them."""
    bad = ~np.isfinite(cal_scores)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of the {cal_scores.size} held-out normal rows of X got a "
            "non-finite anomaly score (inf or NaN) from the detector fitted on the other "
            "rows, so no threshold can be set on them; values far outside the training "
            "rows' range overflow the detector's arithmetic. Rescale X, e.g. with "
            "sklearn.preprocessing.StandardScaler or by dividing by a constant, or drop "
            "those rows."
        )


def _final_step(estimator):
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def _anomaly_scores(model, X):
    return -np.asarray(model.score_samples(X), dtype=np.float64)


def _wrapped_has(name):
    """Whether the wrapped detector (the fitted one once fitted) has method ``name``."""
    return lambda self: hasattr(getattr(self, "detector_", self.detector), name)


def _forwarded(name, what, returns):
    """Method ``name`` of the wrapped detector, on ``X`` validated as ``fit`` took it;
    present where the wrapped detector has it."""

    def method(self, X):
        return getattr(self.detector_, name)(self._check_fitted_input(X))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"""The wrapped detector's {what} of ``X``.

        Parameters
        ----------
        X : array-like
            Samples, in the layout ``fit`` took.

        Returns
        -------
        {returns}
            As the wrapped detector's ``{name}`` returns it.
        """
    return available_if(_wrapped_has(name))(method)


class CalibratedDetector(BaseDetector):
    """Detector whose threshold is set on held-out data, with a stated meaning.

    Wraps a detector, or a :class:`~sklearn.pipeline.Pipeline` ending in one,
    and replaces its ``offset_`` by a threshold calibrated with ``method``;
    the scores stay the wrapped detector's. Its parameters are reachable as
    ``detector__<name>`` in :class:`~sklearn.model_selection.GridSearchCV`.

    Parameters
    ----------
    detector : estimator
        Unfitted outlier detector with ``fit`` and ``score_samples`` (higher =
        more normal), or a Pipeline ending in one; clones are fitted on normal
        rows only, so a wrapped Pipeline's transformers never see anomalies.
        A Pipeline, or a detector from outside this library, gets ``X`` as
        given (a DataFrame's columns by name, text columns for an encoder,
        NaN for an imputer); this library's detectors get it validated.
        ``anomaly_map``, ``reconstruct`` and ``reconstruction_error`` are the
        wrapped detector's, where it has them.
    method : {'conformal', 'quantile', 'analytic', 'f1', 'youden', 'recall'}, \
            default='conformal'
        How the threshold is set; see Notes.
    alpha : float, default=0.05
        Target false-alarm rate in (0, 1) of the normal-only methods and of
        the labelled ones' fallback.
    target_recall : float, default=0.9
        Share of the calibration anomalies ``'recall'`` must detect, in (0, 1].
    calibration_size : float or int, default=0.25
        Normal rows held out for calibration: a share in (0, 1) (rounded up)
        or a count. Unused by ``'analytic'``.
    refit : bool, default=True
        Refit on every normal row after calibration, except with
        ``'conformal'``, whose guarantee needs the split model.
    random_state : int, RandomState instance or None, default=None
        Seeds the split of the normal rows into training and calibration parts.

    Attributes
    ----------
    detector_ : estimator
        The fitted detector that scores new samples.
    method_ : str
        ``method``, or ``'conformal'`` when a labelled method found no anomaly.
    threshold_ : float
        Samples whose anomaly score ``-score_samples`` is above it are flagged.
    offset_ : float
        ``-threshold_``, so that ``decision_function = score_samples - offset_``.
    calibration_scores_ : ndarray of shape (n_calibration,) or None
        Sorted anomaly scores of the held-out normal rows from the split model
        (None for ``'analytic'``).
    refitted_ : bool
        Whether ``detector_`` was refit on every normal row after calibration.
    n_features_in_ : int
        Number of features seen during fit (values per image for images).
    sample_shape_ : tuple of int
        Shape of one sample as ``fit`` took it: ``(n_features_in_,)`` for
        rows, ``(H, W)`` or ``(C, H, W)`` for images; the layout the ONNX
        export takes by default.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    conformal_threshold, labelled_threshold : The rules on their own.
    sklearn.model_selection.TunedThresholdClassifierCV : The same idea for classifiers.

    Notes
    -----
    A clone of ``detector`` is fitted on a random part of the normal rows and
    scores the rest. ``'conformal'`` and ``'quantile'`` then apply
    :func:`conformal_threshold` and :func:`quantile_threshold`; the labelled
    methods add every anomaly (``y == 1``) to the held-out scores and apply
    :func:`labelled_threshold`, or, with none, warn (:class:`CalibrationWarning`)
    and fall back to ``'conformal'``. ``'analytic'`` fits on every normal row
    and takes the detector's closed-form ``analytic_limit(alpha)``.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import CalibratedDetector, PCADetector
    >>> rng = np.random.default_rng(0)
    >>> det = CalibratedDetector(PCADetector(n_components=2), random_state=0)
    >>> det = det.fit(rng.normal(size=(400, 5)))
    >>> det.method_, det.calibration_scores_.shape
    ('conformal', (100,))
    >>> bool(np.mean(det.predict(rng.normal(size=(2000, 5))) == -1) < 0.08)
    True
    """

    def __init__(
        self,
        detector,
        *,
        method="conformal",
        alpha=0.05,
        target_recall=0.9,
        calibration_size=0.25,
        refit=True,
        random_state=None,
    ):
        self.detector = detector
        self.method = method
        self.alpha = alpha
        self.target_recall = target_recall
        self.calibration_size = calibration_size
        self.refit = refit
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            wrapped = get_tags(self.detector).input_tags
        except (AttributeError, TypeError, ValueError):
            # A duck-typed detector without sklearn's tags, or no detector at all,
            # which fit refuses by name: the defaults hold.
            return tags
        tags.input_tags.allow_nan = wrapped.allow_nan
        tags.input_tags.two_d_array = wrapped.two_d_array
        tags.input_tags.three_d_array = wrapped.three_d_array
        return tags

    def _check_params(self):
        det = self.detector
        if isinstance(det, type):
            raise TypeError(
                f"detector must be an instance of an outlier detector, e.g. "
                f"{det.__name__}(), got the class {det.__name__} itself."
            )
        if not (hasattr(det, "fit") and hasattr(det, "score_samples")):
            raise TypeError(
                f"detector must be an outlier detector with fit and score_samples "
                f"(or a Pipeline ending in one), got {type(det).__name__} {det!r}."
            )
        check_option(self.method, "method", _METHODS)
        check_float(self.alpha, "alpha", low=0, high=1)
        check_float(self.target_recall, "target_recall", low=0, high=1, closed="right")
        size = self.calibration_size
        if isinstance(size, bool) or not isinstance(size, Real):
            raise TypeError(
                f"calibration_size must be a float in (0, 1) or an int >= 1, got "
                f"{type(size).__name__} {size!r}."
            )
        if isinstance(size, Integral) and size < 1:
            raise ValueError(f"calibration_size={size!r} must be >= 1 when an int.")
        if not isinstance(size, Integral) and not 0.0 < size < 1.0:
            raise ValueError(
                f"calibration_size={size!r} must be in (0, 1) when a float (the share "
                "of normal rows held out), or an int count."
            )
        check_bool(self.refit, "refit")
        final = _final_step(det)
        if getattr(final, "checkpoint_path", None) is not None:
            raise ValueError(
                f"The wrapped detector has checkpoint_path={final.checkpoint_path!r}: "
                "CalibratedDetector fits clones of it (on the training part, and again "
                "on every normal row), which would all write that file. Set "
                "checkpoint_path=None on the wrapped detector."
            )
        if self.method == "analytic" and not hasattr(final, "analytic_limit"):
            raise TypeError(
                f"method='analytic' needs a detector with an analytic_limit(alpha) "
                f"method, such as PCADetector; {type(final).__name__} has "
                "none. Use method='conformal' instead."
            )

    def _passes_through(self):
        """Whether ``X`` reaches the wrapped estimator as given: a Pipeline or a foreign
        detector validates it itself."""
        return not isinstance(self.detector, BaseDetector)

    def _validate_input(self, X, *, reset):
        if self._passes_through():
            if not hasattr(X, "shape"):  # a list, as a Pipeline takes it
                X = np.asarray(X)
            elif sp.issparse(X) and X.format not in ("csr", "csc"):
                X = X.tocsr()  # the split indexes rows, which COO and others cannot
            validate_data(self, X, skip_check_array=True, reset=reset)
            if reset and _num_samples(X) < 2:
                raise ValueError(
                    f"X has {_num_samples(X)} sample(s); CalibratedDetector needs at least 2."
                )
            return X
        # Image stacks (n, H, W) pass through to detectors that take them, which check
        # their shape; n_features_in_ counts their pixels, as those detectors' does.
        check_numeric_dtype(X)
        allow_nan = get_tags(self).input_tags.allow_nan
        checks = {
            # 8- and 16-bit images pass as they are: the wrapped detector reads them,
            # and a float64 copy would take 8 (or 4) times their memory.
            "dtype": (np.float64, np.float32, np.uint8, np.uint16),
            "allow_nd": True,
            "ensure_all_finite": "allow-nan" if allow_nan else True,
            "ensure_min_samples": 2 if reset else 1,
        }
        # np.ndim would call an array-like's __array_function__, which need not exist.
        ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
        if ndim <= 2:
            return validate_data(self, X, reset=reset, **checks)
        X = check_array(X, **checks)
        if reset:
            self.n_features_in_ = math.prod(X.shape[1:])
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        return X

    def _batch_rows(self, X):
        return X.shape[0]  # the wrapped detector batches its own scoring

    def _check_offset_scoring(self):
        # The threshold was set on the wrapped detector's scores as it was fitted: it
        # holds while that detector's own threshold would.
        check = getattr(_final_step(self.detector_), "_check_offset_scoring", None)
        if check is not None:
            check()

    def _anomaly_scores(self, X, func=None, output="score_samples"):
        # The wrapped detector warns of its own overflow, so only NaN (a foreign
        # detector's) is made +inf here, silently.
        values = self._batched(self._anomaly_score if func is None else func, X)
        return np.where(np.isnan(values), np.inf, values)

    def _split(self, n_normal):
        size = self.calibration_size
        # a share is any non-integral Real, as _check_params accepts it (np.float32 too)
        n_cal = int(size) if isinstance(size, Integral) else math.ceil(share_of(n_normal, size))
        if n_cal >= n_normal:
            raise ValueError(
                f"calibration_size={size!r} holds out {n_cal} of the {n_normal} normal "
                "samples and leaves none to train on; lower calibration_size or add "
                "normal data."
            )
        perm = check_random_state(self.random_state).permutation(n_normal)
        return np.sort(perm[n_cal:]), np.sort(perm[:n_cal])

    def fit(self, X, y=None):
        """Fit the detector and calibrate its threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples.
        y : array-like of shape (n_samples,), default=None
            Optional labels, ``0`` = normal, ``1`` = anomaly; only the labelled
            methods use the anomalies. None treats every row as normal.

        Returns
        -------
        self : object
            The calibrated detector.
        """
        with self._as_before_on_failure():
            self._check_params()
            X = self._validate_input(X, reset=True)
            n = _num_samples(X)
            normal = np.ones(n, dtype=bool) if y is None else check_labels(y, n)
            X_normal = _safe_indexing(X, np.flatnonzero(normal))
            X_anomalous = _safe_indexing(X, np.flatnonzero(~normal))
            method = self.method
            if method in _LABELLED and _num_samples(X_anomalous) == 0:
                warnings.warn(
                    f"method={method!r} needs labelled anomalies (y == 1) but there are none; "
                    f"fell back to method='conformal' at alpha={self.alpha}. Pass y with a few "
                    "known anomalies, or set method='conformal' to silence this warning.",
                    CalibrationWarning,
                    stacklevel=2,
                )
                method = "conformal"
            self.method_ = method

            if method == "analytic":
                self.detector_ = clone(self.detector).fit(X_normal)
                self.threshold_ = float(_final_step(self.detector_).analytic_limit(self.alpha))
                self.calibration_scores_ = None
                self.refitted_ = False
            else:
                train, cal = self._split(_num_samples(X_normal))
                model = clone(self.detector).fit(_safe_indexing(X_normal, train))
                cal_scores = _anomaly_scores(model, _safe_indexing(X_normal, cal))
                _check_calibration_scores(cal_scores)
                self.calibration_scores_ = np.sort(cal_scores)
                if method == "conformal":
                    self.threshold_ = conformal_threshold(cal_scores, self.alpha)
                elif method == "quantile":
                    self.threshold_ = quantile_threshold(cal_scores, self.alpha)
                else:
                    anomalous_scores = _anomaly_scores(model, X_anomalous)
                    self.threshold_ = labelled_threshold(
                        np.r_[cal_scores, anomalous_scores],
                        np.r_[np.zeros(cal.size, int), np.ones(anomalous_scores.size, int)],
                        method=method,
                        target_recall=self.target_recall,
                    )
                self.refitted_ = bool(self.refit) and method != "conformal"
                self.detector_ = clone(self.detector).fit(X_normal) if self.refitted_ else model
            self.offset_ = -self.threshold_
            self.sample_shape_ = tuple(X.shape[1:])
        logger.debug("method=%s threshold=%.6g", self.method_, self.threshold_)
        return self

    def _anomaly_score(self, X):
        return _anomaly_scores(self.detector_, X)

    def p_values(self, X):
        """Conformal p-values of samples: small means anomalous.

        ``p = (1 + #{calibration scores >= score}) / (n + 1)``, valid for the
        model that scored the calibration holdout. With ``method='conformal'``,
        ``predict`` flags exactly the samples with ``p <= alpha``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to test.

        Returns
        -------
        p_values : ndarray of shape (n_samples,)
            Values in ``[1 / (n + 1), 1]``, ``n = len(calibration_scores_)``.
        """
        check_is_fitted(self)
        if self.calibration_scores_ is None or self.refitted_:
            how = "refit on every normal row" if self.refitted_ else "fitted without a holdout"
            raise ValueError(
                "p-values need the model that scored the calibration holdout, but "
                f"this detector was {how} (method={self.method_!r}). Use "
                "method='conformal', or refit=False with 'quantile'."
            )
        return conformal_p_values(self.calibration_scores_, -self.score_samples(X))

    anomaly_map = _forwarded("anomaly_map", "per-pixel anomaly map", "maps : ndarray")
    reconstruct = _forwarded("reconstruct", "reconstruction", "reconstruction : ndarray")
    reconstruction_error = _forwarded(
        "reconstruction_error",
        "reconstruction error of each sample",
        "errors : ndarray of shape (n_samples,)",
    )
