"""Model files: exact round trips, no code run on load, atomic writes."""

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import os
import pickle
import re
import signal
import stat
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    RobustScaler,
    StandardScaler,
)

import anomalib_lite
from anomalib_lite import BaseDetector, PCADetector
from anomalib_lite.io import ALLOWED_CLASSES, FORMAT_VERSION, ModelFileError, load, save


def _n_features(detector):
    """Features a detector's fast test data needs (images need their image_shape)."""
    for key, value in detector.get_params(deep=True).items():
        if key.endswith("image_shape") and value is not None:
            # -1 marks a size taken from the data: give it 8 values
            return int(np.prod([8 if s == -1 else s for s in value]))
    return 5


def _data(detector, n=120, seed=0):
    rng = np.random.default_rng(seed)
    d = _n_features(detector)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)


def assert_same_state(a, b, where="estimator"):
    """``a`` and ``b`` hold equal values of identical types, recursively."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, BaseEstimator):
        assert set(vars(a)) == set(vars(b)), where
        for key in vars(a):
            assert_same_state(vars(a)[key], vars(b)[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, torch.nn.Module):
        assert_same_state(a.state_dict(), b.state_dict(), where)
    elif dataclasses.is_dataclass(a):  # a torch detector's run state
        assert_same_state(vars(a), vars(b), where)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu()), where
    elif isinstance(a, np.random.RandomState):
        assert_same_state(a.get_state(), b.get_state(), where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, (float, np.floating)) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _rewrite(src, dst, *, header=None, entries=None, rehash=True):
    """Copy a model file, changing its header or entries (and, by default,
    recomputing the checksums so that only the content is tested)."""
    with zipfile.ZipFile(src) as zf:
        content = {name: zf.read(name) for name in zf.namelist()}
    head = json.loads(content.pop("anomalib_lite.json"))
    content.update(entries or {})
    if rehash:
        head["sha256"] = {k: hashlib.sha256(v).hexdigest() for k, v in content.items()}
    if header:
        header(head)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in content.items():
            zf.writestr(name, data)
        zf.writestr("anomalib_lite.json", json.dumps(head))
    return dst


def _first_array(node):
    """The first ``{"$": "array"}`` node of a payload tree."""
    if isinstance(node, dict) and node.get("$") == "array":
        return node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return next(filter(None, map(_first_array, children)), None)


def _payload(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("payload.json"))


@pytest.fixture
def saved(tmp_path):
    X = np.random.default_rng(0).normal(size=(60, 4))
    det = PCADetector(n_components=2).fit(X)
    return save(det, tmp_path / "det.model"), det, X


# ------------------------------------------------------------- round trips
def test_round_trip_gives_identical_parameters_state_and_scores(detector, tmp_path):
    X = _data(detector)
    fitted = clone(detector).fit(X)
    restored = load(save(fitted, tmp_path / "model"))
    assert_same_state(fitted, restored)
    assert restored.get_params().keys() == fitted.get_params().keys()
    np.testing.assert_array_equal(restored.score_samples(X), fitted.score_samples(X))
    np.testing.assert_array_equal(restored.decision_function(X), fitted.decision_function(X))
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
    assert restored.offset_ == fitted.offset_


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_folder_that_cannot_be_written_is_named_by_the_target():
    """The temporary file next to the target is an implementation detail."""
    det = PCADetector(n_components=1).fit(np.random.default_rng(0).normal(size=(9, 3)))
    with pytest.raises(OSError) as info:
        save(det, "/proc/m.model")
    assert info.value.filename == "/proc/m.model" and ".tmp" not in str(info.value)


def test_unfitted_round_trip_keeps_parameters(detector, tmp_path):
    restored = load(save(clone(detector), tmp_path / "model"))
    assert_same_state(clone(detector), restored)


def test_save_does_not_modify_the_estimator(detector, tmp_path):
    fitted = clone(detector).fit(_data(detector))
    before = copy.deepcopy(fitted)
    save(fitted, tmp_path / "model")
    assert_same_state(before, fitted)


@pytest.mark.parametrize(
    "transformers",
    [
        [StandardScaler()],
        [MinMaxScaler(), PCA(n_components=4, random_state=0)],
        [RobustScaler(), MaxAbsScaler()],
        ["passthrough"],
        # Their components_ are transposed views, which must keep their layout.
        [RobustScaler(), IncrementalPCA(n_components=3)],
        [PCA(n_components=3, svd_solver="arpack", random_state=0)],
    ],
    ids=["standard", "minmax-pca", "robust-maxabs", "passthrough", "incremental", "arpack"],
)
def test_pipeline_round_trip(transformers, tmp_path):
    X = np.random.default_rng(1).normal(size=(80, 6)) * [1, 2, 3, 4, 5, 6]
    steps = [(f"t{i}", t) for i, t in enumerate(transformers)]
    pipe = Pipeline([*steps, ("detector", PCADetector(n_components=2))]).fit(X)
    restored = load(save(pipe, tmp_path / "pipe.model"))
    assert_same_state(pipe, restored)
    np.testing.assert_array_equal(restored.score_samples(X), pipe.score_samples(X))
    np.testing.assert_array_equal(restored.predict(X), pipe.predict(X))


def test_dataframe_feature_names_survive(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(np.random.default_rng(2).normal(size=(40, 3)), columns=["a", "b", "c"])
    det = PCADetector(n_components=1).fit(df)
    restored = load(save(det, tmp_path / "m"))
    np.testing.assert_array_equal(restored.feature_names_in_, ["a", "b", "c"])
    assert restored.feature_names_in_.dtype == object
    with pytest.raises(ValueError, match="feature names"):
        restored.score_samples(df[["b", "a", "c"]])


def test_partial_fit_state_and_random_state_instance_survive(tmp_path):
    X = np.random.default_rng(3).normal(size=(90, 5))
    det = PCADetector(n_components=2, random_state=np.random.RandomState(7))
    det.partial_fit(X[:45]).partial_fit(X[45:])
    restored = load(save(det, tmp_path / "m"))
    assert_same_state(det, restored)
    # both continue identically
    det.partial_fit(X[:30])
    restored.partial_fit(X[:30])
    np.testing.assert_array_equal(restored.score_samples(X), det.score_samples(X))


@settings(max_examples=15, deadline=None)
@given(
    n_components=st.integers(1, 4),
    statistic=st.sampled_from(["spe", "t2", "combined"]),
    contamination=st.one_of(st.just("auto"), st.floats(0.01, 0.5)),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_exact_for_any_pca_configuration(
    n_components, statistic, contamination, seed, tmp_path_factory
):
    X = np.random.default_rng(seed).normal(size=(30, 5))
    det = PCADetector(
        n_components=n_components, statistic=statistic, contamination=contamination
    ).fit(X)
    restored = load(save(det, tmp_path_factory.mktemp("h") / "m"))
    assert_same_state(det, restored)
    np.testing.assert_array_equal(restored.score_samples(X), det.score_samples(X))


@pytest.mark.parametrize("shape", [(7, 9), (3, 6, 5)])
def test_a_pca_with_smoothed_maps_round_trips(shape, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, *shape))
    det = PCADetector(n_components=3, smoothing="auto", statistic="auto").fit(X)
    restored = load(save(det, tmp_path / "m"))
    assert_same_state(det, restored)
    assert restored.smoothing_ == det.smoothing_ and restored.edge_scale_.shape == shape[-2:]
    assert restored.statistic_aucs_ == det.statistic_aucs_ != {}
    np.testing.assert_array_equal(restored.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(restored.anomaly_map(X), det.anomaly_map(X))


def test_file_object_can_be_loaded(saved):
    path, det, X = saved
    restored = load(io.BytesIO(path.read_bytes()))
    np.testing.assert_array_equal(restored.score_samples(X), det.score_samples(X))


def test_every_library_estimator_is_allowed():
    for name in anomalib_lite.__all__:
        obj = getattr(anomalib_lite, name)
        if isinstance(obj, type) and issubclass(obj, BaseEstimator) and obj is not BaseDetector:
            assert f"anomalib_lite.{name}" in ALLOWED_CLASSES


def test_plain_pickle_still_works(saved):
    _, det, X = saved
    restored = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(restored.score_samples(X), det.score_samples(X))


# ------------------------------------------------------------ torch models
needs_autoencoder = pytest.mark.skipif(
    not hasattr(anomalib_lite, "AutoencoderDetector"), reason="AutoencoderDetector not available"
)


@needs_autoencoder
def test_torch_detector_trained_on_an_absent_gpu_loads_on_cpu(tmp_path):
    X = np.random.default_rng(4).normal(size=(40, 6)).astype(np.float32)
    det = anomalib_lite.AutoencoderDetector(max_iter=2, random_state=0, device="cpu").fit(X)
    det.device_ = "cuda:7"  # as if trained on a GPU this machine lacks
    path = save(det, tmp_path / "gpu.model")
    with pytest.warns(UserWarning, match=r"device_='cuda:7'.*loaded on the CPU"):
        restored = load(path)
    assert restored.device_ == "cpu"
    assert all(p.device.type == "cpu" for p in restored.module_.parameters())
    det.device_ = "cpu"
    np.testing.assert_array_equal(restored.score_samples(X), det.score_samples(X))


@needs_autoencoder
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_model_loads_back_on_the_gpu_and_without_one_on_the_cpu(tmp_path):
    X = np.random.default_rng(4).normal(size=(40, 6)).astype(np.float32)
    det = anomalib_lite.AutoencoderDetector(max_iter=2, random_state=0, device="cuda").fit(X)
    path = save(det, tmp_path / "gpu.model")
    restored = load(path)
    assert restored.device_ == det.device_
    assert all(p.device.type == "cuda" for p in restored.module_.parameters())
    np.testing.assert_array_equal(restored.score_samples(X), det.score_samples(X))
    # a machine without the GPU: scores agree up to float32 device differences
    script = (
        "import sys, warnings, numpy as np\n"
        "from anomalib_lite.io import load\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    det = load(sys.argv[1])\n"
        "assert det.device_ == 'cpu' and any('loaded on the CPU' in str(x.message) for x in w)\n"
        "np.save(sys.argv[2], det.score_samples(np.load(sys.argv[3])))\n"
    )
    np.save(tmp_path / "X.npy", X)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    args = [str(path), str(tmp_path / "cpu.npy"), str(tmp_path / "X.npy")]
    subprocess.run([sys.executable, "-c", script, *args], check=True, env=env, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "cpu.npy"), det.score_samples(X), rtol=1e-4)


@needs_autoencoder
def test_model_files_name_no_file_to_write(tmp_path):
    X = np.random.default_rng(6).normal(size=(40, 6)).astype(np.float32)
    checkpoint = tmp_path / "checkpoint.model"
    det = anomalib_lite.AutoencoderDetector(
        max_iter=1, random_state=0, checkpoint_path=checkpoint
    ).fit(X)
    path = save(det, tmp_path / "m")
    assert load(path).checkpoint_path is None  # saved as None
    assert det.checkpoint_path == checkpoint  # the detector keeps its own
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    payload = _payload(path)
    payload["params"]["checkpoint_path"] = str(victim)
    forged = _rewrite(
        path, tmp_path / "forged", entries={"payload.json": json.dumps(payload).encode()}
    )
    with pytest.raises(ModelFileError, match=r"cannot be loaded: it stores checkpoint_path="):
        load(forged)
    assert victim.read_text() == "keep me"


def test_load_refuses_a_file_object_it_cannot_read_a_zip_from(tmp_path):
    path = save(PCADetector(n_components=1).fit(np.eye(4)), tmp_path / "m")
    with open(path, encoding="latin-1") as text, pytest.raises(TypeError, match="text mode"):
        load(text)

    class Pipe(io.RawIOBase):  # a stream that reads but cannot seek
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            return self.data.readinto(buffer)

    with pytest.raises(TypeError, match="cannot seek"):
        load(Pipe(path.read_bytes()))
    assert load(io.BytesIO(path.read_bytes())).n_components == 1


def test_a_pipelines_cache_folder_is_not_stored(tmp_path):
    # Pipeline(memory=...) names a folder that fit writes joblib pickles to and reads back.
    X = np.random.default_rng(6).normal(size=(40, 4))
    cache = tmp_path / "cache"
    pipe = Pipeline([("scale", StandardScaler()), ("pca", PCADetector(n_components=2))])
    pipe.set_params(memory=str(cache)).fit(X)
    path = save(pipe, tmp_path / "m")
    assert load(path).memory is None  # saved as None
    assert pipe.memory == str(cache)  # the pipeline keeps its own
    payload = _payload(path)
    payload["params"]["memory"] = str(tmp_path / "elsewhere")
    forged = _rewrite(
        path, tmp_path / "forged", entries={"payload.json": json.dumps(payload).encode()}
    )
    with pytest.raises(ModelFileError, match=r"cannot be loaded: it stores memory="):
        load(forged)
    assert not (tmp_path / "elsewhere").exists()


@needs_autoencoder
def test_a_files_device_never_makes_load_fail(tmp_path):
    X = np.random.default_rng(6).normal(size=(40, 6)).astype(np.float32)
    det = anomalib_lite.AutoencoderDetector(max_iter=1, random_state=0).fit(X)
    path = save(det, tmp_path / "m")
    payload = _payload(path)
    payload["state"]["device_"] = "quantum:7"
    payload["params"]["device"] = "quantum"
    forged = _rewrite(
        path, tmp_path / "forged", entries={"payload.json": json.dumps(payload).encode()}
    )
    with pytest.warns(UserWarning, match="device_='quantum:7', which is not available"):
        restored = load(forged)
    assert restored.device_ == "cpu"
    np.testing.assert_allclose(restored.score_samples(X), det.score_samples(X), rtol=1e-6)
    with pytest.raises(ValueError, match="device='quantum' is not a torch device"):
        restored.fit(X)  # the parameter is checked where it is used, as any parameter


@needs_autoencoder
def test_torch_weights_are_stored_as_arrays_not_pickles(tmp_path):
    X = np.random.default_rng(5).normal(size=(40, 6)).astype(np.float32)
    det = anomalib_lite.AutoencoderDetector(max_iter=1, random_state=0).fit(X)
    path = save(det, tmp_path / "m")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert all(n.endswith((".npy", ".json")) for n in names)
        for name in names:
            if name.endswith(".npy"):
                # every array loads without pickle
                np.lib.format.read_array(io.BytesIO(zf.read(name)), allow_pickle=False)
    weights = _payload(path)["state"]["_weights"]["v"]
    assert {key for key, _ in weights} == set(det.module_.state_dict())


# --------------------------------------------------- what cannot be saved
def test_function_transformer_is_refused(tmp_path):
    X = np.abs(np.random.default_rng(0).normal(size=(30, 3)))
    pipe = make_pipeline(FunctionTransformer(np.log1p), PCADetector(n_components=1)).fit(X)
    with pytest.raises(TypeError, match="FunctionTransformer holds arbitrary Python functions"):
        save(pipe, tmp_path / "m")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("estimator", "match"),
    [
        (IsolationForest(), "IsolationForest, which a model file cannot hold"),
        (type("MyPCA", (PCADetector,), {})(), "MyPCA, which a model file cannot hold"),
        (PCADetector(random_state=lambda: 0), "callable .* model files hold no code"),
        (PCADetector(random_state=np.random.default_rng(0)), "Generator"),
        (make_pipeline(StandardScaler(), PCADetector(batch_size=b"x")), "bytes"),
        # load refuses such keys: save must not write a file it cannot read back
        (PCADetector(batch_size={np.int64(1): 2}), r"the key \S+ of type numpy\.int64.*int\(key\)"),
        (PCADetector(batch_size={np.bool_(True): 2}), r"the key \S+ of type numpy\.bool"),
        (
            PCADetector(batch_size=np.array([np.str_("a")], dtype=object)),
            r"object array holding a numpy\.str_",
        ),
        (
            PCADetector(batch_size=np.array(["a", None], dtype=object)),
            "holding a builtins.NoneType",
        ),
    ],
    ids=[
        *("not-allowed", "subclass", "callable", "generator", "bytes"),
        *("np-int-key", "np-bool-key", "np-str-element", "none-element"),
    ],
)
def test_values_that_need_code_are_refused(estimator, match, tmp_path):
    with pytest.raises(TypeError, match=match):
        save(estimator, tmp_path / "m")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([1, 2], "m"), {}, TypeError, "estimator must be a scikit-learn estimator"),
        ((PCADetector(), 3), {}, TypeError, "path must be a file path"),
        ((PCADetector(), "m"), {"overwrite": "yes"}, TypeError, "overwrite must be a bool"),
        ((PCADetector(), "missing/m"), {}, FileNotFoundError, "folder to write the file in"),
    ],
)
def test_bad_save_arguments(args, kwargs, error, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=match):
        save(*args, **kwargs)


# --------------------------------------------------------- overwriting
def test_existing_file_is_not_overwritten_by_default(saved):
    path, _, X = saved
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        save(PCADetector(n_components=1).fit(X), path)
    assert path.read_bytes() == before


def test_overwrite_replaces_the_file(saved):
    path, _, X = saved
    new = PCADetector(n_components=1).fit(X)
    save(new, path, overwrite=True)
    assert load(path).n_components_ == 1
    assert os.listdir(path.parent) == [path.name]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_overwrite_keeps_the_permissions_of_the_file_it_replaces(saved, mode):
    path, det, _ = saved
    path.chmod(mode)
    save(det, path, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_new_file_gets_the_usual_permissions(saved):
    path, _, _ = saved
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------ atomic writes
@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()])
def test_failed_save_leaves_the_old_file_intact(saved, monkeypatch, failure):
    path, det, X = saved
    before = path.read_bytes()
    import anomalib_lite.io as model_io

    real_write = model_io._write

    def write_then_fail(fh, *args):
        real_write(fh, *args)
        fh.write(b"partial")
        raise failure

    monkeypatch.setattr(model_io, "_write", write_then_fail)
    with pytest.raises(type(failure)):
        save(PCADetector(n_components=1).fit(X), path, overwrite=True)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind
    np.testing.assert_array_equal(load(path).score_samples(X), det.score_samples(X))


@contextlib.contextmanager
def _stalled_save(estimator, path):
    """A child process saving ``estimator`` to ``path``, stalled once the
    temporary file is written but not yet in place; killed on exit."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import anomalib_lite.io as model_io

            def stall(fd):
                os.write(write_end, b"w")
                time.sleep(60)

            model_io.os.fsync = stall
            save(estimator, path, overwrite=True)
        finally:
            os._exit(1)
    try:
        assert os.read(read_end, 1) == b"w"
        yield
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        os.close(write_end)


