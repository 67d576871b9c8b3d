"""Model files that hold no code: save and load detectors without pickle.

A model file is a zip container of stored (uncompressed) entries:

* ``anomalib_lite.json``: format name and version, the library, Python,
  numpy, scikit-learn and torch versions that wrote it, the class saved and
  the SHA-256 of every other entry;
* ``payload.json``: the estimator as a JSON tree of its class name,
  ``get_params(deep=False)`` (``checkpoint_path``, ``memory`` and ``callbacks`` as None)
  and fitted state; nested estimators in the same form;
* ``arrays/<i>.npy``: every array and tensor of the tree (network weights
  included), read with ``allow_pickle=False``.

Loading never unpickles or imports a name from the file: classes come from
:data:`ALLOWED_CLASSES` and a detector rebuilds itself with ``_set_state()``.
"""

import errno
import hashlib
import io as _io
import itertools
import json
import math
import os
import platform
import sys
import zipfile

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from ._version import __version__
from .base import BaseDetector
from .pca import PCADetector
from .thresholds import CalibratedDetector
from .utils._files import NotRegularFileError, check_target, open_regular, write_atomically
from .utils._validation import check_bool, check_path

__all__ = ["ALLOWED_CLASSES", "FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "save"]

#: Name of the format, recorded in every file.
FORMAT = "anomalib_lite.model"
#: Version of the format this library writes; it reads this version and older.
FORMAT_VERSION = 1

_HEADER = "anomalib_lite.json"
_PAYLOAD = "payload.json"
_ARRAYS = "arrays/"

#: The library's estimators a model file may hold, by their public name.
_LIBRARY_CLASSES = (
    "PCADetector",
    "ConvAutoencoderDetector",
    "DraemDetector",
    "AutoencoderDetector",
    "CalibratedDetector",
)
#: Modules of the torch detectors (importing one imports torch).
_TORCH_MODULES = ("anomalib_lite.autoencoder", "anomalib_lite.dense", "anomalib_lite.draem")
_SKLEARN_CLASSES = {
    "sklearn.pipeline.Pipeline": Pipeline,
    "sklearn.decomposition.PCA": PCA,
    "sklearn.decomposition.IncrementalPCA": IncrementalPCA,
    "sklearn.preprocessing.StandardScaler": StandardScaler,
    "sklearn.preprocessing.MinMaxScaler": MinMaxScaler,
    "sklearn.preprocessing.MaxAbsScaler": MaxAbsScaler,
    "sklearn.preprocessing.RobustScaler": RobustScaler,
}
#: Class names a model file may hold: the library's detectors and scikit-learn
#: transformers whose fitted state is plain numbers and arrays.
ALLOWED_CLASSES = tuple(f"anomalib_lite.{n}" for n in _LIBRARY_CLASSES) + tuple(_SKLEARN_CLASSES)

# torch dtypes a tensor may have, by name; bfloat16 is stored as float32.
_TORCH_DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
)
_NUMERIC_KINDS = "biufc"


def _torch_detectors():
    """The torch detectors; importing them imports torch."""
    from .autoencoder import ConvAutoencoderDetector
    from .dense import AutoencoderDetector
    from .draem import DraemDetector

    return {
        "anomalib_lite.ConvAutoencoderDetector": ConvAutoencoderDetector,
        "anomalib_lite.DraemDetector": DraemDetector,
        "anomalib_lite.AutoencoderDetector": AutoencoderDetector,
    }


def _allowed_classes(*, import_all=True):
    """``{name in the file: class}``; torch detectors only if imported or ``import_all``.

    Thus saving or loading a PCA model does not import torch.
    """
    classes = {
        **_SKLEARN_CLASSES,
        "anomalib_lite.PCADetector": PCADetector,
        "anomalib_lite.CalibratedDetector": CalibratedDetector,
    }
    if import_all or any(module in sys.modules for module in _TORCH_MODULES):
        classes.update(_torch_detectors())
    return classes


def _torch():
    """The torch module when it has been imported; torch objects exist only then."""
    return sys.modules.get("torch")


