"""Every row of docs/bad_input.md, checked: the documented outcome, a message
that names the problem, and the caller's data and files left untouched."""

import copy
import hashlib
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from anomalib_lite import (
    CalibratedDetector,
    ConvAutoencoderDetector,
    PCADetector,
)
from anomalib_lite.datasets import load_images
from anomalib_lite.io import ModelFileError, load, save
from anomalib_lite.metrics import anomaly_roc_auc, aupro_score, best_f1_score, pixel_roc_auc_score
from anomalib_lite.thresholds import conformal_p_values, labelled_threshold

pd = pytest.importorskip("pandas")

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"


def _X(n=60, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.fixture(scope="module")
def train_rows():
    """The rows tests/conftest.py's ``fitted_detectors`` are fitted on."""
    return _X()


class Guard:
    """Remember inputs and files; check afterwards that nothing changed them."""

    def __init__(self):
        self.kept = []

    def __call__(self, value):
        if isinstance(value, Path):
            self.kept.append((value, value.read_bytes() if value.is_file() else None))
        else:
            self.kept.append((value, copy.deepcopy(value)))
        return value

    def check(self):
        for value, before in self.kept:
            if isinstance(value, Path):
                assert (value.read_bytes() if value.is_file() else None) == before, value
            elif isinstance(value, pd.DataFrame):
                pd.testing.assert_frame_equal(value, before)
            elif scipy.sparse.issparse(value):
                assert (value != before).nnz == 0
            else:
                np.testing.assert_array_equal(np.asarray(value), np.asarray(before))


#: row id -> (function(ctx) returning calls, outcome, message pattern)
CASES = {}


def row(row_id, outcome, match=None):
    """Register a row: ``outcome`` is an exception, a warning class or None (works)."""

    def register(func):
        CASES[row_id] = (func, outcome, match)
        return func

    return register


class Ctx:
    """What a row needs: ``kinds`` (one unfitted detector of each kind, by name),
    ``fitted`` (the same, fitted on ``_X()``), a folder and the input guard."""

    def __init__(self, kinds, fitted, tmp_path, guard):
        self.kinds, self.tmp_path, self.keep = kinds, tmp_path, guard
        self.unfitted, self.fitted = list(kinds.values()), list(fitted.values())

    def fits(self, X, y=None):
        """One call per detector: fit a fresh copy on ``X``."""
        return [lambda det=det: clone(det).fit(X, y) for det in self.unfitted]

    def scores(self, X, method="score_samples"):
        """One call per fitted detector: ``method(X)``."""
        return [lambda det=det: getattr(det, method)(X) for det in self.fitted]


def _with(X, i, j, value):
    X = X.copy()
    X[i, j] = value
    return X


# ------------------------------------------------------------ values
@row("nan", ValueError, "Input X contains NaN")
def _nan(ctx):
    X = ctx.keep(_with(_X(), 3, 1, np.nan))
    return ctx.fits(X) + ctx.scores(X)


@row("inf", ValueError, "Input X contains infinity")
def _inf(ctx):
    X = ctx.keep(_with(_X(), 3, 1, -np.inf))
    return ctx.fits(X) + ctx.scores(X)


@row("huge-training-values", ValueError, r"training accepts values within \+-1e\+30.*Rescale X")
def _huge_training(ctx):
    return ctx.fits(ctx.keep(_X() * 1e40))


@row("training-overflow", ValueError, r"float32, which overflow above.*Rescale X")
def _training_overflow(ctx):
    # within the accepted range, but squared float32 errors in input units would
    # overflow: refused before training
    X = ctx.keep(_X() * 1e25)
    return [
        lambda: clone(ctx.kinds["conv"]).fit(X),
        lambda: clone(ctx.kinds["autoencoder"]).set_params(standardize=False).fit(X),
    ]


@row("huge-scoring-values", UserWarning, "overflowed float64.*score_samples -inf")
def _huge_scoring(ctx):
    X = ctx.keep(np.full((2, 4), 1.5e308))

    def check(det):
        scores = det.score_samples(X)
        assert np.all(scores == -np.inf)
        assert np.all(det.predict(X) == -1)

    return [lambda det=det: check(det) for det in ctx.fitted]


@row("huge-values-other-outputs", UserWarning, "overflowed float64 while computing")
def _huge_other_outputs(ctx):
    rows = ctx.keep(np.full((2, 4), 1.5e308))
    images = np.random.default_rng(0).random((2, 1, 8, 8))
    images[:, 0, 3, 3] = 3e38  # one pixel, finite in float32 too
    ctx.keep(images)

    def check(det, method, X):
        values = getattr(det, method)(X)
        assert not np.isnan(values).any() and np.isinf(values).any()

    return [
        lambda det=det: check(det, "reconstruction_error", rows)
        for det in ctx.fitted
        if hasattr(det, "reconstruction_error")
    ] + [
        lambda: check(ctx.conv, "anomaly_map", images),
        lambda: check(ctx.conv, "reconstruction_error", images),
        lambda: check(ctx.conv, "reconstruct", images),
    ]


@row("huge-labelled-anomalies", None)
def _huge_labelled(ctx):
    X = ctx.keep(_with(_X(), 0, 0, 1e300))
    y = np.r_[1, np.zeros(59, int)]
    return ctx.fits(X, y)


@row("tiny-training-values", ValueError, r"squared errors in input units in float32.*Rescale X")
def _tiny_training(ctx):
    X = ctx.keep(_X() * 1e-25)
    return [
        lambda: clone(ctx.kinds["conv"]).fit(X),
        lambda: clone(ctx.kinds["autoencoder"]).set_params(standardize=False).fit(X),
    ]


@row("float32-precision", ValueError, r"beyond float32 precision.*Subtract the mean")
def _float32_precision(ctx):
    X = ctx.keep(1.0 + _X() * 1e-9)
    return [lambda: clone(ctx.kinds["conv"]).fit(X)]


# ------------------------------------------------------------ shapes
@row("empty", ValueError, r"0 sample\(s\)")
def _empty(ctx):
    X = ctx.keep(np.zeros((0, 4)))
    return ctx.fits(X) + ctx.scores(X)


@row("no-features", ValueError, r"0 feature\(s\)")
def _no_features(ctx):
    return ctx.fits(ctx.keep(np.zeros((10, 0))))


@row("one-sample-fit", ValueError, r"1 sample\(s\).*minimum of 2")
def _one_sample_fit(ctx):
    return ctx.fits(ctx.keep(_X(n=1)))


@row("one-sample-score", None)
def _one_sample_score(ctx):
    X = ctx.keep(_X(n=1, seed=1))
    return [lambda det=det: _expect_shape(det.score_samples(X), (1,)) for det in ctx.fitted]


def _expect_shape(result, shape):
    assert result.shape == shape and result.dtype == np.float64
    assert np.all(np.isfinite(result))


@row("one-dimensional", ValueError, "Expected 2D array, got 1D array")
def _one_dimensional(ctx):
    return ctx.scores(ctx.keep(_X()[0]))


@row("wrong-n-features", ValueError, r"X has 3 features, but \w+ is expecting 4 features")
def _wrong_n_features(ctx):
    return ctx.scores(ctx.keep(_X(d=3)), "predict")


@row("non-contiguous", None)
def _non_contiguous(ctx):
    X = ctx.keep(np.asfortranarray(_X(d=8))[:, ::2])
    assert not X.flags.c_contiguous
    return [
        lambda det=det: np.testing.assert_allclose(
            det.score_samples(X), det.score_samples(np.ascontiguousarray(X)), rtol=1e-6
        )
        for det in ctx.fitted
    ] + ctx.fits(X)


@row("read-only", None)
def _read_only(ctx):
    X = _X()
    X.setflags(write=False)
    ctx.keep(X)
    return ctx.scores(X) + ctx.fits(X)


# ------------------------------------------------------------ DataFrames
def _frame(X):
    return pd.DataFrame(X, columns=["a", "b", "c", "d"])


@row("dataframe", None)
def _dataframe(ctx):
    df = ctx.keep(_frame(_X()))

    def check(det):
        det = clone(det).fit(df)
        np.testing.assert_array_equal(det.feature_names_in_, ["a", "b", "c", "d"])
        det.score_samples(df)

    return [lambda det=det: check(det) for det in ctx.unfitted]


@row("dataframe-then-array", UserWarning, "X does not have valid feature names")
def _dataframe_then_array(ctx):
    X = ctx.keep(_X())
    return [lambda det=det: clone(det).fit(_frame(X)).score_samples(X) for det in ctx.unfitted]


@row("dataframe-other-columns", ValueError, "feature names")
def _dataframe_other_columns(ctx):
    df = ctx.keep(_frame(_X()))
    other = df[["b", "a", "c", "d"]]
    return [lambda det=det: clone(det).fit(df).score_samples(other) for det in ctx.unfitted] + [
        lambda det=det: clone(det).fit(df).set_params(warm_start=True).fit(other)
        for det in (ctx.kinds["autoencoder"], ctx.kinds["conv"])
    ]


# ------------------------------------------------------------ dtypes
@row("strings", TypeError, "X has dtype <U1; expected a numeric")
def _strings(ctx):
    return ctx.fits(ctx.keep(np.array([["a", "b"], ["c", "d"]])))


@row("bytes", TypeError, r"X has dtype \|S1; expected a numeric")
def _bytes(ctx):
    return ctx.fits(ctx.keep(np.array([[b"a", b"b"], [b"c", b"d"]])))


@row("object-non-numbers", TypeError, "dtype object with an entry that is not a number")
def _object(ctx):
    X = ctx.keep(np.array([[1.0, "x"], [2.0, 3.0], [4.0, 5.0]], dtype=object))
    return ctx.fits(X)


@row("object-numeric-strings", TypeError, r"not a number \(the str '2': text is not read")
def _object_numeric_strings(ctx):
    # numpy would read these as numbers: an ID column must not become a feature
    X = ctx.keep(np.array([[1.0, "2"], [2.0, "3"], [4.0, "5"]], dtype=object))
    return ctx.fits(X)


@row("object-timedelta", TypeError, "dtype object with an entry that is not a number")
def _object_timedelta(ctx):
    # numpy counts timedelta64 as an integer; a duration is not a feature value
    X = np.array([[1.0, np.timedelta64(5, "s")], [2.0, 3.0], [4.0, 5.0]], dtype=object)
    return ctx.fits(ctx.keep(X))


@row("object-complex", ValueError, "Complex data not supported.*complex entry")
def _object_complex(ctx):
    return ctx.fits(ctx.keep(np.array([[1.0, 2j], [2.0, 3.0], [4.0, 5.0]], dtype=object)))


@row("complex", ValueError, "Complex data not supported")
def _complex(ctx):
    X = ctx.keep(_X() + 1j)
    return ctx.fits(X) + ctx.scores(X)


@row("datetime", TypeError, r"X has dtype datetime64\[D\]; expected a numeric")
def _datetime(ctx):
    return ctx.fits(ctx.keep(np.arange(8).astype("datetime64[D]").reshape(4, 2)))


@row("not-an-array", TypeError, "X must be an array-like of numbers")
def _not_an_array(ctx):
    calls = []
    for value in (None, "1,2,3", {"a": [1, 2]}):
        calls += ctx.fits(value) + ctx.scores(value)
    return calls


@row("ragged", TypeError, "rows of equal length")
def _ragged(ctx):
    images = PCADetector(n_components=1).fit(np.random.default_rng(0).random((6, 2, 2)))
    ragged_images = [[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0]]]
    return [*ctx.fits([[1.0, 2.0], [3.0]]), lambda: images.score_samples(ragged_images)]


