"""PCADetector: the linear baseline, distance to the principal subspace."""

import copy
import functools
import warnings
from numbers import Integral, Real

import numpy as np
from scipy import stats
from sklearn.base import clone
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.utils import gen_batches
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .base import BaseDetector
from .utils._batching import rows_per_batch
from .utils._maps import auto_sigma, blur, combine_map_parts, map_scales
from .utils._trimming import n_kept, within_fence
from .utils._validation import (
    channels_first,
    check_bool,
    check_float,
    check_images,
    check_int,
    check_numeric_dtype,
    check_option,
    check_seed,
)

__all__ = ["PCADetector"]

_SCORES = ("spe", "t2", "combined", "max", "auto")
#: ``statistic='auto'`` chooses between these (:mod:`~anomalib_lite.utils._choice`).
AUTO_STATISTICS = ("max", "spe")
_SOLVERS = ("auto", "full", "covariance_eigh", "arpack", "randomized")


def _fitted_on_images(detector):
    """Whether :meth:`PCADetector.anomaly_map` applies: unfitted, or fitted on images."""
    return len(getattr(detector, "sample_shape_", (0, 0))) > 1


#: A component whose training variance is at most this share of the largest holds
#: rounding noise, not variation: float64 leaves a direction without variance about
#: eps² (5e-32) of the largest, while real data vary far more in every direction.
NULL_VARIANCE = 1e-20