def _age(path):
    """Make ``path`` look untouched for longer than a stale temporary file."""
    from anomalib_lite.utils._files import STALE_TEMPORARY_SECONDS

    old = time.time() - STALE_TEMPORARY_SECONDS - 1
    os.utime(path, (old, old))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_killed_save_leaves_the_old_file_intact(saved, tmp_path):
    path, det, X = saved
    before = path.read_bytes()
    new = PCADetector(n_components=1).fit(X)
    with _stalled_save(new, path):
        pass
    assert path.read_bytes() == before
    np.testing.assert_array_equal(load(path).score_samples(X), det.score_samples(X))
    # what the killed process leaves is a hidden temporary file, never the model's name
    leftovers = [n for n in os.listdir(tmp_path) if n != path.name]
    assert len(leftovers) == 1 and re.fullmatch(r"\.[0-9a-f]{8}-[0-9a-f]{16}\.tmp", leftovers[0])
    stale = tmp_path / leftovers[0]
    save(new, path, overwrite=True)  # a fresh one may belong to a save in progress: kept
    assert stale.exists()
    _age(stale)
    other = save(new, tmp_path / "other.model")  # another target's save leaves it alone
    assert stale.exists() and other.exists()
    save(new, path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, "other.model"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and advisory locks")
def test_a_save_in_progress_keeps_its_temporary_file(saved, tmp_path):
    path, _, X = saved
    new = PCADetector(n_components=1).fit(X)
    with _stalled_save(new, path):
        (tmp,) = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        _age(tmp_path / tmp)
        save(new, path, overwrite=True)
        assert (tmp_path / tmp).exists()  # locked by the save in progress


@pytest.mark.parametrize("length", [240, 255])
def test_long_names_save_wherever_the_name_fits(saved, tmp_path, length):
    _, det, X = saved
    folder = tmp_path / "long"
    folder.mkdir()
    path = save(det, folder / ("m" * length))
    assert os.listdir(folder) == [path.name]
    np.testing.assert_array_equal(load(path).score_samples(X), det.score_samples(X))


@needs_autoencoder
def test_checkpoints_with_long_names_and_named_pipes(tmp_path):
    X = np.random.default_rng(6).normal(size=(40, 6)).astype(np.float32)
    folder = tmp_path / "runs"
    folder.mkdir()
    long = folder / ("c" * 250)
    det = anomalib_lite.AutoencoderDetector(max_iter=2, checkpoint_path=long, random_state=0)
    det.fit(X)
    assert os.listdir(folder) == [long.name]
    assert load(long).n_iter_ == 2
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes (os.mkfifo)")
    os.mkfifo(tmp_path / "pipe")
    params = {"max_iter": 1, "checkpoint_path": tmp_path / "pipe"}
    with pytest.raises(ValueError, match="already exists"):
        anomalib_lite.AutoencoderDetector(**params).fit(X)
    with pytest.raises(ValueError, match=r"not a readable anomalib_lite checkpoint.*regular file"):
        anomalib_lite.AutoencoderDetector(warm_start=True, **params).fit(X)


@pytest.mark.parametrize("overwrite", [False, True])
def test_saving_onto_a_folder_says_it_is_a_folder(saved, tmp_path, overwrite):
    _, det, _ = saved
    (tmp_path / "models").mkdir()
    with pytest.raises(IsADirectoryError, match=r"path is a folder; pass a file path inside it"):
        save(det, tmp_path / "models", overwrite=overwrite)
    assert os.listdir(tmp_path / "models") == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes (os.mkfifo)")
@pytest.mark.parametrize("overwrite", [False, True])
def test_saving_onto_a_named_pipe_is_refused_and_keeps_it(saved, tmp_path, overwrite):
    # overwrite=True replaces files; a named pipe (or a device) is no model to replace
    _, det, _ = saved
    pipe = tmp_path / "pipe.model"
    os.mkfifo(pipe)
    with pytest.raises(OSError, match=r"path is a named pipe, socket or device, not a file"):
        save(det, pipe, overwrite=overwrite)
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["det.model", "pipe.model"]


# ------------------------------------------------------ loading bad files
def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No model file at .*nothing\.model"):
        load(tmp_path / "nothing.model")


def test_directory_is_not_a_model_file(tmp_path):
    with pytest.raises(IsADirectoryError):
        load(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes (os.mkfifo)")
def test_named_pipe_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe.model")
    with pytest.raises(ModelFileError, match="not a regular file"):
        load(tmp_path / "pipe.model")


def test_model_bytes_are_refused_with_a_short_message(saved):
    path, _, _ = saved
    data = path.read_bytes()
    for value in (data, bytearray(data), memoryview(data)):
        with pytest.raises(TypeError, match=r"pass io\.BytesIO\(data\)") as info:
            load(value)
        assert len(str(info.value)) < 300  # never the file's bytes


def test_load_refuses_a_file_object_not_open_for_reading(saved):
    path, _, _ = saved
    before = path.read_bytes()
    with open(path, "ab") as fh, pytest.raises(TypeError, match="not open for reading"):
        load(fh)
    with open(path, "rb") as fh:
        pass
    with pytest.raises(ValueError, match="path is a closed file object"):
        load(fh)
    assert path.read_bytes() == before


def _central_records(data):
    """``(records, eocd offset)`` of a zip without a comment: each central-directory
    record as ``(fixed 46 bytes, name, extra)``."""
    eocd = len(data) - 22
    count, _, offset = struct.unpack("<HII", data[eocd + 10 : eocd + 20])
    records, pos = [], offset
    for _ in range(count):
        fixed = data[pos : pos + 46]
        n_name, n_extra, n_comment = struct.unpack("<HHH", fixed[28:34])
        name = data[pos + 46 : pos + 46 + n_name]
        extra = data[pos + 46 + n_name : pos + 46 + n_name + n_extra]
        records.append((fixed, name, extra))
        pos += 46 + n_name + n_extra + n_comment
    return records, offset


def _with_central_records(data, records, offset):
    """``data`` up to ``offset`` with a new central directory of ``records``."""
    body = b"".join(
        fixed[:28] + struct.pack("<HHH", len(name), len(extra), 0) + fixed[34:] + name + extra
        for fixed, name, extra in records
    )
    eocd = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(records), len(records), len(body), offset, 0
    )
    return data[:offset] + body + eocd


def test_zip_bomb_of_overlapping_entries_is_refused_before_any_read(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("arrays/0.npy", bytes(4 * 2**20))
    data = buf.getvalue()
    records, offset = _central_records(data)
    fixed, _, extra = records[0]
    bomb = [(fixed, f"arrays/{i}.npy".encode(), extra) for i in range(101)]
    path = tmp_path / "bomb.model"
    path.write_bytes(_with_central_records(data, bomb, offset))

    def no_read(*args, **kwargs):
        raise AssertionError("an entry was read")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_read)
    with pytest.raises(ModelFileError, match=r"entries 'arrays/0\.npy' and .* overlap"):
        load(path)


def test_declared_sizes_beyond_the_file_are_refused(saved, tmp_path, monkeypatch):
    path, _, _ = saved
    data = path.read_bytes()
    records, offset = _central_records(data)
    fixed, name, extra = records[-1]
    # the last entry's stored size, as the central directory declares it
    grown = fixed[:20] + struct.pack("<II", 2**31, 2**31) + fixed[28:]
    forged = tmp_path / "big.model"
    forged.write_bytes(_with_central_records(data, [*records[:-1], (grown, name, extra)], offset))
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(ModelFileError, match=r"beyond the file's data|overlap"):
        load(forged)


@needs_autoencoder
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda s: s.update({"hidden_sizes_": {"$": "tuple", "v": [7000, 7000]}}),
            r"weights do not fit the network .* stored as \(\d+,\) but the network has \(7000,\)",
        ),
        (
            lambda s: s.update({"hidden_sizes_": {"$": "tuple", "v": [8] * 1000}}),
            "declares 1000 layers but holds",
        ),
        (lambda s: s.update({"n_features_in_": 10**9}), "do not fit the network"),
        (lambda s: s["_weights"]["v"].pop(), "is stored as None but the network has"),
    ],
    ids=["wide-layers", "many-layers", "wide-input", "missing-weight"],
)
def test_forged_geometry_is_refused_before_the_network_is_built(tmp_path, monkeypatch, edit, match):
    X = np.random.default_rng(6).normal(size=(40, 6)).astype(np.float32)
    det = anomalib_lite.AutoencoderDetector(max_iter=1, random_state=0).fit(X)
    path = save(det, tmp_path / "m")
    payload = _payload(path)
    edit(payload["state"])
    forged = _rewrite(
        path, tmp_path / "forged", entries={"payload.json": json.dumps(payload).encode()}
    )
    monkeypatch.setattr(type(det), "_build_module", lambda self: pytest.fail("built"))
    with pytest.raises(ModelFileError, match=match):
        load(forged)