# ---------------------------------------------------------------- encoding
class _Encoder:
    """Turn an estimator into a JSON tree plus a list of arrays."""

    def __init__(self):
        self.arrays = []
        # An object being saved has its class imported already.
        self.classes = {cls: name for name, cls in _allowed_classes(import_all=False).items()}

    def _ref(self, array):
        self.arrays.append(array)
        return len(self.arrays) - 1

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return str(value) if isinstance(value, str) else value
        if type(value) is int:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if isinstance(value, np.ndarray):
            return self._encode_array(value, where)
        if isinstance(value, np.generic):
            if value.dtype.kind not in _NUMERIC_KINDS:
                raise TypeError(f"{where} is a numpy {value.dtype} scalar; {_HOLDS}")
            return {"$": "scalar", "ref": self._ref(np.asarray(value))}
        if type(value) is tuple:
            return {
                "$": "tuple",
                "v": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)],
            }
        if type(value) is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if type(value) is dict:
            for k in value:
                if not isinstance(k, _KEY_TYPES):
                    # load would refuse the file it wrote
                    raise TypeError(
                        f"{where} has the key {k!r} of type {type(k).__module__}."
                        f"{type(k).__qualname__}; model files hold dict keys that are str, "
                        "int, float, bool, None or tuples of those: convert it, e.g. int(key)."
                    )
            return {
                "$": "dict",
                "v": [
                    [self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ],
            }
        if type(value) is np.random.RandomState:
            return {"$": "random_state", "v": self.encode(value.get_state(), where)}
        torch = _torch()
        if torch is not None:
            if isinstance(value, torch.Tensor):
                return self._encode_tensor(value, where)
            if isinstance(value, torch.device):
                return {"$": "device", "v": str(value)}
            if isinstance(value, torch.nn.Module):
                raise TypeError(
                    f"{where} is a torch module; a model file holds a detector's network "
                    "only as its fitted module_, rebuilt by the detector."
                )
        if isinstance(value, BaseEstimator):
            return self.encode_estimator(value, where)
        if isinstance(value, (os.PathLike, bytes)):
            raise TypeError(f"{where} is a {type(value).__name__}; {_HOLDS} Pass a str instead.")
        if callable(value):
            raise TypeError(
                f"{where} is the callable {value!r}: model files hold no code, so functions "
                "and classes cannot be saved. Use a built-in option of the estimator instead."
            )
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}; {_HOLDS}"
        )

    def _encode_array(self, value, where):
        if type(value) is not np.ndarray:
            raise TypeError(f"{where} is a {type(value).__name__}; {_HOLDS}")
        if value.dtype.hasobject:
            flat = value.ravel().tolist()
            others = [v for v in flat if type(v) is not str]
            if others:
                other = others[0]
                raise TypeError(
                    f"{where} is an object array holding a {type(other).__module__}."
                    f"{type(other).__qualname__}; model files hold numeric arrays and object "
                    "arrays of Python str only (convert with .astype(str).astype(object))."
                )
            return {"$": "strings", "shape": list(value.shape), "v": flat}
        if value.dtype.kind not in _NUMERIC_KINDS or value.dtype.fields is not None:
            raise TypeError(f"{where} is an array of dtype {value.dtype}; {_HOLDS}")
        # .npy stores C or Fortran order only, while numpy's arithmetic, and so its
        # rounding, follows a view's layout: store a reversed axis unreversed with
        # its axis named, and a transposed view (strides ascending) in Fortran order.
        flip = [i for i, step in enumerate(value.strides) if step < 0]
        value = _reversed(value, flip)
        contiguous = value.flags.c_contiguous or value.flags.f_contiguous
        if not contiguous and list(value.strides) == sorted(value.strides):
            value = np.asfortranarray(value)
        node = {"$": "array", "ref": self._ref(value)}
        return {**node, "flip": flip} if flip else node

    def _encode_tensor(self, tensor, where):
        name = str(tensor.dtype).removeprefix("torch.")
        if name not in _TORCH_DTYPES or tensor.layout != _torch().strided:
            raise TypeError(
                f"{where} is a {tensor.layout} tensor of dtype {tensor.dtype}; {_HOLDS}"
            )
        cpu = tensor.detach().to("cpu")
        if name == "bfloat16":
            cpu = cpu.float()
        return {"$": "tensor", "dtype": name, "ref": self._ref(cpu.numpy().copy())}

    def encode_estimator(self, est, where):
        cls = type(est)
        name = self.classes.get(cls)
        if name is None:
            hint = ""
            if cls.__name__ == "FunctionTransformer":
                hint = (
                    " FunctionTransformer holds arbitrary Python functions, which a file "
                    "cannot store without pickle (and a pickle can run code when loaded)."
                    " Replace it with one of the allowed transformers, or use pickle only "
                    "for files you never accept from others."
                )
            raise TypeError(
                f"{where} is a {cls.__module__}.{cls.__qualname__}, which a model file cannot "
                f"hold; allowed classes: {', '.join(ALLOWED_CLASSES)}.{hint}"
            )
        label = f"{where}" if where else cls.__name__
        params = est.get_params(deep=False)
        # A model file holds neither code nor a file to write to.
        params.update({k: None for k in _NEVER_STORED if k in params})
        if isinstance(est, BaseDetector):
            state = est._get_state()
        else:
            state = {k: v for k, v in vars(est).items() if k not in params}
        state.pop("_sklearn_version", None)
        return {
            "$": "estimator",
            "class": name,
            "params": {k: self.encode(v, f"{label}.{k}") for k, v in params.items()},
            "state": {k: self.encode(v, f"{label}.{k}") for k, v in state.items()},
        }


