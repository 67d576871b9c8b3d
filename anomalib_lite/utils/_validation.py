"""Private validation helpers: each message names the parameter, shows the value,
says what was expected and hints at a fix."""

import math
import os
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from numbers import Complex, Integral, Real
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array, check_random_state


def check_seed(random_state):
    """Refuse a ``random_state`` that scikit-learn's ``check_random_state`` cannot
    seed from, naming it (its own message does not)."""
    try:
        check_random_state(random_state)
    except ValueError:
        raise ValueError(
            f"random_state={random_state!r} is not supported; expected None, an "
            "int in [0, 2**32 - 1] or a numpy.random.RandomState."
        ) from None


def check_unmasked(value, name, hint):
    """Refuse a masked array with masked entries, which ``np.asarray`` would read
    with the values under the mask; ``hint`` says what to do instead."""
    if isinstance(value, np.ma.MaskedArray) and np.ma.getmaskarray(value).any():
        raise ValueError(f"{name} is a masked array with masked entries; {hint}")


def check_int_tuple(value, name):
    """Validate None or a non-empty sequence of positive ints (layer sizes)."""
    if value is None:
        return None
    # Sets and mappings have a length but no order of layers; a 0-d array has no length.
    unordered = isinstance(value, (AbstractSet, Mapping)) or getattr(value, "ndim", 1) == 0
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or unordered:
        raise TypeError(
            f"{name} must be None or a tuple of ints, got {type(value).__name__} {value!r}."
        )
    if len(value) == 0:
        raise ValueError(f"{name}=() needs at least one entry, e.g. (16, 32).")
    return tuple(check_int(v, f"each entry of {name}", min_value=1) for v in value)


def check_dense(X, name="X"):
    """Refuse scipy sparse input with a message that says so."""
    if sp.issparse(X):
        raise TypeError(
            f"{name} is a sparse {type(X).__name__}; sparse input is not supported by the "
            f"autoencoder detectors. Pass a dense array, e.g. {name}.toarray()."
        )


def check_contamination(contamination):
    """Validate ``contamination``: ``'auto'`` or a float in (0, 0.5]."""
    if isinstance(contamination, str):
        if contamination != "auto":
            raise ValueError(
                f"contamination={contamination!r} is not a valid option; expected "
                "'auto' or a float in (0, 0.5]."
            )
        return contamination
    if isinstance(contamination, bool) or not isinstance(contamination, Real):
        raise TypeError(
            f"contamination must be 'auto' or a float in (0, 0.5], got "
            f"{type(contamination).__name__} {contamination!r}."
        )
    if not 0.0 < contamination <= 0.5:
        raise ValueError(
            f"contamination={contamination!r} must be in (0, 0.5]; it is the "
            "fraction of training samples flagged as anomalies. Use 'auto' for "
            "the robust default."
        )
    return float(contamination)


def check_int(value, name, *, min_value=None, max_value=None, allow_none=False, allow_auto=False):
    """Validate an integer parameter and return it as ``int`` (``None`` and ``'auto'``
    as they are, where allowed)."""
    if (value is None and allow_none) or (allow_auto and _is_auto(value)):
        return value
    if isinstance(value, bool) or not isinstance(value, Integral):
        expected = _expected("an int", allow_none, allow_auto)
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}.")
    if min_value is not None and value < min_value:
        raise ValueError(f"{name}={value!r} must be >= {min_value}.")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name}={value!r} must be <= {max_value}.")
    return int(value)


def check_bool(value, name):
    """Validate a boolean parameter (``bool`` or ``numpy.bool_``) and return it as ``bool``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}."
        )
    return bool(value)


def check_path(path, name="path", *, must_exist=False):
    """Validate a ``str`` or ``os.PathLike`` path (that exists, with ``must_exist``;
    ``must_exist='or-link'`` lets a dangling link through) and return it as a ``Path``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{name} must be a file path (str or os.PathLike), got {type(path).__name__} {path!r}."
        )
    path = Path(path)
    if must_exist and not path.exists() and not (must_exist == "or-link" and path.is_symlink()):
        raise FileNotFoundError(f"{name}: no such file or folder: '{path}'.")
    return path


