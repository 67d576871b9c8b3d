"""Score Dask arrays and image files chunk by chunk, on any Dask scheduler.

A fitted detector is mapped over the chunks of a :class:`dask.array.Array`, so
data too large for memory or for one machine is scored in parallel; the
detector reaches each worker once. Needs the ``dask`` extra (``pip install -e
".[dask]"`` from the repository root); the rest of the library never imports Dask.
"""

import logging
import warnings
from os import PathLike

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .utils._validation import check_bool, check_int, check_option, check_unmasked

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without dask installed
    raise ImportError(
        "anomalib_lite.dask needs Dask, which is not installed. Install the "
        'dask extra with: pip install -e ".[dask]" from the repository root '
        "(dask[array,bag] and distributed)."
    ) from exc

__all__ = ["METHODS", "score_array", "score_files"]

logger = logging.getLogger(__name__)

#: Detector methods :func:`score_array` can map over chunks.
METHODS = (
    "score_samples",
    "decision_function",
    "predict",
    "reconstruction_error",
    "anomaly_map",
)


def _unwrap(detector):
    """The fitted detector inside dask-ml's ``ParallelPostFit`` wrapper."""
    try:
        from dask_ml.wrappers import Incremental, ParallelPostFit
    except ImportError:
        return detector
    if isinstance(detector, ParallelPostFit) and not isinstance(detector, Incremental):
        return detector.estimator
    return detector


def _check_method(detector, method):
    check_option(method, "method", METHODS)
    if not callable(getattr(detector, method, None)):
        available = [m for m in METHODS if callable(getattr(detector, m, None))]
        raise ValueError(
            f"method={method!r} is not a method of {type(detector).__name__}; "
            f"it has {available}. Pick one of those."
        )


def _check_dask_array(X, rechunk):
    if not isinstance(X, da.Array):
        raise TypeError(
            f"X must be a dask.array.Array, got {type(X).__name__}. Wrap in-memory "
            "data with dask.array.from_array(X, chunks=(rows_per_chunk, *X.shape[1:])), "
            "or score it directly with the detector's own methods."
        )
    if X.ndim < 2:
        raise ValueError(
            f"X must have a sample axis and at least one feature axis, got shape "
            f"{X.shape}. Reshape one sample to X.reshape(1, -1)."
        )
    if X.dtype.kind not in "biuf":
        raise TypeError(
            f"X has dtype {X.dtype}; expected a numeric (integer or float) array. "
            "Convert it first, e.g. X.astype('float32')."
        )
    if any(np.isnan(s) for s in X.shape):
        raise ValueError(
            f"X has unknown chunk sizes (shape {X.shape}); call X.compute_chunk_sizes() first."
        )
    split = [axis for axis in range(1, X.ndim) if len(X.chunks[axis]) > 1]
    if split:
        if not rechunk:
            raise ValueError(
                f"X is chunked along axes {split} (chunks {X.chunksize}); each sample "
                "must lie whole in one chunk, so X may be chunked along axis 0 only. "
                f"Pass rechunk=True or call X.rechunk({{{', '.join(f'{a}: -1' for a in split)}}})."
            )
        X = X.rechunk({axis: -1 for axis in split})
        logger.debug("rechunked X to chunks %s", X.chunksize)
    return X


def _apply(block, detector, method, out_tail, out_dtype):
    """Run ``detector.method`` on one chunk (a task on a worker).

    An empty chunk (as boolean selection leaves) gives an empty result:
    detectors refuse zero samples, but zero rows have zero results.
    """
    if block.shape[0] == 0:
        return np.empty((0, *out_tail), dtype=out_dtype)
    return getattr(detector, method)(block)


def _probe(detector, method, sample):
    """Shape of one result past the sample axis, and its dtype, from ``sample``
    (one sample, with its sample axis)."""
    probe = np.asarray(getattr(detector, method)(sample))
    if probe.ndim < 1 or probe.shape[0] != 1:
        raise ValueError(
            f"{type(detector).__name__}.{method} returned shape {probe.shape} for one "
            "sample; expected one result per sample along axis 0."
        )
    return probe.shape[1:], probe.dtype


def _probe_output(detector, method, X):
    """:func:`_probe` on one sample of zeros, or, where the detector refuses zeros
    (a pipeline that takes logarithms, say), on X's first sample, computed."""
    try:
        with warnings.catch_warnings():  # about the zeros, not the user's data
            warnings.simplefilter("ignore")
            return _probe(detector, method, np.zeros((1, *X.shape[1:]), dtype=X.dtype))
    except Exception as zeros_error:
        try:
            return _probe(detector, method, np.asarray(X[:1].compute()))
        except Exception as error:
            raise error from zeros_error