#: Parameters stored as None: places to write (a detector's checkpoint, a
#: Pipeline's cache folder, whose pickles joblib would load back) and code.
_NEVER_STORED = ("checkpoint_path", "memory", "callbacks")

#: The dict keys a model file holds (save refuses others, load too).
_KEY_TYPES = (str, int, float, bool, tuple, type(None))

_HOLDS = (
    "model files hold only numbers, strings, booleans, None, tuples, lists and dicts of "
    "those, numeric numpy arrays, torch tensors and the allowed estimators."
)


# ---------------------------------------------------------------- decoding
class ModelFileError(ValueError):
    """A :class:`ValueError`: the file given to :func:`load` is not a valid model file.

    Not a model file, truncated, failing its checksum, in a newer format, or
    not rebuildable.
    """


def _reversed(array, axes):
    """A view of ``array`` with the ``axes`` reversed (``array`` itself for none)."""
    if not axes:
        return array
    return array[tuple(slice(None, None, -1 if i in axes else 1) for i in range(array.ndim))]


class _Corrupt(ValueError):
    """The content of a model file does not make sense."""


class _Decoder:
    """Rebuild an estimator from a JSON tree and its arrays, without pickle."""

    def __init__(self, arrays, header):
        self.arrays = arrays
        self.header = header
        self.classes = _allowed_classes(import_all=False)
        self.used = set()

    def _array(self, node):
        ref = node.get("ref")
        if type(ref) is not int or not 0 <= ref < len(self.arrays):
            raise _Corrupt(f"array reference {ref!r} out of range")
        # Each array is written once: copies of one referenced over and over would
        # make loading allocate far more than the file's size.
        if ref in self.used:
            raise _Corrupt(f"array {ref} is referenced twice")
        self.used.add(ref)
        return self.arrays[ref]

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, str)):
            return node
        if type(node) is float:
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            raise _Corrupt(f"unexpected JSON value {node!r}")
        kind = node.get("$")
        if kind == "float":
            text = node.get("v")
            if text not in ("nan", "inf", "-inf"):
                raise _Corrupt(f"bad float {text!r}")
            return float(text)
        if kind == "tuple":
            return tuple(self.decode(v) for v in self._list(node))
        if kind == "dict":
            out = {}
            for pair in self._list(node):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise _Corrupt("dict items must be [key, value] pairs")
                key = self.decode(pair[0])
                if not isinstance(key, _KEY_TYPES):
                    raise _Corrupt(f"unhashable dict key {key!r}")
                out[key] = self.decode(pair[1])
            return out
        if kind == "array":
            array, flip = self._array(node), node.get("flip", [])
            if not isinstance(flip, list) or any(
                type(i) is not int or not 0 <= i < array.ndim for i in flip
            ):
                raise _Corrupt(f"bad reversed axes {flip!r}")
            return _reversed(array, flip)
        if kind == "scalar":
            array = self._array(node)
            if array.ndim != 0:
                raise _Corrupt("a scalar must be a 0-d array")
            return array[()]
        if kind == "strings":
            values, shape = self._list(node), node.get("shape")
            if not all(type(v) is str for v in values) or not isinstance(shape, list):
                raise _Corrupt("bad string array")
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out.reshape(shape)
        if kind == "tensor":
            return self._tensor(node)
        if kind == "device":
            import torch

            return torch.device(str(node.get("v")))
        if kind == "random_state":
            state = self.decode(node.get("v"))
            rs = np.random.RandomState()
            rs.set_state(state)
            return rs
        if kind == "estimator":
            return self.decode_estimator(node)
        raise _Corrupt(f"unknown node type {kind!r}")

    @staticmethod
    def _list(node):
        values = node.get("v")
        if not isinstance(values, list):
            raise _Corrupt(f"{node.get('$')} node without a list of values")
        return values

    def _tensor(self, node):
        import torch

        name = node.get("dtype")
        if name not in _TORCH_DTYPES:
            raise _Corrupt(f"unknown tensor dtype {name!r}")
        array = self._array(node)  # np.ascontiguousarray would make 0-d arrays 1-d
        tensor = torch.from_numpy(array if array.flags.c_contiguous else array.copy(order="C"))
        return tensor.to(getattr(torch, name)) if name == "bfloat16" else tensor

    def decode_estimator(self, node):
        name = node.get("class")
        if name in ALLOWED_CLASSES and name not in self.classes:
            self.classes = _allowed_classes()  # a torch detector: import it now
        cls = self.classes.get(name) if isinstance(name, str) else None
        if cls is None:
            raise _Corrupt(
                f"class {name!r} is not one this version can load (allowed: "
                f"{', '.join(self.classes)})"
            )
        params, state = node.get("params"), node.get("state")
        if not isinstance(params, dict) or not isinstance(state, dict):
            raise _Corrupt(f"{name} node without params and state")
        known = set(cls._get_param_names())
        unknown = sorted(set(params) - known)
        if unknown:
            raise _Corrupt(
                f"{name} has no parameter {unknown[0]!r} here (file written by anomalib_lite "
                f"{self.header.get('library_version')!r}, this is {__version__}); "
                "upgrade anomalib_lite to load it"
            )
        params = {k: self.decode(v) for k, v in params.items()}
        for key in _NEVER_STORED:
            if params.get(key) is not None:
                raise ModelFileError(
                    f"it stores {key}={params[key]!r}, which a model file never holds "
                    f"(anomalib_lite.io.save stores {key}=None); the file was not written "
                    "by save, or was modified. Save the model again."
                )
        est = cls(**params)
        attrs = {}
        for key, value in state.items():
            _check_attribute_name(cls, key, known)
            attrs[key] = self.decode(value)
        if isinstance(est, BaseDetector):
            est._set_state(attrs)
        else:
            # scikit-learn warns, as on unpickling, when the versions differ.
            attrs["_sklearn_version"] = str(self.header.get("versions", {}).get("scikit-learn"))
            est.__setstate__({**vars(est), **attrs})
        return est