@row("sparse", TypeError, r"(?i)sparse.*toarray\(\)")
def _sparse(ctx):
    return ctx.fits(ctx.keep(scipy.sparse.csr_matrix(_X())))


@row("masked", ValueError, "masked array with masked entries")
def _masked(ctx):
    X = np.ma.masked_greater(_X(), 1.0)
    ctx.keep(X.data)
    return ctx.fits(X)


@row("not-fitted", NotFittedError, "is not fitted yet")
def _not_fitted(ctx):
    X = ctx.keep(_X())
    return [
        lambda det=det, m=m: getattr(clone(det), m)(X)
        for det in ctx.unfitted
        for m in ("score_samples", "decision_function", "predict")
    ]


@row("threshold-not-set", NotFittedError, r"no threshold \(offset_\) yet.*score_samples can")
def _threshold_not_set(ctx):
    X = ctx.keep(_X())

    def predicts(det, record):
        det.predict(X)

    return [
        lambda det=det: clone(det).set_params(callbacks=[predicts]).fit(X)
        for det in (ctx.kinds["autoencoder"], ctx.kinds["conv"])
    ]


# ------------------------------------------------------------ PCADetector
@row("constant", ValueError, "zero variance: all 10 training samples are identical")
def _constant(ctx):
    return [lambda: PCADetector().fit(ctx.keep(np.ones((10, 3))))]