def _checked_detector(detector, method):
    detector = _unwrap(detector)
    _check_method(detector, method)
    check_is_fitted(detector)
    return detector


def score_array(detector, X, *, method="score_samples", rechunk=False):
    """Map a fitted detector over the chunks of a Dask array, lazily.

    Each chunk is scored by ``getattr(detector, method)`` in one task; the
    results equal the detector's own output on each chunk. A score may
    differ in its last bit with the chunk's size, so a sample whose score
    ties the threshold to the last bit may change label with the chunking.

    Parameters
    ----------
    detector : fitted detector, Pipeline or dask-ml ParallelPostFit
        A fitted estimator with ``method``; a ``ParallelPostFit`` is unwrapped
        so that methods it does not forward are reachable.
    X : dask.array.Array of shape (n_samples, ...)
        Samples along axis 0 in the detector's layout, chunked along axis 0 only.
    method : {'score_samples', 'decision_function', 'predict', \
            'reconstruction_error', 'anomaly_map'}, default='score_samples'
        Detector method to apply. ``anomaly_map`` gives one map per sample.
    rechunk : bool, default=False
        Merge chunks along feature axes instead of raising an error.

    Returns
    -------
    result : dask.array.Array
        Lazy array with X's chunks along axis 0, shape ``(n_samples,)``, or
        ``(n_samples, H, W)`` for ``anomaly_map``, in the method's dtype.

    Raises
    ------
    ValueError
        If X is chunked along a feature axis (and ``rechunk`` is False), has
        unknown chunk sizes, or the detector lacks ``method``.
    TypeError
        If X is not a numeric Dask array.

    Notes
    -----
    ``method`` runs once on one sample of zeros locally, to find the output
    shape and dtype and to check X's sample shape before any task runs. Where
    it refuses zeros, it runs on X's first sample instead, which computes the
    first chunk once.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.dask import score_array
    >>> X = np.random.default_rng(0).normal(size=(1000, 8))
    >>> det = PCADetector(n_components=3).fit(X)
    >>> scores = score_array(det, da.from_array(X, chunks=(250, 8)))
    >>> scores.shape, scores.chunks, scores.dtype
    ((1000,), ((250, 250, 250, 250),), dtype('float64'))
    >>> np.allclose(scores.compute(scheduler="synchronous"), det.score_samples(X))
    True
    """
    check_bool(rechunk, "rechunk")
    detector = _checked_detector(detector, method)
    X = _check_dask_array(X, rechunk)

    out_tail, out_dtype = _probe_output(detector, method, X)
    chunks = (X.chunks[0], *((size,) for size in out_tail))
    # The detector becomes one key of the graph, shipped to each worker once.
    shipped = dask.delayed(detector, pure=True)
    return da.map_blocks(
        _apply,
        X,
        shipped,
        method=method,
        out_tail=out_tail,
        out_dtype=out_dtype,
        token=method,
        chunks=chunks,
        drop_axis=list(range(1, X.ndim)),
        new_axis=list(range(1, 1 + len(out_tail))) or None,
        dtype=out_dtype,
        meta=np.empty((0,) * (1 + len(out_tail)), dtype=out_dtype),
    )


def _default_loader():
    from .datasets import load_images

    return load_images


def _check_reading(load_kwargs):
    from .datasets import _check_reading_options

    known = ("size", "color_mode", "dtype", "resample", "on_error")
    _check_reading_options(**{k: v for k, v in load_kwargs.items() if k in known})


def _load_chunk(paths, loader, sample_shape, dtype, load_kwargs):
    """Load one chunk of files (one image per path)."""
    return _checked_chunk(loader(list(paths), **load_kwargs), paths, sample_shape, dtype)


def _checked_chunk(images, paths, sample_shape, dtype):
    """``images`` of ``paths`` in the layout of the first file, or a ValueError."""
    span = (
        f"the file {str(paths[0])!r}"
        if len(paths) == 1
        else f"the {len(paths)} files {str(paths[0])!r} to {str(paths[-1])!r}"
    )
    check_unmasked(
        images,
        f"The chunk loaded from {span}",
        "detectors do not skip masked values. Make the loader fill them, e.g. with .filled(value).",
    )
    images = np.asarray(images)
    if images.shape[:1] != (len(paths),):
        raise ValueError(
            f"Loading {span} gave {images.shape[0] if images.ndim else 0} images; the "
            "loader must return one image per path, in order (a loader that skips "
            "unreadable files cannot keep the results in place)."
        )
    if images.shape[1:] != tuple(sample_shape):
        raise ValueError(
            f"Loading {span} gave shape {images.shape}; expected "
            f"{(len(paths), *sample_shape)} like the first file. Images of differing "
            "sizes need a common size, e.g. size=(H, W) for load_images."
        )
    # The results' dtype was found on the first file's dtype, hence the cast, which
    # may round (float64 into float32) but not wrap (16-bit pixels into uint8).
    cast = images.astype(dtype, copy=False)
    if _cast_changes_values(images, cast):
        raise ValueError(
            f"Loading {span} gave dtype {images.dtype} with values that the first "
            f"file's dtype, {np.dtype(dtype)}, cannot hold. Make the loader return one "
            "dtype for every file, e.g. with .astype('float32')."
        )
    return cast


