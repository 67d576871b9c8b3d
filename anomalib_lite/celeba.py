"""CelebA faces from a copy of the release on disk, split by one attribute.

:func:`load_celeba` reads the aligned images and the three annotation files
of CelebA, picks the images of one partition, labels them by one of the 40
attributes (without = normal, with = anomaly) and decodes only the chosen
images, cropped around their landmarks, into one preallocated ``uint8`` array.
Nothing is downloaded.
"""

import io
import math
from array import array
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from sklearn.utils import Bunch, check_random_state

from .utils._files import open_regular
from .utils._validation import check_int, check_option, check_path

__all__ = ["load_celeba"]

IMAGE_DIR = "img_align_celeba"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"
#: (width, height) of the aligned images, the frame of the landmarks.
ALIGNED_SIZE = (178, 218)
#: Side of the face crop, in distances from the eyes' midpoint to the mouth's.
CROP_SCALE = 3.0
#: Threads decoding JPEGs when ``n_threads=None``.
DEFAULT_THREADS = 4
#: Images decoded per task of a thread.
_CHUNK = 64
_PARTITIONS = {"train": 0, "valid": 1, "test": 2, "all": None}
_COLOR_MODES = {"gray": "L", "rgb": "RGB"}
_SOURCE = (
    "CelebA is published by its authors at "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (the aligned images "
    f"img_align_celeba.zip and the files {ATTRIBUTE_FILE}, {PARTITION_FILE} and "
    f"{LANDMARK_FILE}); torchvision.datasets.CelebA(root, download=True) fetches the "
    "same files into root/celeba/. Pass either folder as root."
)


# --------------------------------------------------------------- the folder
def _find_root(root):
    """The folder that holds the release: ``root`` or ``root/celeba``."""
    root = check_path(root, "root")
    if not root.is_dir():
        raise FileNotFoundError(f"root: no such folder: '{root}'. {_SOURCE}")
    for folder in (root, root / "celeba"):
        if (folder / IMAGE_DIR).is_dir() or (folder / ATTRIBUTE_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"root='{root}' holds neither '{IMAGE_DIR}/' and '{ATTRIBUTE_FILE}' nor a 'celeba' "
        f"folder with them. {_SOURCE}"
    )


def _need(folder, name):
    path = folder / name
    if not path.exists():
        raise FileNotFoundError(
            f"CelebA folder '{folder}' lacks '{name}'; load_celeba needs '{IMAGE_DIR}/', "
            f"'{ATTRIBUTE_FILE}', '{LANDMARK_FILE}' and, for one partition, "
            f"'{PARTITION_FILE}'. {_SOURCE}"
        )
    return path


# ------------------------------------------------------- annotation files
# The files are streamed line by line, and only what is used is kept: a
# release's 202,599 rows as Python lists of fields would take hundreds of MB.
def _rows(path, *, header, maxsplit=-1):
    """Yield ``(line number, fields)`` of each row of a CelebA annotation file.

    With ``header=True`` the file starts with a count line and a line of
    column names; the first yielded item is then ``(2, names)``, and the count
    is checked against the rows. Blank lines are skipped. ``maxsplit`` is
    passed to ``str.split``.
    """
    # utf-8-sig: a file saved by a Windows editor may start with a byte-order mark.
    with io.TextIOWrapper(open_regular(path), encoding="utf-8-sig") as f:
        try:
            number, count = 0, None
            if header:
                first = f.readline()
                if not first.strip().isdigit():
                    raise ValueError(
                        f"'{path}', line 1: expected the number of images, got {first[:60]!r}."
                    )
                count, number = int(first), 2
                yield 2, f.readline().split()
            n_rows, first_row = 0, number + 1
            for number, line in enumerate(f, first_row):
                fields = line.split(maxsplit=maxsplit)
                if fields:
                    n_rows += 1
                    yield number, fields
        except UnicodeDecodeError as exc:
            raise ValueError(f"'{path}' is not a text file ({exc}).") from exc
    if count is not None and count != n_rows:
        raise ValueError(
            f"'{path}', line 1 counts {count} images but the file lists {n_rows}; "
            "the file is incomplete or damaged."
        )


def _bad_row(path, number, fields, expected):
    return ValueError(
        f"'{path}', line {number}: expected {expected}, got {' '.join(fields)[:100]!r}."
    )


#: Characters that make an image name a path: separators, and a Windows drive's colon.
_PATH_CHARS = frozenset("/\\:")


def _is_file_name(name):
    """Whether ``name`` names a file in a folder, not a path that leads elsewhere."""
    return name not in (".", "..") and _PATH_CHARS.isdisjoint(name)


def _read_attribute(path, attribute):
    """Image names, their line numbers and whether each has ``attribute``."""
    rows = _rows(path, header=True)
    _, columns = next(rows)
    if attribute not in columns:
        raise ValueError(
            f"attribute={attribute!r} is not a column of '{path}'; expected one of "
            f"{', '.join(columns)}."
        )
    column, width = columns.index(attribute) + 1, len(columns) + 1
    signs = {"1", "-1"}
    names, numbers, flags = [], array("q"), bytearray()
    for number, fields in rows:
        if len(fields) != width or not signs.issuperset(fields[1:]):
            raise _bad_row(path, number, fields, f"an image name and {width - 1} values 1 or -1")
        if not _is_file_name(fields[0]):
            raise ValueError(
                f"'{path}', line {number}: {fields[0][:100]!r} is not the name of a file in "
                f"'{IMAGE_DIR}/' (it holds a path separator or a drive, or is '.' or '..'); "
                "load_celeba reads images from that folder only."
            )
        names.append(fields[0])
        numbers.append(number)
        flags.append(fields[column] == "1")
    return names, np.frombuffer(numbers, dtype=np.int64), np.frombuffer(flags, dtype=bool)


def _read_values(path, names, rows, *, header, n_values, allowed=None):
    """Integers ``(len(rows), n_values)`` of the images ``rows`` of a file, and their lines.

    Every line must name the image of the attribute file's line at the same
    place; only the lines of ``rows`` (sorted indices) are parsed further.
    """
    values, numbers = array("q"), array("q")
    rows = rows.tolist()  # Python ints compare faster than NumPy scalars
    lines = _rows(path, header=header, maxsplit=1)
    if header:
        next(lines)
    expected = f"an image name and {n_values} integer(s)"
    i, k = -1, 0
    for i, (number, (name, *rest)) in enumerate(lines):
        if i >= len(names):
            continue  # counted for the message below
        if name != names[i]:
            raise ValueError(
                f"'{path}', line {number} names '{name}' where the attribute file "
                f"lists '{names[i]}' (its image {i + 1}); the annotation files must list "
                "the same images in the same order."
            )
        if k == len(rows) or rows[k] != i:
            continue
        fields = rest[0].split() if rest else []
        try:
            if len(fields) != n_values:
                raise ValueError
            values.extend(map(int, fields))
        except ValueError:
            raise _bad_row(path, number, [name, *fields], expected) from None
        if allowed is not None and values[-1] not in allowed:
            raise _bad_row(path, number, [name, *fields], f"an image name and one of {allowed}")
        numbers.append(number)
        k += 1
    if i + 1 != len(names):
        raise ValueError(
            f"'{path}' lists {i + 1} images and the attribute file {len(names)}; the "
            "annotation files must list the same images."
        )
    values = np.frombuffer(values, dtype=np.int64).reshape(-1, n_values)
    return values, np.frombuffer(numbers, dtype=np.int64)


# ----------------------------------------------------------------- choosing
def _subsample(index, n, name, rng, what):
    """``n`` of ``index`` drawn without replacement, in file order; None: all."""
    if n is None:
        return index
    if n > len(index):
        raise ValueError(
            f"{name}={n} is more than the {len(index)} {what}; lower it, or pass "
            f"{name}=None for all of them."
        )
    return np.sort(rng.choice(index, n, replace=False))


def _crop_boxes(landmarks):
    """Square face crops ``(left, top, right, bottom)`` from the five landmarks."""
    eyes = landmarks[:, :2].mean(axis=1)
    mouth = landmarks[:, 3:].mean(axis=1)
    side = np.minimum(CROP_SCALE * np.linalg.norm(mouth - eyes, axis=1), min(ALIGNED_SIZE))
    corner = (eyes + mouth) / 2 - side[:, None] / 2
    corner = np.clip(corner, 0, np.subtract(ALIGNED_SIZE, side[:, None]))
    return np.hstack([corner, corner + side[:, None]])


def _check_landmarks(landmarks, numbers, path):
    """Refuse landmarks outside the image, or eyes on the mouth."""
    inside = ((landmarks >= 0) & (landmarks <= ALIGNED_SIZE)).all(axis=(1, 2))
    apart = (
        np.linalg.norm(landmarks[:, :2].mean(axis=1) - landmarks[:, 3:].mean(axis=1), axis=1) >= 4
    )
    bad = np.flatnonzero(~(inside & apart))
    if bad.size:
        raise ValueError(
            f"'{path}', line {numbers[bad[0]]}: landmarks {landmarks[bad[0]].ravel().tolist()} "
            f"do not describe a face in a {ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]} aligned image "
            "(a point outside it, or the eyes within 4 pixels of the mouth)."
        )


# ------------------------------------------------------------------ decoding
def _read_face(path, box, size, mode, line):
    """One face: ``path`` cropped to ``box``, resized to ``size`` x ``size``."""
    try:
        with open_regular(path) as fh, Image.open(fh, formats=("JPEG",)) as img:
            if img.size != ALIGNED_SIZE:
                raise ValueError(
                    f"it is {img.size[0]}x{img.size[1]} pixels (W x H), not the "
                    f"{ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]} of the aligned images in '{IMAGE_DIR}'"
                )
            # Let the JPEG decoder scale down by 2, 4 or 8 while the crop stays
            # at least ``size`` pixels wide, and give grayscale directly.
            side = box[2] - box[0]
            want = [math.ceil(s * size / side) for s in ALIGNED_SIZE]
            drafted = img.draft(mode, tuple(want))
            # The decoder scales by exactly 1/s but reports a size rounded up
            # (45 for 178 / 4): the box it returns holds the exact scale.
            scale = drafted[1][2] / ALIGNED_SIZE[0] if drafted else 1.0
            if img.mode != mode:
                img = img.convert(mode)
            face = img.resize(
                (size, size), Image.Resampling.BILINEAR, box=tuple(float(b) * scale for b in box)
            )
            return np.asarray(face)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"'{path}' is listed in {ATTRIBUTE_FILE} (line {line}) but does not exist; "
            f"'{IMAGE_DIR}' is incomplete: unpack img_align_celeba.zip again."
        ) from None
    except Exception as exc:  # any failure to decode an untrusted file
        raise ValueError(f"Cannot read image file '{path}': {type(exc).__name__}: {exc}.") from exc