@row("underflow", ValueError, r"largest variance, 0, is below 1e-292.*underflow float64")
def _underflow(ctx):
    return [lambda: PCADetector().fit(ctx.keep(_X() * 1e-300))]


@row(
    "n-components-too-large",
    ValueError,
    r"n_components=20 must be <= min\(n_samples, n_features\)=4",
)
def _n_components(ctx):
    return [lambda: PCADetector(n_components=20).fit(ctx.keep(_X()))]


@row(
    "n-components-fraction",
    ValueError,
    r"n_components=1.5 must be an int >= 1 or a float in \(0, 1\)",
)
def _n_components_fraction(ctx):
    return [lambda: PCADetector(n_components=1.5).fit(ctx.keep(_X()))]


@row(
    "control-limit-scale", ValueError, "analytic spe limit cannot be computed in float64.*Rescale X"
)
def _control_limit_scale(ctx):
    # the moments of the variance outside the subspace underflow
    return [lambda: PCADetector(n_components=2, control_limit=0.05).fit(ctx.keep(_X() * 1e-60))]


# ------------------------------------------------------------ labels
@row(
    "labels-not-binary", ValueError, r"only 0 \(normal\) and 1 \(anomaly\); got values \[0, 1, 2\]"
)
def _labels_not_binary(ctx):
    y = ctx.keep(np.arange(60) % 3)
    return ctx.fits(_X(), y)