def channels_first(shape):
    """``(C, H, W)`` of the shape of one image: grayscale ``(H, W)`` gets its channel."""
    return (1, *shape) if len(shape) == 2 else tuple(shape)


def check_image_shape(image_shape, n_features=None):
    """Validate ``image_shape`` (None, ``(H, W)`` or ``(C, H, W)``) and return
    ``(C, H, W)`` or None. One entry may be -1, as in ``numpy.reshape``; with
    ``n_features`` it is inferred and the shape must hold that many values."""
    if image_shape is None:
        return None
    ok = isinstance(image_shape, (tuple, list)) and len(image_shape) in (2, 3)
    ok = ok and all(isinstance(s, Integral) and not isinstance(s, bool) for s in image_shape)
    if not ok:
        raise TypeError(
            f"image_shape must be None or a tuple (H, W) or (C, H, W) of ints, got {image_shape!r}."
        )
    shape = tuple(int(s) for s in image_shape)
    n_wild = shape.count(-1)
    if n_wild > 1 or any(s < 1 and s != -1 for s in shape):
        raise ValueError(
            f"image_shape={shape!r} must hold positive sizes, with at most one -1 "
            "(a size inferred from the number of features, as in numpy.reshape)."
        )
    shape = channels_first(shape)
    if n_features is None:
        return shape
    if n_wild:
        known = math.prod(s for s in shape if s != -1)
        if n_features % known:
            raise ValueError(
                f"image_shape={image_shape!r} cannot hold rows of {n_features} "
                f"features: {n_features} is not a multiple of {known}."
            )
        shape = tuple(n_features // known if s == -1 else s for s in shape)
    if math.prod(shape) != n_features:
        raise ValueError(
            f"image_shape={image_shape!r} needs {math.prod(shape)} features per row, but X "
            f"has {n_features}; set image_shape to the size of the images in the rows."
        )
    return shape


def check_images(X, *, dtype="numeric", ensure_min_samples=1, image_shape=False):
    """``X`` as a checked array of channels-first images, ``(n, H, W)`` or ``(n, C, H, W)``.

    :func:`sklearn.utils.check_array` with ``allow_nd``: numeric, finite, at
    least ``ensure_min_samples`` images, each with at least one channel and
    pixel. A 4-D array whose last axis looks like channels (1, 3 or 4) and whose
    second does not is refused as channels-last, as reading it channels-first
    would mix pixels into channels. The message also names the way through for
    channels-first images that are 1, 3 or 4 pixels wide: rows, with an
    ``image_shape`` parameter where the caller has one (``image_shape=True``).
    """
    X = np.asarray(X)
    if X.ndim not in (3, 4):
        raise ValueError(
            f"X must hold images as (n, H, W) or (n, C, H, W), got {X.ndim}-D X of shape {X.shape}."
        )
    X = check_array(
        X,
        dtype=dtype,
        allow_nd=True,
        ensure_2d=False,
        ensure_min_samples=ensure_min_samples,
        input_name="X",
    )
    if X.ndim == 4 and X.shape[-1] in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
        if image_shape:
            rows = f"rows, X.reshape(len(X), -1), with image_shape={X.shape[1:]}"
        else:
            rows = "rows of their pixels, X.reshape(len(X), -1)"
        raise ValueError(
            f"X has shape {X.shape}, which looks channels-last (n, H, W, C); "
            "images must be channels-first (n, C, H, W). Convert them with "
            f"np.moveaxis(X, -1, 1). If they are channels-first images {X.shape[-1]} "
            f"pixels wide, pass them as {rows}."
        )
    check_image_size(channels_first(X.shape[1:]))
    return X


def check_image_size(shape):
    """``shape``, the ``(C, H, W)`` of images, after checking that it has no zero."""
    if min(shape) < 1:
        raise ValueError(
            f"X holds images of shape (C, H, W) = {tuple(shape)}; images need at least one "
            "channel and one pixel on each side."
        )
    return shape


def check_float(
    value, name, *, low=None, high=None, closed="neither", allow_none=False, allow_auto=False
):
    """Validate a real-valued parameter in an interval and return it as ``float``
    (``None`` and ``'auto'`` as they are, where allowed).

    ``closed`` is one of ``'neither'``, ``'left'``, ``'right'``, ``'both'``.
    """
    if (value is None and allow_none) or (allow_auto and _is_auto(value)):
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        expected = _expected("a float", allow_none, allow_auto)
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}.")
    left = "[" if closed in ("left", "both") else "("
    right = "]" if closed in ("right", "both") else ")"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    if not np.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number in {interval}.")
    if low is not None and (value < low or (value == low and left == "(")):
        raise ValueError(f"{name}={value!r} must be in {interval}.")
    if high is not None and (value > high or (value == high and right == ")")):
        raise ValueError(f"{name}={value!r} must be in {interval}.")
    return float(value)


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _expected(kind, allow_none, allow_auto):
    """What a parameter takes, for a message: ``kind``, ``'auto'``, None."""
    return " or ".join(["'auto'"] * allow_auto + [kind] + ["None"] * allow_none)


