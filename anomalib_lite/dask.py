"""Scale out on Dask: score arrays and image files chunk by chunk, on any cluster.

A fitted detector is mapped over the chunks of a :class:`dask.array.Array`,
so that a collection too large for memory, or for one machine, is scored in
parallel by whatever scheduler is active: Dask's threads, a laptop
:class:`distributed.LocalCluster`, or a real cluster reached through a
:class:`distributed.Client`. The detector is shipped to each worker once,
not once per chunk.

Model search needs nothing from this module: every detector of the library
pickles small, so :class:`~sklearn.model_selection.GridSearchCV` with
``n_jobs=-1`` runs on joblib's process backend, or on a Dask cluster under
``joblib.parallel_backend("dask")``.

This module needs the optional extra ``pip install "anomalib_lite[dask]"``;
the rest of the library never imports Dask.
"""

import logging
from os import PathLike

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .utils._validation import check_bool, check_int, check_option

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without dask installed
    raise ImportError(
        "anomalib_lite.dask needs Dask, which is not installed. Install the "
        'extra with: pip install "anomalib_lite[dask]" (dask[array,bag] and '
        "distributed)."
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


def _apply(block, detector, method):
    """Run ``detector.method`` on one chunk (a task on a worker)."""
    return getattr(detector, method)(block)


def score_array(detector, X, *, method="score_samples", rechunk=False):
    """Map a fitted detector over the chunks of a Dask array, lazily.

    Each chunk of samples is scored by ``getattr(detector, method)`` in a task
    of the active Dask scheduler; nothing is computed until the result is
    (``.compute()``, ``.persist()``, ``dask.array.to_zarr``...). The detector
    enters the task graph once and reaches each worker once. The results equal
    the detector's own output on each chunk.

    Parameters
    ----------
    detector : fitted detector, Pipeline or dask-ml ParallelPostFit
        A fitted estimator with ``method``. A dask-ml ``ParallelPostFit``
        wrapper is unwrapped to its fitted estimator, so that methods it does
        not forward (``score_samples``...) are reachable.
    X : dask.array.Array of shape (n_samples, ...)
        Samples along axis 0, in the layout the detector expects: rows
        ``(n, n_features)`` or images ``(n, H, W)`` / ``(n, C, H, W)``. It
        must be chunked along axis 0 only.
    method : {'score_samples', 'decision_function', 'predict', \
            'reconstruction_error', 'anomaly_map'}, default='score_samples'
        Detector method to apply. ``anomaly_map`` gives one map per sample.
    rechunk : bool, default=False
        If X is chunked along other axes than the sample axis, merge those
        chunks instead of raising an error.

    Returns
    -------
    result : dask.array.Array
        Lazy array with X's chunks along axis 0: shape ``(n_samples,)`` for
        per-sample methods, ``(n_samples, H, W)`` for ``anomaly_map``; the
        dtype the method returns (float64 scores, int ``predict`` labels).

    Raises
    ------
    ValueError
        If X is chunked along a feature axis (and ``rechunk`` is False), has
        unknown chunk sizes, or the detector lacks ``method``.
    TypeError
        If X is not a numeric Dask array.

    Notes
    -----
    The output shape and dtype are found by applying ``method`` to one sample
    of zeros on the calling machine, which also checks that X's sample shape
    suits the detector before any task runs.

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
    detector = _unwrap(detector)
    check_bool(rechunk, "rechunk")
    _check_method(detector, method)
    check_is_fitted(detector)
    X = _check_dask_array(X, rechunk)

    probe = getattr(detector, method)(np.zeros((1, *X.shape[1:]), dtype=X.dtype))
    probe = np.asarray(probe)
    if probe.ndim < 1 or probe.shape[0] != 1:
        raise ValueError(
            f"{type(detector).__name__}.{method} returned shape {probe.shape} for one "
            "sample; expected one result per sample along axis 0."
        )
    out_tail = probe.shape[1:]
    chunks = (X.chunks[0], *((size,) for size in out_tail))
    # The detector becomes one key of the graph, shipped to each worker once.
    shipped = dask.delayed(detector, pure=True)
    return da.map_blocks(
        _apply,
        X,
        shipped,
        method=method,
        token=method,
        chunks=chunks,
        drop_axis=list(range(1, X.ndim)),
        new_axis=list(range(1, 1 + len(out_tail))) or None,
        dtype=probe.dtype,
        meta=np.empty((0,) * probe.ndim, dtype=probe.dtype),
    )


def _default_loader():
    from .datasets import load_images

    return load_images


def _load_chunk(paths, loader, sample_shape, dtype, load_kwargs):
    """Load one chunk of files (a task on a worker) and check its layout."""
    images = np.asarray(loader(list(paths), **load_kwargs))
    if images.shape != (len(paths), *sample_shape):
        raise ValueError(
            f"Loading the {len(paths)} files {str(paths[0])!r} to {str(paths[-1])!r} "
            f"gave shape {images.shape}; expected {(len(paths), *sample_shape)} like the first "
            "file. Images of differing sizes need a common size, e.g. size=(H, W) "
            "for load_images."
        )
    return images.astype(dtype, copy=False)


def score_files(
    detector, paths, *, method="score_samples", files_per_chunk=256, loader=None, **load_kwargs
):
    """Score a collection of image files lazily, without loading it whole.

    The files are split into chunks of ``files_per_chunk``; each chunk is read
    by ``loader`` inside a Dask task and scored there by :func:`score_array`,
    so that no machine holds more than a few chunks of images at a time.

    Parameters
    ----------
    detector : fitted detector, Pipeline or dask-ml ParallelPostFit
        A fitted estimator whose input layout is what ``loader`` returns.
    paths : sequence of str or os.PathLike
        Image files, in the order of the results. A folder is not accepted:
        list it first, e.g. ``sorted(Path(folder).glob("*.png"))``.
    method : {'score_samples', 'decision_function', 'predict', \
            'reconstruction_error', 'anomaly_map'}, default='score_samples'
        Detector method to apply.
    files_per_chunk : int, default=256
        Files read and scored per task. Memory per task grows with it.
    loader : callable or None, default=None
        ``loader(list_of_paths, **load_kwargs)`` returns an array with one
        image per path along axis 0. None uses
        :func:`anomalib_lite.datasets.load_images`.
    **load_kwargs : dict
        Passed to ``loader``, e.g. ``size=(28, 28)`` or ``dtype='float32'``.

    Returns
    -------
    result : dask.array.Array
        Lazy array, entry ``i`` for ``paths[i]``; see :func:`score_array`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.dask import score_files
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8)
    >>> folder = Path(tempfile.mkdtemp())
    >>> paths = [folder / f"{i}.png" for i in range(6)]
    >>> for image, path in zip(images, paths):
    ...     Image.fromarray(image).save(path)
    >>> def load_rows(files):
    ...     return np.stack([np.asarray(Image.open(f), dtype=float).ravel() for f in files])
    >>> det = PCADetector(n_components=2).fit(images.reshape(6, -1).astype(float))
    >>> scores = score_files(det, paths, files_per_chunk=4, loader=load_rows)
    >>> scores.chunks
    ((4, 2),)
    >>> np.allclose(scores.compute(), det.score_samples(images.reshape(6, -1)))
    True
    """
    if isinstance(paths, (str, bytes, PathLike)):
        raise TypeError(
            f"paths must be a sequence of file paths, got {type(paths).__name__} "
            f"{str(paths)!r}. For a folder pass e.g. sorted(Path(folder).glob('*.png'))."
        )
    paths = list(paths)
    if not paths:
        raise ValueError("paths is empty; pass at least one image file.")
    files_per_chunk = check_int(files_per_chunk, "files_per_chunk", min_value=1)
    if loader is None:
        loader = _default_loader()
    elif not callable(loader):
        raise TypeError(f"loader must be callable or None, got {type(loader).__name__}.")
    first = np.asarray(loader(paths[:1], **load_kwargs))
    if first.ndim < 2 or first.shape[0] != 1:
        raise ValueError(
            f"loader returned shape {first.shape} for one file; expected one "
            "image per path along axis 0."
        )
    sample_shape, dtype = first.shape[1:], first.dtype
    load = dask.delayed(_load_chunk, pure=True)
    chunks = []
    for start in range(0, len(paths), files_per_chunk):
        group = paths[start : start + files_per_chunk]
        chunks.append(
            da.from_delayed(
                load(group, loader, sample_shape, dtype, load_kwargs),
                shape=(len(group), *sample_shape),
                dtype=dtype,
            )
        )
    images = da.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0]
    return score_array(detector, images, method=method)
