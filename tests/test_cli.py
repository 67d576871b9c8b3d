"""The anomalib-lite command line, end to end in subprocesses."""

import contextlib
import csv
import io as io_module
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_lite import cli, io
from anomalib_lite.cli import main
from anomalib_lite.datasets import make_textures

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
FAST = ["--param", "max_iter=2", "--param", "random_state=0", "--param", "channels=(8, 16)"]


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "anomalib_lite", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


def _ok(*args):
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def _fails(*args, status=1, match=""):
    """Run in this process (a subprocess costs seconds); the exit status and message."""
    stderr = io_module.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io_module.StringIO()):
        got = main([str(a) for a in args])
    message = stderr.getvalue()
    assert got == status, message
    assert "Traceback" not in message
    assert match in message, message
    return message


def _save(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """An MVTec-style folder of 8-bit textures: train/good, test/good, test/defect, masks."""
    root = tmp_path_factory.mktemp("mvtec")
    data = make_textures(48, image_size=SIZE, anomaly_ratio=0.25, random_state=0)
    images = np.round(np.clip(data.images, 0, 1) * 255).astype(np.uint8)
    normal = np.flatnonzero(data.labels == 0)
    for i in normal[:28]:
        _save(images[i], root / "train" / "good" / f"{i:03d}.png")
    for i in normal[28:]:
        _save(images[i], root / "test" / "good" / f"{i:03d}.png")
    for i in np.flatnonzero(data.labels == 1):
        _save(images[i], root / "test" / "defect" / f"{i:03d}.png")
        _save(
            data.masks[i].astype(np.uint8) * 255, root / "ground_truth/defect" / f"{i:03d}_mask.png"
        )
    return root


@pytest.fixture(scope="module")
def model(root, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "conv.model"
    result = _ok("fit", "--data", root, "--detector", "conv-ae", *FAST, "--out", path)
    assert "saved" in result.stdout
    return path


def _noise(path, seed=0, shape=(8, 8)):
    """A random 8-bit image file at ``path``."""
    _save(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), path)


def _quiet(*args):
    """Run in this process, as ``_fails`` does; the exit status."""
    with contextlib.redirect_stdout(io_module.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in args])


@pytest.fixture(scope="module")
def pca8(tmp_path_factory):
    """A PCA model fitted on six random 8x8 grayscale images."""
    folder = tmp_path_factory.mktemp("pca8")
    for i in range(6):
        _noise(folder / "train" / f"{i}.png", seed=i)
    path = folder / "pca.model"
    assert (
        _quiet("fit", "--quiet", "--data", folder / "train", "--detector", "pca", "--out", path)
        == 0
    )
    return path


def test_fit_score_maps_evaluate_export_agree_with_onnxruntime(root, model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    scores = tmp_path / "scores.csv"
    _ok("score", "--model", model, "--data", root / "test", "--out", scores)
    with open(scores, newline="") as fh:
        rows = list(csv.DictReader(fh))
    paths = sorted(str(p) for p in (root / "test").rglob("*.png"))
    assert [r["path"] for r in rows] == paths
    assert {r["label"] for r in rows} <= {"normal", "anomaly"}

    detector = io.load(model)
    images = np.stack([np.asarray(Image.open(p)) for p in paths])
    np.testing.assert_array_equal([float(r["score"]) for r in rows], detector.score_samples(images))

    maps = tmp_path / "maps"
    result = _ok("maps", "--model", model, "--data", root / "test" / "defect", "--out", maps)
    figures = sorted(maps.glob("*.png"))
    assert len(figures) == len(list((root / "test" / "defect").glob("*.png")))
    assert "wrote" in result.stdout

    result = _ok("evaluate", "--model", model, "--data", root, "--json")
    metrics = json.loads(result.stdout)
    assert metrics["n_images"] == len(rows)
    counts = [metrics[k] for k in ("true_positives", "false_positives")]
    assert sum(counts) == sum(r["label"] == "anomaly" for r in rows)
    assert 0 <= metrics["image_roc_auc"] <= 1 and 0 <= metrics["aupro"] <= 1
    assert 0 <= metrics["pixel_roc_auc"] <= 1

    onnx_path = tmp_path / "model.onnx"
    _ok("export", "--model", model, "--out", onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"input": images}),
            strict=True,
        )
    )
    expected = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(
        outputs["score"], expected, rtol=0, atol=1e-5 * np.abs(expected).max()
    )
    labels = np.where(outputs["is_anomaly"], "anomaly", "normal")
    assert labels.tolist() == [r["label"] for r in rows]