def check_option(value, name, options):
    """Validate that a string parameter is one of ``options``."""
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name}={value!r} is not supported; expected one of {listed}.")
    return value


def check_numeric_dtype(X, name="X"):
    """Refuse non-numeric inputs before scikit-learn's validation, which would
    coerce some of them; object arrays pass only when every entry is a number."""
    not_array = isinstance(X, (dict, set, frozenset)) and not sp.issparse(X)  # dok is a dict
    if X is None or isinstance(X, (str, bytes)) or not_array:
        raise TypeError(
            f"{name} must be an array-like of numbers, e.g. a numpy array of shape "
            f"(n_samples, n_features), got {type(X).__name__}."
        )
    check_unmasked(
        X,
        name,
        "detectors do not skip masked values. Fill them "
        f"(e.g. {name}.filled(value)) or drop those rows first.",
    )
    dtypes = []
    if hasattr(X, "dtypes") and not hasattr(X, "dtype"):  # pandas DataFrame
        dtypes = list(X.dtypes)
    elif hasattr(X, "dtype"):
        dtypes = [X.dtype]
    elif isinstance(X, (list, tuple)):
        try:
            dtypes = [np.asarray(X).dtype]
        except (ValueError, TypeError):  # ragged nested lists
            raise TypeError(
                f"{name} must be a numeric array-like with rows of equal length; "
                "got a ragged nested sequence."
            ) from None
    for dtype in dtypes:
        kind = getattr(dtype, "kind", None)
        if kind in ("U", "S", "V", "M", "m"):
            raise TypeError(
                f"{name} has dtype {dtype}; expected a numeric (integer or float) "
                f"array. Convert it first, e.g. np.asarray({name}, dtype=float)."
            )
        if kind == "c":
            raise ValueError(
                f"Complex data not supported: {name} has complex dtype {dtype}; "
                f"expected real numbers. Pass np.abs({name}) or {name}.real if "
                "that is what you mean."
            )
        if kind == "O":
            _check_object_entries(X, name)
            return


#: Entry types of an object array that are numbers ``float()`` reads as they are.
_REAL_TYPES = (float, int, np.floating, np.integer)


