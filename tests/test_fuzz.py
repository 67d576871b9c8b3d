"""Fuzzing: every public method, the model-file loader and the image loader
either return well-formed output or raise one of the documented exceptions.

Bounded (``max_examples``, ``deadline``) so that the suite stays fast; a hang
fails the deadline.
"""

import contextlib
import hashlib
import io
import json
import re
import warnings
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from PIL import Image
from sklearn.base import clone

from anomalib_lite import (
    PCADetector,
)
from anomalib_lite.datasets import load_images
from anomalib_lite.io import ModelFileError, load, save

#: Features of the rows the shared fitted detectors learnt (tests/conftest.py, train_rows).
D = 5
#: What a public method may raise on bad input (docs/bad_input.md).
DOCUMENTED = (ValueError, TypeError)
#: The refusals a fit may give valid rows: too few of them (for a split, a holdout or
#: PCA), or rows that do not vary.
#: The detectors' documented refusals of a training set: too small, constant, or with
#: values whose squares overflow the arithmetic (64-bit integers near 2**64, say).
TRAINING_REFUSALS = (
    r"sample\(s\)|leaves none to train on|held-out normal scores|zero variance"
    r"|too large for the detector's arithmetic|overflow above a spread of"
)

fuzz = settings(
    max_examples=20,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ------------------------------------------------------------ strategies
any_float = st.floats(allow_nan=True, allow_infinity=True)
numeric_dtypes = st.sampled_from(
    [np.float64, np.float32, np.float16, np.int8, np.int64, np.uint8, np.uint64, np.bool_]
)


def valid_rows(n_features=D):
    """Well-formed input: finite numbers of a numeric dtype, the fitted width."""
    return numeric_dtypes.flatmap(
        lambda dtype: arrays(
            dtype,
            st.tuples(st.integers(1, 12), st.just(n_features)),
            elements=st.floats(-1e4, 1e4, width=16) if np.dtype(dtype).kind == "f" else None,
        )
    )


def _frame(array):
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(array)


malformed = st.one_of(
    # numbers of any shape, NaN and inf included
    arrays(
        np.float64, array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6), elements=any_float
    ),
    # other dtypes
    arrays(
        st.sampled_from(["U3", "S3", "complex128", "datetime64[s]", "timedelta64[s]"]),
        array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5),
    ),
    arrays(
        object,
        st.tuples(st.integers(0, 5), st.integers(0, 6)),
        elements=st.one_of(st.floats(), st.integers(-5, 5), st.text(max_size=3), st.none()),
    ),
    # not arrays at all
    st.none(),
    st.text(max_size=5),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=3),
    st.lists(st.lists(st.floats(allow_nan=False, width=32), max_size=6), max_size=6),
    st.lists(st.one_of(st.integers(), st.text(max_size=2), st.none()), max_size=6),
    # DataFrames with odd columns
    arrays(np.float64, st.tuples(st.integers(0, 6), st.integers(0, 7))).map(_frame),
)


def _numeric_contract(det, method):
    """Whether ``method`` promises no NaN and no numpy warning at any finite input.

    Scores always do; so does PCADetector's reconstruction error. Reconstructions
    of inputs beyond the finite range (docs/bad_input.md) may overflow, and the
    torch detectors' ``reconstruction_error`` is not yet covered (it can be NaN
    where float32 overflows).
    """
    if method == "reconstruct":
        return False
    return method != "reconstruction_error" or isinstance(det, PCADetector)


def _check_output(det, method, X, out):
    """Well-formed output of ``method`` on ``X``."""
    n = len(X) if hasattr(X, "__len__") else None
    if method in ("fit", "partial_fit"):
        assert hasattr(out, "offset_") and np.isfinite(out.offset_)
        return
    out = np.asarray(out)
    if method == "reconstruct":
        assert out.shape == np.shape(X) and out.dtype == np.float64
        return
    assert out.shape == (n,)
    if method in ("predict", "fit_predict"):
        assert set(np.unique(out)) <= {-1, 1}
        return
    assert out.dtype == np.float64
    if _numeric_contract(det, method):
        assert not np.isnan(out).any()
        assert not np.any(out == (np.inf if method != "reconstruction_error" else -np.inf))


def _call(det, method, X):
    if method in ("fit", "partial_fit", "fit_predict"):
        det = clone(det)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = getattr(det, method)(X)
    leaked = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if _numeric_contract(det, method):
        assert not leaked, f"numpy warning leaked: {leaked[0].message}"
    return out


METHODS = [
    "score_samples",
    "decision_function",
    "predict",
    "reconstruction_error",
    "reconstruct",
    "fit",
    "partial_fit",
    "fit_predict",
]


def _methods(det):
    return [m for m in METHODS if hasattr(det, m)]


# ------------------------------------------------------------ public methods
@fuzz
@given(X=valid_rows())
# Summed squares that overflow float32: ConvAutoencoderDetector refuses a threshold.
@example(
    X=np.array(
        [0] + [13394354553416056833] * 41 + [0] + [13394354553416056833] * 7, np.uint64
    ).reshape(10, D)
)
def test_valid_input_gives_well_formed_output(fitted_detectors, kind, X):
    det = fitted_detectors[kind]
    for method in _methods(det):
        if method in ("fit", "partial_fit", "fit_predict") and len(X) < 2:
            continue
        if (
            method in ("fit", "partial_fit", "fit_predict")
            and np.ptp(X.astype(float), axis=0).max() == 0
        ):
            continue  # constant data: refused by PCA (its own documented row)
        if method == "fit_predict" and kind == "calibrated":
            continue  # needs enough rows for a calibration split
        try:
            out = _call(det, method, X)
        except ValueError as exc:
            # the detectors' own documented refusals of training sets (TRAINING_REFUSALS)
            assert method in ("fit", "partial_fit", "fit_predict"), exc
            assert re.search(TRAINING_REFUSALS, str(exc)), exc
            continue
        _check_output(det, method, X, out)


