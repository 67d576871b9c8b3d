"""Anomaly metrics: model-selection scorers and pixel-level image metrics.

Scorers rank samples by the anomaly score against labels ``0`` = normal,
``1`` = anomaly, whatever the detector's score sign (scikit-learn's
``'roc_auc'`` ranks by ``decision_function`` and returns ``1 - AUC``). Image
metrics compare anomaly maps with ground-truth masks as in the MVTec AD protocol.

Every metric depends on the order of the scores only, so it accepts ``inf``
and ``-inf`` (a detector's score of a sample that overflowed): an infinite
anomaly score ranks above every finite one. NaN has no rank and is refused.
"""

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, make_scorer, roc_auc_score

from .utils._ranking import cut_counts
from .utils._validation import anomaly_labels, check_float, check_scores, check_unmasked

__all__ = [
    "anomaly_average_precision",
    "anomaly_f1",
    "anomaly_precision",
    "anomaly_recall",
    "anomaly_roc_auc",
    "aupro_score",
    "best_f1_score",
    "get_scorer",
    "get_scorer_names",
    "pixel_roc_auc_score",
    "pro_curve",
]


def _anomaly_labels(
    y_true, n_samples=None, *, other="X has {n} samples", need_normal=True, need_anomaly=True
):
    """Validate 0/1 labels for a metric (``n_samples`` of them, which ``other`` names,
    if given) and return a boolean array, True = anomaly."""
    anomaly = anomaly_labels(y_true, n_samples, name="y_true", other=other)
    if need_anomaly and not anomaly.any():
        raise ValueError(
            "y_true holds no anomaly (1), so the metric is undefined. When "
            "scoring cross-validation folds, split with StratifiedKFold so that "
            "every fold holds some anomalies."
        )
    if need_normal and anomaly.all():
        raise ValueError(
            "y_true holds no normal sample (0), so the metric is undefined. "
            "Score on data that holds normal samples too."
        )
    return anomaly


def _ranks(scores):
    """Dense ranks of scores, ties equal: what rank-based metrics depend on,
    finite even where the scores are ``+-inf`` (SciPy 1.10's ``rankdata`` gives NaN
    for every rank when both infinities are present)."""
    _, inverse = np.unique(np.ravel(scores), return_inverse=True)
    return inverse.reshape(np.shape(scores)).astype(np.float64) + 1.0


def best_f1_score(y_true, anomaly_scores):
    """Best F1 score over every threshold on the anomaly scores.

    An optimistic summary of the ranking (anomalib's ``F1Max``); for the F1
    of a deployed threshold see :func:`anomaly_f1`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Labels, ``0`` = normal, ``1`` = anomaly.
    anomaly_scores : array-like of shape (n_samples,)
        Anomaly scores, higher = more anomalous, e.g. ``-score_samples(X)``;
        ``inf`` ranks above every finite score, NaN is refused.

    Returns
    -------
    score : float
        The largest F1 of the anomaly class over all thresholds.

    Examples
    --------
    >>> from anomalib_lite.metrics import best_f1_score
    >>> round(best_f1_score([0, 0, 1, 0, 1], [0.1, 0.2, 0.9, 0.4, 0.3]), 3)
    0.8
    """
    anomaly = _anomaly_labels(y_true, need_normal=False)
    s = check_scores(anomaly_scores, "anomaly_scores", anomaly.shape[0], allow_inf=True)
    n_flagged, tp, _, _ = cut_counts(anomaly, s)
    return float(np.max(2.0 * tp / (n_flagged + anomaly.sum())))


def _anomaly_ranks(y_true, decision):
    """Labels and the ranks of the anomaly scores (``-decision``); ``-inf``
    decisions (samples that overflowed) rank as the most anomalous."""
    anomaly = _anomaly_labels(y_true)
    decision = check_scores(decision, "decision_function", anomaly.shape[0], allow_inf=True)
    return anomaly, _ranks(-decision)


def _roc_auc_of_decision(y_true, decision):
    # decision_function = score_samples - offset_ ranks like -anomaly score.
    return float(roc_auc_score(*_anomaly_ranks(y_true, decision)))