@pytest.mark.skipif(
    not hasattr(anomalib_lite, "ConvAutoencoderDetector"), reason="needs the conv detector"
)
def test_forged_image_geometry_is_refused_before_the_network_is_built(tmp_path, monkeypatch):
    images = np.random.default_rng(0).random((12, 8, 8))
    det = anomalib_lite.ConvAutoencoderDetector(channels=(4,), max_iter=1).fit(images)
    path = save(det, tmp_path / "m")
    for state in (
        {"input_shape_": {"$": "tuple", "v": [1, 4096, 4096]}},
        {"input_shape_": {"$": "tuple", "v": [1, 4096, 4096]}, "n_features_in_": 4096**2},
    ):
        payload = _payload(path)
        payload["state"].update(state)
        forged = _rewrite(
            path, tmp_path / "forged", entries={"payload.json": json.dumps(payload).encode()}
        )
        with monkeypatch.context() as patch:
            patch.setattr(type(det), "_build_module", lambda self: pytest.fail("built"))
            with pytest.raises(ModelFileError, match=r"does not hold|do not fit the network"):
                load(forged)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a model at all",
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        pickle.dumps({"a": 1}),
    ],
    ids=["empty", "text", "png", "pickle"],
)
def test_foreign_files_are_refused(content, tmp_path):
    path = tmp_path / "foreign"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="is not a readable anomalib_lite model file"):
        load(path)


