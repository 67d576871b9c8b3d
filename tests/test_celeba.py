"""load_celeba on folders in the layout of the CelebA release, with drawn faces."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from anomalib_lite import celeba
from anomalib_lite.datasets import load_celeba

N_IMAGES = 60
BENCH = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def layout():
    """The generator of CelebA-layout folders, kept with the benchmarks that use it too."""
    sys.path.insert(0, str(BENCH))
    try:
        import _celeba_layout
    finally:
        sys.path.remove(str(BENCH))
    return _celeba_layout


@pytest.fixture(scope="module")
def root(layout, tmp_path_factory):
    return layout.make_celeba_layout(tmp_path_factory.mktemp("celeba"), N_IMAGES, random_state=0)


@pytest.fixture
def copy(root, tmp_path):
    """A copy of the folder that a test may damage."""
    return shutil.copytree(root, tmp_path / "copy")


def _column(root, name):
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    col = lines[1].split().index(name) + 1
    return np.array([line.split()[col] == "1" for line in lines[2:]])


def _partitions(root):
    return np.array([int(line.split()[1]) for line in (root / "list_eval_partition.txt").open()])


def test_load_celeba_labels_follow_the_attribute_in_file_order(root):
    data = load_celeba(root, partition="all")
    assert data.images.shape == (N_IMAGES, 64, 64) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.labels, _column(root, "Eyeglasses"))
    assert data.paths == [str(root / "img_align_celeba" / f"{i:06d}.jpg") for i in range(1, 61)]
    assert data.attribute == "Eyeglasses"
    smiling = load_celeba(root, partition="all", attribute="Smiling", image_size=16)
    np.testing.assert_array_equal(smiling.labels, _column(root, "Smiling"))


@pytest.mark.parametrize("partition", ["train", "valid", "test"])
def test_load_celeba_reads_one_partition(root, partition):
    data = load_celeba(root, partition=partition, image_size=16)
    code = {"train": 0, "valid": 1, "test": 2}[partition]
    expected = np.flatnonzero(_partitions(root) == code) + 1
    assert data.paths == [str(root / "img_align_celeba" / f"{i:06d}.jpg") for i in expected]


def test_load_celeba_rgb_is_channels_first_and_gray_its_luma(root):
    rgb = load_celeba(root, partition="test", color_mode="rgb", image_size=32)
    gray = load_celeba(root, partition="test", color_mode="gray", image_size=32)
    assert rgb.images.shape == (len(gray.images), 3, 32, 32)
    luma = np.tensordot([0.299, 0.587, 0.114], rgb.images.astype(float), axes=(0, 1))
    assert np.abs(luma - gray.images).mean() < 3  # the decoder's luma, up to rounding


def test_load_celeba_accepts_the_torchvision_layout(layout, root, tmp_path):
    nested = layout.make_celeba_layout(tmp_path, N_IMAGES, nested=True, random_state=0)
    assert nested == tmp_path / "celeba"
    a = load_celeba(root, partition="all", image_size=16)
    b = load_celeba(tmp_path, partition="all", image_size=16)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_load_celeba_eyes_are_on_the_drawn_pupils(root):
    data = load_celeba(root, partition="all", image_size=96)
    x, y = np.rint(data.eyes).astype(int).transpose(2, 0, 1)  # (n, 2) each
    pupils = data.images[np.arange(N_IMAGES)[:, None], y, x]
    assert pupils.max() < 90  # the drawn pupils are (40, 30, 20), the skin >= 90
    assert ((data.eyes > 0) & (data.eyes < 96)).all()
    # Left eye left of the right eye, at about the same height.
    assert (data.eyes[:, 0, 0] < data.eyes[:, 1, 0]).all()
    assert np.abs(data.eyes[:, 0, 1] - data.eyes[:, 1, 1]).max() < 8


def test_load_celeba_subsample_is_reproducible(root):
    labels = _column(root, "Eyeglasses")[_partitions(root) == 0]
    a = load_celeba(root, n_normal=10, n_anomalous=3, random_state=0, image_size=16)
    b = load_celeba(root, n_normal=10, n_anomalous=3, random_state=0, image_size=16)
    c = load_celeba(root, n_normal=10, n_anomalous=3, random_state=1, image_size=16)
    assert a.paths == b.paths and a.paths != c.paths
    assert a.paths == sorted(a.paths)
    assert (a.labels == 0).sum() == 10 and a.labels.sum() == 3
    assert labels.sum() > 3
    train = load_celeba(root, n_anomalous=0, image_size=16)
    assert train.labels.sum() == 0 and len(train.labels) == (labels == 0).sum()


def test_load_celeba_threads_give_the_same_images(root):
    one = load_celeba(root, partition="all", n_threads=1, image_size=24, color_mode="rgb")
    three = load_celeba(root, partition="all", n_threads=3, image_size=24, color_mode="rgb")
    np.testing.assert_array_equal(one.images, three.images)


def test_load_celeba_small_sizes_decode_the_jpeg_scaled_down(root):
    # A 16-pixel crop lets the decoder scale by 1/4; the faces stay faces.
    small = load_celeba(root, partition="all", image_size=16).images.astype(float)
    large = load_celeba(root, partition="all", image_size=64).images.astype(float)
    down = large.reshape(N_IMAGES, 16, 4, 16, 4).mean(axis=(2, 4))
    assert np.abs(small - down).mean() < 12


@pytest.mark.parametrize("size", [8, 12, 16, 24])
def test_load_celeba_scaled_down_decode_crops_the_same_box(root, size):
    # The decoder scales by exactly 1/4 or 1/8: the crop, and so the eyes, must stay where a
    # full-resolution crop puts them (a box scaled by 45/178 or 23/178 drifts down and right).
    data = load_celeba(root, partition="all", image_size=size, n_threads=1)
    full = []
    for path, box in zip(data.paths, data.boxes, strict=True):
        with Image.open(path) as img:
            face = img.convert("L").resize(
                (size, size), Image.Resampling.BILINEAR, box=tuple(map(float, box))
            )
        full.append(np.asarray(face, dtype=float))
    assert np.abs(data.images - np.array(full)).mean() < 2


# -------------------------------------------------------------- bad input
def test_load_celeba_missing_folder_says_where_celeba_comes_from(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such folder.*mmlab.*torchvision"):
        load_celeba(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"neither 'img_align_celeba/'.*mmlab"):
        load_celeba(tmp_path)
    with pytest.raises(TypeError, match="root must be a file path"):
        load_celeba(3)


@pytest.mark.parametrize(
    "name", ["list_attr_celeba.txt", "list_landmarks_align_celeba.txt", "list_eval_partition.txt"]
)
def test_load_celeba_missing_file_is_named(copy, name):
    (copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"lacks '{name}'.*img_align_celeba"):
        load_celeba(copy)


def test_load_celeba_partition_all_needs_no_partition_file(copy):
    (copy / "list_eval_partition.txt").unlink()
    assert len(load_celeba(copy, partition="all", image_size=8).images) == N_IMAGES


def test_load_celeba_unknown_attribute_lists_the_valid_ones(root):
    with pytest.raises(ValueError, match=r"'Glasses' is not a column.*Eyeglasses, Goatee"):
        load_celeba(root, attribute="Glasses")
    with pytest.raises(TypeError, match="attribute must be a str"):
        load_celeba(root, attribute=15)


@pytest.mark.parametrize(
    ("line", "replacement", "match"),
    [
        (5, "000004.jpg  1 -1", r"list_attr_celeba.txt', line 5: expected an image name and 40"),
        (7, "000006.jpg" + " 2" * 40, r"line 7: expected an image name and 40 values 1 or -1"),
        (1, "many", r"line 1: expected the number of images"),
    ],
)
def test_load_celeba_malformed_attribute_file_names_the_line(copy, line, replacement, match):
    path = copy / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[line - 1] = replacement
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=match):
        load_celeba(copy)


_ANNOTATIONS = (
    "list_attr_celeba.txt",
    "list_landmarks_align_celeba.txt",
    "list_eval_partition.txt",
)


@pytest.mark.parametrize(
    "name", ["../../outside.jpg", "ABSOLUTE", "..", "sub/000001.jpg", "C:x.jpg"]
)
def test_load_celeba_reads_no_image_outside_its_folder(copy, name):
    # An annotation file that names a path, in every file alike, must not lead the
    # loader to a file outside img_align_celeba/ (the original read it).
    outside = copy.parent / "outside.jpg"
    shutil.copy(copy / "img_align_celeba" / "000001.jpg", outside)
    name = str(outside) if name == "ABSOLUTE" else name
    for annotation in _ANNOTATIONS:
        path = copy / annotation
        path.write_text(path.read_text().replace("000001.jpg", name))
    with pytest.raises(ValueError, match=r"attr_celeba.txt', line 3: .* not the name of a file in"):
        load_celeba(copy, partition="all", image_size=8)


def test_load_celeba_reads_annotation_files_with_a_byte_order_mark(root, copy):
    for annotation in _ANNOTATIONS:
        path = copy / annotation
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    a, b = load_celeba(root, image_size=8), load_celeba(copy, image_size=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_load_celeba_truncated_attribute_file_is_refused(copy):
    path = copy / "list_attr_celeba.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match="line 1 counts 60 images but the file lists 59"):
        load_celeba(copy)


def test_load_celeba_malformed_landmarks_and_partitions_name_the_line(copy):
    path = copy / "list_landmarks_align_celeba.txt"
    lines = path.read_text().splitlines()
    lines[3] = "000002.jpg 69 111 108 111 88 134 72 152 105"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"landmarks_align_celeba.txt', line 4: expected an"):
        load_celeba(copy, partition="all")
    lines[3] = "000003.jpg 69 111 108 111 88 134 72 152 105 152"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4 names '000003.jpg' where the attribute file"):
        load_celeba(copy, partition="all")
    lines[3] = "000002.jpg 69 111 108 111 88 134 72 152 105 999"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4: landmarks .* do not describe a face"):
        load_celeba(copy, partition="all")
    path.write_text("\n".join(["59", *lines[1:-1]]) + "\n")
    with pytest.raises(ValueError, match=r"lists 59 images and the attribute file 60"):
        load_celeba(copy, partition="all")
    partitions = copy / "list_eval_partition.txt"
    rows = partitions.read_text().splitlines()
    rows[9] = "000010.jpg 3"
    partitions.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"partition.txt', line 10: expected .* one of \(0, 1, 2"):
        load_celeba(copy)


def test_load_celeba_listed_but_absent_image_is_named(copy):
    (copy / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"000003.jpg' is listed in .*\(line 5\)"):
        load_celeba(copy, partition="all")
    # Not decoded, so not needed: a subsample that leaves it out loads.
    data = load_celeba(copy, partition="valid")
    assert len(data.images) == 6


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes (os.mkfifo)")
def test_load_celeba_named_pipes_are_refused_without_hanging(copy):
    (copy / "img_align_celeba" / "000003.jpg").unlink()
    os.mkfifo(copy / "img_align_celeba" / "000003.jpg")
    with pytest.raises(ValueError, match=r"000003\.jpg'.*not a regular file"):
        load_celeba(copy, partition="all")
    (copy / "list_attr_celeba.txt").unlink()
    os.mkfifo(copy / "list_attr_celeba.txt")
    with pytest.raises(OSError, match=r"not a regular file.*list_attr_celeba\.txt"):
        load_celeba(copy, partition="all")


def test_load_celeba_refuses_images_that_are_not_the_aligned_jpegs(copy):
    Image.new("RGB", (100, 100)).save(copy / "img_align_celeba" / "000002.jpg")
    with pytest.raises(ValueError, match=r"000002.jpg'.*100x100 pixels .* not the 178x218"):
        load_celeba(copy, partition="all")
    Image.new("RGB", (178, 218)).save(copy / "img_align_celeba" / "000002.jpg", format="PNG")
    with pytest.raises(ValueError, match=r"Cannot read image file .*000002.jpg"):
        load_celeba(copy, partition="all")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"partition": "val"}, ValueError, "partition='val' is not supported"),
        ({"color_mode": "RGB"}, ValueError, "color_mode='RGB' is not supported.*'rgb'"),
        ({"image_size": 4}, ValueError, "image_size=4 must be >= 8"),
        ({"image_size": (64, 64)}, TypeError, "image_size must be an int"),
        ({"n_normal": -1}, ValueError, "n_normal=-1 must be >= 0"),
        ({"n_anomalous": 1.5}, TypeError, "n_anomalous must be an int or None"),
        ({"n_threads": 0}, ValueError, "n_threads=0 must be >= 1"),
        ({"n_normal": 1000}, ValueError, "n_normal=1000 is more than the .* without Eyeglasses"),
        ({"n_normal": 0, "n_anomalous": 0}, ValueError, "No face chosen"),
    ],
)
def test_load_celeba_bad_parameters(root, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_celeba(root, **kwargs)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (3, 5, 2), elements=st.floats(0, 178)),
)
def test_crop_boxes_are_squares_inside_the_image(landmarks):
    boxes = celeba._crop_boxes(landmarks)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    np.testing.assert_allclose(width, height)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 178 + 1e-9).all()
    assert (boxes[:, 3] <= 218 + 1e-9).all()
