"""The contract every anomalib_lite detector shares: scikit-learn's outlier API.

``fit`` learns from the normal rows; ``score_samples`` is higher for more
normal samples; ``decision_function = score_samples - offset_``; ``predict``
is ``+1`` where the decision is ``>= 0``, else ``-1``. Subclasses implement
``_fit(X)``, ``_anomaly_score(X)`` (float64, higher = more anomalous) and
``_batch_rows(X)``; the base class derives the rest.
"""

import contextlib
import warnings

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import ClassifierTags, gen_batches
from sklearn.utils.validation import check_is_fitted, validate_data

from .utils._trimming import INNER_FENCE_IQRS, tukey_fence
from .utils._validation import (
    check_contamination,
    check_labels,
    check_magnitude,
    check_numeric_dtype,
)

__all__ = ["BaseDetector", "auto_threshold"]

#: Largest absolute training value: beyond it PCA's cubed variances overflow float64.
MAX_TRAINING_MAGNITUDE = 1e30


def auto_threshold(anomaly_scores):
    """Threshold used by ``contamination='auto'``: Tukey's upper fence.

    Parameters
    ----------
    anomaly_scores : array-like of shape (n_samples,)
        Anomaly scores of the training samples (higher = more anomalous).

    Returns
    -------
    threshold : float
        ``Q3 + 1.5 * (Q3 - Q1)`` of the finite scores, where ``Q1`` and ``Q3``
        are their 25th and 75th percentiles (``+inf`` with fewer than two).

    Examples
    --------
    >>> from anomalib_lite.base import auto_threshold
    >>> float(auto_threshold([1.0, 2.0, 3.0, 4.0, 5.0]))
    7.0
    """
    return tukey_fence(anomaly_scores, INNER_FENCE_IQRS)[0]