def _average_precision_of_decision(y_true, decision):
    return float(average_precision_score(*_anomaly_ranks(y_true, decision)))


def _confusion_of_predict(y_true, y_pred):
    pred = np.asarray(y_pred)
    if pred.ndim != 1:  # a column would broadcast against the labels
        raise ValueError(
            f"predict returned shape {pred.shape}; expected a 1-D array of one "
            "prediction per sample."
        )
    anomaly = _anomaly_labels(
        y_true, pred.size, other="predict returned {n} predictions", need_normal=False
    )
    if not np.all(np.isin(pred, (-1, 1))):
        raise ValueError(
            "predict must return +1 (normal) and -1 (anomaly), got values "
            f"{np.unique(pred)[:10].tolist()}; is this an outlier detector?"
        )
    flagged = pred == -1
    tp = int(np.sum(flagged & anomaly))
    return tp, int(np.sum(flagged & ~anomaly)), int(np.sum(~flagged & anomaly))


def _f1_of_predict(y_true, y_pred):
    tp, fp, fn = _confusion_of_predict(y_true, y_pred)
    return 2.0 * tp / (2 * tp + fp + fn)


def _recall_of_predict(y_true, y_pred):
    tp, _, fn = _confusion_of_predict(y_true, y_pred)
    return tp / (tp + fn)


def _precision_of_predict(y_true, y_pred):
    tp, fp, _ = _confusion_of_predict(y_true, y_pred)
    # Flagging nothing has no false alarm but finds nothing: score it 0.
    return tp / (tp + fp) if tp + fp else 0.0


#: ROC-AUC of the anomaly score against ``y == 1``; threshold-free.
anomaly_roc_auc = make_scorer(_roc_auc_of_decision, response_method="decision_function")
#: Average precision of the anomaly score against ``y == 1``; threshold-free.
anomaly_average_precision = make_scorer(
    _average_precision_of_decision, response_method="decision_function"
)
#: F1 of the anomaly class at the detector's own threshold (``predict == -1``).
anomaly_f1 = make_scorer(_f1_of_predict, response_method="predict")
#: Recall (detection rate) of the anomalies at the detector's threshold.
anomaly_recall = make_scorer(_recall_of_predict, response_method="predict")
#: Precision of the flagged samples at the detector's threshold.
anomaly_precision = make_scorer(_precision_of_predict, response_method="predict")

_SCORERS = {
    "anomaly_roc_auc": anomaly_roc_auc,
    "anomaly_average_precision": anomaly_average_precision,
    "anomaly_f1": anomaly_f1,
    "anomaly_recall": anomaly_recall,
    "anomaly_precision": anomaly_precision,
}


def get_scorer_names():
    """Names accepted by :func:`get_scorer`.

    Returns
    -------
    names : list of str
        Sorted scorer names.

    Examples
    --------
    >>> from anomalib_lite.metrics import get_scorer_names
    >>> get_scorer_names()[:2]
    ['anomaly_average_precision', 'anomaly_f1']
    """
    return sorted(_SCORERS)


def get_scorer(scoring):
    """Anomaly scorer by name, for ``GridSearchCV(..., scoring=...)``.

    Every scorer expects labels ``0`` = normal, ``1`` = anomaly. The ROC-AUC
    and average-precision scorers rank by ``-decision_function``; the F1,
    recall and precision scorers count ``predict(X) == -1`` as a detection,
    so they judge the threshold too.

    Parameters
    ----------
    scoring : str or callable
        One of :func:`get_scorer_names`; a callable is returned unchanged.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)``, higher is better.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.metrics import get_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3))
    >>> det = PCADetector(n_components=1).fit(X)
    >>> X_test = np.vstack([X[:20], X[:5] + 10.0])
    >>> y_test = np.r_[np.zeros(20, int), np.ones(5, int)]
    >>> get_scorer("anomaly_roc_auc")(det, X_test, y_test)
    1.0
    """
    if callable(scoring):
        return scoring
    if isinstance(scoring, str) and scoring in _SCORERS:
        return _SCORERS[scoring]
    names = ", ".join(repr(n) for n in get_scorer_names())
    raise ValueError(
        f"scoring={scoring!r} is not an anomaly scorer; expected one of {names}. "
        "scikit-learn's own scorers do not fit detectors: 'roc_auc' ranks by "
        "decision_function (higher = more normal) and returns 1 - AUC against "
        "anomaly labels, and label scorers compare predict's +1/-1 with 0/1."
    )