def _check_object_entries(X, name):
    """Refuse an object array (or column) unless every entry is a number: numpy would
    convert numbers given as text, such as ``'0001'``, silently."""
    entries = np.asarray(X, dtype=object).ravel()
    # The usual case, Python's and numpy's floats and integers only, is told from the
    # set of their types, without looking at each entry in Python. numpy counts its
    # timedelta64 as an integer, but float() refuses it: the loop below says so.
    if all(
        issubclass(kind, _REAL_TYPES) and not issubclass(kind, np.timedelta64)
        for kind in set(map(type, entries))
    ):
        return
    for value in entries:
        if isinstance(value, (str, bytes)):
            detail = f"the {type(value).__name__} {value!r:.40}: text is not read as a number"
        elif isinstance(value, Complex) and not isinstance(value, Real):
            raise ValueError(
                f"Complex data not supported: {name} has dtype object with the complex "
                f"entry {value!r}; expected real numbers."
            )
        else:
            try:
                float(value)
                continue
            except (TypeError, ValueError) as exc:
                detail = str(exc)
        raise TypeError(
            f"{name} has dtype object with an entry that is not a number ({detail}); "
            f"expected a numeric array. Convert the columns you mean as numbers first, "
            f"e.g. np.asarray({name}, dtype=float)."
        )


def check_magnitude(X, limit, name="X"):
    """Refuse training values larger in magnitude than ``limit``."""
    largest = max(float(np.max(X)), -float(np.min(X))) if np.size(X) else 0.0
    if largest > limit:
        raise ValueError(
            f"{name} has values up to {largest:.3g} in magnitude; training accepts values "
            f"within +-{limit:g}, beyond which squared deviations overflow float64. "
            f"Rescale {name}, e.g. with sklearn.preprocessing.StandardScaler or by dividing "
            "by a constant."
        )


#: Smallest standard deviation of training data that the autoencoders accept
#: where they measure squared errors in input units in float32: then errors
#: down to float32 precision relative to the spread stay normal float32
#: numbers, sqrt(tiny / eps), about 3.2e-16.
MIN_FLOAT32_SPREAD = float(np.sqrt(np.finfo(np.float32).tiny / np.finfo(np.float32).eps))
#: Largest such standard deviation: then the squared error of a sample up to
#: 1,000 spreads from its reconstruction stays finite in float32, about 1.8e16.
MAX_FLOAT32_SPREAD = float(np.sqrt(np.finfo(np.float32).max)) / 1e3


def check_float32_spread(spread, varies, center, where, name="X"):
    """Refuse training data that float32 errors cannot represent.

    ``spread`` is the standard deviation of each channel (or feature) as the
    network sees it in float32, ``varies`` whether the float64 data varies
    there, ``center`` its mean; ``where`` names entry ``{i}`` in messages. A
    varying channel whose float32 spread is 0 around a representable mean lost
    its variation to float32 rounding; one whose spread is below
    :data:`MIN_FLOAT32_SPREAD` (values that underflow included) would have
    its squared errors underflow, so that every score would be 0 and no
    anomaly would be seen; one above :data:`MAX_FLOAT32_SPREAD` would have
    them overflow, so that training would end in non-finite scores.
    """
    spread, varies, center = (
        np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (spread, varies, center)
    )
    wide = np.flatnonzero(spread > MAX_FLOAT32_SPREAD)
    if wide.size:
        i = int(wide[0])
        raise ValueError(
            f"{name} has a standard deviation of {spread[i]:.3g} in {where.format(i=i)}; "
            "the detector measures squared errors in input units in float32, which "
            f"overflow above a spread of {MAX_FLOAT32_SPREAD:.2g}. Rescale {name}, e.g. "
            "divide it by a constant or use sklearn.preprocessing.StandardScaler."
        )
    bad = np.flatnonzero(varies.astype(bool) & (spread < MIN_FLOAT32_SPREAD))
    if bad.size == 0:
        return
    i = int(bad[0])
    where = where.format(i=i)
    if spread[i] == 0 and abs(center[i]) >= MIN_FLOAT32_SPREAD:
        raise ValueError(
            f"{name} varies in {where} only beyond float32 precision around its mean "
            f"{center[i]:.7g}, so the network (float32, about 7 significant digits) sees "
            f"constant data. Subtract the mean first, e.g. {name} - {name}.mean(), or "
            "rescale it with sklearn.preprocessing.StandardScaler."
        )
    raise ValueError(
        f"{name} has a standard deviation of {spread[i]:.3g} in {where}; the "
        f"detector measures squared errors in input units in float32, which underflow "
        f"below a spread of {MIN_FLOAT32_SPREAD:.2g}, so every score would be 0. Rescale "
        f"{name}, e.g. multiply it by a constant or use sklearn.preprocessing.StandardScaler."
    )