class BaseDetector(OutlierMixin, BaseEstimator):
    """Base class of all anomalib_lite detectors; subclasses implement the hooks.

    Notes
    -----
    Labels ``y``, where given, are ``0`` = normal, ``1`` = anomaly; detectors
    learn from the normal rows only, so that cross-validation on labelled
    data trains on normals and evaluates on every held-out row.

    ``contamination`` sets ``offset_`` from the training anomaly scores: a
    float ``c`` in (0, 0.5] flags the fraction ``c`` of training samples;
    ``'auto'`` flags scores above Tukey's upper fence ``Q3 + 1.5 * IQR``,
    which needs no guess of the anomaly rate. Training scores are optimistic
    for flexible models, so the torch detectors put that fence on the rows
    they hold out of training (``validation_fraction``) when they hold any;
    calibrate on held-out data for a stated false-alarm rate.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        # Labels, where given, are binary: 0 = normal, 1 = anomaly.
        tags.classifier_tags = ClassifierTags(multi_class=False)
        return tags

    # ------------------------------------------------------------------ hooks
    def _check_params(self):
        """Validate hyper-parameters; subclasses extend and call ``super()``."""
        check_contamination(self.contamination)

    def _validate_input(self, X, *, reset):
        """Validate ``X`` as scikit-learn does; subclasses may override."""
        check_numeric_dtype(X)
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=(np.float64, np.float32),
            ensure_min_samples=2 if reset else 1,
        )

    def _fit(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _anomaly_score(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    # ----------------------------------------------------------------- state
    #: Flags that a fit sets for :meth:`_keeps_failed_fit`; dropped when the fit ends.
    _fit_flags = ()

    @contextlib.contextmanager
    def _as_before_on_failure(self):
        """A ``fit`` that fails leaves the detector as it was: what a user had is not
        lost, and no attribute of the failed fit sits beside the old model."""
        for name in self._fit_flags:  # stale ones, e.g. from a checkpoint
            vars(self).pop(name, None)
        saved = self._state_before_fit()
        try:
            yield
        except BaseException as exc:
            if not self._keeps_failed_fit(saved, exc):
                failed = dict(vars(self))
                vars(self).clear()
                vars(self).update(saved)
                self._after_restore(failed)
            raise
        finally:
            for name in self._fit_flags:
                vars(self).pop(name, None)

    def _state_before_fit(self):
        """What a failed fit restores: a shallow copy of the attributes; subclasses copy
        deeper what a fit changes in place."""
        return dict(vars(self))

    def _check_continuation(self, X):
        """Check ``X`` against a fitted state that ``fit`` continues, before
        validating it anew; detectors that always fit afresh do nothing."""

    def _after_restore(self, failed):
        """After a failed fit restored the detector: undo what the failed one, whose
        attributes are ``failed``, left outside it."""

    def _keeps_failed_fit(self, saved, exc):
        """Whether a fit that raised ``exc`` keeps what it changed; ``saved`` is the
        state before it."""
        return False

    def _get_state(self):
        """The fitted state, every attribute that is not a parameter, for pickle and io.

        A tree of JSON values, numpy arrays and nested estimators; subclasses
        convert anything else (a torch network) and call ``super()``.
        """
        params = self._get_param_names()
        return {k: v for k, v in vars(self).items() if k not in params}

    def _set_state(self, state):
        """Take back a state returned by :meth:`_get_state`."""
        vars(self).update(state)

    def __getstate__(self):
        names = {*self._get_param_names(), "_sklearn_version"}
        state = {k: v for k, v in super().__getstate__().items() if k in names}
        return {**state, **self._get_state()}

    def __setstate__(self, state):
        names = {*self._get_param_names(), "_sklearn_version"}
        super().__setstate__({k: v for k, v in state.items() if k in names})
        self._set_state({k: v for k, v in state.items() if k not in names})

    # ------------------------------------------------------------- machinery
    @staticmethod
    def _normal_rows(X, y):
        """Rows of ``X`` labelled normal (all when ``y`` is None), within the magnitude limit.

        Labelled anomalies are not learned from, so they may hold any finite value.
        """
        if y is not None:
            normal = check_labels(y, X.shape[0])
            X = X if normal.all() else X[normal]
        if X.shape[0] < 2:
            raise ValueError(
                f"X holds {X.shape[0]} normal sample to learn from; at least 2 are "
                "needed, as the threshold (offset_) is set from the spread of their "
                "scores. Pass more normal samples (partial_fit: batches of 2 or more)."
            )
        check_magnitude(X, MAX_TRAINING_MAGNITUDE)
        return X

    def _batched(self, func, X):
        """Apply ``func`` to consecutive row batches of ``X`` and stack the results.

        The output is allocated once and filled, rather than a list of results
        concatenated, which fragments the heap.
        """
        n = X.shape[0]
        step = self._batch_rows(X)
        if n <= step:
            return func(X)
        batches = gen_batches(n, step)
        first = next(batches)
        head = func(X[first])
        out = np.empty((n, *head.shape[1:]), dtype=head.dtype)
        out[first] = head
        del head
        for batch in batches:
            out[batch] = func(X[batch])
        return out

    def _anomaly_scores(self, X, func=None, output="score_samples"):
        """Anomaly scores (``func``, default ``_anomaly_score``) of validated ``X``
        in batches; never NaN.

        A finite sample whose score overflows float64 (values far outside the
        training range) is maximally anomalous: its score is ``+inf``, with a
        warning. ``output`` names the public method in the warning.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            values = self._batched(self._anomaly_score if func is None else func, X)
        return self._overflow_to_inf(values, X, output)

    @staticmethod
    def _overflow_to_inf(values, X, output, stacklevel=4):
        """``values`` (one row per sample of ``X``) with NaN made ``+inf``, and a
        warning counting the samples with a non-finite value.

        NaN only arises from an overflow (``inf - inf``, ``0 * inf``) on finite
        input, so it means "too large to compute": every output follows the
        rule that scores follow, and none returns NaN.
        """
        bad = ~np.isfinite(values)
        if not bad.any():
            return values
        n_bad = int(bad.reshape(len(values), -1).any(axis=1).sum())
        if output == "score_samples":
            what = "they get the anomaly score +inf (score_samples -inf, predict -1)"
        else:
            what = f"their {output} values are inf (or -inf) where they overflowed"
        warnings.warn(
            f"{n_bad} of {len(values)} samples overflowed float64 while computing "
            f"{output} (largest |value| {float(np.max(np.abs(X))):.3g}); {what}. "
            "Rescale the input to the training range to get finite values.",
            UserWarning,
            stacklevel=stacklevel,
        )
        return np.where(np.isnan(values), np.inf, values)

    def _set_offset(self, anomaly_scores):
        """Set ``offset_`` from the anomaly scores of the normal training rows, and
        record the scoring settings it holds for (``offset_scoring_``)."""
        self.offset_ = self._fitted_offset(anomaly_scores)
        scoring = self._scoring()
        if scoring is not None:
            self.offset_scoring_ = scoring

    def _fitted_offset(self, anomaly_scores):
        """The threshold ``contamination`` places on the training anomaly scores."""
        anomaly_scores = np.asarray(anomaly_scores, dtype=np.float64)
        overflow = ~np.isfinite(anomaly_scores)
        if overflow.any():
            raise ValueError(
                f"{int(overflow.sum())} of {len(anomaly_scores)} training samples got a "
                "non-finite anomaly score: their values are too large for the "
                "detector's arithmetic (float overflow), so no threshold can be set. "
                "Rescale X, e.g. with sklearn.preprocessing.StandardScaler or by "
                "dividing by a constant."
            )
        if self.contamination == "auto":
            return -auto_threshold(self._fence_scores(anomaly_scores))
        return float(np.percentile(-anomaly_scores, 100.0 * self.contamination))

    def _scoring(self):
        """The settings read when scoring that the scores depend on, as a dict, or None
        for a detector without any: ``offset_`` holds only for those of its fit."""
        return None

    def _check_offset_scoring(self):
        """Refuse a threshold set on scores computed otherwise than they are now."""
        fitted, now = getattr(self, "offset_scoring_", None), self._scoring()
        if fitted is None or fitted == now:
            return
        settings = ", ".join(f"{k}={now[k]!r}" for k in now)
        before = ", ".join(f"{k}={fitted[k]!r}" for k in fitted)
        raise ValueError(
            f"offset_ was set on scores computed with {before}, and this "
            f"{type(self).__name__} now scores with {settings}: the threshold does not "
            "apply to those scores. Set them back for decision_function and predict, "
            "or fit again; score_samples and anomaly_map follow the new values."
        )

    def _fence_scores(self, anomaly_scores):
        """The anomaly scores ``contamination='auto'`` puts its fence on: all of them;
        a detector that holds rows out of training uses theirs."""
        return anomaly_scores

    def _check_fitted_input(self, X):
        check_is_fitted(self)
        return self._validate_input(X, reset=False)

    # ------------------------------------------------------------ public API
    def fit(self, X, y=None):
        """Learn the shape of normal data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples.
        y : array-like of shape (n_samples,), default=None
            Optional labels, ``0`` = normal, ``1`` = anomaly; only normal rows
            are learned from.

        Returns
        -------
        self : object
            The fitted detector.
        """
        with self._as_before_on_failure():
            self._check_params()
            self._check_continuation(X)
            X = self._validate_input(X, reset=True)
            X = self._normal_rows(X, y)
            self._fit(X)
            self._set_offset(self._batched(self._anomaly_score, X))
        return self

    def score_samples(self, X):
        """Normality score of each sample, the negated anomaly score: higher is more normal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float64
        """
        X = self._check_fitted_input(X)
        return -self._anomaly_scores(X)

    def decision_function(self, X):
        """Shifted score: ``score_samples(X) - offset_``; negative means anomaly.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to score.

        Returns
        -------
        decision : ndarray of shape (n_samples,), dtype float64
        """
        scores = self.score_samples(X)
        self._check_offset_scoring()
        return scores - self.offset_

    def predict(self, X):
        """Predict ``+1`` (decision ``>= 0``) for normal samples and ``-1`` for anomalies.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to classify.

        Returns
        -------
        labels : ndarray of shape (n_samples,), dtype int
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def fit_predict(self, X, y=None):
        """Fit on the normal rows of ``X`` and predict ``+1``/``-1`` for every row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.
        y : array-like of shape (n_samples,), default=None
            Optional labels, ``0`` = normal, ``1`` = anomaly.

        Returns
        -------
        labels : ndarray of shape (n_samples,), dtype int
        """
        return self.fit(X, y).predict(X)