def _check_maps(masks, anomaly_maps):
    """Validate masks and anomaly maps of shape (n, H, W) or (H, W)."""
    for value, name in ((masks, "masks"), (anomaly_maps, "anomaly_maps")):
        hint = (
            f"the metrics do not skip masked pixels. Fill them (e.g. {name}.filled(value)) first."
        )
        check_unmasked(value, name, hint)
    maps = np.asarray(anomaly_maps)
    if maps.dtype.kind not in "biuf":
        raise TypeError(f"anomaly_maps has dtype {maps.dtype}; expected real numbers.")
    maps = maps.astype(np.float64, copy=False)
    gt = np.asarray(masks)
    if gt.dtype.kind not in "biuf":
        raise TypeError(f"masks has dtype {gt.dtype}; expected booleans (True = anomalous).")
    maps = maps[np.newaxis] if maps.ndim == 2 else maps
    gt = gt[np.newaxis] if gt.ndim == 2 else gt
    if maps.ndim != 3:
        raise ValueError(
            f"anomaly_maps must have shape (n, H, W) or (H, W), got {np.shape(anomaly_maps)}; "
            "squeeze a channel axis of size 1 first."
        )
    if gt.shape != maps.shape:
        raise ValueError(
            f"masks has shape {np.shape(masks)} but anomaly_maps has shape "
            f"{np.shape(anomaly_maps)}; they must match pixel for pixel."
        )
    if gt.dtype != bool:
        if not np.all(np.isin(np.unique(gt), (0, 1))):
            raise ValueError(
                "masks must be boolean or hold only 0 and 1 (1 = anomalous pixel); "
                f"got values {np.unique(gt)[:10].tolist()}."
            )
        gt = gt.astype(bool)
    if np.isnan(maps).any():
        raise ValueError(
            f"anomaly_maps contains NaN at {int(np.isnan(maps).sum())} pixels; a NaN score "
            "has no rank (inf, which anomaly_map gives where a value overflows, ranks "
            "above every finite score)."
        )
    if not gt.any():
        raise ValueError(
            "masks marks no pixel as anomalous; pixel ROC-AUC and PRO need "
            "anomalous pixels. Include images with defects."
        )
    if gt.all():
        raise ValueError(
            "masks marks every pixel as anomalous; the false-positive rate needs "
            "anomaly-free pixels."
        )
    return gt, maps


def pixel_roc_auc_score(masks, anomaly_maps):
    """ROC-AUC of every pixel's anomaly score against the ground-truth masks.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W) or (H, W)
        Ground truth, ``True`` (or 1) where a pixel is anomalous.
    anomaly_maps : array-like of the same shape
        Anomaly score of each pixel, higher = more anomalous.

    Returns
    -------
    auc : float
        Probability that a random anomalous pixel scores above a random normal
        one (ties count half).

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite.metrics import pixel_roc_auc_score
    >>> mask = np.array([[0, 0], [0, 1]], dtype=bool)
    >>> pixel_roc_auc_score(mask, [[0.1, 0.2], [0.3, 0.9]])
    1.0
    """
    gt, maps = _check_maps(masks, anomaly_maps)
    return float(roc_auc_score(gt.ravel(), _ranks(maps.ravel())))


#: 8-connectivity within an image, none across images, as in the MVTec AD code.
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = True


