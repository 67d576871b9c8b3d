"""Export a fitted detector to ONNX, to score where neither PyTorch nor Python runs.

:func:`export` writes one ONNX graph that takes the raw input, in the units
and layout the detector was fitted on, and does the whole scoring inside:
the conversion to float, the per-channel standardization, the padding to the
network's size and the cropping back, the network, the image score and the
threshold. There is no second preprocessing path to keep in step: the graph
is traced from the detector's own torch code, the code that
``score_samples`` runs.

The graph has one input, ``input``, of shape ``(n, *input_shape)`` with a
dynamic batch size ``n``, and these outputs:

* ``score`` (float64, ``(n,)``): :meth:`score_samples`, higher = more normal;
* ``decision`` (float64, ``(n,)``): :meth:`decision_function`, ``score``
  minus the fitted (or calibrated) ``offset_``;
* ``is_anomaly`` (bool, ``(n,)``): ``decision < 0``, that is
  ``predict(X) == -1`` for every sample whose decision is not zero to
  within rounding. The graph sums in another order than the library (which
  itself rounds a row alone and in a batch differently), so ``score`` may
  differ in its last bits: a sample whose score ties the threshold to the
  last bit, such as the training or calibration sample whose score set it,
  may get either label;
* ``anomaly_map`` (float64, ``(n, H, W)``), for
  :class:`~anomalib_lite.ConvAutoencoderDetector`,
  :class:`~anomalib_lite.DraemDetector` and a
  :class:`~anomalib_lite.PCADetector` fitted on images only:
  :meth:`anomaly_map`, smoothing included.

The graph uses ONNX opset :data:`OPSET`. Its metadata (``metadata_props``)
records the library version, the detector class, its parameters as JSON,
the input shape and dtype, ``offset_`` and the threshold on the anomaly
score (``-offset_``).

Exporting needs the optional packages ``onnx`` and ``onnxscript`` (PyTorch's
``torch.export``-based ONNX exporter runs on them), and scoring the file with
Python needs ``onnxruntime``: the ``onnx`` extra, ``pip install -e ".[onnx]"`` from the
repository root.
"""

import contextlib
import copy
import errno
import json
import logging
import math
import threading
import warnings

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._version import __version__
from .nn.conv import UnfoldedConvTranspose2d
from .pca import PCADetector
from .thresholds import CalibratedDetector
from .utils._files import check_target, write_atomically
from .utils._maps import blur_kernel_size, combine_map_parts, gaussian_kernel, mirror_taps
from .utils._torch import process_wide
from .utils._validation import channels_first, check_bool, check_path

__all__ = ["INPUT_DTYPES", "INPUT_NAME", "OPSET", "OUTPUT_NAMES", "export"]

#: ONNX operator set of the exported graphs (supported by onnxruntime >= 1.14).
OPSET = 18
#: Name of the graph's input.
INPUT_NAME = "input"
#: Names of the graph's outputs; ``anomaly_map`` only for image detectors.
OUTPUT_NAMES = ("score", "decision", "is_anomaly", "anomaly_map")
#: Input dtypes a graph can take.
INPUT_DTYPES = ("uint8", "float32", "float64")
#: Key prefix of the entries written to the ONNX metadata.
METADATA_PREFIX = "anomalib_lite."