def test_other_zip_formats_are_refused(tmp_path):
    np.savez(tmp_path / "arrays.npz", a=np.zeros(3))
    torch.save({"w": torch.zeros(3)}, tmp_path / "weights.pt")
    for name in ("arrays.npz", "weights.pt"):
        with pytest.raises(ModelFileError, match=r"no anomalib_lite\.json entry"):
            load(tmp_path / name)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_refused(saved, keep):
    path, _, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError, match="not a readable anomalib_lite model file"):
        load(path)


def test_modified_array_fails_the_checksum(saved, tmp_path):
    path, _, _ = saved
    with zipfile.ZipFile(path) as zf:
        array = zf.read("arrays/0.npy")
    changed = array[:-1] + bytes([array[-1] ^ 1])
    bad = _rewrite(path, tmp_path / "bad", entries={"arrays/0.npy": changed}, rehash=False)
    with pytest.raises(ModelFileError, match=r"failed its checksum: entry 'arrays/0.npy'"):
        load(bad)


def test_modified_payload_fails_the_checksum(saved, tmp_path):
    path, _, _ = saved
    payload = _payload(path)
    payload["params"]["n_components"] = 3
    entries = {"payload.json": json.dumps(payload).encode()}
    bad = _rewrite(path, tmp_path / "bad", entries=entries, rehash=False)
    with pytest.raises(ModelFileError, match="failed its checksum"):
        load(bad)