@row("labels-strings", TypeError, "Unknown label type")
def _labels_strings(ctx):
    return ctx.fits(_X(), ctx.keep(np.array(["normal", "anomaly"] * 30)))


@row("labels-all-anomalies", ValueError, "every sample as an anomaly")
def _labels_all(ctx):
    return ctx.fits(_X(), ctx.keep(np.ones(60, dtype=int)))


@row("labels-one-normal", ValueError, "1 normal sample to learn from; at least 2|1 of the 1 normal")
def _labels_one_normal(ctx):
    return ctx.fits(_X(), ctx.keep(np.r_[0, np.ones(59, dtype=int)]))


@row("labels-length", ValueError, "y has 59 labels but X has 60 samples")
def _labels_length(ctx):
    return ctx.fits(_X(), ctx.keep(np.zeros(59, dtype=int)))


@row("labels-sparse", TypeError, r"y is a sparse .*toarray\(\)\.ravel\(\)")
def _labels_sparse(ctx):
    return ctx.fits(_X(), ctx.keep(scipy.sparse.csr_matrix(np.zeros((1, 60), dtype=int))))


# ------------------------------------------------------------ thresholds
@row("contamination", ValueError, r"contamination=0.7 must be in \(0, 0.5\]")
def _contamination(ctx):
    return [
        lambda det=det: clone(det).set_params(contamination=0.7).fit(_X())
        for det in ctx.unfitted[:3]
    ]


@row("control-limit", ValueError, r"control_limit=1.0 must be in \(0, 1\)")
def _control_limit(ctx):
    return [lambda: PCADetector(control_limit=1.0).fit(_X())]


@row("trim-fraction", ValueError, r"trim_fraction=1.0 must be in \[0, 1\)")
def _trim_fraction(ctx):
    return [
        lambda: PCADetector(trim_fraction=1.0).fit(_X()),
        lambda: clone(ctx.kinds["autoencoder"]).set_params(loss_trim_fraction=1.0).fit(_X()),
    ]


@row("trim-fraction-type", TypeError, "trim_fraction must be 'auto' or a float")
def _trim_fraction_type(ctx):
    return [lambda: PCADetector(trim_fraction="Auto").fit(_X())]


@row("trim-limits", ValueError, "spread")
def _trim_limits(ctx):
    return [
        lambda: PCADetector(trim_fraction=0.1, control_limit=0.05).partial_fit(_X()),
        lambda: (
            PCADetector(n_components=2, trim_fraction=0.1).partial_fit(_X()).analytic_limit(0.1)
        ),
    ]


def _far_out():
    """Rows with one far outlier, which ``trim_fraction='auto'`` leaves out."""
    X = _X().copy()
    X[0] += 1e3
    return X


@row("alpha", ValueError, r"alpha=(2|0) must be in \(0, 1\)")
def _alpha(ctx):
    return [
        lambda: ctx.fitted[0].analytic_limit(2),
        lambda: CalibratedDetector(PCADetector(), alpha=0).fit(_X()),
    ]


@row("scores-nan", ValueError, r"contains NaN.*no rank")
def _scores_nan(ctx):
    y, scores = [0, 0, 1], ctx.keep(np.array([0.1, np.nan, 0.9]))
    return [
        lambda: best_f1_score(y, scores),
        lambda: conformal_p_values([1.0, 2.0, 3.0], scores),
        lambda: conformal_p_values(scores, [1.0]),
        lambda: pixel_roc_auc_score(np.eye(3, dtype=bool), np.diag(scores)),
        lambda: labelled_threshold(scores, y),
    ]