def test_pca_scores_files_given_one_by_one(root, tmp_path):
    path = tmp_path / "pca.model"
    _ok("fit", "--data", root / "train" / "good", "--detector", "pca", "--out", path)
    files = sorted((root / "test" / "good").glob("*.png"))[:3]
    scores = tmp_path / "scores.csv"
    _ok("score", "--quiet", "--model", path, "--data", *files, "--out", scores)
    with open(scores, newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = np.stack([np.asarray(Image.open(p)) for p in files])
    np.testing.assert_array_equal(
        [float(r["score"]) for r in rows], io.load(path).score_samples(images)
    )


def test_draem_model_fits_and_maps(root, tmp_path):
    path = tmp_path / "draem.model"
    params = [*FAST, "--param", "segmenter_width=4"]
    _ok("fit", "--data", root, "--detector", "draem", *params, "--out", path)
    detector = io.load(path)
    assert type(detector).__name__ == "DraemDetector"
    maps = tmp_path / "maps"
    _ok("maps", "--quiet", "--model", path, "--data", root / "test" / "defect", "--out", maps)
    assert len(list(maps.glob("*.png"))) == len(list((root / "test" / "defect").glob("*.png")))
    metrics = json.loads(_ok("evaluate", "--model", path, "--data", root, "--json").stdout)
    assert 0 <= metrics["pixel_roc_auc"] <= 1


def test_help_shows_examples(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "anomalib-lite fit --data" in out
    assert main(["score", "--help"]) == 0
    assert "example:" in capsys.readouterr().out


def test_progress_is_off_when_stderr_is_not_a_terminal(root, tmp_path):
    result = _ok("fit", "--data", root, *FAST, "--out", tmp_path / "m.model")
    assert result.stderr == ""


def test_progress_shows_epochs_on_a_terminal(root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["fit", "--data", str(root), *FAST, "--out", str(tmp_path / "m.model")]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "left" in err
    assert io.load(tmp_path / "m.model").callbacks is None  # the progress callback is not saved
    assert main(["fit", "--quiet", "--data", str(root), *FAST, "--out", str(tmp_path / "q")]) == 0
    assert capsys.readouterr().err == ""


def test_progress_counts_the_epochs_of_a_warm_start(root, tmp_path, monkeypatch, capsys):
    """A warm start numbers its epochs on from the checkpoint's: the total is where its
    run stops, not max_iter (which showed "epoch 3/2, ~0 s left")."""
    checkpoint = tmp_path / "run.model"
    fit = ["fit", "--data", str(root / "train"), *FAST, "--param", f"checkpoint_path={checkpoint}"]
    assert _quiet(*fit, "--quiet", "--out", tmp_path / "a.model") == 0
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = [*fit, "--param", "warm_start=True", "--out", str(tmp_path / "b.model")]
        assert main(args) == 0
    err = capsys.readouterr().err
    assert "epoch 3/4" in err and "epoch 4/4" in err and "/2," not in err


def test_progress_times_the_epochs_not_the_reading_of_the_images(
    root, tmp_path, monkeypatch, capsys
):
    """The time left is the epochs' own: reading the images (here 1000 s on a frozen
    clock, the epochs none) counted as training time, "~1000 s left" after epoch 1."""
    import time

    from anomalib_lite import datasets

    clock = [0.0]
    read = datasets.load_images

    def slow_read(*args, **kwargs):
        clock[0] += 1000.0
        return read(*args, **kwargs)

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(datasets, "load_images", slow_read)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["fit", "--data", str(root), *FAST, "--out", str(tmp_path / "m.model")]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "~1000 s left" not in err and "~0 s left" in err


# ------------------------------------------------------------------ bad input
def test_missing_data_folder(tmp_path):
    _fails(
        "fit", "--data", tmp_path / "nowhere", "--out", tmp_path / "m.model",
        match="--data: no such file or folder",
    )  # fmt: skip
    assert not (tmp_path / "m.model").exists()


def test_out_of_memory_fails_with_one_line(root, tmp_path, monkeypatch):
    """Reading a large folder at once can run out of memory: one line and status 1,
    not a traceback out of main."""
    from anomalib_lite import datasets

    message = "Unable to allocate 96.0 GiB for an array with shape (500000, 256, 256)"

    def no_memory(*args, **kwargs):
        raise MemoryError(message)

    monkeypatch.setattr(datasets, "load_images", no_memory)
    out = tmp_path / "m.model"
    args = ("fit", "--data", root, "--detector", "pca", "--out", out)
    _fails(*args, match=f"anomalib-lite fit: error: out of memory: {message}")
    assert not out.exists()


def test_out_of_device_memory_fails_with_one_line(root, tmp_path, monkeypatch):
    """A GPU fit that runs out of memory: one line with what to change, status 1."""
    import torch

    from anomalib_lite import ConvAutoencoderDetector

    message = "CUDA out of memory. Tried to allocate 2.00 GiB"

    def no_memory(self, X, y=None):
        raise torch.OutOfMemoryError(message)

    monkeypatch.setattr(ConvAutoencoderDetector, "fit", no_memory)
    out = tmp_path / "m.model"
    args = ("fit", "--data", root, "--detector", "conv-ae", "--out", out)
    _fails(*args, match=f"error: out of device memory: {message} (lower --param batch_size")
    assert not out.exists()

    def bug(self, X, y=None):
        raise RuntimeError("a bug, not memory")

    monkeypatch.setattr(ConvAutoencoderDetector, "fit", bug)
    with pytest.raises(RuntimeError, match="a bug"):  # other errors keep their traceback
        main([str(a) for a in args])


def test_unknown_parameter_is_a_usage_error(root, tmp_path):
    _fails(
        "fit",
        "--data",
        root,
        "--param",
        "epochs=3",
        "--out",
        tmp_path / "m.model",
        status=2,
        match="has no parameter 'epochs'",
    )


def test_malformed_parameter_is_a_usage_error(root, tmp_path):
    _fails(
        "fit",
        "--data",
        root,
        "--param",
        "max_iter",
        "--out",
        tmp_path / "m",
        status=2,
        match="name=value",
    )


def test_bad_parameter_value_names_it(root, tmp_path):
    _fails(
        "fit", "--data", root, "--param", "max_iter=0", "--out", tmp_path / "m",
        match="max_iter=0 must be >= 1",
    )  # fmt: skip


def test_unknown_subcommand_and_missing_option_are_usage_errors(tmp_path):
    _fails("train", status=2, match="invalid choice")
    _fails("score", "--data", tmp_path, "--out", tmp_path / "s.csv", status=2, match="--model")


def test_existing_output_is_kept(root, model, tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text("precious")
    _fails("score", "--model", model, "--data", root / "test", "--out", out, match="--overwrite")
    assert out.read_text() == "precious"


def test_output_that_is_a_folder_says_so(root, model, tmp_path):
    (tmp_path / "out").mkdir()
    for extra in ([], ["--overwrite"]):
        _fails(
            "score", "--model", model, "--data", root / "test", "--out", tmp_path / "out", *extra,
            match="is a folder; pass a file path",
        )  # fmt: skip


def test_overwrite_never_replaces_an_input(root, model, tmp_path):
    """--overwrite replaces an earlier output, not the model or an image read."""
    image = tmp_path / "copy.png"
    image.write_bytes(next((root / "test" / "good").iterdir()).read_bytes())
    kept = {path: path.read_bytes() for path in (model, image)}
    for command, out in [("score", model), ("score", image), ("export", model)]:
        data = ["--data", image] if command == "score" else []
        _fails(
            command, "--model", model, *data, "--out", out, "--overwrite",
            match="which this command reads; --overwrite never replaces an input",
        )  # fmt: skip
    training = next((root / "train" / "good").iterdir())
    kept[training] = training.read_bytes()
    for data in (root, root / "train"):  # an MVTec-style root, a folder of images
        _fails(
            "fit", "--data", data, "--detector", "pca", "--out", training, "--overwrite",
            match="which this command reads; --overwrite never replaces an input",
        )  # fmt: skip
    assert {path: path.read_bytes() for path in kept} == kept


def test_output_under_a_file_names_the_file(root, model, tmp_path):
    (tmp_path / "f").write_text("precious")
    _fails(
        "score", "--model", model, "--data", root / "test", "--out", tmp_path / "f" / "s.csv",
        match="is a file, not a folder",
    )  # fmt: skip
    assert (tmp_path / "f").read_text() == "precious"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_output_folder_that_cannot_be_written_is_refused_before_training(root, tmp_path):
    """/proc takes no new files; the message names --out, not a temporary file."""
    checkpoint = tmp_path / "epoch.model"
    _fails(
        "fit", "--quiet", "--data", root / "train", *FAST,
        "--param", f"checkpoint_path={checkpoint}", "--out", "/proc/m.model",
        match="--out: cannot write in the folder of '/proc/m.model'",
    )  # fmt: skip
    assert not checkpoint.exists()  # not one epoch trained


def test_a_checkpoint_at_the_output_path_is_refused_before_training(root, tmp_path):
    out = tmp_path / "same.model"
    fit = ["fit", "--quiet", "--data", root / "train", *FAST, "--param", "max_iter=1"]
    fit += ["--param", f"checkpoint_path={out}", "--out", out]
    _fails(*fit, match="also --param checkpoint_path")
    assert not out.exists()
    assert _quiet(*fit, "--overwrite") == 0  # the fitted model replaces its checkpoint
    assert hasattr(io.load(out), "offset_")


def test_a_parameter_nested_too_deep_to_parse_is_a_string(root, tmp_path):
    deep = "max_iter=" + "+" * 3000 + "1"
    _fails("fit", "--data", root / "train", "--param", deep, "--out", tmp_path / "m.model",
           match="max_iter must be an int, got str")  # fmt: skip


def test_a_model_of_another_kind_is_named(root, tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from anomalib_lite import PCADetector

    path = tmp_path / "pipe.model"
    rows = np.random.default_rng(0).normal(size=(20, SIZE * SIZE))
    io.save(make_pipeline(StandardScaler(), PCADetector(n_components=2)).fit(rows), path)
    data = ["--model", path, "--data", root / "test" / "good"]
    for args in (
        ["score", *data, "--out", tmp_path / "s.csv"],
        ["evaluate", *data[:2], "--data", root],
    ):
        _fails(*args, match="holds a Pipeline, not a detector with a threshold")


def test_missing_and_foreign_model_files(root, tmp_path):
    _fails(
        "score",
        "--model",
        tmp_path / "none.model",
        "--data",
        root,
        "--out",
        tmp_path / "s.csv",
        match="--model",
    )
    bogus = tmp_path / "bogus.model"
    bogus.write_bytes(b"not a model")
    _fails("export", "--model", bogus, "--out", tmp_path / "m.onnx", match=str(bogus))


def test_unreadable_image_names_the_file(root, model, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for p in sorted((root / "test" / "good").glob("*.png"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    _fails(
        "score", "--model", model, "--data", folder, "--out", tmp_path / "s.csv", match="broken.png"
    )
    assert not (tmp_path / "s.csv").exists()
    assert os.listdir(tmp_path) == ["images"]
    _ok(
        "score",
        "--skip-unreadable",
        "--model",
        model,
        "--data",
        folder,
        "--out",
        tmp_path / "s.csv",
    )
    with open(tmp_path / "s.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2


def test_model_of_another_image_size(model, tmp_path):
    _save(np.zeros((SIZE + 4, SIZE), np.uint8), tmp_path / "big.png")
    _fails(
        "score",
        "--model",
        model,
        "--data",
        tmp_path / "big.png",
        "--out",
        tmp_path / "s.csv",
        match=f"{SIZE}x{SIZE}",
    )


def test_evaluate_needs_an_mvtec_root(model, root):
    _fails(
        "evaluate", "--model", model, "--data", root / "train",
        match="--data: test_dir: no such file or folder",
    )  # fmt: skip


def test_evaluate_names_a_file_given_as_data(model, root, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    _fails("evaluate", "--model", model, "--data", notes, match="--data: '")
    (tmp_path / "test").write_text("not a folder")
    _fails("evaluate", "--model", model, "--data", tmp_path, match="--data: test_dir: ")


def _evaluate_json(model, data):
    stdout = io_module.StringIO()
    with contextlib.redirect_stdout(stdout), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", "--model", str(model), "--data", str(data), "--json"]) == 0
    return json.loads(stdout.getvalue())


def test_fit_reads_only_the_training_part_and_evaluate_only_the_test_part(root, tmp_path):
    """fit learns from train/good/ whatever test/ holds (here an unreadable file, a
    loose image and one of another size); evaluate needs test/ and masks alone, and
    a broken training image does not stop it."""
    fit_root, eval_root = tmp_path / "fit", tmp_path / "evaluate"
    shutil.copytree(root / "train", fit_root / "train")
    (fit_root / "test" / "scratch").mkdir(parents=True)
    (fit_root / "test" / "scratch" / "broken.png").write_bytes(b"not an image")
    _noise(fit_root / "test" / "loose.png", shape=(SIZE + 4, SIZE + 4))
    path = tmp_path / "pca.model"
    assert _quiet("fit", "--quiet", "--data", fit_root, "--detector", "pca", "--out", path) == 0
    for part in ("test", "ground_truth"):
        shutil.copytree(root / part, eval_root / part)
    expected = _evaluate_json(path, root)
    assert _evaluate_json(path, eval_root) == expected
    shutil.copytree(fit_root / "train", eval_root / "train")
    (eval_root / "train" / "good" / "broken.png").write_bytes(b"not an image")
    assert _evaluate_json(path, eval_root) == expected


def test_fit_refuses_a_root_with_test_images_but_no_training_part(root, tmp_path):
    """Read recursively, test/ and ground_truth/ would be learned as normal images."""
    for part in ("test", "ground_truth"):
        shutil.copytree(root / part, tmp_path / "evaluate" / part)
    out = tmp_path / "pca.model"
    for held in ("test/ and ground_truth/", "ground_truth/"):
        args = ("fit", "--data", tmp_path / "evaluate", "--detector", "pca", "--out", out)
        _fails(*args, match=f"holds {held} but no train/")
        assert not out.exists()
        shutil.rmtree(tmp_path / "evaluate" / "test", ignore_errors=True)


def test_fit_refuses_a_folder_of_mvtec_style_categories(root, tmp_path):
    """MVTec AD's own root holds one data set per category; read recursively, their
    test/ and ground_truth/ parts would be learned as normal images."""
    shutil.copytree(root, tmp_path / "mvtec_ad" / "bottle")
    shutil.copytree(root, tmp_path / "elsewhere" / "cable")
    (tmp_path / "mvtec_ad" / "cable").symlink_to(tmp_path / "elsewhere" / "cable")  # followed
    out = tmp_path / "pca.model"
    args = ("fit", "--data", tmp_path / "mvtec_ad", "--detector", "pca", "--out", out)
    message = _fails(*args, match="holds MVTec-style data sets (bottle/, cable/)")
    assert str(tmp_path / "mvtec_ad" / "bottle") in message
    assert not out.exists()
    # One category is a root of its own: fit reads its train/good/.
    args = ("fit", "--quiet", "--data", tmp_path / "mvtec_ad" / "bottle", "--detector", "pca")
    assert _quiet(*args, "--out", out) == 0


def test_fit_reads_only_train_good_of_a_root_with_masks_but_no_test_part(tmp_path, capsys):
    """train/ and ground_truth/ without test/: the masks were learned as normal images."""
    for i in range(6):
        _noise(tmp_path / "root" / "train" / "good" / f"{i}.png", seed=i)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 2:4] = 255
    for i in range(3):
        _save(mask, tmp_path / "root" / "ground_truth" / "defect" / f"{i}_mask.png")
    args = ["fit", "--quiet", "--data", tmp_path / "root", "--detector", "pca"]
    args += ["--param", "n_components=2", "--out", tmp_path / "pca.model"]
    assert main([str(a) for a in args]) == 0
    assert "fitted PCADetector on 6 images" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "param", "match"),
    [("pca", "n_components=0", "n_components"), ("conv-ae", "max_iter=0", "max_iter")],
)
def test_a_bad_param_value_fails_before_the_images_are_read(tmp_path, name, param, match):
    """The folder holds a file that does not decode: reading it would fail first."""
    _noise(tmp_path / "data" / "a.png")
    (tmp_path / "data" / "b.png").write_bytes(b"not a png")
    args = ("fit", "--quiet", "--detector", name, "--param", param)
    message = _fails(*args, "--data", tmp_path / "data", "--out", tmp_path / "m.model")
    assert f"--param: {match}" in message and "b.png" not in message


def test_loader_advice_is_given_in_options(tmp_path):
    """The loaders' advice names their Python parameters (size=(H, W), normal_dir); the
    command line gives --size and has no normal_dir."""
    _noise(tmp_path / "mixed" / "a.png")
    _noise(tmp_path / "mixed" / "b.png", shape=(16, 16))
    out = tmp_path / "pca.model"
    fit = ("fit", "--quiet", "--detector", "pca", "--out", out)
    message = _fails(*fit, "--data", tmp_path / "mixed", match="Pass --size HxW")
    assert "size=(H, W)" not in message
    _noise(tmp_path / "root" / "train" / "ok" / "a.png")
    _noise(tmp_path / "root" / "test" / "good" / "a.png")
    message = _fails(
        *fit, "--data", tmp_path / "root", match="has sub-folders ['ok'] but no 'good'"
    )
    assert "normal_dir" not in message
    assert not out.exists()


def test_tabular_model_is_refused(root, tmp_path):
    from anomalib_lite import PCADetector

    path = tmp_path / "tabular.model"
    io.save(PCADetector(n_components=2).fit(np.random.default_rng(0).normal(size=(30, 5))), path)
    _fails(
        "score",
        "--model",
        path,
        "--data",
        root / "test",
        "--out",
        tmp_path / "s.csv",
        match="fitted on images of 5",
    )


def test_console_script_points_at_main():
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        scripts = tomllib.load(fh)["project"]["scripts"]
    module, _, name = scripts["anomalib-lite"].partition(":")
    assert (module, name) == ("anomalib_lite.cli", "main")
    assert main(["--help"]) == 0


def test_python_m_anomalib_lite_cli_runs_the_program():
    """``python -m anomalib_lite.cli`` ran nothing and exited 0: no model, no error."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "anomalib_lite.cli", "export", "--model"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "--model: expected one argument" in result.stderr


def test_maps_refuses_inputs_that_share_a_figure_name(pca8, tmp_path):
    for name in ("new/a.png", "new/a.bmp", "x/a.png", "y/a.png"):
        _noise(tmp_path / name)
    out = tmp_path / "maps"
    for first, second, extra in [
        ("new/a.bmp", "new/a.png", []),
        ("x/a.png", "y/a.png", ["--overwrite"]),
    ]:
        data = (
            [tmp_path / "new"] if first.startswith("new") else [tmp_path / first, tmp_path / second]
        )
        message = _fails(
            "maps", "--model", pca8, "--data", *data, "--out", out, *extra, match="--data"
        )
        assert str(tmp_path / first) in message and str(tmp_path / second) in message
        assert not out.exists() or os.listdir(out) == []


def test_maps_writes_nothing_when_a_figure_exists(pca8, tmp_path):
    for name in ("a", "b"):
        _noise(tmp_path / "new" / f"{name}.png")
    out = tmp_path / "maps"
    out.mkdir()
    (out / "b.png").write_text("earlier")
    _fails("maps", "--model", pca8, "--data", tmp_path / "new", "--out", out, match="b.png")
    assert os.listdir(out) == ["b.png"] and (out / "b.png").read_text() == "earlier"
    args = [
        "maps",
        "--quiet",
        "--overwrite",
        "--model",
        pca8,
        "--data",
        tmp_path / "new",
        "--out",
        out,
    ]
    assert _quiet(*args) == 0
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    assert (out / "b.png").read_bytes().startswith(b"\x89PNG")


def test_score_reads_several_folders_and_files_in_order(pca8, tmp_path):
    for i, name in enumerate(("x/b.png", "x/sub/a.png", "y/c.png", "z.png")):
        _noise(tmp_path / name, seed=i)
    out = tmp_path / "s.csv"
    data = [tmp_path / "y", tmp_path / "z.png", tmp_path / "x"]
    assert _quiet("score", "--quiet", "--model", pca8, "--data", *data, "--out", out) == 0
    with open(out, newline="") as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    expected = ["y/c.png", "z.png", "x/b.png", "x/sub/a.png"]
    assert paths == [str(tmp_path / name) for name in expected]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs byte file names")
def test_score_writes_a_file_name_that_is_not_utf8_as_its_bytes(pca8, tmp_path):
    folder = tmp_path / "x"
    _noise(folder / "a.png")
    odd = os.fsdecode(bytes(folder) + b"/\xff.png")
    _noise(Path(odd), seed=1)
    out = tmp_path / "s.csv"
    assert _quiet("score", "--quiet", "--model", pca8, "--data", folder, "--out", out) == 0
    rows = out.read_bytes().splitlines()[1:]
    assert [row.split(b",")[0] for row in rows] == [bytes(folder) + b"/a.png", os.fsencode(odd)]


def test_fit_that_diverges_fails_with_one_line(root, tmp_path):
    out = tmp_path / "m.model"
    params = ("--param", "learning_rate_init=1e30", "--param", "learning_rate=constant")
    args = ("fit", "--data", root, "--detector", "conv-ae", *FAST, *params, "--out", out)
    message = _fails(*args, match="fit: Training diverged")
    assert "Nothing was saved" in message and not out.exists()


def test_maps_never_draws_over_an_input_image(pca8, tmp_path):
    folder = tmp_path / "new"
    for name in ("a", "b"):
        _noise(folder / f"{name}.png")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    args = ("maps", "--model", pca8, "--data", folder, "--out", folder, "--overwrite")
    _fails(*args, match="would replace the input image")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_maps_refuses_the_data_folder_as_out(pca8, tmp_path):
    """Documented: --out the same folder as --data is refused. Figures of .jpg images
    replace none of them, and were written among the images (read by the next run)."""
    folder = tmp_path / "new"
    folder.mkdir()
    for i, name in enumerate("ab"):
        array = np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"{name}.jpg", quality=95)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for extra in ([], ["--overwrite"]):
        args = ("maps", "--model", pca8, "--data", folder, "--out", folder, *extra)
        _fails(*args, match=f"--out: '{folder}' is the --data folder")
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # A folder below it too: folders are read recursively, figures and all.
    for inside in (folder / "maps", folder / "maps" / "new"):
        args = ("maps", "--model", pca8, "--data", folder, "--out", inside)
        _fails(*args, match=f"--out: '{inside}' is inside the --data folder")
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_maps_names_out_where_its_folders_cannot_be_made(pca8, tmp_path):
    """A file in the way of --out or of one of its subfolders, or a link to nothing, is
    named before a figure is drawn (it was an OSError without the option, half drawn)."""
    data = tmp_path / "new"
    _noise(data / "a.png")
    _noise(data / "sub" / "b.png", seed=1)
    (tmp_path / "file").write_text("precious")
    out = tmp_path / "maps"
    out.mkdir()
    (out / "sub").write_text("precious")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for where, match in [
        (tmp_path / "file" / "maps", f"--out: '{tmp_path / 'file'}' is a file, not a folder"),
        (out, f"--out: '{out / 'sub'}' is a file, not a folder"),
        (tmp_path / "dangling", "is a link to a folder that does not exist"),
    ]:
        _fails("maps", "--quiet", "--model", pca8, "--data", data, "--out", where, match=match)
    assert os.listdir(out) == ["sub"] and (out / "sub").read_text() == "precious"
    assert (tmp_path / "file").read_text() == "precious"
    assert not os.path.exists(tmp_path / "nowhere")


def test_a_failed_maps_run_takes_back_the_figures_it_drew(pca8, tmp_path, monkeypatch):
    """The second batch holds an image of another size: the figures of the first batch,
    and the folders made for them, go; a figure replaced with --overwrite stays."""
    monkeypatch.setattr(cli, "FILES_PER_BATCH", 2)
    data = tmp_path / "new"
    for i, name in enumerate("ab"):
        _noise(data / "x" / f"{name}.png", seed=i)
    _noise(data / "y" / "c.png", shape=(16, 16))
    out = tmp_path / "maps" / "deep"
    _fails("maps", "--quiet", "--model", pca8, "--data", data, "--out", out, match="16x16")
    assert not (tmp_path / "maps").exists()
    (out / "x").mkdir(parents=True)
    (out / "x" / "a.png").write_text("earlier")
    args = ("maps", "--quiet", "--overwrite", "--model", pca8, "--data", data, "--out", out)
    _fails(*args, match="16x16")
    assert os.listdir(out / "x") == ["a.png"]
    assert (out / "x" / "a.png").read_bytes().startswith(b"\x89PNG")  # replaced, as asked


def test_skip_unreadable_keeps_what_could_be_read(pca8, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "FILES_PER_BATCH", 2)
    folder = tmp_path / "new"
    for i, name in enumerate("bcd"):
        _noise(folder / f"{name}.png", seed=i)
    for name in "ae":  # the first file, and the only one of the last batch
        (folder / f"{name}.png").write_bytes(b"\x89PNG not really")
    scores = tmp_path / "s.csv"
    common = ["--skip-unreadable", "--model", pca8, "--data", folder]
    assert _quiet("score", "--quiet", *common, "--out", scores) == 0
    with open(scores, newline="") as fh:
        assert [Path(r["path"]).name for r in csv.DictReader(fh)] == ["b.png", "c.png", "d.png"]
    assert _quiet("maps", "--quiet", *common, "--out", tmp_path / "maps") == 0
    assert sorted(os.listdir(tmp_path / "maps")) == ["b.png", "c.png", "d.png"]


def test_progress_reaches_every_file_when_some_are_skipped(pca8, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "FILES_PER_BATCH", 2)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    folder = tmp_path / "new"
    for i, name in enumerate("abc"):
        _noise(folder / f"{name}.png", seed=i)
    (folder / "d.png").write_bytes(b"\x89PNG not really")
    common = ["--skip-unreadable", "--model", str(pca8), "--data", str(folder)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["score", *common, "--out", str(tmp_path / "s.csv")]) == 0
        assert "4/4 files (100%)" in capsys.readouterr().err
        assert main(["maps", *common, "--out", str(tmp_path / "maps")]) == 0
        assert "4/4 files (100%)" in capsys.readouterr().err


def test_skip_unreadable_fails_when_no_file_can_be_read(pca8, tmp_path):
    for name in "ab":
        (tmp_path / "new" / f"{name}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "new" / f"{name}.png").write_bytes(b"\x89PNG not really")
    for command, out in [("score", tmp_path / "s.csv"), ("maps", tmp_path / "maps")]:
        args = ["--skip-unreadable", "--model", pca8, "--data", tmp_path / "new", "--out", out]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _fails(command, *args, match="--data: none of the 2 image files could be read")
        assert not out.exists()


def test_evaluate_reads_an_rgb_pca_models_images_in_colour(tmp_path):
    for folder, n in [("train/good", 6), ("test/good", 2), ("test/defect", 2)]:
        for i in range(n):
            _noise(tmp_path / "root" / folder / f"{i}.png", seed=i, shape=(8, 8, 3))
    path, root = tmp_path / "pca.model", tmp_path / "root"
    fit = ["fit", "--quiet", "--data", root, "--detector", "pca", "--color", "rgb", "--out", path]
    assert _quiet(*fit) == 0
    stdout = io_module.StringIO()
    with contextlib.redirect_stdout(stdout), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", "--model", str(path), "--data", str(root), "--json"]) == 0
    metrics = json.loads(stdout.getvalue())
    assert metrics["n_images"] == 4 and metrics["n_anomalous"] == 2


def test_unfitted_model_is_refused(tmp_path):
    from anomalib_lite import ConvAutoencoderDetector, PCADetector

    _noise(tmp_path / "images" / "a.png")
    for detector in (PCADetector(), ConvAutoencoderDetector(max_iter=1, channels=(4,))):
        name = type(detector).__name__
        path = io.save(detector, tmp_path / f"{name}.model")
        data = ["--model", path, "--data", tmp_path / "images"]
        for args in (
            ["score", *data, "--out", tmp_path / "s.csv"],
            ["maps", *data, "--out", tmp_path / "m"],
            ["evaluate", *data],
        ):
            _fails(*args, match=f"--model '{path}' holds an unfitted {name}; fit it first")


def test_unsupported_device_names_it(tmp_path):
    for i in range(2):
        _noise(tmp_path / "train" / f"{i}.png", seed=i)
    fit = ["fit", "--data", tmp_path / "train", "--param", "max_iter=1", "--param", "channels=(4,)"]
    for device in ("xpu", "meta"):
        args = [*fit, "--param", f"device={device}", "--out", tmp_path / "m.model"]
        _fails(*args, match=f"device='{device}' but the detectors run only on CPU and CUDA")
    assert not (tmp_path / "m.model").exists()


def test_pca_model_knows_the_geometry_of_its_images(pca8, tmp_path):
    # 8x8 and 16x4 images hold as many values; a PCA model fitted by `fit` tells them apart.
    _noise(tmp_path / "data" / "wide.png", shape=(4, 16))
    _fails(
        "score",
        "--model",
        pca8,
        "--data",
        tmp_path / "data",
        "--out",
        tmp_path / "s.csv",
        match="is 4x16 pixels with 1 channel(s) but the model was fitted on 8x8 pixels",
    )
    assert not (tmp_path / "s.csv").exists()


def test_evaluate_gives_a_pca_models_pixel_metrics(root, tmp_path):
    path = tmp_path / "pca.model"
    assert (
        _quiet("fit", "--quiet", "--data", root / "train", "--detector", "pca", "--out", path) == 0
    )
    stdout = io_module.StringIO()
    with contextlib.redirect_stdout(stdout), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", "--model", str(path), "--data", str(root), "--json"]) == 0
    metrics = json.loads(stdout.getvalue())
    assert 0.5 < metrics["pixel_roc_auc"] <= 1 and 0 <= metrics["aupro"] <= 1


@pytest.mark.parametrize("layout", ["hw", "chw"])
def test_calibrated_models_get_images_in_the_layout_they_were_fitted_on(root, tmp_path, layout):
    from anomalib_lite import CalibratedDetector, ConvAutoencoderDetector

    files = sorted((root / "train" / "good").glob("*.png"))
    images = np.stack([np.asarray(Image.open(p)) for p in files])
    X = images if layout == "hw" else images[:, None]
    inner = ConvAutoencoderDetector(max_iter=1, channels=(4,), random_state=0)
    model = CalibratedDetector(inner, method="quantile", alpha=0.2, random_state=0).fit(X)
    path = io.save(model, tmp_path / "cal.model")
    scores = tmp_path / "scores.csv"
    data = ["--model", path, "--data", root / "test" / "good"]
    assert _quiet("score", "--quiet", *data, "--out", scores) == 0
    with open(scores, newline="") as fh:
        rows = list(csv.DictReader(fh))
    test = sorted((root / "test" / "good").glob("*.png"))
    expected = np.stack([np.asarray(Image.open(p)) for p in test])
    expected = model.score_samples(expected if layout == "hw" else expected[:, None])
    np.testing.assert_array_equal([float(r["score"]) for r in rows], expected)
    assert _quiet("export", "--model", path, "--out", tmp_path / "cal.onnx") == 0


def test_a_model_without_a_threshold_is_refused_where_images_get_labels(root, tmp_path):
    from anomalib_lite import ConvAutoencoderDetector

    files = sorted((root / "train" / "good").glob("*.png"))
    images = np.stack([np.asarray(Image.open(p)) for p in files])
    checkpoint = tmp_path / "run.model"  # written after each epoch, before the threshold
    ConvAutoencoderDetector(max_iter=1, channels=(4,), checkpoint_path=checkpoint).fit(images)
    assert not hasattr(io.load(checkpoint), "offset_")
    data = ["--model", checkpoint, "--data", root / "test" / "good"]
    for args in (
        ["score", *data, "--out", tmp_path / "s.csv"],
        ["evaluate", "--model", checkpoint, "--data", root],
    ):
        _fails(*args, match="with trained weights but no threshold")
    assert _quiet("maps", "--quiet", *data, "--out", tmp_path / "maps") == 0
    out = tmp_path / "fitted.model"
    resume = ["--param", "max_iter=1", "--param", "channels=(4,)"]
    resume += ["--param", f"checkpoint_path={checkpoint}", "--param", "warm_start=True"]
    fit = ["fit", "--quiet", "--data", root / "train" / "good", *resume, "--out", out]
    assert _quiet(*fit) == 0
    assert (
        _quiet(
            "score",
            "--quiet",
            "--model",
            out,
            "--data",
            root / "test" / "good",
            "--out",
            tmp_path / "s.csv",
        )
        == 0
    )


def test_score_refuses_a_model_saved_with_another_statistic_than_its_threshold(pca8, tmp_path):
    det = io.load(pca8).set_params(statistic="t2")
    model = io.save(det, tmp_path / "t2.model")
    _noise(tmp_path / "x" / "a.png")
    out = tmp_path / "s.csv"
    args = ("score", "--model", model, "--data", tmp_path / "x", "--out", out)
    _fails(*args, match="--model: offset_ was set on scores computed with statistic='spe'")
    assert not out.exists()