class PCADetector(BaseDetector):
    """Anomaly detection by the distance to the principal subspace of normal data.

    PCA is fitted on normal samples; the anomaly score is the squared residual
    ``||x - inverse_transform(transform(x))||^2`` (SPE, the Q statistic of
    process monitoring), Hotelling's T² inside the subspace, or, for images,
    the largest pixel of the residual's map.

    ``X`` holds rows, or images, ``(n, H, W)`` or channels-first
    ``(n, C, H, W)``, read as rows of their pixels. A detector fitted on images
    scores images of that shape, and :meth:`anomaly_map` shows where each one
    leaves the subspace, as the autoencoders' maps do.

    Parameters
    ----------
    n_components : int, float or None, default=0.9
        An int keeps that many components; a float in (0, 1) the fewest whose
        explained variance ratio exceeds it; None ``min(n_samples,
        n_features)``. Keeping every dimension makes SPE rounding noise, and
        keeping ``n_samples`` components of fewer images than pixels keeps one
        without variance, whose T² flags every new sample (both warn).
    statistic : {'spe', 't2', 'combined', 'max', 'auto'}, default='spe'
        ``'spe'``: squared distance to the subspace. ``'t2'``: Hotelling's
        ``sum_i t_i^2 / lambda_i``. ``'combined'``: ``SPE / theta_1 + T² / k``,
        each divided by its expected value on normal data. ``'max'``, for
        images: the largest pixel of :meth:`anomaly_map`, which finds a small
        defect that the sum over the image dilutes (it has no analytic
        limit). ``'auto'``, for images: the one of ``'max'`` and ``'spe'``
        that better tells the training images from copies with synthetic
        defects, chosen as :class:`~anomalib_lite.ConvAutoencoderDetector`
        chooses its image score (``statistic_``; it imports torch, and
        trimming ranks the rows by SPE before the choice). Synthetic blobs
        stand in for defects nobody has seen, so the choice can miss a
        kind of anomaly unlike them, such as a faint spot on digits. Read
        when scoring: ``score_samples`` follows a value set after ``fit``
        (``'auto'`` then scores by ``statistic_``), while
        ``decision_function``, ``predict`` and the ONNX export refuse it, as the
        threshold was set on the fitted one (``offset_scoring_``).
    smoothing : float or 'auto', default=0.0
        Gaussian sigma in pixels of :meth:`anomaly_map`, for a detector fitted
        on images; ``'auto'`` is 1 pixel per 28 of the smaller side. 0 gives
        the squared residual itself. Above 0 the map is the autoencoders':
        the mean of the smoothed residual squared and of the smoothed squared
        residual, over ``edge_scale_``, which finds an extended defect better
        than single pixels do (a thin line, about as well). Only
        ``statistic='max'``, the largest pixel of that map, depends on it
        (and ``'auto'``, which may choose it).
        A detector fitted on rows refuses any other value than 0. A value set
        after ``fit`` is refused by :meth:`anomaly_map` (and by the scores of
        ``'max'``) until a refit, or a :meth:`partial_fit`, which refits the
        map's scales on its batch.
    whiten : bool, default=False
        Passed to :class:`~sklearn.decomposition.PCA`; SPE and T² do not
        depend on it.
    svd_solver : {'auto', 'full', 'covariance_eigh', 'arpack', 'randomized'}, \
            default='auto'
        Passed to :class:`~sklearn.decomposition.PCA`.
    trim_fraction : float or 'auto', default='auto'
        Training rows left out of a second fit, ranked by their scores under a
        first fit, so that outliers do not pull the subspace. ``'auto'`` leaves
        out the rows beyond Tukey's far-out fence ``Q3 + 3 * IQR`` (none when
        the kept rows could not be fitted); a float in [0, 1) that fraction of
        highest-scoring rows; 0 fits once. The spread (``explained_variance_``,
        ``theta_``) and ``offset_`` still use every row; the map's
        ``energy_scale_`` and ``edge_scale_`` the kept ones. Under
        ``control_limit``, :meth:`partial_fit` does not trim with ``'auto'``
        and refuses a float.
    contamination : 'auto' or float, default='auto'
        Sets ``offset_`` from the training scores; see
        :class:`~anomalib_lite.base.BaseDetector` for what ``'auto'`` means.
    control_limit : float or None, default=None
        False-alarm rate in (0, 1); when given, ``offset_`` comes from
        :meth:`analytic_limit` instead of ``contamination`` (keep it 'auto').
    batch_size : int or None, default=None
        Rows scored at once; None fits scikit-learn's ``working_memory``. Read
        when scoring, so it can be changed after ``fit``.
    random_state : int, RandomState instance or None, default=None
        Passed to :class:`~sklearn.decomposition.PCA`.

    Attributes
    ----------
    pca_ : PCA or IncrementalPCA
        The fitted scikit-learn decomposition.
    n_components_ : int
        Number of principal components kept.
    mean_ : ndarray of shape (n_features,)
        Mean of the normal training data.
    components_ : ndarray of shape (n_components_, n_features)
        Orthonormal principal axes.
    explained_variance_ : ndarray of shape (n_components_,)
        Variance along each kept axis, over every training row (so after a
        trimmed fit it need not decrease).
    theta_ : ndarray of shape (3,)
        ``sum(lambda_j ** i)``, i = 1, 2, 3, over the covariance eigenvalues
        outside the subspace (Jackson–Mudholkar). Where :meth:`partial_fit`
        continued a ``fit``, or started from a first batch with fewer rows
        than features, only ``theta_[0]`` is known and the others are NaN.
    n_samples_fit_ : int
        Rows the mean and the subspace were learned from.
    n_trimmed_ : int
        Training rows left out by ``trim_fraction``.
    offset_ : float
        Threshold on ``score_samples``; see ``decision_function``.
    offset_scoring_ : dict
        ``{'statistic': ...}`` of the scores ``offset_`` was set on.
    n_features_in_ : int
        Number of features seen during fit.
    sample_shape_ : tuple of int
        Shape of one sample as ``fit`` took it: ``(n_features_in_,)`` for
        rows, ``(H, W)`` or ``(C, H, W)`` for images.
    statistic_ : str
        The statistic in use: ``statistic``, or the choice of ``'auto'``
        (after :meth:`partial_fit`, on its last batch).
    statistic_aucs_ : dict
        For ``'auto'``, the ROC-AUC with which each candidate told the
        training images (at most 1000) from their copies with synthetic
        defects; empty otherwise.
    smoothing_ : float
        Sigma of :meth:`anomaly_map` in pixels. Only for images.
    energy_scale_ : float
        Weight of the smoothed squared residual in :meth:`anomaly_map`, which
        makes both parts of the map sum to the same over the training images
        that ``trim_fraction`` kept (after :meth:`partial_fit`, those of the
        last batch).
        Only for images with ``smoothing_ > 0``.
    edge_scale_ : ndarray of shape (H, W)
        Divisor of :meth:`anomaly_map` that evens out its normal level along the
        image's edges (1 inside). Only for images with ``smoothing_ > 0``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    anomalib_lite.AutoencoderDetector : Non-linear counterpart for tabular data.

    Notes
    -----
    Scores are computed in float64, in batches. Trimming measures the spread
    on every row because the rows left out are the far ones: a spread of the
    kept rows would be too narrow and the limits would over-alarm. The
    analytic limits (Jackson–Mudholkar for SPE, F for T², Box's
    ``g * chi2(h)`` for the combined index) assume Gaussian normal data.

    References
    ----------
    .. [1] J. E. Jackson and G. S. Mudholkar, "Control procedures for residuals
       associated with principal component analysis", Technometrics 21(3),
       1979.
    .. [2] H. H. Yue and S. J. Qin, "Reconstruction-based fault identification
       using a combined index", Ind. Eng. Chem. Res. 40(20), 2001.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import PCADetector
    >>> rng = np.random.default_rng(0)
    >>> t = rng.normal(size=200)
    >>> X = np.c_[t, 2 * t] + 0.01 * rng.normal(size=(200, 2))
    >>> det = PCADetector(n_components=1).fit(X)
    >>> det.predict([[1.0, 2.0], [1.0, -2.0]])
    array([ 1, -1])
    >>> float(det.reconstruction_error([[2.0, -1.0]])[0].round(2))
    5.0
    """

    def __init__(
        self,
        *,
        n_components=0.9,
        statistic="spe",
        smoothing=0.0,
        whiten=False,
        svd_solver="auto",
        trim_fraction="auto",
        contamination="auto",
        control_limit=None,
        batch_size=None,
        random_state=None,
    ):
        self.n_components = n_components
        self.statistic = statistic
        self.smoothing = smoothing
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.trim_fraction = trim_fraction
        self.contamination = contamination
        self.control_limit = control_limit
        self.batch_size = batch_size
        self.random_state = random_state

    # ------------------------------------------------------------ validation
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # images, (n, H, W) or (n, C, H, W)
        return tags

    def _scoring(self):
        return {"statistic": self.statistic}

    def _check_params(self):
        super()._check_params()
        n = self.n_components
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, Real):
                raise TypeError(
                    f"n_components must be an int >= 1, a float in (0, 1) or None, "
                    f"got {type(n).__name__} {n!r}."
                )
            if isinstance(n, Integral):
                check_int(n, "n_components", min_value=1)
            elif not 0.0 < n < 1.0:
                raise ValueError(
                    f"n_components={n!r} must be an int >= 1 or a float in (0, 1) "
                    "(the fraction of variance to keep)."
                )
        check_option(self.statistic, "statistic", _SCORES)
        check_float(self.smoothing, "smoothing", low=0, closed="left", allow_auto=True)
        check_option(self.svd_solver, "svd_solver", _SOLVERS)
        check_bool(self.whiten, "whiten")
        if not self._auto_trim():
            if isinstance(self.trim_fraction, str):
                raise TypeError(
                    f"trim_fraction must be 'auto' or a float in [0, 1), got str "
                    f"{self.trim_fraction!r}."
                )
            check_float(self.trim_fraction, "trim_fraction", low=0, high=1, closed="left")
        check_float(self.control_limit, "control_limit", low=0, high=1, allow_none=True)
        if self.control_limit is not None and self.statistic in ("max", "auto"):
            raise ValueError(
                f"control_limit={self.control_limit!r} needs an analytic limit, which "
                f"statistic={self.statistic!r} has not; set the threshold with contamination or "
                "calibrate it on held-out data (CalibratedDetector's 'conformal' method)."
            )
        if self.control_limit is not None and self.contamination != "auto":
            raise ValueError(
                f"control_limit={self.control_limit!r} and contamination="
                f"{self.contamination!r} both set the threshold; set only one "
                "(leave contamination='auto' to use the control limit)."
            )
        check_int(self.batch_size, "batch_size", min_value=1, allow_none=True)
        check_seed(self.random_state)  # partial_fit's IncrementalPCA reads none

    def _validate_input(self, X, *, reset):
        """Rows of ``X``: images, ``(n, H, W)`` or ``(n, C, H, W)``, become rows of their
        pixels, and later calls must pass samples of the fitted shape (``sample_shape_``)."""
        check_numeric_dtype(X)  # first: a ragged X has no number of dimensions
        ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X, dtype=object).ndim
        fitted = None if reset else self.sample_shape_
        if ndim <= 2:
            if fitted is not None and len(fitted) > 1:
                raise ValueError(
                    f"X is {ndim}-D, but this PCADetector was fitted on images of shape "
                    f"{fitted}; pass images of that shape, (n, *sample_shape_)."
                )
            if reset:
                self._check_rows_params(ndim)
            X = super()._validate_input(X, reset=reset)
            if reset:
                self.sample_shape_ = (self.n_features_in_,)
            return X
        X = check_images(X, dtype=(np.float64, np.float32), ensure_min_samples=2 if reset else 1)
        if reset:
            self.n_features_in_ = int(np.prod(X.shape[1:]))
            self.sample_shape_ = tuple(int(s) for s in X.shape[1:])
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif channels_first(X.shape[1:]) != channels_first(fitted):
            raise ValueError(
                f"X holds samples of shape {X.shape[1:]}, but this PCADetector was fitted "
                f"on samples of shape sample_shape_={fitted}; pass samples of that shape."
            )
        return X.reshape(X.shape[0], -1)

    def _check_rows_params(self, ndim):
        """Refuse the parameters for images where ``X`` is ``ndim``-D rows."""
        if not (isinstance(self.smoothing, Real) and self.smoothing == 0):
            raise ValueError(
                f"smoothing={self.smoothing!r} smooths the anomaly maps of images, but X "
                f"is {ndim}-D rows; pass images, (n, H, W) or (n, C, H, W), or leave "
                "smoothing=0."
            )
        if self.statistic in ("max", "auto"):
            raise ValueError(
                f"statistic={self.statistic!r} scores images by their anomaly maps, "
                f"but X is {ndim}-D rows; pass images, (n, H, W) or (n, C, H, W), or "
                "choose statistic='spe', 't2' or 'combined'."
            )

    @staticmethod
    def _check_variance(X, trimmed_by=None):
        if not np.any(np.ptp(X, axis=0) > 0):
            what = f"X has zero variance: all {X.shape[0]} training samples are"
            hint = "pass training data that varies"
            if trimmed_by is not None:
                what = (
                    f"The rows kept by trim_fraction={trimmed_by!r} have zero variance: "
                    f"all {X.shape[0]} of them are"
                )
                hint = "lower trim_fraction"
            raise ValueError(
                f"{what} identical, so there is no principal subspace to learn; {hint}."
            )
        # T² divides by variances down to eps times the largest: all of them must
        # be normal float64 numbers, or T² (and 'combined') lose their precision.
        info = np.finfo(np.float64)
        smallest = info.tiny / info.eps
        largest = float(np.var(X, axis=0, dtype=np.float64).max())
        if not largest >= smallest:
            raise ValueError(
                f"X varies by at most {float(np.ptp(X, axis=0).max()):.3g}: its largest "
                f"variance, {largest:.3g}, is below {smallest:.3g}, where the principal "
                "variances that T² divides by (down to float64's eps times the largest) "
                "underflow float64 (squares below ~1e-308). Rescale X, e.g. with "
                "sklearn.preprocessing.StandardScaler."
            )

    # --------------------------------------------------------------- fitting
    def _auto_trim(self):
        return isinstance(self.trim_fraction, str) and self.trim_fraction == "auto"

    def _trims(self, updating=False):
        """Whether to trim: in :meth:`partial_fit`, ``'auto'`` gives way to ``control_limit``."""
        if self._auto_trim():
            return not (updating and self.control_limit is not None)
        return bool(self.trim_fraction)

    def _fit(self, X):
        X64 = np.asarray(X, dtype=np.float64)
        self.__dict__.pop("statistic_", None)  # 'auto' trims by SPE before it chooses
        self._fit_decomposition(X64)
        self.n_trimmed_ = self._rows_out_of_spread = 0
        self._n_spread = X64.shape[0]
        kept = X64
        if self._trims():
            if self.statistic == "max":  # ranks the rows by their maps
                self._fit_map_scales(X64)
            keep = self._untrimmed_rows(X64)
            if keep.shape[0] < X64.shape[0]:
                kept = X64[keep]
                self._fit_decomposition(kept, trimmed=True)
                self.n_trimmed_ = X64.shape[0] - keep.shape[0]
                self._measure_spread(X64)
        self._warn_if_trivial()
        # The map's normal level, from the rows kept: a trimmed outlier would inflate it.
        self._fit_map_scales(kept)
        self._choose_statistic(kept)

    def _choose_statistic(self, X):
        """``statistic_``: ``statistic``, or for ``'auto'`` the one of
        :data:`AUTO_STATISTICS` that best tells the training images ``X`` (rows,
        at most ``CHOICE_IMAGES`` of them, drawn) from copies with synthetic
        defects blended in, as ``ConvAutoencoderDetector`` chooses its image score."""
        self.statistic_, self.statistic_aucs_ = self.statistic, {}
        if self.statistic != "auto":
            return
        # torch pastes the defects: imported here, so that the other statistics do not.
        from .utils._choice import best_score, choice_sample, defective_copies
        from .utils._torch import draw_seed, make_generator

        gen = make_generator(draw_seed(self.random_state))
        X = choice_sample(X, gen)
        images = X.reshape(X.shape[0], *channels_first(self.sample_shape_))
        # Standardized per channel, as the autoencoder's images are when it pastes; in
        # float64 first, so that the float32 copies keep the images' detail at any scale
        # or offset, and back to their units in float64.
        mean = images.mean(axis=(0, 2, 3), keepdims=True)
        scale = images.std(axis=(0, 2, 3), keepdims=True)
        scale = np.where(scale > 0, scale, 1.0)
        standardized = images - mean
        standardized /= scale
        standardized = standardized.astype(np.float32)
        zero, one = np.zeros_like(mean, np.float32), np.ones_like(scale, np.float32)

        def scores(rows):
            rows = np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1)
            with np.errstate(over="ignore", invalid="ignore"):
                return np.column_stack(
                    [
                        self._batched(functools.partial(self._anomaly_score, statistic=s), rows)
                        for s in AUTO_STATISTICS
                    ]
                )

        copies = defective_copies(standardized, zero, one, gen)
        defective = np.concatenate([scores(c * scale + mean) for c in copies])
        self.statistic_, self.statistic_aucs_ = best_score(AUTO_STATISTICS, scores(X), defective)

    def _measure_spread(self, X):
        """Variances along and outside the subspace, over every training row."""
        n = X.shape[0]
        t = self._batched(lambda b: self._project(b)[1], X)
        self._set_explained_variance(np.einsum("ij,ij->j", t, t) / (n - 1))
        self.theta_ = self._residual_moments(X)
        # per-feature mean square about mean_, what partial_fit continues from; summed
        # batch by batch (_batched stacks one row per row, not one per batch)
        squares = np.zeros(X.shape[1])
        for batch in gen_batches(n, self._batch_rows(X)):
            squares += np.square(X[batch] - self.mean_).sum(axis=0)
        self._var_ = squares / n

    def _untrimmed_rows(self, X, ranker=None):
        """Indices, in order, of the rows ``trim_fraction`` keeps, ranked by ``ranker``.

        ``'auto'`` keeps every row where the kept ones could not be fitted.
        """
        ranker = self if ranker is None else ranker
        scores = ranker._batched(ranker._anomaly_score, X)  # SPE before 'auto' chose
        if self._auto_trim():
            keep = np.flatnonzero(within_fence(scores))
            kept = X[keep]
            try:  # the checks that a fit on the kept rows makes
                self._check_variance(kept)
                self._check_n_components(*kept.shape, trimmed=False)
            except ValueError:
                keep = np.arange(X.shape[0])
            return keep
        keep = n_kept(X.shape[0], self.trim_fraction, minimum=2)
        return np.sort(np.argsort(scores, kind="stable")[:keep])

    def _check_n_components(self, n_samples, n_features, trimmed):
        n = self.n_components
        limit = min(n_samples, n_features)
        if isinstance(n, Integral) and n > limit:
            rows, fixes = "", "lower it or pass a float in (0, 1)"
            if trimmed:
                rows = f" rows kept by trim_fraction={self.trim_fraction!r}"
                fixes = "lower it, pass a float in (0, 1) or lower trim_fraction"
            raise ValueError(
                f"n_components={n} must be <= min(n_samples, n_features)={limit} "
                f"(n_samples={n_samples}{rows}, n_features={n_features}); {fixes}."
            )

    def _fit_decomposition(self, X, trimmed=False):
        """Fit the PCA on ``X`` (float64) and derive the statistics' constants."""
        n_samples, n_features = X.shape
        if n_samples < 2:
            raise ValueError(
                f"PCADetector needs at least 2 normal samples to fit, got n_samples = {n_samples}."
            )
        self._check_variance(X, self.trim_fraction if trimmed else None)
        self._check_n_components(n_samples, n_features, trimmed)
        n = self.n_components
        self.pca_ = PCA(
            # scikit-learn's PCA refuses NumPy's float32 where its own checks accept it
            n_components=n if n is None or isinstance(n, Integral) else float(n),
            whiten=self.whiten,
            svd_solver=self.svd_solver,
            random_state=self.random_state,
        ).fit(X)
        self._store_decomposition()
        self.theta_ = self._residual_moments(X)
        self._var_ = X.var(axis=0)

    def _store_decomposition(self):
        """Copy the fitted decomposition; after partial_fit, select components."""
        pca = self.pca_
        components = np.asarray(pca.components_, dtype=np.float64)
        lam = np.asarray(pca.explained_variance_, dtype=np.float64)
        k = int(pca.n_components_)
        if isinstance(pca, IncrementalPCA):
            n_seen = int(pca.n_samples_seen_)
            total = float(np.sum(pca.var_)) * n_seen / max(n_seen - 1, 1)
            if isinstance(self.n_components, Integral):
                if self.n_components > k:
                    raise ValueError(
                        f"n_components={self.n_components} but the decomposition "
                        f"holds only {k} components (limited by the first "
                        "partial_fit batch); pass a first batch of at least "
                        "n_components normal samples."
                    )
                k = int(self.n_components)
            elif isinstance(self.n_components, Real):
                ratio = np.cumsum(lam) / total if total > 0 else np.ones_like(lam)
                k = int(min(np.searchsorted(ratio, self.n_components, side="right") + 1, len(lam)))
            discarded = lam[k:]
            theta = np.array([max(total - float(lam[:k].sum()), 0.0), np.nan, np.nan])
            if len(lam) == self.n_features_in_:  # the whole spectrum is known
                theta[1:] = [np.sum(discarded**2), np.sum(discarded**3)]
            self.theta_ = theta
            self.n_samples_fit_ = n_seen
        else:
            self.n_samples_fit_ = int(pca.n_samples_)
        self.n_components_ = k
        self.mean_ = np.asarray(pca.mean_, dtype=np.float64)
        self.components_ = components[:k]
        self._set_explained_variance(lam[:k])

    def _set_explained_variance(self, lam):
        self.explained_variance_ = lam
        # A floor relative to the largest variance keeps T² scale-free. fit refuses
        # data whose largest variance is below tiny / eps, so the floor is eps times
        # the largest there; tiny only keeps 1 / floor finite when all are zero.
        info = np.finfo(np.float64)
        floor = max(info.eps * float(lam.max(initial=0.0)), info.tiny)
        self._inv_lambda = 1.0 / np.maximum(lam, floor)

    def _residual_moments(self, X):
        """theta_i = sum of i-th powers of the discarded covariance eigenvalues."""
        R = self._batched(self._residual, X)
        G = R.T @ R if R.shape[1] <= R.shape[0] else R @ R.T
        G /= X.shape[0] - 1
        return np.array([np.trace(G), np.sum(G * G), np.sum(G * (G @ G))])

    def _warn_if_trivial(self):
        total = float(self.explained_variance_.sum() + self.theta_[0])
        if self.statistic != "t2" and self.theta_[0] <= 1e-10 * total:
            warnings.warn(
                f"n_components_={self.n_components_} explains all the training "
                f"variance (n_features_in_={self.n_features_in_}, "
                f"n_samples={self.n_samples_fit_}): the distance to the subspace "
                "is zero on the training data and its scores are rounding noise "
                "there. Lower n_components, e.g. to a float such as 0.9.",
                UserWarning,
                stacklevel=4,
            )
        lam = self.explained_variance_
        null = int(np.sum(lam <= NULL_VARIANCE * lam.max(initial=0.0)))
        if self.statistic in ("t2", "combined") and null:
            k = self.n_components_
            warnings.warn(
                f"{null} of the n_components_={k} components have no training variance, "
                f"only rounding noise (below {NULL_VARIANCE:g} of the largest; the centred "
                f"training data, n_samples={self.n_samples_fit_} by "
                f"n_features_in_={self.n_features_in_}, span at most "
                f"{min(self.n_samples_fit_ - 1, self.n_features_in_)} directions): "
                f"statistic={self.statistic!r} divides by their variance, so almost every "
                f"new sample scores as an anomaly. Lower n_components, e.g. to {k - null} "
                "or a float such as 0.9.",
                UserWarning,
                stacklevel=4,
            )

    def partial_fit(self, X, y=None):
        """Update the principal subspace with one more batch of normal data.

        Uses :class:`~sklearn.decomposition.IncrementalPCA`, which keeps every
        component the first batch allows; ``n_components_`` is selected after
        each batch, and a detector fitted with :meth:`fit` continues from its
        fitted components. ``offset_`` is set from the last batch's scores,
        and from its images the map's scales and the choice of ``'auto'``.
        ``trim_fraction`` leaves out each batch's rows it selects under the
        decomposition so far. Under ``control_limit`` a float
        ``trim_fraction`` is refused. A failed first call leaves the detector
        unfitted, and under ``control_limit`` a failed update leaves it as it
        was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            A batch of training samples, shaped as the first batch (images
            ``(n, H, W)`` or ``(n, C, H, W)`` set ``sample_shape_``). The first
            batch needs at least ``n_components`` normal samples.
        y : array-like of shape (n_samples,), default=None
            Optional labels, ``0`` = normal, ``1`` = anomaly.

        Returns
        -------
        self : object
            The updated detector.
        """
        first = not hasattr(self, "pca_")
        self._check_params()  # on every call: set_params may have changed them
        if self.control_limit is not None and self.trim_fraction and not self._auto_trim():
            raise ValueError(
                f"partial_fit with control_limit={self.control_limit!r} needs "
                f"trim_fraction=0 or 'auto', got trim_fraction={self.trim_fraction!r}: "
                "an update does not keep the spread of the rows it leaves out, which "
                "the analytic limits need. Use fit, or set the threshold with "
                "contamination instead."
            )
        # A failed first batch must leave the detector unfitted, or later calls
        # would continue from its partial state; analytic_limit can refuse an
        # updated model, so under control_limit keep the fitted one to restore.
        if first:
            before_update = dict(self.__dict__)  # the parameters only
        elif self.control_limit is not None:
            before_update = copy.deepcopy(self.__dict__)
        else:
            before_update = None
        try:
            return self._update(X, y, first)
        except BaseException:
            if before_update is not None:
                self.__dict__.clear()
                self.__dict__.update(before_update)
            raise

    def _update(self, X, y, first):
        """The body of :meth:`partial_fit`, after its parameter checks."""
        X = self._validate_input(X, reset=first)
        if not first and not _fitted_on_images(self):  # as fit refuses them on rows
            self._check_rows_params(X.ndim)
        X = np.asarray(self._normal_rows(X, y), dtype=np.float64)
        if first:
            self._check_variance(X)
            if isinstance(self.n_components, Integral) and self.n_components > X.shape[1]:
                # The features limit it, whatever the batches: say so, not "too few rows".
                self._check_n_components(*X.shape, trimmed=False)
        learned = X
        if self._trims(updating=True):
            # Rank by the decomposition so far, or the first batch by its own.
            images = X.reshape(-1, *self.sample_shape_)  # the layout first fitted
            ranker = None
            if first:  # 'auto' ranks the first batch by SPE, as fit does
                statistic = "spe" if self.statistic == "auto" else self.statistic
                ranker = clone(self).set_params(trim_fraction=0.0, statistic=statistic)
                ranker.partial_fit(images)
            if not first and self._statistic() == "max":
                # The map scales of this batch, at today's smoothing, as the update ends with
                # them: 'max' ranks by the map, and smoothing may have changed since.
                self._fit_map_scales(X)
            learned = X[self._untrimmed_rows(X, ranker)]
            if first:
                self._check_variance(learned, self.trim_fraction)
                self._check_n_components(*learned.shape, trimmed=True)
        if first:  # every component the batch allows; n_components_ is selected from it
            self.pca_ = IncrementalPCA(n_components=None, whiten=self.whiten)
            self.n_trimmed_ = self._rows_out_of_spread = 0
        elif not isinstance(self.pca_, IncrementalPCA):
            self.pca_ = self._incremental_from_fit()
        left_out = X.shape[0] - learned.shape[0]
        self._rows_out_of_spread += left_out
        self.n_trimmed_ += left_out
        self.pca_.partial_fit(learned)
        self._store_decomposition()
        self._fit_map_scales(learned)  # the map's normal level, without the rows left out
        self._choose_statistic(learned)
        self._n_spread = self.n_samples_fit_
        self._set_offset(self._batched(self._anomaly_score, X))
        return self

    def _incremental_from_fit(self):
        """An IncrementalPCA holding the state of a PCA fitted by ``fit``."""
        ipca = IncrementalPCA(n_components=self.n_components_, whiten=self.whiten)
        ipca.components_ = self.components_.copy()
        ipca.singular_values_ = np.sqrt(self.explained_variance_ * (self.n_samples_fit_ - 1))
        ipca.mean_ = self.mean_.copy()
        ipca.var_ = self._var_.copy()
        ipca.n_samples_seen_ = self.n_samples_fit_
        ipca.n_features_in_ = self.n_features_in_
        return ipca

    # --------------------------------------------------------------- scoring
    def _project(self, X):
        Xc = np.asarray(X, dtype=np.float64) - self.mean_
        return Xc, Xc @ self.components_.T

    def _residual(self, X):
        Xc, t = self._project(X)
        return Xc - t @ self.components_

    def _statistic(self):
        """The statistic in use: ``statistic``, or the fitted choice for ``'auto'``
        (SPE before a fit has chosen, when trimming ranks the rows)."""
        check_option(self.statistic, "statistic", _SCORES)  # read when scoring
        if self.statistic == "auto":
            return getattr(self, "statistic_", "spe")
        return self.statistic

    def _anomaly_score(self, X, statistic=None):
        statistic = self._statistic() if statistic is None else statistic
        if statistic == "max":
            return self._map_max(X)
        Xc, t = self._project(X)
        if statistic == "t2":
            return (t * t) @ self._inv_lambda
        R = Xc - t @ self.components_
        spe = np.einsum("ij,ij->i", R, R)
        if statistic == "spe":
            return spe
        theta1 = self.theta_[0] if self.theta_[0] > 0 else 1.0
        return spe / theta1 + ((t * t) @ self._inv_lambda) / self.n_components_

    def _batch_rows(self, X):
        check_int(self.batch_size, "batch_size", min_value=1, allow_none=True)  # read when scoring
        row_bytes = 8 * (3 * X.shape[1] + self.components_.shape[0])
        return rows_per_batch(row_bytes, self.batch_size)

    def _fitted_offset(self, anomaly_scores):
        if self.control_limit is None:
            return super()._fitted_offset(anomaly_scores)
        return -self.analytic_limit(self.control_limit)

    def reconstruct(self, X):
        r"""Projection of each sample onto the principal subspace.

        Parameters
        ----------
        X : array-like of shape (n_samples, \*sample_shape_)
            Samples: rows, or images as in ``fit`` (grayscale ones as
            ``(n, H, W)`` or ``(n, 1, H, W)``).

        Returns
        -------
        X_rec : ndarray of the shape of ``X``, dtype float64
            ``inverse_transform(transform(X))`` of the fitted PCA. A value that
            overflows float64 is ``inf`` or ``-inf`` (``inf`` where its sign is
            lost), with a warning; never NaN.
        """
        rows = self._check_fitted_input(X)
        with np.errstate(over="ignore", invalid="ignore"):
            rec = self._batched(lambda b: self.mean_ + self._project(b)[1] @ self.components_, rows)
        rec = self._overflow_to_inf(rec, rows, "reconstruct", stacklevel=3)
        return rec.reshape(np.shape(X))

    def reconstruction_error(self, X):
        r"""Squared distance of each sample to the principal subspace (SPE).

        Parameters
        ----------
        X : array-like of shape (n_samples, \*sample_shape_)
            Samples: rows, or images as in ``fit``.

        Returns
        -------
        errors : ndarray of shape (n_samples,), dtype float64
            ``||x - reconstruct(x)||^2``; higher means more anomalous. A
            sample whose error overflows float64 gets ``inf``, with a warning.
        """
        X = self._check_fitted_input(X)

        def spe(b):
            R = self._residual(b)
            return np.einsum("ij,ij->i", R, R)

        return self._anomaly_scores(X, spe, "reconstruction_error")  # +inf, never NaN

    def _sigma(self):
        """``smoothing`` in pixels for images of the fitted shape (checked: read
        when mapping)."""
        check_float(self.smoothing, "smoothing", low=0, closed="left", allow_auto=True)
        if isinstance(self.smoothing, str):
            return auto_sigma(*channels_first(self.sample_shape_)[1:])
        return float(self.smoothing)

    def _fitted_sigma(self):
        """``smoothing_``, refused where ``smoothing`` has been set to another value since."""
        sigma = self._sigma()
        if sigma != self.smoothing_:
            raise ValueError(
                f"smoothing={self.smoothing!r} ({sigma:g} pixels) was set after fit, but "
                f"the map's scales were fitted with smoothing_={self.smoothing_:g} pixels; "
                "refit, or set smoothing back."
            )
        return sigma

    def _map_parts(self, rows, sigma):
        """The squares of the residual of ``rows`` smoothed by ``sigma`` pixels, and
        its smoothed squares, each summed over channels: ``(n, H, W)`` twice."""
        R = self._residual(rows).reshape(rows.shape[0], *channels_first(self.sample_shape_))
        return np.square(blur(R, sigma)).sum(axis=1), blur(np.square(R), sigma).sum(axis=1)

    def _fit_map_scales(self, X):
        """``smoothing_``, and for a smoothed map ``energy_scale_`` and
        ``edge_scale_``, from the maps of the training rows ``X``."""
        for name in ("smoothing_", "energy_scale_", "edge_scale_"):
            self.__dict__.pop(name, None)  # a refit on rows or without smoothing
        if not _fitted_on_images(self):
            return
        self.smoothing_ = sigma = self._sigma()
        if sigma == 0:
            return
        totals = [0.0, 0.0]
        with np.errstate(over="ignore", invalid="ignore"):
            for batch in gen_batches(X.shape[0], self._batch_rows(X)):
                for i, part in enumerate(self._map_parts(X[batch], sigma)):
                    totals[i] = totals[i] + part.sum(axis=0)
        self.energy_scale_, scale = map_scales(*totals, X.shape[0])
        self.edge_scale_ = scale.astype(np.float64)

    def _pixel_map(self, rows, sigma):
        """:meth:`anomaly_map` of the rows of images ``rows``, smoothed by ``sigma``."""
        if sigma > 0:
            square, energy = self._map_parts(rows, sigma)
            return combine_map_parts(square, energy, self.energy_scale_) / self.edge_scale_
        R = self._residual(rows)
        return np.square(R).reshape(rows.shape[0], *channels_first(self.sample_shape_)).sum(axis=1)

    def _map_max(self, rows):
        """``statistic='max'``: the largest pixel of each image's map."""
        if not _fitted_on_images(self):
            raise ValueError(
                "statistic='max' scores the largest pixel of an image's anomaly map, but "
                f"this PCADetector was fitted on rows (sample_shape_={self.sample_shape_}); "
                "choose statistic='spe', 't2' or 'combined', or refit on images."
            )
        return self._pixel_map(rows, self._fitted_sigma()).max(axis=(1, 2))

    @available_if(_fitted_on_images)
    def anomaly_map(self, X):
        """Where each image leaves the principal subspace, pixel by pixel.

        With ``smoothing=0``, the pixels of ``(X - reconstruct(X)) ** 2``
        summed over channels, so that each map sums to
        :meth:`reconstruction_error`. Above 0, the residual smoothed by a
        Gaussian of ``smoothing_`` pixels, then squared, averaged with its
        smoothed square (weighted by ``energy_scale_``), each summed over
        channels, over ``edge_scale_``: the first finds a change of one sign,
        where the alternating residual of fine normal detail cancels, and the
        second keeps a thin or textured defect. Available when ``fit`` took
        images.

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W) or (n_samples, C, H, W)
            Images of the fitted shape (``sample_shape_``).

        Returns
        -------
        maps : ndarray of shape (n_samples, H, W), dtype float64
            A pixel whose value overflows float64 is ``inf``, with a warning.

        Examples
        --------
        >>> import numpy as np
        >>> from anomalib_lite import PCADetector
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(50, 4, 4)) * 0.1 + np.linspace(0, 1, 4)
        >>> det = PCADetector(n_components=3).fit(X)
        >>> maps = det.anomaly_map(X[:2])
        >>> maps.shape, bool(np.allclose(maps.sum((1, 2)), det.reconstruction_error(X[:2])))
        ((2, 4, 4), True)
        """
        X = self._check_fitted_input(X)
        sigma = self._fitted_sigma()
        with np.errstate(over="ignore", invalid="ignore"):
            maps = self._batched(lambda b: self._pixel_map(b, sigma), X)
        return self._overflow_to_inf(maps, X, "anomaly_map", stacklevel=3)

    def analytic_limit(self, alpha):
        """Anomaly score a normal Gaussian sample exceeds with probability ``alpha``.

        Parameters
        ----------
        alpha : float
            Target false-alarm rate in (0, 1).

        Returns
        -------
        limit : float
            Threshold on ``-score_samples``, in the units of ``statistic_``.
        """
        check_is_fitted(self)
        alpha = check_float(alpha, "alpha", low=0, high=1)
        statistic = self._statistic()
        if statistic == "max":
            raise ValueError(
                f"statistic={self.statistic!r} scores by the largest pixel of the map, which "
                "has no analytic limit: calibrate the threshold on "
                "held-out data (CalibratedDetector's 'conformal' method) or set it with "
                "contamination."
            )
        out = self._rows_out_of_spread
        if out:
            raise ValueError(
                f"analytic_limit needs the spread of every training row, and {out} "
                "rows left out by trim_fraction are missing from it (rows that "
                "partial_fit left out), which narrows the limits. Refit with fit, "
                "which measures the spread on every row, or calibrate the threshold "
                "with contamination or on held-out data (CalibratedDetector's "
                "'conformal' method) instead."
            )
        theta1, theta2, theta3 = self.theta_
        k, n = self.n_components_, self._n_spread
        if statistic == "t2":
            if n <= k:
                raise ValueError(
                    f"The T² limit needs more training samples than components "
                    f"(n_samples={n}, n_components_={k}); add data or lower n_components."
                )
            factor = k * (n - 1) * (n + 1) / (n * (n - k))
            return float(factor * stats.f.ppf(1 - alpha, k, n - k))
        if statistic == "spe" and np.isnan(theta2):
            raise ValueError(
                "The SPE control limit needs the discarded eigenvalues, which are "
                "unknown where partial_fit continued a fit or started from fewer rows "
                "than features; use statistic='t2' or calibrate the threshold on "
                "held-out data."
            )
        if theta1 <= 0:  # no variance outside the subspace
            if statistic == "spe":
                return 0.0
            # The combined score is then T² / k plus the residual's rounding noise
            # (_anomaly_score divides SPE by 1): Box's g * chi2(h) with the mean 1
            # and variance 2 / k of T² / k gives chi2(k) / k.
            return float(stats.chi2.ppf(1 - alpha, k) / k)
        if statistic == "combined" and np.isnan(theta2):
            raise ValueError(
                "The combined control limit needs the discarded eigenvalues, which "
                "are unknown where partial_fit continued a fit or started from fewer "
                "rows than features; calibrate on held-out data instead."
            )
        with np.errstate(all="ignore"):
            # Moments relative to theta1 stay near 1 at any scale of X, where
            # theta2**2 and theta1 * theta3 would overflow or underflow.
            r2 = theta2 / theta1 / theta1
            r3 = theta3 / theta1 / theta1 / theta1
            h0 = 1.0 - 2.0 * r3 / (3.0 * r2**2)
            if statistic == "spe" and h0 > 0:
                c = stats.norm.ppf(1 - alpha)
                base = c * np.sqrt(2 * r2 * h0**2) + 1 + r2 * h0 * (h0 - 1)
                limit = theta1 * max(base, 0.0) ** (1.0 / h0)
            else:  # Box's g * chi2(h) with the mean and variance of the statistic
                if statistic == "spe":  # in units of theta1
                    scale, mean, var = theta1, 1.0, 2.0 * r2
                else:  # combined: SPE / theta1 + T² / k
                    scale, mean, var = 1.0, 2.0, 2.0 * r2 + 2.0 / k
                g, h = var / (2.0 * mean), 2.0 * mean**2 / var
                limit = scale * g * stats.chi2.ppf(1 - alpha, h)
        # theta2 (and theta3 for SPE) must not have underflowed, nor the limit overflowed
        tiny = np.finfo(np.float64).tiny
        moments = theta2 >= tiny and (theta3 >= tiny or statistic == "combined")
        if not (moments and np.isfinite(limit)):
            raise ValueError(
                f"The analytic {statistic} limit cannot be computed in float64 for "
                f"this fit: the variance left outside the subspace (theta_={self.theta_}) "
                "is too small or too large. Rescale X, e.g. with "
                "sklearn.preprocessing.StandardScaler, or calibrate the threshold on "
                "held-out data (CalibratedDetector)."
            )
        return float(limit)