@row("scores-infinite", None)
def _scores_infinite(ctx):
    y, scores = [0, 0, 1, 1], ctx.keep(np.array([-np.inf, 0.1, 0.9, np.inf]))

    def check():
        assert best_f1_score(y, scores) == 1.0
        assert conformal_p_values([1.0, 2.0, 3.0], scores).tolist() == [1.0, 1.0, 1.0, 0.25]
        masks = np.array(y, dtype=bool).reshape(1, 2, 2)
        assert pixel_roc_auc_score(masks, scores.reshape(1, 2, 2)) == 1.0
        assert aupro_score(masks, scores.reshape(1, 2, 2)) == 1.0
        assert labelled_threshold(scores, y) == 0.5

    def scorer():
        X = np.vstack([_X(2), np.full((2, 4), 1.5e308)])
        with pytest.warns(UserWarning, match="overflowed"):
            assert anomaly_roc_auc(ctx.fitted[0], X, y) == 1.0

    return [check, scorer]


# ------------------------------------------------------------ devices
@row("device-unsupported", ValueError, r"device='(xpu|meta)' but the detectors run only on CPU")
def _device_unsupported(ctx):
    return [
        lambda det=det, device=device: clone(det).set_params(device=device).fit(_X())
        for det in ctx.unfitted
        if "device" in det.get_params()
        for device in ("xpu", "meta")
    ]


@row("device-mps", ValueError, r"device='mps': the detectors .* float64, which Apple's MPS")
def _device_mps(ctx):
    # MPS has no float64: every fit failed in its first epoch, every scoring call after.
    return [
        lambda det=det: clone(det).set_params(device="mps").fit(_X())
        for det in ctx.unfitted
        if "device" in det.get_params()
    ]


# ------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def model_file(tmp_path_factory, fitted_detectors):
    return save(fitted_detectors["pca"], tmp_path_factory.mktemp("model") / "det.model")


def _copy(ctx, data, name="bad.model"):
    path = ctx.tmp_path / name
    path.write_bytes(data)
    return ctx.keep(path)


@row("load-missing", FileNotFoundError, r"No model file at '.*missing\.model'")
def _load_missing(ctx):
    return [lambda: load(ctx.tmp_path / "missing.model")]


@row("load-directory", IsADirectoryError, "Is a directory")
def _load_directory(ctx):
    return [lambda: load(ctx.tmp_path)]


@row("load-not-ours", ModelFileError, r"'.*bad\.model' is not a readable anomalib_lite model file")
def _load_not_ours(ctx):
    return [lambda: load(_copy(ctx, b"\x89PNG\r\n\x1a\n" + bytes(64)))]