def _cast_changes_values(images, cast):
    """Whether casting ``images`` to ``cast``'s dtype did more than round: truncate
    a fraction or sign, wrap an integer, or overflow a finite value to infinity."""
    if np.can_cast(images.dtype, cast.dtype, casting="safe") or images.size == 0:
        return False
    if cast.dtype.kind == "f" and images.dtype.kind in "biuf":
        return bool(np.any(np.isinf(cast) & np.isfinite(images)))
    if cast.dtype.kind in "iu" and images.dtype.kind in "biu":
        info = np.iinfo(cast.dtype)
        return bool(images.min() < info.min or images.max() > info.max)
    return True


def _load_each(paths, loader, sample_shape, dtype, load_kwargs):
    """Load files one by one; the images read and a mask of the files read.

    With ``on_error='warn'`` a file that cannot be read is skipped with the
    loader's warning; reading each file on its own keeps the others in place.
    """
    kwargs = {**load_kwargs, "on_error": "raise"}
    images, read = [], np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        try:
            image = loader([path], **kwargs)
        except ValueError as exc:
            warnings.warn(f"{exc} Skipped.", UserWarning, stacklevel=2)
            continue
        # Checked file by file: one of another size would otherwise fail the
        # concatenation below with NumPy's message, which names no file.
        images.append(_checked_chunk(image, [path], sample_shape, dtype))
        read[i] = True
    if not images:
        return np.empty((0, *sample_shape), dtype=dtype), read
    return np.concatenate(images), read


def _score_chunk(paths, detector, method, load, out_tail, out_dtype):
    """Load and score one chunk of files (a task on a worker).

    Files that could not be read get NaN (0 from ``predict``), with a warning
    that counts and names them.
    """
    images, read = load(paths)
    if read.all():
        return _apply(images, detector, method, out_tail, out_dtype)
    out = np.full((len(paths), *out_tail), _MISSING.get(np.dtype(out_dtype).kind, 0), out_dtype)
    out[read] = _apply(images, detector, method, out_tail, out_dtype)
    skipped = [str(p) for p, ok in zip(paths, read, strict=True) if not ok]
    warnings.warn(
        f"{len(skipped)} of the {len(paths)} files of a chunk could not be read and were "
        f"skipped; their results are {'NaN' if out.dtype.kind in 'fc' else 0}: "
        f"{', '.join(repr(p) for p in skipped[:5])}{' ...' if len(skipped) > 5 else ''}.",
        UserWarning,
        stacklevel=2,
    )
    return out


#: What a skipped file's result holds, by the kind of the output's dtype:
#: NaN in float results, 0 (neither normal +1 nor anomaly -1) from ``predict``.
_MISSING = {"f": np.nan, "c": np.nan}


class _Loader:
    """``load(paths) -> (images, read mask)`` for one chunk; a picklable task argument."""

    def __init__(self, loader, sample_shape, dtype, load_kwargs, each):
        self.args = (loader, sample_shape, dtype, load_kwargs)
        self.each = each

    def __call__(self, paths):
        if self.each:
            return _load_each(paths, *self.args)
        return _load_chunk(paths, *self.args), np.ones(len(paths), dtype=bool)


def _first_image(paths, loader, load_kwargs, each):
    """The first image that loads, to learn the layout; with ``each``, unreadable
    files before it are passed over (their chunk warns about them)."""
    kwargs = {**load_kwargs, "on_error": "raise"} if each else load_kwargs
    for path in paths if each else paths[:1]:
        try:
            first = np.asarray(loader([path], **kwargs))
        except ValueError:
            if not each:
                raise
            continue
        if first.ndim < 2 or first.shape[0] != 1:
            raise ValueError(
                f"loader returned shape {first.shape} for one file; expected one "
                "image per path along axis 0."
            )
        return first
    raise ValueError(
        f"None of the {len(paths)} files could be read (on_error='warn'), e.g. "
        f"{str(paths[0])!r}; load_images(paths[:1]) says why."
    )