def _check_attribute_name(cls, key, params):
    """Fitted attribute names must be plain identifiers that shadow no method."""
    if not isinstance(key, str) or not key.isidentifier() or key.startswith("__"):
        raise _Corrupt(f"bad attribute name {key!r}")
    if key in params:
        raise _Corrupt(f"attribute {key!r} is a parameter")
    if key == "module_" or (
        hasattr(cls, key) and (callable(getattr(cls, key)) or _is_property(cls, key))
    ):
        raise _Corrupt(f"attribute {key!r} would replace a method of {cls.__name__}")


def _is_property(cls, key):
    return any(isinstance(vars(k).get(key), property) for k in cls.__mro__)


# ------------------------------------------------------------------ files
class _HashingWriter:
    """File-like object that forwards writes and hashes what passes through."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data):
        self.sha256.update(data)
        return self.raw.write(data)


def _versions():
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }
    torch = _torch()
    if torch is not None:
        versions["torch"] = torch.__version__
    return versions


def _write(fh, estimator_name, tree, arrays, fitted):
    """Write the zip container to the open binary file ``fh``."""
    digests = {}
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for i, array in enumerate(arrays):
            entry = f"{_ARRAYS}{i}.npy"
            with zf.open(entry, "w", force_zip64=True) as raw:
                out = _HashingWriter(raw)
                np.lib.format.write_array(out, array, allow_pickle=False)
            digests[entry] = out.sha256.hexdigest()
        payload = json.dumps(tree, allow_nan=False, separators=(",", ":")).encode()
        zf.writestr(_PAYLOAD, payload)
        digests[_PAYLOAD] = hashlib.sha256(payload).hexdigest()
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "versions": _versions(),
            "class": estimator_name,
            "fitted": fitted,
            "sha256": digests,
        }
        zf.writestr(_HEADER, json.dumps(header, indent=1).encode())


def _is_fitted(estimator):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError):
        return False
    return True


def _exists_error(path):
    return FileExistsError(
        errno.EEXIST,
        "A file already exists there and save() does not overwrite files by default; "
        "pass overwrite=True to replace it (atomically) or choose another path",
        str(path),
    )


def save(estimator, path, *, overwrite=False):
    """Save a fitted (or unfitted) estimator to a model file that holds no code.

    The format is described in :mod:`anomalib_lite.io`. Writing is atomic (a
    synced temporary file moved into place), so an interrupted save leaves no
    half-written file at ``path``.

    Parameters
    ----------
    estimator : estimator
        A detector, or a :class:`~sklearn.pipeline.Pipeline` of the classes in
        :data:`ALLOWED_CLASSES`.
    path : str or os.PathLike
        Where to write. Its directory must exist.
    overwrite : bool, default=False
        Replace an existing file at ``path``; the old file stays intact until
        the new one is complete. By default a good model is never replaced.

    Returns
    -------
    path : pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        If the estimator or a value it holds cannot be stored without code
        (a callable, a class not in :data:`ALLOWED_CLASSES`).
    IsADirectoryError
        If ``path`` is a folder.
    OSError
        If ``path`` is a named pipe, socket or device, whatever ``overwrite``
        says: it is never replaced.
    FileExistsError
        If ``path`` exists and ``overwrite=False``.
    FileNotFoundError
        If the directory of ``path`` does not exist.
    NotADirectoryError
        If a file stands where the directory of ``path`` should be.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.io import save, load
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> det = PCADetector(n_components=1).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "detector.model")
    >>> _ = save(det, path)
    >>> bool((load(path).score_samples(X) == det.score_samples(X)).all())
    True
    """
    if not isinstance(estimator, BaseEstimator):
        raise TypeError(
            f"estimator must be a scikit-learn estimator (a detector or a Pipeline), got "
            f"{type(estimator).__name__}."
        )
    path = check_path(path)
    check_bool(overwrite, "overwrite")
    check_target(path, overwrite=overwrite, exists_error=_exists_error, example="detector.model")
    encoder = _Encoder()
    tree = encoder.encode_estimator(estimator, "")
    fitted = _is_fitted(estimator)
    write_atomically(
        path,
        lambda fh: _write(fh, tree["class"], tree, encoder.arrays, fitted),
        overwrite=overwrite,
        exists_error=_exists_error,
    )
    return path


def _not_ours(name, why):
    return ModelFileError(
        f"{name} is not a readable anomalib_lite model file ({why}). Model files are "
        "written by anomalib_lite.io.save; if this one was, it is truncated or damaged: "
        "save the model again or restore the file from a backup."
    )


def _checksum_error(name, entry, detail=""):
    return ModelFileError(
        f"{name} failed its checksum: entry {entry!r} differs from what was saved{detail}, "
        "so the file is corrupt or was modified. Save the model again or restore the file "
        "from a backup."
    )


def _check_zip_layout(zf, size, name):
    """Refuse a zip whose entries overlap or do not fit in the file, before any is read.

    Each entry's local header and stored bytes must lie inside the file,
    before the central directory, and apart from every other entry's: a
    forged directory that points many entries at one blob (a zip bomb; only
    Python 3.11.8 / 3.12.2 and later refuse it themselves) would otherwise
    make ``load`` read the blob many times over. With stored (uncompressed)
    entries, this bounds what ``load`` reads by the file's size.
    """
    end = min(size, getattr(zf, "start_dir", size))
    spans = []
    for info in zf.infolist():
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise _not_ours(name, f"entry {info.filename!r} is compressed")
        # a local header is at least 30 bytes and the name long
        start = info.header_offset
        stop = start + 30 + len(info.orig_filename.encode("utf-8")) + info.compress_size
        spans.append((start, stop, info.filename))
    spans.sort()
    for (_, stop, entry), (start, _, other) in itertools.pairwise(spans):
        if stop > start:
            raise _not_ours(name, f"entries {entry!r} and {other!r} overlap")
    if spans and spans[-1][1] > end:
        raise _not_ours(name, f"entry {spans[-1][2]!r} extends beyond the file's data")


def _read_entries(zf, name):
    """Check the header and the checksums; return ``(header, payload, arrays)``."""
    names = zf.namelist()
    if _HEADER not in names:
        raise _not_ours(name, f"no {_HEADER} entry")
    info = zf.getinfo(_HEADER)
    if info.file_size > 2**20 or info.compress_type != zipfile.ZIP_STORED:
        raise _not_ours(name, f"unexpected {_HEADER} entry")
    try:
        header = json.loads(zf.read(_HEADER))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _not_ours(name, "the header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _not_ours(name, "the header does not name the format")
    version = header.get("format_version")
    if type(version) is not int:
        raise _not_ours(name, "no format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{name} was written by anomalib_lite {header.get('library_version')!r} in "
            f"model-file format {version}; this anomalib_lite {__version__} reads "
            f"formats up to {FORMAT_VERSION}. Upgrade anomalib_lite to load it."
        )
    digests = header.get("sha256")
    if not isinstance(digests, dict) or _PAYLOAD not in digests:
        raise _not_ours(name, "the header lists no checksums")
    if sorted(names) != sorted([_HEADER, *digests]) or len(set(names)) != len(names):
        raise _not_ours(name, "its entries differ from those its header lists")
    entries = {}
    for entry, digest in digests.items():
        info = zf.getinfo(entry)
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise _not_ours(name, f"entry {entry!r} is compressed")
        try:
            data = zf.read(entry)
        except zipfile.BadZipFile as exc:  # the zip's own CRC-32 or entry header
            raise _checksum_error(name, entry, f" ({exc})") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise _checksum_error(name, entry)
        entries[entry] = data
    arrays = []
    for i in range(len(digests) - 1):
        entry = f"{_ARRAYS}{i}.npy"
        if entry not in entries:
            raise _not_ours(name, f"missing {entry!r}")
        arrays.append(_read_array(entries[entry]))
    try:
        payload = json.loads(entries[_PAYLOAD])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _not_ours(name, "the payload is not JSON") from None
    return header, payload, arrays


def _read_array(data):
    """An array from ``.npy`` bytes: numeric dtypes only, its size checked first."""
    fh = _io.BytesIO(data)
    major, _ = np.lib.format.read_magic(fh)
    if major == 1:
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif major in (2, 3):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise _Corrupt(f"npy version {major}")
    if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS:
        raise _Corrupt(f"array of dtype {dtype}")
    if math.prod(shape) * dtype.itemsize != len(data) - fh.tell():
        raise _Corrupt("array size does not match its header")
    fh.seek(0)
    return np.lib.format.read_array(fh, allow_pickle=False)


def _check_file_object(fh):
    """Refuse a file object a zip archive cannot be read from: closed, text mode, not
    open for reading, or no seeking."""
    if getattr(fh, "closed", False):
        raise ValueError(
            "path is a closed file object; pass it while it is open (inside its with "
            "block), or pass the file's path."
        )
    if isinstance(fh, _io.TextIOBase):
        raise TypeError(
            "path is a file object opened in text mode; a model file is binary: open it "
            "with mode 'rb'."
        )
    readable = getattr(fh, "readable", None)
    if readable is not None and not readable():
        raise TypeError(
            "path is a file object that is not open for reading (opened for writing or "
            "appending); open the model file with mode 'rb'."
        )
    seekable = getattr(fh, "seekable", None)
    if seekable is None or not seekable():
        raise TypeError(
            "path is a file object that cannot seek (a pipe or a socket); a model file is "
            "a zip archive, read by seeking: pass its path, or read it into io.BytesIO first."
        )


def load(path):
    """Load an estimator saved by :func:`save`, without running code from the file.

    A torch detector rebuilds its network and loads the stored weights; one
    saved on a GPU loads on the CPU (``device_='cpu'``) with a warning where
    no GPU is available.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        The model file.

    Returns
    -------
    estimator : estimator
        The estimator as saved; it scores exactly as it did.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TypeError
        If ``path`` is neither a path nor a binary file object (``bytes``
        included: wrap them in :class:`io.BytesIO`), or is a file object in
        text mode, not open for reading or that cannot seek.
    ValueError
        If ``path`` is a closed file object.
    ModelFileError
        If the file is not a valid model file (see :class:`ModelFileError`),
        holds a class that may not be loaded, has overlapping entries, weights
        that do not fit the network its geometry declares or a
        ``checkpoint_path``, or is not a regular file (a named pipe).

    See Also
    --------
    save : Write a model file.

    Notes
    -----
    The checksum detects damage, not forgery. Loading an untrusted file runs
    no code from it, but a forged file can still describe a huge network or
    bad thresholds: use models from sources you trust.

    Examples
    --------
    >>> import io
    >>> from anomalib_lite.io import load
    >>> try:
    ...     load(io.BytesIO(b"not a model"))
    ... except ValueError as exc:
    ...     print(str(exc).split(" (")[0])
    <file object> is not a readable anomalib_lite model file
    """
    if hasattr(path, "read"):
        _check_file_object(path)
        file_name = getattr(path, "name", None)
        name = repr(file_name) if isinstance(file_name, str) else "<file object>"
        header, payload, arrays = _read_file(path, name)
    else:
        if isinstance(path, (bytes, bytearray, memoryview)):
            # check_path would quote the whole content of a model held in memory.
            raise TypeError(
                f"path must be a file path (str or os.PathLike) or a binary file object, "
                f"got {type(path).__name__}: pass io.BytesIO(data) to load a model held in "
                "memory, or the path as a str."
            )
        path = check_path(path)
        name = repr(str(path))
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, f"No model file at {name}", str(path))
        try:
            fh = open_regular(path)  # errors of the path itself (a folder, no access) here
        except NotRegularFileError:
            why = "it is not a regular file (a named pipe, socket or device)"
            raise _not_ours(name, why) from None
        with fh:
            header, payload, arrays = _read_file(fh, name)
    if not isinstance(payload, dict) or payload.get("$") != "estimator":
        raise _not_ours(name, "the payload holds no estimator")
    try:
        return _Decoder(arrays, header).decode_estimator(payload)
    except ModelFileError as exc:
        raise ModelFileError(f"{name} cannot be loaded: {exc}") from None
    except _Corrupt as exc:
        raise _not_ours(name, str(exc)) from None
    except Exception as exc:
        # Checksums pass but the content does not fit: another version, or forged.
        raise ModelFileError(
            f"{name} could not be rebuilt ({type(exc).__name__}: {exc}). It was written by "
            f"anomalib_lite {header.get('library_version')!r}; this is {__version__}."
        ) from None


def _read_file(fh, name):
    """Header, payload and arrays of an open model file; every failure a ModelFileError."""
    try:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        with zipfile.ZipFile(fh) as zf:
            _check_zip_layout(zf, size, name)
            return _read_entries(zf, name)
    except ModelFileError:
        raise
    except _Corrupt as exc:
        raise _not_ours(name, str(exc)) from None
    except Exception as exc:  # zipfile's and numpy's errors on damaged bytes
        raise _not_ours(name, f"{type(exc).__name__}: {exc}") from None