def pro_curve(masks, anomaly_maps):
    """Per-region overlap (PRO) against the false-positive rate, at every threshold.

    A pixel is flagged when its score is ``>= threshold``. The PRO is the mean,
    over the 8-connected regions of the masks, of each region's flagged share
    (every region counts equally, whatever its size); the FPR is the flagged
    share of the anomaly-free pixels.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W) or (H, W)
        Ground truth, ``True`` (or 1) where a pixel is anomalous.
    anomaly_maps : array-like of the same shape
        Anomaly score of each pixel, higher = more anomalous.

    Returns
    -------
    fpr : ndarray of shape (n_thresholds + 1,)
        Increasing false-positive rates, from 0 to 1.
    pro : ndarray of shape (n_thresholds + 1,)
        Per-region overlap at each FPR, from 0 to 1.
    thresholds : ndarray of shape (n_thresholds + 1,)
        Decreasing thresholds: ``inf``, which stands for flagging nothing (as
        in :func:`sklearn.metrics.roc_curve`, even where a map holds ``inf``),
        then the distinct map values.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite.metrics import pro_curve
    >>> mask = np.array([[1, 0, 0, 1]], dtype=bool)  # two one-pixel regions
    >>> fpr, pro, thr = pro_curve(mask, [[0.9, 0.1, 0.5, 0.4]])
    >>> fpr.tolist(), pro.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    gt, maps = _check_maps(masks, anomaly_maps)
    regions, n_regions = ndimage.label(gt, structure=_STRUCTURE)
    regions = regions.ravel()
    sizes = np.bincount(regions)
    # A fully flagged region adds 1 / n_regions to the mean overlap.
    weight = np.where(regions > 0, 1.0 / (sizes[regions] * n_regions), 0.0)
    normal = regions == 0

    scores = maps.ravel()
    order = np.argsort(-scores, kind="stable")
    scores = scores[order]
    last_of_tie = np.r_[scores[:-1] > scores[1:], True]
    n_flagged = np.arange(1, scores.size + 1)[last_of_tie]
    false_pos = np.cumsum(normal[order])[last_of_tie]
    pro = np.minimum(np.cumsum(weight[order])[last_of_tie], 1.0)
    # Once every region pixel is flagged the overlap is exactly 1, whatever the rounding.
    pro[n_flagged - false_pos == np.count_nonzero(~normal)] = 1.0
    fpr = false_pos / normal.sum()
    return np.r_[0.0, fpr], np.r_[0.0, pro], np.r_[np.inf, scores[last_of_tie]]


def aupro_score(masks, anomaly_maps, *, max_fpr=0.3):
    """Normalised area under the PRO curve up to ``max_fpr`` (AUPRO).

    The MVTec AD protocol: the trapezoidal area under :func:`pro_curve` from
    FPR 0 to ``max_fpr`` (interpolated there), divided by ``max_fpr``.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W) or (H, W)
        Ground truth, ``True`` (or 1) where a pixel is anomalous.
    anomaly_maps : array-like of the same shape
        Anomaly score of each pixel, higher = more anomalous.
    max_fpr : float, default=0.3
        Integration limit in (0, 1].

    Returns
    -------
    aupro : float
        In [0, 1]; a perfect map scores 1.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite.metrics import aupro_score
    >>> masks = np.zeros((2, 4, 4), dtype=bool)
    >>> masks[0, 1:3, 1:3] = True
    >>> aupro_score(masks, masks.astype(float))  # a perfect map
    1.0
    """
    max_fpr = check_float(max_fpr, "max_fpr", low=0, high=1, closed="right")
    fpr, pro, _ = pro_curve(masks, anomaly_maps)
    end = int(np.searchsorted(fpr, max_fpr, side="right"))  # fpr[:end] <= max_fpr
    x, y = fpr[:end], pro[:end]
    if x[-1] < max_fpr:  # close the area at max_fpr on the segment that crosses it
        x0, x1, y0, y1 = fpr[end - 1], fpr[end], pro[end - 1], pro[end]
        x = np.r_[x, max_fpr]
        y = np.r_[y, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)]
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
    return min(area / max_fpr, 1.0)  # the sum of the steps may round just above 1