def test_newer_format_asks_for_an_upgrade(saved, tmp_path):
    path, _, _ = saved

    def newer(header):
        header["format_version"] = FORMAT_VERSION + 1
        header["library_version"] = "9.0.0"

    with pytest.raises(ModelFileError, match=r"'9.0.0' in model-file format 2.*Upgrade"):
        load(_rewrite(path, tmp_path / "new", header=newer))


def test_parameter_missing_from_an_older_file_takes_its_default(saved, tmp_path):
    path, det, X = saved
    payload = _payload(path)
    del payload["params"]["batch_size"]  # as if written before batch_size existed
    old = _rewrite(path, tmp_path / "old", entries={"payload.json": json.dumps(payload).encode()})
    restored = load(old)
    assert restored.batch_size is None
    np.testing.assert_array_equal(restored.score_samples(X), det.score_samples(X))


def test_scikit_learn_version_change_warns_as_unpickling_does(tmp_path):
    X = np.random.default_rng(0).normal(size=(40, 3))
    path = save(make_pipeline(StandardScaler(), PCADetector(n_components=1)).fit(X), tmp_path / "m")

    def older(header):
        header["versions"]["scikit-learn"] = "1.0"

    with pytest.warns(InconsistentVersionWarning):
        load(_rewrite(path, tmp_path / "old", header=older))