def score_files(
    detector, paths, *, method="score_samples", files_per_chunk=256, loader=None, **load_kwargs
):
    """Score a collection of image files lazily, without loading it whole.

    Each chunk of ``files_per_chunk`` files is read by ``loader`` and scored
    inside one Dask task; the detector reaches each worker once.

    Parameters
    ----------
    detector : fitted detector, Pipeline or dask-ml ParallelPostFit
        A fitted estimator whose input layout is what ``loader`` returns.
    paths : sequence of str or os.PathLike
        Image files, in the order of the results (not a folder).
    method : {'score_samples', 'decision_function', 'predict', \
            'reconstruction_error', 'anomaly_map'}, default='score_samples'
        Detector method to apply.
    files_per_chunk : int, default=256
        Files read and scored per task. Memory per task grows with it.
    loader : callable or None, default=None
        ``loader(list_of_paths, **load_kwargs)`` returns one image per path
        along axis 0, of the first file's shape; each chunk is cast to the
        first file's dtype, and one whose values the cast would change (wrap,
        truncate or overflow; floats into an integer dtype, always) raises a
        ValueError. None uses
        :func:`anomalib_lite.datasets.load_images`.
    **load_kwargs : dict
        Passed to ``loader``, e.g. ``size=(28, 28)`` or ``dtype='float32'``
        (not ``return_paths``: entry ``i`` of the result is ``paths[i]``'s).
        With the default loader, ``on_error='warn'`` skips files that cannot
        be read (see :func:`~anomalib_lite.datasets.load_images`) and keeps
        their place in the result; see Returns.

    Returns
    -------
    result : dask.array.Array
        Lazy array, entry ``i`` for ``paths[i]``; see :func:`score_array`.
        The entry of a file skipped with ``on_error='warn'`` is NaN (its
        whole map for ``anomaly_map``) and 0 for ``predict`` (neither +1 nor
        -1); its chunk warns, counting and naming the skipped files. Find
        them afterwards with ``np.isnan(result)`` (or ``result == 0``).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.dask import score_files
    >>> X = np.random.default_rng(0).normal(size=(6, 16))
    >>> folder = Path(tempfile.mkdtemp())
    >>> paths = [folder / f"{i}.npy" for i in range(6)]
    >>> for row, path in zip(X, paths):
    ...     np.save(path, row)
    >>> def load_rows(files):
    ...     return np.stack([np.load(f) for f in files])
    >>> det = PCADetector(n_components=2).fit(X)
    >>> scores = score_files(det, paths, files_per_chunk=4, loader=load_rows)
    >>> scores.chunks
    ((4, 2),)
    >>> np.allclose(scores.compute(), det.score_samples(X))
    True
    """
    if isinstance(paths, (str, bytes, PathLike)):
        raise TypeError(
            f"paths must be a sequence of file paths, got {type(paths).__name__} "
            f"{str(paths)!r}. For a folder pass e.g. sorted(Path(folder).glob('*.png'))."
        )
    if isinstance(paths, (set, frozenset)):
        raise TypeError(
            f"paths must be a sequence of file paths, got an unordered {type(paths).__name__}; "
            "result i is that of paths[i], so pass them in an order, e.g. sorted(paths)."
        )
    paths = list(paths)
    if not paths:
        raise ValueError("paths is empty; pass at least one image file.")
    files_per_chunk = check_int(files_per_chunk, "files_per_chunk", min_value=1)
    default = loader is None
    if default:
        if load_kwargs.get("return_paths"):
            raise TypeError(
                "score_files takes no return_paths: result i is that of paths[i] (NaN "
                "for a file skipped with on_error='warn'), so the paths are known."
            )
        loader = _default_loader()
        # Checked once here: with on_error='warn' each file is tried on its own, and
        # a bad option (color_mode='bgr') would read as every file being unreadable.
        _check_reading(load_kwargs)
    elif not callable(loader):
        raise TypeError(f"loader must be callable or None, got {type(loader).__name__}.")
    detector = _checked_detector(detector, method)
    # load_images skips unreadable files with on_error='warn': then each file
    # is read on its own, so that a skipped file keeps its place as a NaN.
    each = default and load_kwargs.get("on_error") == "warn"
    first = _first_image(paths, loader, load_kwargs, each)
    sample_shape, dtype = first.shape[1:], first.dtype
    out_tail, out_dtype = _probe(detector, method, first)
    load = _Loader(loader, sample_shape, dtype, load_kwargs, each)
    task = dask.delayed(_score_chunk, pure=True)
    shipped = dask.delayed(detector, pure=True)
    chunks = []
    for start in range(0, len(paths), files_per_chunk):
        group = paths[start : start + files_per_chunk]
        chunks.append(
            da.from_delayed(
                task(group, shipped, method, load, out_tail, out_dtype),
                shape=(len(group), *out_tail),
                dtype=out_dtype,
            )
        )
    return da.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0]