def _import_exporter():
    """Check for the exporter's optional packages, with a hint where they are missing."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"anomalib_lite.onnx.export needs the optional packages onnx and onnxscript "
            f'({exc}); install them with: pip install -e ".[onnx]" from the repository root'
        ) from None


def _check_exportable(detector):
    """The detector, fitted and of a kind the export can represent."""
    from ._torch_detector import TorchDetector

    if isinstance(detector, Pipeline):
        raise TypeError(
            "detector is a Pipeline; only anomalib_lite detectors export to ONNX, not the "
            "scikit-learn transformers before them. Fit the detector on the transformed "
            "data and export it, or move the preprocessing into the detector (the image "
            "detectors standardize their input themselves)."
        )
    if not isinstance(detector, (PCADetector, TorchDetector, CalibratedDetector)):
        raise TypeError(
            f"detector must be a fitted PCADetector, ConvAutoencoderDetector, "
            f"DraemDetector, AutoencoderDetector or a CalibratedDetector wrapping one, got "
            f"{type(detector).__name__}."
        )
    try:
        check_is_fitted(detector)
    except NotFittedError:
        raise NotFittedError(
            f"This {type(detector).__name__} is not fitted, so there is no model to "
            "export; call fit first."
        ) from None
    if isinstance(detector, CalibratedDetector):
        _check_exportable(detector.detector_)
        return detector
    steps = detector._projection()[0] if hasattr(detector, "_projection") else 0
    if steps:
        raise ValueError(
            f"projection_steps={steps}: the projection moves each image by gradients "
            "of the network, which an ONNX graph does not compute. Only a detector "
            "fitted and scoring with projection_steps=0 exports."
        )
    if hasattr(detector, "offset_"):
        detector._check_offset_scoring()  # the graph compares its scores with offset_
    else:
        raise NotFittedError(
            f"This {type(detector).__name__} has trained weights but no threshold (offset_) "
            "yet, as a checkpoint written during a fit has: the graph's decision and label "
            "need it. Finish the fit (fit with warm_start=True and checkpoint_path set to "
            "the checkpoint), then export."
        )
    return detector


def _inner(detector):
    """The detector that scores: a calibrated detector's wrapped one, however deeply
    calibrated detectors are nested (each keeps its wrapped detector's scores)."""
    while isinstance(detector, CalibratedDetector):
        detector = detector.detector_
    return detector


def _check_input(detector, input_shape, input_dtype):
    """Validate ``input_shape`` and ``input_dtype`` against the detector's own checks."""
    if isinstance(input_dtype, str | type | np.dtype):
        try:
            name = np.dtype(input_dtype).name
        except TypeError:
            name = None
    else:
        raise TypeError(
            f"input_dtype must be one of {INPUT_DTYPES} (a string or numpy dtype), got "
            f"{type(input_dtype).__name__} {input_dtype!r}."
        )
    if name not in INPUT_DTYPES:
        raise ValueError(
            f"input_dtype={input_dtype!r} is not supported; pass one of {INPUT_DTYPES}: the "
            "dtype of the arrays the graph will be given (uint8 for 8-bit images)."
        )
    if input_shape is None:
        input_shape = detector.sample_shape_
    ints = isinstance(input_shape, tuple | list) and all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) for s in input_shape
    )
    if not ints:
        raise TypeError(
            f"input_shape must be None or a tuple of ints (the shape of one sample, without "
            f"the batch axis), got {type(input_shape).__name__} {input_shape!r}."
        )
    if not input_shape or min(input_shape) < 1:
        raise ValueError(
            f"input_shape={tuple(input_shape)!r} must hold at least one size, each >= 1, "
            "e.g. (28, 28) or (3, 64, 64)."
        )
    input_shape = tuple(int(s) for s in input_shape)
    probe = np.zeros((1, *input_shape), dtype=name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector.score_samples(probe)
    except ValueError as exc:
        raise ValueError(
            f"The {type(detector).__name__} refuses input of shape (n, "
            f"{', '.join(map(str, input_shape))}) and dtype {name} (input_shape="
            f"{input_shape!r}, input_dtype={name!r}), so no graph can take it: {exc}"
        ) from None
    return input_shape, name


def _scorer(detector):
    """An ``nn.Module``: raw input tensor -> (anomaly score, anomaly map or None)."""
    detector = _inner(detector)
    if isinstance(detector, PCADetector):
        return _PCAScorer(detector)
    return _TorchScorer(detector)


class _TorchScorer(nn.Module):
    """A torch detector's own preprocessing, network, image score and map."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector
        self.network = copy.deepcopy(detector.module_).cpu().eval()
        for layer in self.network.modules():
            if isinstance(layer, UnfoldedConvTranspose2d):
                layer.unfolded = False  # one plain ConvTranspose in the graph

    def forward(self, x):
        det = self.detector
        z = det._preprocess(x)
        out = self.network(z)
        maps = det._pixel_map(z, out) if hasattr(det, "anomaly_map") else None
        return det._score_tensor(z, out), maps


class _PCAScorer(nn.Module):
    """PCADetector's statistic from its fitted arrays, in float64 as it computes it."""

    def __init__(self, detector):
        super().__init__()
        f64 = torch.float64
        self.statistic = detector._statistic()  # the fitted choice of 'auto'
        theta1 = float(detector.theta_[0]) if detector.theta_[0] > 0 else 1.0
        self.n_components = int(detector.n_components_)
        shape = detector.sample_shape_
        # Images give (C, H, W) maps, summed over C as anomaly_map sums them.
        self.map_shape = None if len(shape) == 1 else channels_first(shape)
        for name, value in [
            ("mean", detector.mean_),
            ("components", detector.components_),
            ("inv_lambda", detector._inv_lambda),
        ]:
            self.register_buffer(name, torch.as_tensor(value, dtype=f64, device="cpu"))
        # A float64 tensor: a Python float would be exported as a float32 constant.
        self.register_buffer("theta1", torch.tensor(theta1, dtype=f64, device="cpu"))
        # A smoothed map: the detector's blur, parts and edge correction (anomaly_map).
        self.sigma = detector._fitted_sigma() if self.map_shape is not None else 0.0
        if self.sigma > 0:
            energy_scale = torch.tensor(float(detector.energy_scale_), dtype=f64, device="cpu")
            self.register_buffer("energy_scale", energy_scale)
            edge = torch.as_tensor(detector.edge_scale_, dtype=f64, device="cpu")
            self.register_buffer("edge_scale", edge)
            # The blur as weighted sums of mirrored pixels: onnxruntime has no float64
            # convolution, and a product by a blur matrix would add its zeros times a
            # pixel that overflowed (0 * inf = NaN) to every pixel of the row.
            _, height, width = self.map_shape
            self.blur_sizes = {}
            for name, side in (("rows", height), ("columns", width)):
                size = blur_kernel_size(self.sigma, side)
                self.blur_sizes[name] = size
                if size == 1:
                    continue
                weights = gaussian_kernel(size, self.sigma)
                self.register_buffer(
                    f"blur_{name}", torch.as_tensor(weights, dtype=f64, device="cpu")
                )
                index = torch.as_tensor(
                    mirror_taps(side, size).ravel(), dtype=torch.int64, device="cpu"
                )
                self.register_buffer(f"taps_{name}", index)

    def _blur_axis(self, images, name, dim):
        """The blur along axis ``dim`` (-2 rows, -1 columns) of ``(n, C, H, W)`` images."""
        size = self.blur_sizes[name]
        if size == 1:
            return images
        taps = images.index_select(dim, getattr(self, f"taps_{name}"))
        taps = taps.unflatten(dim, (size, images.shape[dim]))  # tap axis before ``dim``
        weights = getattr(self, f"blur_{name}").view(size, *[1] * -dim)
        return (taps * weights).sum(dim - 1)

    def _blur(self, images):
        return self._blur_axis(self._blur_axis(images, "rows", -2), "columns", -1)

    def _map(self, r):
        r = r.view(-1, *self.map_shape)
        if self.sigma == 0:
            return (r * r).sum(1)
        square = self._blur(r).square().sum(1)
        energy = self._blur(r * r).sum(1)
        return combine_map_parts(square, energy, self.energy_scale) / self.edge_scale

    def forward(self, x):
        xc = x.to(torch.float64).reshape(x.shape[0], -1) - self.mean
        t = xc @ self.components.T
        r = xc - t @ self.components
        maps = None if self.map_shape is None else self._map(r)
        if self.statistic == "max":
            return maps.flatten(1).amax(1), maps
        t2 = (t * t) @ self.inv_lambda
        if self.statistic == "t2":
            return t2, maps
        spe = (r * r).sum(1)
        if self.statistic == "spe":
            return spe, maps
        return spe / self.theta1 + t2 / self.n_components, maps


class _Graph(nn.Module):
    """The exported module: raw input -> the named outputs of the public methods."""

    def __init__(self, detector):
        super().__init__()
        self.scorer = _scorer(detector)
        # A float64 tensor: a Python float would be exported as a float32 constant.
        offset = torch.tensor(float(detector.offset_), dtype=torch.float64, device="cpu")
        self.register_buffer("offset", offset)

    def forward(self, x):
        anomaly, maps = self.scorer(x)
        anomaly = anomaly.to(torch.float64)
        # As score_samples: a score that overflowed is maximally anomalous.
        anomaly = torch.where(torch.isfinite(anomaly), anomaly, math.inf)
        score = -anomaly
        decision = score - self.offset
        outputs = (score, decision, decision < 0)
        if maps is not None:
            # As anomaly_map: a pixel that overflowed is inf, never NaN.
            maps = maps.to(torch.float64)
            outputs = (*outputs, torch.where(torch.isnan(maps), math.inf, maps))
        return outputs


def _params_json(estimator):
    """The parameters as JSON; nested estimators as ``{"class", "params"}``."""

    def encode(value):
        if hasattr(value, "get_params"):
            return {"class": type(value).__name__, "params": _params(value)}
        if isinstance(value, tuple | list):
            return [encode(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return repr(value)

    def _params(est):
        return {k: encode(v) for k, v in est.get_params(deep=False).items()}

    return json.dumps(_params(estimator), sort_keys=True)


def _metadata(detector, input_shape, input_dtype, outputs):
    return {
        "version": __version__,
        "detector": type(detector).__name__,
        "params": _params_json(detector),
        "input_shape": json.dumps(["n", *input_shape]),
        "input_dtype": input_dtype,
        "outputs": json.dumps(list(outputs)),
        "offset": repr(float(detector.offset_)),
        "threshold": repr(-float(detector.offset_)),
    }


#: The loggers of the exporter and of the graph optimizer it runs, whose INFO notices
#: (tens per export) say nothing about the exported graph.
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")
_QUIET = {"lock": threading.Lock(), "blocks": 0, "kept": None}


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's notices about packages and APIs the graph does not use."""
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]

    def enter():
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        return levels

    def leave(levels):
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)

    with process_wide(_QUIET, enter, leave), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*training mode.*")
        yield


def _fold_constants(model):
    """Fold the constant parts of the exported ``onnx_ir`` model in place, and remove
    the nodes left unused."""
    import onnxscript.optimizer

    onnxscript.optimizer.fold_constants(model)
    onnxscript.optimizer.remove_unused_nodes(model)


def _exists_error(path):
    return FileExistsError(
        errno.EEXIST,
        "A file already exists there and export() does not overwrite files by default; "
        "pass overwrite=True to replace it (atomically) or choose another path",
        str(path),
    )


def export(detector, path, *, input_shape=None, input_dtype="float32", overwrite=False):
    """Write a fitted detector to an ONNX file that scores as the detector does.

    The graph takes raw samples (no preprocessing is left to the caller)
    and returns ``score``, ``decision``, ``is_anomaly`` and, for images,
    ``anomaly_map``: see the module docstring. It is traced from the
    detector's own scoring code, so that onnxruntime's outputs equal the
    library's to float rounding.

    Parameters
    ----------
    detector : estimator
        A fitted :class:`~anomalib_lite.PCADetector`,
        :class:`~anomalib_lite.ConvAutoencoderDetector`,
        :class:`~anomalib_lite.DraemDetector`,
        :class:`~anomalib_lite.AutoencoderDetector`, or a fitted
        :class:`~anomalib_lite.CalibratedDetector` wrapping one of them, or
        wrapping such a CalibratedDetector (the outermost calibrated threshold
        is exported).
    path : str or os.PathLike
        File to write. The file appears complete or not at all: it is
        written to a temporary file in the same directory and then moved into
        place.
    input_shape : tuple of int or None, default=None
        Shape of one sample, without the batch axis: the layout the graph's
        input takes. None uses the detector's ``sample_shape_`` (rows
        ``(n_features,)`` for tabular detectors and ``image_shape``
        detectors, the images' shape for image detectors; for a
        CalibratedDetector, the shape it was fitted on). Any layout the
        detector accepts is allowed, e.g. ``(28, 28)`` for grayscale images
        passed to a ConvAutoencoderDetector as ``(n, 28, 28)``.
    input_dtype : {'float32', 'uint8', 'float64'}, default='float32'
        dtype of the graph's input. The graph converts it as the detector
        converts arrays of that dtype.
    overwrite : bool, default=False
        Replace an existing file at ``path`` (atomically). Otherwise an
        existing file is never touched.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    ImportError
        If ``onnx`` or ``onnxscript`` is missing.
    sklearn.exceptions.NotFittedError
        If the detector is not fitted.
    TypeError
        If the detector is not one the export can represent (a Pipeline, a
        detector of another library).
    ValueError
        If ``input_shape`` or ``input_dtype`` is one the detector refuses; if
        the detector now scores otherwise than its threshold was set on (an
        ``image_score``, ``smoothing`` or ``statistic`` changed after the fit),
        as ``predict`` refuses it then; or if it projects before scoring
        (``projection_steps > 0``), which takes gradients the graph cannot hold.
    FileExistsError
        If ``path`` exists and ``overwrite=False``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.onnx import export
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> det = PCADetector(n_components=2).fit(X)
    >>> path = export(det, os.path.join(tempfile.mkdtemp(), "pca.onnx"))
    >>> session = ort.InferenceSession(path)
    >>> score, decision, is_anomaly = session.run(None, {"input": X[:3].astype(np.float32)})
    >>> bool(np.allclose(score, det.score_samples(X[:3].astype(np.float32))))
    True
    """
    _import_exporter()
    _check_exportable(detector)
    path = check_path(path)
    check_bool(overwrite, "overwrite")
    check_target(path, overwrite=overwrite, exists_error=_exists_error, example="detector.onnx")
    input_shape, input_dtype = _check_input(detector, input_shape, input_dtype)
    graph = _Graph(detector).eval()
    example = torch.from_numpy(np.zeros((2, *input_shape), dtype=input_dtype))
    with torch.no_grad():
        n_outputs = len(graph(example))
    outputs = OUTPUT_NAMES[:n_outputs]
    with _quiet_exporter():
        program = torch.onnx.export(
            graph,
            (example,),
            None,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
            # Not the exporter's optimizer: its rewrite rules drop a multiplication by a
            # scalar within 1e-5 of 1 and an addition of one within 1e-8 of 0 (an
            # offset_ of 1e-9 would label every sample an anomaly). Folding the
            # constants alone computes them exactly.
            optimize=False,
        )
        _fold_constants(program.model)
    model = program.model_proto
    model.producer_name = "anomalib_lite"
    model.doc_string = (
        f"{type(detector).__name__} exported by anomalib_lite: input {INPUT_NAME!r} of shape "
        f"(n, {', '.join(map(str, input_shape))}) and dtype {input_dtype}; outputs "
        f"{', '.join(outputs)}."
    )
    for key, value in _metadata(detector, input_shape, input_dtype, outputs).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    data = model.SerializeToString()
    write_atomically(
        path, lambda fh: fh.write(data), overwrite=overwrite, exists_error=_exists_error
    )
    return path