@fuzz
@given(X=malformed)
def test_malformed_input_raises_only_documented_errors(fitted_detectors, kind, X):
    det = fitted_detectors[kind]
    for method in _methods(det):
        try:
            out = _call(det, method, X)
        except DOCUMENTED:
            continue
        _check_output(det, method, X, out)


# ------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def model_files(fitted_detectors, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        name: save(fitted_detectors[name], folder / f"{name}.model").read_bytes()
        for name in ("pca", "autoencoder")
    }


def _load_or_refuse(data, original, X):
    """``load`` refuses damaged bytes, or (damage outside the checked
    content, e.g. zip timestamps) gives back the very same model."""
    try:
        restored = load(io.BytesIO(data))
    except ModelFileError:
        return
    np.testing.assert_array_equal(restored.score_samples(X), original.score_samples(X))


X_CHECK = np.random.default_rng(9).normal(size=(7, D))


@pytest.mark.parametrize("name", ["pca", "autoencoder"])
@settings(max_examples=60, deadline=timedelta(seconds=10), suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_load_of_bit_flipped_files(model_files, fitted_detectors, name, data):
    raw = bytearray(model_files[name])
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] ^= data.draw(st.integers(1, 255))
    _load_or_refuse(bytes(raw), fitted_detectors[name], X_CHECK)


@pytest.mark.parametrize("name", ["pca", "autoencoder"])
@settings(max_examples=40, deadline=timedelta(seconds=10), suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_load_of_truncated_and_spliced_files(model_files, fitted_detectors, name, data):
    raw = model_files[name]
    cut = data.draw(st.integers(0, len(raw) - 1))
    insert = data.draw(st.binary(max_size=64))
    resume = data.draw(st.integers(cut, len(raw)))
    candidate = raw[:cut] + insert + raw[resume:]
    assume(candidate != raw)
    _load_or_refuse(candidate, fitted_detectors[name], X_CHECK)


@settings(max_examples=40, deadline=timedelta(seconds=10))
@given(blob=st.binary(max_size=512))
def test_load_of_random_bytes(blob):
    with pytest.raises(ModelFileError):
        load(io.BytesIO(blob))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(-1e6, 1e6)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
node_types = st.sampled_from(
    [
        "estimator",
        "tuple",
        "dict",
        "array",
        "scalar",
        "strings",
        "tensor",
        "float",
        "device",
        "random_state",
        "module",
    ]
)
forged_nodes = st.one_of(
    json_values,
    st.fixed_dictionaries({"$": node_types}, optional={"v": json_values, "ref": json_values}),
)


def _subtrees(tree, path=()):
    yield path
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _subtrees(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _subtrees(value, (*path, i))


def _replace(tree, path, value):
    if not path:
        return value
    tree = json.loads(json.dumps(tree))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return tree


def _with_payload(raw, payload):
    """The model file ``raw`` with another payload and valid checksums."""
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    header = json.loads(entries.pop("anomalib_lite.json"))
    entries["payload.json"] = json.dumps(payload).encode()
    header["sha256"] = {k: hashlib.sha256(v).hexdigest() for k, v in entries.items()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        zf.writestr("anomalib_lite.json", json.dumps(header))
    return out.getvalue()


@pytest.mark.parametrize("name", ["pca", "autoencoder"])
@settings(max_examples=60, deadline=timedelta(seconds=10), suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_load_of_forged_payloads_with_valid_checksums(model_files, name, data):
    """A forged file passes the checksum; its content is still only data."""
    raw = model_files[name]
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        payload = json.loads(zf.read("payload.json"))
    path = data.draw(st.sampled_from(list(_subtrees(payload))))
    forged = _replace(payload, path, data.draw(forged_nodes))
    with contextlib.suppress(ModelFileError):
        load(io.BytesIO(_with_payload(raw, forged)))


# ------------------------------------------------------------ image files
def _image_bytes(fmt, mode):
    pixels = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


IMAGES = {
    "png": _image_bytes("PNG", "RGB"),
    "jpg": _image_bytes("JPEG", "L"),
    "bmp": _image_bytes("BMP", "RGB"),
    "gif": _image_bytes("GIF", "P"),
    "tif": _image_bytes("TIFF", "RGB"),
}


@pytest.mark.parametrize("suffix", list(IMAGES))
@settings(max_examples=40, deadline=timedelta(seconds=10), suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_load_images_of_mutated_files(suffix, data, tmp_path):
    raw = bytearray(IMAGES[suffix])
    how = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 6))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=32)) + raw[at:]
    path = tmp_path / f"mutated.{suffix}"
    path.write_bytes(bytes(raw))
    for kwargs in ({}, {"color_mode": "rgb", "dtype": "float32", "size": (6, 5)}):
        try:
            images = load_images(path, **kwargs)
        except ValueError as exc:
            assert "mutated" in str(exc)  # the message names the file
            continue
        assert images.ndim in (3, 4) and len(images) == 1
        if kwargs:
            assert images.shape == (1, 3, 6, 5) and images.dtype == np.float32
            assert np.all((images >= 0) & (images <= 1))
        else:
            assert images.dtype == np.uint8