def _decode_into(out, paths, boxes, lines, mode, n_threads):
    """Decode every face into ``out`` in place, ``n_threads`` at a time."""
    size = out.shape[-1]

    def chunk(start):
        for i in range(start, min(start + _CHUNK, len(paths))):
            face = _read_face(paths[i], boxes[i], size, mode, lines[i])
            out[i] = np.moveaxis(face, 2, 0) if face.ndim == 3 else face

    starts = range(0, len(paths), _CHUNK)
    if n_threads == 1:
        for start in starts:
            chunk(start)
        return
    with ThreadPoolExecutor(n_threads) as pool:
        futures = [pool.submit(chunk, start) for start in starts]
        try:
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.cancel()


def load_celeba(
    root,
    *,
    attribute="Eyeglasses",
    partition="train",
    image_size=64,
    color_mode="gray",
    n_normal=None,
    n_anomalous=None,
    random_state=None,
    n_threads=None,
):
    """Load CelebA faces from a local copy, labelled by one attribute.

    Faces without ``attribute`` are normal (label 0), faces with it are
    anomalous (label 1). Only the chosen images are decoded, into one
    preallocated ``uint8`` array, so that memory stays near the size of the
    result; JPEGs are decoded by ``n_threads`` threads (Pillow releases the
    GIL while decoding). Nothing is downloaded.

    Parameters
    ----------
    root : str or os.PathLike
        The folder of the release, holding ``img_align_celeba/`` (the 178x218
        aligned JPEGs), ``list_attr_celeba.txt``,
        ``list_landmarks_align_celeba.txt`` and ``list_eval_partition.txt``;
        or the folder above it, when the files are in ``root/celeba/`` as
        torchvision's ``CelebA(root)`` keeps them.
    attribute : str, default='Eyeglasses'
        One of the 40 columns of ``list_attr_celeba.txt`` (``'Eyeglasses'``,
        ``'Smiling'``, ``'Wearing_Hat'``, ...): the images with it are the
        anomalies.
    partition : {'train', 'valid', 'test', 'all'}, default='train'
        The official split of ``list_eval_partition.txt`` to read from, or
        every image.
    image_size : int, default=64
        Side of the square face crops returned, >= 8. Each crop is a square
        of side ``3 x`` the distance from the midpoint of the eyes to the
        midpoint of the mouth corners (about 125 pixels: face, hair and some
        background), centred halfway between those two points and moved
        inside the image where it would stick out; it is then resized to
        ``image_size`` pixels with a bilinear filter.
    color_mode : {'gray', 'rgb'}, default='gray'
        ``'gray'`` returns ``(n, H, W)``, ``'rgb'`` returns ``(n, 3, H, W)``,
        as :func:`~anomalib_lite.datasets.load_images` does.
    n_normal : int or None, default=None
        Number of normal faces, drawn at random without replacement from
        the partition; None takes all of them.
    n_anomalous : int or None, default=None
        Number of faces with ``attribute``, drawn the same way; None takes
        all of them, 0 none (e.g. for a training set).
    random_state : int, RandomState instance or None, default=None
        Seed of the draws; an int gives the same faces on every call.
    n_threads : int or None, default=None
        Threads decoding the JPEGs. None uses 4, the fastest of 1, 2 and 4
        even on 2 busy CPUs (``docs/benchmarks_celeba.md``); 1 decodes in
        the calling thread.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With the keys

        * ``images``: uint8 ndarray ``(n, image_size, image_size)`` or
          ``(n, 3, image_size, image_size)``, in the order of the files;
        * ``labels``: int ndarray ``(n,)``, 1 = has ``attribute``;
        * ``paths``: list of str, the file of each image;
        * ``eyes``: float64 ndarray ``(n, 2, 2)``, the ``(x, y)`` pixel
          positions of the left and right eye landmarks in the returned crop;
        * ``boxes``: float64 ndarray ``(n, 4)``, each crop's ``(left, top,
          right, bottom)`` in the 178x218 aligned image;
        * ``attribute``: the attribute that set the labels.

    Raises
    ------
    FileNotFoundError
        When ``root`` or one of the files is missing, or an image listed in
        the attribute file is absent; the message says where CelebA comes from.
    ValueError
        For an unknown attribute (the message lists the 40), an annotation
        file that does not parse or names an image by a path rather than a
        file of ``img_align_celeba/`` (the message names the file and line),
        images that are not the aligned 178x218 JPEGs, or more faces asked
        for than the partition holds.

    Examples
    --------
    A two-image folder in the release's layout (CelebA itself has 202,599):

    >>> import pathlib, tempfile
    >>> from PIL import Image
    >>> from anomalib_lite.datasets import load_celeba
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "img_align_celeba").mkdir()
    >>> for name in ("000001.jpg", "000002.jpg"):
    ...     Image.new("RGB", (178, 218), "tan").save(root / "img_align_celeba" / name)
    >>> _ = (root / "list_attr_celeba.txt").write_text(
    ...     "2\\nEyeglasses Smiling\\n000001.jpg -1  1\\n000002.jpg  1 -1\\n")
    >>> marks = "  69  111  108  111   88  134   72  152  105  152"
    >>> _ = (root / "list_landmarks_align_celeba.txt").write_text(
    ...     "2\\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
    ...     f"leftmouth_y rightmouth_x rightmouth_y\\n000001.jpg{marks}\\n000002.jpg{marks}\\n")
    >>> data = load_celeba(root, partition="all", image_size=32)
    >>> data.images.shape, data.images.dtype, data.labels.tolist()
    ((2, 32, 32), dtype('uint8'), [0, 1])
    >>> data.eyes[0].round(1).tolist()  # (x, y) of the left and right eye
    [[10.9, 10.7], [21.1, 10.7]]
    """
    folder = _find_root(root)
    if not isinstance(attribute, str):
        raise TypeError(f"attribute must be a str, got {type(attribute).__name__} {attribute!r}.")
    check_option(partition, "partition", tuple(_PARTITIONS))
    image_size = check_int(image_size, "image_size", min_value=8)
    check_option(color_mode, "color_mode", tuple(_COLOR_MODES))
    n_normal = check_int(n_normal, "n_normal", min_value=0, allow_none=True)
    n_anomalous = check_int(n_anomalous, "n_anomalous", min_value=0, allow_none=True)
    n_threads = check_int(n_threads, "n_threads", min_value=1, allow_none=True)
    if n_threads is None:
        n_threads = DEFAULT_THREADS
    rng = check_random_state(random_state)
    images_dir = _need(folder, IMAGE_DIR)
    attribute_path = _need(folder, ATTRIBUTE_FILE)
    landmark_path = _need(folder, LANDMARK_FILE)
    partition_path = None if partition == "all" else _need(folder, PARTITION_FILE)

    names, lines, flags = _read_attribute(attribute_path, attribute)
    keep = np.ones(len(names), dtype=bool)
    if partition_path is not None:
        everything = np.arange(len(names))
        codes, _ = _read_values(
            partition_path, names, everything, header=False, n_values=1, allowed=(0, 1, 2)
        )
        keep = codes[:, 0] == _PARTITIONS[partition]
    where = f"of partition {partition!r}" if partition != "all" else "in the folder"
    without, with_ = np.flatnonzero(keep & ~flags), np.flatnonzero(keep & flags)
    normal = _subsample(without, n_normal, "n_normal", rng, f"faces {where} without {attribute}")
    anomalous = _subsample(
        with_, n_anomalous, "n_anomalous", rng, f"faces {where} with {attribute}"
    )
    index = np.sort(np.concatenate([normal, anomalous]))
    if not index.size:
        raise ValueError(
            f"No face chosen: n_normal={n_normal}, n_anomalous={n_anomalous} {where}; "
            "ask for at least one."
        )

    landmarks, landmark_lines = _read_values(landmark_path, names, index, header=True, n_values=10)
    landmarks = landmarks.reshape(-1, 5, 2).astype(np.float64)
    _check_landmarks(landmarks, landmark_lines, landmark_path)
    boxes = _crop_boxes(landmarks)
    scale = image_size / (boxes[:, 2] - boxes[:, 0])
    eyes = (landmarks[:, :2] - boxes[:, None, :2]) * scale[:, None, None]

    paths = [str(images_dir / names[i]) for i in index]
    channels = (3,) if color_mode == "rgb" else ()
    images = np.empty((len(index), *channels, image_size, image_size), dtype=np.uint8)
    _decode_into(images, paths, boxes, lines[index], _COLOR_MODES[color_mode], n_threads)
    return Bunch(
        images=images,
        labels=flags[index].astype(np.int64),
        paths=paths,
        eyes=eyes,
        boxes=boxes,
        attribute=attribute,
    )