@row("load-truncated", ModelFileError, "is not a readable anomalib_lite model file.*truncated")
def _load_truncated(ctx):
    data = ctx.model.read_bytes()
    return [lambda: load(_copy(ctx, data[: len(data) // 2]))]


@row("load-tampered", ModelFileError, "failed its checksum.*corrupt or was modified")
def _load_tampered(ctx):
    data = bytearray(ctx.model.read_bytes())
    data[200] ^= 0xFF  # inside the first array's data
    return [lambda: load(_copy(ctx, bytes(data)))]


@row("load-newer-format", ModelFileError, "model-file format 99.*Upgrade anomalib_lite")
def _load_newer(ctx):
    with zipfile.ZipFile(ctx.model) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    header = json.loads(entries["anomalib_lite.json"])
    header["format_version"] = 99
    entries["anomalib_lite.json"] = json.dumps(header).encode()
    path = ctx.tmp_path / "newer.model"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    ctx.keep(path)
    return [lambda: load(path)]


@row("load-overlapping-entries", ModelFileError, r"entries .* overlap")
def _load_overlapping(ctx):
    with zipfile.ZipFile(ctx.model) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    path = ctx.tmp_path / "bomb.model"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    data = bytearray(path.read_bytes())
    # point the second central-directory record at the first entry's bytes
    first = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", first + 4)
    data[second + 42 : second + 46] = data[first + 42 : first + 46]
    return [lambda: load(_copy(ctx, bytes(data), "bomb.model"))]


@row("load-forged-geometry", ModelFileError, "weights do not fit the network")
def _load_forged_geometry(ctx):
    path = _forged(ctx, "wide.model", lambda p: p["state"].update(hidden_sizes_=[7000, 7000]))
    return [lambda: load(path)]


@row("load-write-target", ModelFileError, r": it stores checkpoint_path='.*', which a model file")
def _load_write_target(ctx):
    target = str(ctx.tmp_path / "autostart" / "run.desktop")
    path = _forged(ctx, "target.model", lambda p: p["params"].update(checkpoint_path=target))
    return [lambda: load(path)]


def _forged(ctx, name, edit):
    """A saved autoencoder whose payload ``edit`` changed, with checksums that match."""
    det = ctx.fitted[1]  # the autoencoder
    with zipfile.ZipFile(save(det, ctx.tmp_path / f"{name}.orig")) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    payload = json.loads(entries["payload.json"])
    edit(payload)
    entries["payload.json"] = json.dumps(payload).encode()
    header = json.loads(entries.pop("anomalib_lite.json"))
    header["sha256"] = {k: hashlib.sha256(v).hexdigest() for k, v in entries.items()}
    path = ctx.tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for entry, data in entries.items():
            zf.writestr(entry, data)
        zf.writestr("anomalib_lite.json", json.dumps(header))
    return ctx.keep(path)


@row("load-bytes", TypeError, r"pass io\.BytesIO\(data\)")
def _load_bytes(ctx):
    data = ctx.model.read_bytes()
    return [lambda: load(data)]


@row("load-named-pipe", ModelFileError, "not a regular file")
def _load_pipe(ctx):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes (os.mkfifo) on this platform")
    os.mkfifo(ctx.tmp_path / "pipe.model")
    return [lambda: load(ctx.tmp_path / "pipe.model")]


@row("save-existing-file", FileExistsError, "pass overwrite=True")
def _save_existing(ctx):
    path = _copy(ctx, ctx.model.read_bytes(), "existing.model")
    return [lambda: save(ctx.fitted[0], path)]


@row("save-missing-directory", FileNotFoundError, "folder to write the file in does not exist")
def _save_missing_dir(ctx):
    return [lambda: save(ctx.fitted[0], ctx.tmp_path / "nowhere" / "det.model")]


@row("save-under-a-file", NotADirectoryError, "A file stands where the folder to write")
def _save_under_a_file(ctx):
    notes = ctx.tmp_path / "notes.txt"
    notes.write_text("keep me")
    ctx.keep(notes)
    return [lambda: save(ctx.fitted[0], notes / "det.model")]


@row("save-directory", IsADirectoryError, "path is a folder; pass a file path inside it")
def _save_directory(ctx):
    folder = ctx.tmp_path / "models"
    folder.mkdir()
    return [lambda o=o: save(ctx.fitted[0], folder, overwrite=o) for o in (False, True)]


@row("save-named-pipe", OSError, "path is a named pipe, socket or device, not a file")
def _save_named_pipe(ctx):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes (os.mkfifo) on this platform")
    pipe = ctx.tmp_path / "pipe.model"
    os.mkfifo(pipe)
    ctx.keep(pipe)  # a file written in its place would fail the guard's check
    return [lambda o=o: save(ctx.fitted[0], pipe, overwrite=o) for o in (False, True)]


@row("save-long-name", None)
def _save_long_name(ctx):
    def check():
        folder = ctx.tmp_path / "long"
        folder.mkdir()
        path = save(ctx.fitted[0], folder / ("m" * 250))
        assert os.listdir(folder) == [path.name]

    return [check]


@row("save-code", TypeError, "FunctionTransformer holds arbitrary Python functions")
def _save_code(ctx):
    pipe = make_pipeline(FunctionTransformer(np.abs), PCADetector(n_components=1)).fit(_X())
    return [lambda: save(pipe, ctx.tmp_path / "pipe.model")]


# ------------------------------------------------------------ images
@pytest.fixture(scope="module")
def conv():
    images = np.random.default_rng(0).random((12, 1, 8, 8))
    return ConvAutoencoderDetector(channels=(4,), latent_dim=2, max_iter=1, random_state=0).fit(
        images
    )


@row(
    "image-size",
    ValueError,
    r"images of shape \(C, H, W\) = \(1, 6, 6\), but .* fitted on .*\(1, 8, 8\)",
)
def _image_size(ctx):
    return [lambda: ctx.conv.score_samples(ctx.keep(np.zeros((2, 1, 6, 6))))]


@row("image-channels", ValueError, r"= \(3, 8, 8\), but .* fitted on images of shape \(1, 8, 8\)")
def _image_channels(ctx):
    return [lambda: ctx.conv.score_samples(ctx.keep(np.zeros((2, 3, 8, 8))))]


@row(
    "channels-last",
    ValueError,
    r"looks channels-last.*np\.moveaxis\(X, -1, 1\)\. If they are channels-first .*"
    r"X\.reshape\(len\(X\), -1\)",
)
def _channels_last(ctx):
    images = ctx.keep(np.random.default_rng(0).random((6, 8, 8, 3)))
    return [
        lambda: ctx.conv.score_samples(ctx.keep(np.zeros((2, 8, 8, 3)))),
        lambda: PCADetector().fit(images),
    ]


@row("pca-image-shape", ValueError, r"shape \(4, 16\), but .* sample_shape_=\(8, 8\)")
def _pca_image_shape(ctx):
    det = PCADetector(n_components=2).fit(np.random.default_rng(0).random((12, 8, 8)))
    return [lambda: det.score_samples(ctx.keep(np.zeros((2, 4, 16))))]


@row("pca-rows-for-images", ValueError, r"X is 2-D, but .* fitted on images of shape \(8, 8\)")
def _pca_rows_for_images(ctx):
    det = PCADetector(n_components=2).fit(np.random.default_rng(0).random((12, 8, 8)))
    return [lambda: det.score_samples(ctx.keep(np.zeros((2, 64))))]


@row("image-too-small", ValueError, r"Images of 2x2 pixels are too small.*at least 4x4")
def _image_too_small(ctx):
    images = ctx.keep(np.random.default_rng(0).random((6, 2, 2)))
    return [lambda: ConvAutoencoderDetector(channels=(4, 4, 4), max_iter=1).fit(images)]


@row(
    "image-zero-size", ValueError, r"= \(1, 0, 8\); images need at least one channel and one pixel"
)
def _image_zero_size(ctx):
    images = ctx.keep(np.zeros((6, 0, 8)))
    return [
        lambda: ConvAutoencoderDetector(max_iter=1).fit(images),
        lambda: PCADetector().fit(images),
    ]


@row(
    "image-shape-mismatch",
    ValueError,
    r"image_shape=\(5, 5\) needs 25 features per row, but X has 16",
)
def _image_shape_mismatch(ctx):
    return [lambda: ConvAutoencoderDetector(image_shape=(5, 5), max_iter=1).fit(ctx.keep(_X(d=16)))]


@row("image-rows-without-shape", ValueError, r"X is 2-D .* pass image_shape=\(H, W\)")
def _image_rows(ctx):
    return [lambda: ConvAutoencoderDetector(max_iter=1).fit(ctx.keep(_X(d=16)))]


@row("integer-images", None)
def _integer_images(ctx):
    rng = np.random.default_rng(0)
    wide = ctx.keep((rng.random((12, 8, 8)) * 4000 - 1000).astype(np.int32))
    small = ctx.keep((rng.random((12, 8, 8)) * 255).astype(np.uint8))

    def check(images):
        det = ConvAutoencoderDetector(channels=(4,), max_iter=1, random_state=0).fit(images)
        assert np.all(np.isfinite(det.score_samples(images)))

    return [lambda: check(wide), lambda: check(small)]


# ------------------------------------------------------------ image files
def _png(path, size=(8, 8), seed=0):
    pixels = (np.random.default_rng(seed).random(size) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@row("images-missing-path", FileNotFoundError, r"no such file or folder: '.*nothing'")
def _images_missing(ctx):
    return [lambda: load_images(ctx.tmp_path / "nothing")]


@row("images-no-images", ValueError, r"No image files found in folder .*notes\.txt")
def _images_none(ctx):
    (ctx.tmp_path / "notes.txt").write_text("not an image")
    return [lambda: load_images(ctx.tmp_path)]


@row("images-corrupt", ValueError, r"Cannot read image file '.*corrupt\.png'")
def _images_corrupt(ctx):
    path = _copy(ctx, b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "corrupt.png")
    return [lambda: load_images(path)]


@row("images-truncated", ValueError, r"Cannot read image file '.*cut\.(png|jpg)'")
def _images_truncated(ctx):
    calls = []
    for suffix in ("png", "jpg"):
        whole = _png(ctx.tmp_path / f"whole.{suffix}", size=(32, 32))
        data = whole.read_bytes()
        cut = _copy(ctx, data[: len(data) // 2], f"cut.{suffix}")
        calls.append(lambda cut=cut: load_images(cut))
    return calls


@row(
    "images-mixed-sizes", ValueError, r"different sizes: '.*a\.png' is 8x8 .* but '.*b\.png' is 6x6"
)
def _images_mixed(ctx):
    ctx.keep(_png(ctx.tmp_path / "a.png"))
    ctx.keep(_png(ctx.tmp_path / "b.png", size=(6, 6)))
    return [lambda: load_images(ctx.tmp_path)]


@row(
    "images-decompression-bomb",
    ValueError,
    r"'.*bomb\.png' is refused as a possible decompression bomb",
)
def _images_bomb(ctx):
    path = ctx.keep(_png(ctx.tmp_path / "bomb.png", size=(64, 64)))

    def call():
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = 1000  # the 4,096-pixel file counts as a bomb
        try:
            load_images(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit

    return [call]


_symlinks = hasattr(os, "symlink") and sys.platform != "win32"
_fifos = hasattr(os, "mkfifo")


@row("images-folder-link", None)
def _images_folder_link(ctx):
    if not _symlinks:
        pytest.skip("symbolic links need privileges on Windows")
    real, data = ctx.tmp_path / "real", ctx.tmp_path / "data"
    real.mkdir()
    data.mkdir()
    ctx.keep(_png(real / "b.png"))
    ctx.keep(_png(data / "a.png"))
    (data / "linked").symlink_to(real, target_is_directory=True)

    def check():
        assert load_images(data).shape == (2, 8, 8)

    return [check]


@row("images-link-loop", UserWarning, r"link back to a folder it lies in .*not followed")
def _images_link_loop(ctx):
    if not _symlinks:
        pytest.skip("symbolic links need privileges on Windows")
    ctx.keep(_png(ctx.tmp_path / "a.png"))
    (ctx.tmp_path / "again").symlink_to(ctx.tmp_path, target_is_directory=True)
    return [lambda: load_images(ctx.tmp_path)]


@row("images-dangling-link", UserWarning, r"link to .*which does not exist.*Skipped")
def _images_dangling(ctx):
    if not _symlinks:
        pytest.skip("symbolic links need privileges on Windows")
    ctx.keep(_png(ctx.tmp_path / "a.png"))
    (ctx.tmp_path / "b.png").symlink_to(ctx.tmp_path / ".git" / "annex" / "b")
    return [lambda: load_images(ctx.tmp_path, on_error="warn")]


@row("images-named-pipe", UserWarning, r"not regular files .*pipe\.png")
def _images_pipe(ctx):
    if not _fifos:
        pytest.skip("no named pipes (os.mkfifo) on this platform")
    ctx.keep(_png(ctx.tmp_path / "a.png"))
    os.mkfifo(ctx.tmp_path / "pipe.png")
    return [lambda: load_images(ctx.tmp_path)]


@row("images-named-pipe-listed", ValueError, r"'.*pipe\.png': it is not a regular file")
def _images_pipe_listed(ctx):
    if not _fifos:
        pytest.skip("no named pipes (os.mkfifo) on this platform")
    os.mkfifo(ctx.tmp_path / "pipe.png")
    return [lambda: load_images([ctx.tmp_path / "pipe.png"])]


@row("score-files-skipped", UserWarning, r"1 of the 2 files .*skipped; their results are NaN")
def _score_files_skipped(ctx):
    from anomalib_lite.dask import score_files

    good = ctx.keep(_png(ctx.tmp_path / "a.png"))
    bad = _copy(ctx, b"not an image", "b.png")

    def check():
        scores = score_files(ctx.conv, [good, bad], on_error="warn", dtype="float32")
        values = scores.compute(scheduler="synchronous")
        assert np.isfinite(values[0]) and np.isnan(values[1])

    return [check]


@row("dask-empty-chunks", None)
def _dask_empty(ctx):
    da = pytest.importorskip("dask.array")
    from anomalib_lite.dask import score_array

    X = ctx.keep(_X())
    darr = da.from_array(X, chunks=(20, 4))
    selected = darr[da.from_array(np.arange(60) >= 20, chunks=20)]
    selected.compute_chunk_sizes()
    assert selected.chunks[0] == (0, 20, 20)

    def check(det):
        result = score_array(det, selected).compute(scheduler="synchronous")
        np.testing.assert_allclose(result, det.score_samples(X[20:]), rtol=1e-6)

    return [lambda det=det: check(det) for det in ctx.fitted]


# ------------------------------------------------------------ the test
@pytest.mark.parametrize("row_id", list(CASES))
def test_bad_input_row(row_id, new_detectors, fitted_detectors, model_file, conv, tmp_path):
    func, outcome, match = CASES[row_id]
    guard = Guard()
    ctx = Ctx(new_detectors, fitted_detectors, tmp_path, guard)
    ctx.model, ctx.conv = guard(model_file), conv
    calls = func(ctx)
    assert calls
    for call in calls:
        if outcome is None:
            call()
        elif issubclass(outcome, Warning):
            with pytest.warns(outcome, match=match):
                call()
        else:
            with pytest.raises(outcome, match=match):
                call()
    guard.check()


def _doc_rows():
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([\w-]+)` \|(.*)\|\s*$", line)
        if m:
            cells = [c.strip() for c in m.group(2).split(" | ")]
            rows[m.group(1)] = cells
    return rows


def test_docs_table_lists_exactly_the_tested_rows():
    rows = _doc_rows()
    assert list(rows) == list(CASES)
    for row_id, cells in rows.items():
        outcome = CASES[row_id][1]
        expected = "works" if outcome is None else outcome.__name__
        assert expected in cells[-2], (row_id, cells)