def anomaly_labels(y, n_samples=None, *, name="y", other="X has {n} samples"):
    """Validate labels ``0`` = normal, ``1`` = anomaly (bools, a column vector, and
    ``n_samples`` of them if given, which ``other`` names) and return the boolean
    mask of anomalies."""
    check_unmasked(
        y,
        name,
        "a masked label is neither normal nor anomalous. Fill them "
        f"(e.g. {name}.filled(1)) or drop those samples.",
    )
    if sp.issparse(y):  # np.asarray would wrap it in a 0-d object array
        raise TypeError(
            f"{name} is a sparse {type(y).__name__}; expected a dense 1-D array of labels "
            f"(0 = normal, 1 = anomaly), e.g. {name}.toarray().ravel()."
        )
    y_arr = np.asarray(y)
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = y_arr.ravel()
    if y_arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of labels (0 = normal, 1 = anomaly), got shape "
            f"{y_arr.shape}."
        )
    if n_samples is not None and y_arr.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {y_arr.shape[0]} labels but {other.format(n=n_samples)}; they must match."
        )
    if y_arr.dtype.kind not in "biuf":
        raise TypeError(
            f"Unknown label type: {name} has dtype {y_arr.dtype}; expected labels "
            "0 (normal) and 1 (anomaly)"
            + (
                f" (a column of dtype object holding them: pass {name}.astype(int))."
                if y_arr.dtype == object
                else "."
            )
        )
    values = np.unique(y_arr)
    if not np.all(np.isin(values, (0, 1))):
        shown = values[:10].tolist()
        raise ValueError(
            f"{name} must contain only 0 (normal) and 1 (anomaly); got values {shown}. "
            "Map your labels first, e.g. y = (labels != normal_class).astype(int)."
        )
    return y_arr == 1


def check_labels(
    y, n_samples, other="X has {n} samples", why="detectors learn from normal samples (0) only"
):
    """Validate labels (:func:`anomaly_labels`) with at least one normal row, which
    ``why`` says is needed, and return the boolean mask of normal rows."""
    normal = ~anomaly_labels(y, n_samples, other=other)
    if not normal.any():
        raise ValueError(
            f"y marks every sample as an anomaly (1); {why}, so at least one normal "
            "sample is needed."
        )
    return normal


def check_scores(values, name, n=None, *, allow_inf=False):
    """Validate a non-empty 1-D array of scores (of length ``n`` if given).

    NaN is always refused: it has no rank. ``allow_inf`` accepts ``+-inf``,
    which rank above (below) every finite score: the detectors' output for a
    sample that overflows.
    """
    check_numeric_dtype(values, name)  # strings, complex numbers: not silently cast
    s = np.asarray(values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of scores, got shape {s.shape}.")
    if n is not None and s.shape[0] != n:
        raise ValueError(
            f"{name} has {s.shape[0]} scores but there are {n} labels; they must match."
        )
    nan = np.isnan(s)
    if nan.any():
        raise ValueError(
            f"{name} contains NaN at {int(nan.sum())} of {s.size} positions (the first at "
            f"index {int(np.argmax(nan))}); a NaN score has no rank. Find where it came "
            "from: the library's detectors never return NaN."
        )
    if not allow_inf and np.isinf(s).any():
        raise ValueError(
            f"{name} contains infinite values; expected finite scores. A detector gives "
            "inf to a sample that overflowed (far outside the training range), which "
            "cannot set a threshold: leave such samples out of the calibration data."
        )
    return s