# --------------------------------------------- loading never runs code
class _Payload:
    """Unpickling this object creates a directory: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_object_array_is_never_unpickled(saved, tmp_path):
    path, _, _ = saved
    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    evil = np.array([_Payload(marker)], dtype=object)
    np.lib.format.write_array(buffer, evil, allow_pickle=True)
    bad = _rewrite(path, tmp_path / "bad", entries={"arrays/0.npy": buffer.getvalue()})
    with pytest.raises(ModelFileError, match="dtype object"):
        load(bad)
    assert not marker.exists()


def test_pickle_and_torch_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    torch.save({"x": _Payload(marker)}, tmp_path / "evil.pt")
    for name in ("evil.pkl", "evil.pt"):
        with pytest.raises(ModelFileError):
            load(tmp_path / name)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p.update({"class": "builtins.eval"}), "class 'builtins.eval' is not one"),
        (lambda p: p.update({"class": "os.system"}), "class 'os.system' is not one"),
        (lambda p: p["params"].update({"evil": 1}), "has no parameter 'evil'"),
        (lambda p: p["state"].update({"score_samples": 1}), "would replace a method"),
        (lambda p: p["state"].update({"__class__": 1}), "bad attribute name"),
        (lambda p: p["state"].update({"x_": {"$": "pickle", "v": "x"}}), "unknown node"),
        (lambda p: p["state"].update({"x_": {"$": "array", "ref": 99}}), "out of range"),
        (
            lambda p: p["state"].update(
                {"x_": [{"$": "tensor", "dtype": "float64", "ref": 0}] * 2}
            ),
            "array 0 is referenced twice",
        ),
        (lambda p: _first_array(p).update({"flip": [5]}), "bad reversed axes"),
        (
            lambda p: p["state"]["pca_"].update({"class": "sklearn.svm.SVC"}),
            "'sklearn.svm.SVC' is not one",
        ),
        (lambda p: p.update({"$": "tuple"}), "holds no estimator"),
    ],
    ids=[
        "eval",
        "system",
        "unknown-param",
        "shadow-method",
        "dunder",
        "unknown-node",
        "bad-ref",
        "repeated-ref",
        "bad-flip",
        "nested-class",
        "no-estimator",
    ],
)
def test_forged_payloads_are_refused(saved, tmp_path, edit, match):
    path, _, _ = saved
    payload = _payload(path)
    edit(payload)
    forged = _rewrite(
        path, tmp_path / "forged", entries={"payload.json": json.dumps(payload).encode()}
    )
    with pytest.raises(ModelFileError, match=match):
        load(forged)


@pytest.mark.parametrize(
    "changed",
    [
        ("ConvAutoencoderDetector", {"negative_slope": 0.0}),
        ("DraemDetector", {"negative_slope": 0.0, "segmenter_width": 4}),
    ],
    ids=["conv", "draem"],
)
def test_a_copy_rebuilds_the_network_as_fitted_not_as_set_later(changed, tmp_path):
    # The shaping parameters may change after fit; copies must rebuild the fitted network.
    name, params = changed
    X = np.random.default_rng(0).uniform(0.4, 0.6, size=(40, 8, 8))
    det = getattr(anomalib_lite, name)(max_iter=1, random_state=0).fit(X)
    before = det.score_samples(X)
    det.set_params(**params)
    copies = {
        "deepcopy": copy.deepcopy(det),
        "pickle": pickle.loads(pickle.dumps(det)),
        "model file": load(save(det, tmp_path / "model")),
    }
    for how, copied in copies.items():
        np.testing.assert_array_equal(copied.score_samples(X), before, err_msg=how)
        assert copied.get_params()["negative_slope"] == 0.0, how
