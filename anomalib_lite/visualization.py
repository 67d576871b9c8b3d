"""Pictures of what a detector sees: input | reconstruction | difference.

:func:`reconstruction_figure` draws them with Pillow alone;
:func:`reconstruction_panels` returns them as arrays. :func:`plot_roc` and
:func:`plot_score_histogram` import matplotlib when called (``plot`` extra).
"""

import math
from collections import Counter
from numbers import Integral

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sklearn.utils import Bunch

from .metrics import _ranks
from .pca import PCADetector
from .utils._files import check_target, write_atomically
from .utils._validation import (
    anomaly_labels,
    channels_first,
    check_bool,
    check_float,
    check_image_shape,
    check_image_size,
    check_int,
    check_numeric_dtype,
    check_option,
    check_path,
    check_scores,
)

__all__ = [
    "COLORMAPS",
    "colorize",
    "plot_roc",
    "plot_score_histogram",
    "reconstruction_figure",
    "reconstruction_panels",
]

# matplotlib's inferno and viridis (N. J. Smith and S. van der Walt, CC0), 256 hex RGB triplets
_LUT_HEX = {
    "inferno": (
        "00000401000501010601010802010a02020c02020e03021004031204031405041706041907051b08051d"
        "09061f0a07220b07240c08260d08290e092b10092d110a30120a32140b34150b37160b39180c3c190c3e"
        "1b0c411c0c431e0c451f0c48210c4a230c4c240c4f260c51280b53290b552b0b572d0b592f0a5b310a5c"
        "320a5e340a5f3609613809623909633b09643d09653e0966400a67420a68440a68450a69470b6a490b6a"
        "4a0c6b4c0c6b4d0d6c4f0d6c510e6c520e6d540f6d550f6d57106e59106e5a116e5c126e5d126e5f136e"
        "61136e62146e64156e65156e67166e69166e6a176e6c186e6d186e6f196e71196e721a6e741a6e751b6e"
        "771c6d781c6d7a1d6d7c1d6d7d1e6d7f1e6c801f6c82206c84206b85216b87216b88226a8a226a8c2369"
        "8d23698f24699025689225689326679526679727669827669a28659b29649d29649f2a63a02a63a22b62"
        "a32c61a52c60a62d60a82e5fa92e5eab2f5ead305dae305cb0315bb1325ab3325ab43359b63458b73557"
        "b93556ba3655bc3754bd3853bf3952c03a51c13a50c33b4fc43c4ec63d4dc73e4cc83f4bca404acb4149"
        "cc4248ce4347cf4446d04545d24644d34743d44842d54a41d74b3fd84c3ed94d3dda4e3cdb503bdd513a"
        "de5238df5337e05536e15635e25734e35933e45a31e55c30e65d2fe75e2ee8602de9612bea632aeb6429"
        "eb6628ec6726ed6925ee6a24ef6c23ef6e21f06f20f1711ff1731df2741cf3761bf37819f47918f57b17"
        "f57d15f67e14f68013f78212f78410f8850ff8870ef8890cf98b0bf98c0af98e09fa9008fa9207fa9407"
        "fb9606fb9706fb9906fb9b06fb9d07fc9f07fca108fca309fca50afca60cfca80dfcaa0ffcac11fcae12"
        "fcb014fcb216fcb418fbb61afbb81dfbba1ffbbc21fbbe23fac026fac228fac42afac62df9c72ff9c932"
        "f9cb35f8cd37f8cf3af7d13df7d340f6d543f6d746f5d949f5db4cf4dd4ff4df53f4e156f3e35af3e55d"
        "f2e661f2e865f2ea69f1ec6df1ed71f1ef75f1f179f2f27df2f482f3f586f3f68af4f88ef5f992f6fa96"
        "f8fb9af9fc9dfafda1fcffa4"
    ),
    "viridis": (
        "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467"
        "48166848176948186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677"
        "482878482979472a7a472c7a472d7b472e7c472f7d46307e46327e46337f463480453581453781453882"
        "443983443a83443b84433d84433e85423f854240864241864142874144874045884046883f47883f4889"
        "3e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b3b528b3a538b3a548c39558c39568c38588c"
        "38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d33638d32648e32658e31668e"
        "31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e2c728e2c738e"
        "2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e"
        "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d"
        "218f8d21908d21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a"
        "1e9c891e9d891f9e891f9f881fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a884"
        "23a98324aa8325ab8225ac8226ad8127ad8128ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b"
        "32b67a34b67935b77937b87838b9773aba763bbb753dbc743fbc7340bd7242be7144bf7046c06f48c16e"
        "4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc8635ec96260ca6063cb5f65cb5e"
        "67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d84d44b86d549"
        "89d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32"
        "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11c"
        "d2e21bd5e21ad8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61e"
        "f6e620f8e621fbe723fde725"
    ),
}

#: Names of the built-in colormaps.
COLORMAPS = tuple(_LUT_HEX)

_SCALES = ("shared", "per_detector", "per_image")
_BACKGROUND = (255, 255, 255)
_INK = (0, 0, 0)
_MIN_TILE = 96  # pixels: the 'auto' upscaling makes tiles at least this large


def _lut(cmap):
    check_option(cmap, "cmap", COLORMAPS)
    hexes = "".join(_LUT_HEX[cmap])
    return np.frombuffer(bytes.fromhex(hexes), dtype=np.uint8).reshape(256, 3)


def _normalized(values, vmin, vmax):
    """``(values - vmin) / (vmax - vmin)`` clipped to [0, 1]; 0 where vmax <= vmin."""
    values = np.asarray(values, dtype=np.float64)
    vmin = np.asarray(vmin, dtype=np.float64)
    vmax = np.asarray(vmax, dtype=np.float64)
    with np.errstate(over="ignore"):
        span = vmax - vmin
    if np.isinf(span).any():
        # Finite limits as far apart as -1e308 and 1e308: halved, their difference
        # stays finite (inf / inf would be NaN); not always, as subnormals underflow.
        values, vmin, span = values / 2, vmin / 2, vmax / 2 - vmin / 2
    safe = np.where(span > 0, span, 1.0)
    with np.errstate(over="ignore"):  # values far outside the limits clip to 0 or 1
        return np.where(span > 0, np.clip((values - vmin) / safe, 0.0, 1.0), 0.0)


def colorize(values, *, cmap="inferno", vmin=None, vmax=None):
    """Map values to RGB colours with a built-in perceptual colormap.

    Parameters
    ----------
    values : array-like of float
        Values of any shape, all finite.
    cmap : {'inferno', 'viridis'}, default='inferno'
        matplotlib's perceptually uniform inferno or viridis.
    vmin, vmax : float, default=None
        Values at the two ends of the colormap, others clipped; None takes
        the extremes of ``values``. ``vmax <= vmin`` maps all to the low end.

    Returns
    -------
    rgb : ndarray of shape values.shape + (3,), dtype uint8

    Examples
    --------
    >>> from anomalib_lite.visualization import colorize
    >>> colorize([0.0, 0.5, 1.0]).tolist()
    [[0, 0, 4], [188, 55, 84], [252, 255, 164]]
    """
    check_numeric_dtype(values, "values")  # strings, complex numbers: not silently cast
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite; found NaN or infinite values.")
    lut = _lut(cmap)
    vmin = None if vmin is None else check_float(vmin, "vmin")
    vmax = None if vmax is None else check_float(vmax, "vmax")
    if values.size == 0:
        return np.zeros((*values.shape, 3), dtype=np.uint8)
    vmin = float(values.min()) if vmin is None else vmin
    vmax = float(values.max()) if vmax is None else vmax
    return _apply_lut(lut, _normalized(values, vmin, vmax))


def _apply_lut(lut, t):
    return lut[np.rint(t * 255).astype(np.intp)]


# ------------------------------------------------------------------ inputs
def _check_images(X, image_shape):
    """X as an array, and its images as (n, C, H, W)."""
    check_numeric_dtype(X)
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        X = X.astype(np.float64)
    if X.ndim >= 1 and len(X) == 0:
        raise ValueError("X holds no image; pass at least one.")
    if X.ndim == 2:
        if image_shape is None:
            raise ValueError(
                f"X is 2-D {X.shape}: pass image_shape=(H, W) or (C, H, W) to read "
                "each row as an image, or pass images (n, H, W) or (n, C, H, W)."
            )
        image_shape = check_image_shape(image_shape, X.shape[1])
    elif X.ndim in (3, 4):
        given = check_image_shape(image_shape)
        # The same number of pixels in another shape (8x8 against 4x16) is a mistake
        # too; -1 stands for any size, as in numpy.reshape.
        actual = channels_first(X.shape[1:])
        if given is not None and not all(g in (-1, a) for g, a in zip(given, actual, strict=True)):
            hint = (
                " Convert channels-last images with np.moveaxis(X, -1, 1)."
                if X.ndim == 4 and X.shape[-1] in (1, 3) and X.shape[1] not in (1, 3)
                else ""
            )
            raise ValueError(
                f"image_shape={image_shape!r} does not match the images of X, {X.shape[1:]}.{hint}"
            )
        image_shape = X.shape[1:]
    else:
        raise ValueError(
            f"X must hold images (n, H, W) or (n, C, H, W), or flat rows with "
            f"image_shape; got {X.ndim}-D X of shape {X.shape}."
        )
    if X.dtype.kind == "f" and not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values; pass finite images.")
    images = X.reshape(len(X), *check_image_size(channels_first(image_shape)))
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"images have {images.shape[1]} channels (shape {images.shape[1:]}); expected "
            "1 (grayscale) or 3 (RGB), channels first. Convert channels-last images "
            "with np.moveaxis(X, -1, 1)."
        )
    return X, images


def _named_detectors(detectors):
    if isinstance(detectors, dict):
        items = [(str(k), v) for k, v in detectors.items()]
    elif isinstance(detectors, (list, tuple)):
        items, seen = [], {}
        for det in detectors:
            name = type(det).__name__
            seen[name] = seen.get(name, 0) + 1
            items.append((name if seen[name] == 1 else f"{name} ({seen[name]})", det))
    else:
        items = [(type(detectors).__name__, detectors)]
    if not items:
        raise ValueError("detectors is empty; pass at least one fitted detector.")
    # The pictures are keyed by name: a second detector of a name would replace the first.
    for name, count in Counter(name for name, _ in items).items():
        if count > 1:
            raise ValueError(
                f"detectors has {count} detectors named {name!r}; pass a dict "
                "whose keys are distinct as strings."
            )
    for name, det in items:
        if not callable(getattr(det, "reconstruct", None)):
            raise TypeError(
                f"detector {name!r} has no reconstruct method; the figure needs "
                "reconstruction-based detectors such as PCADetector or "
                "ConvAutoencoderDetector."
            )
    return items


def _in_fitted_layout(detector, name, X, images):
    """``X`` reshaped to the detector's ``sample_shape_``, or as passed without one."""
    shape = getattr(detector, "sample_shape_", None)  # None too while unfitted
    if shape is None:
        return X
    # Rows and images of as many values are interchangeable, images of another shape
    # (4x16 for a detector fitted on 8x8) are not.
    fitted_on_images = len(shape) > 1
    if math.prod(shape) != math.prod(X.shape[1:]) or (
        fitted_on_images and channels_first(shape) != images.shape[1:]
    ):
        raise ValueError(
            f"{name} was fitted on samples of shape {tuple(shape)}, which do not hold the "
            f"images of X, {X.shape[1:]}; pass images of the size it was fitted on."
        )
    return X.reshape(len(X), *shape)


def _as_maps(values, name, method, images):
    n, c, h, w = images.shape
    if values.size == n * h * w:
        maps = values.reshape(n, h, w)
    elif values.size == n * c * h * w:
        maps = values.reshape(n, c, h, w).sum(axis=1)
    else:
        raise ValueError(
            f"{name}.{method} returned shape {values.shape}, which does not match "
            f"{n} images of {h}x{w} pixels."
        )
    if not np.all(np.isfinite(maps)):
        raise ValueError(f"{name}.{method} returned NaN or infinite values.")
    return maps


def _check_masks(masks, images):
    if masks is None:
        return None
    n, _, h, w = images.shape
    masks = np.asarray(masks)
    if masks.shape == (n, 1, h, w):
        masks = masks[:, 0]
    if masks.shape != (n, h, w):
        raise ValueError(f"masks has shape {masks.shape}; expected (n, H, W) = {(n, h, w)}.")
    if masks.dtype != bool:
        if masks.dtype.kind not in "biuf" or not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be boolean or hold only 0 and 1.")
        masks = masks.astype(bool)
    return masks


def _display(images, value_range):
    """(n, C, H, W) values -> (n, H, W, 3) uint8 for display."""
    low, high = value_range
    t = _normalized(images, low, high)
    rgb = np.rint(np.moveaxis(t, 1, -1) * 255).astype(np.uint8)
    return np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb


def _check_value_range(value_range, X):
    if value_range is None:
        return (0.0, 255.0) if X.dtype.kind in "iu" else (0.0, 1.0)
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise TypeError(f"value_range must be None or a pair (low, high), got {value_range!r}.")
    low = check_float(value_range[0], "value_range[0]")
    high = check_float(value_range[1], "value_range[1]")
    if high <= low:
        raise ValueError(f"value_range={tuple(value_range)!r} must have low < high.")
    return low, high


def _limits(maps, scale):
    """(vmin, vmax) of every map: a dict name -> ndarray (n, 2)."""

    def span(values):
        low = float(values.min())
        return (0.0 if low >= 0 else low), float(values.max())

    if isinstance(scale, str):
        check_option(scale, "scale", _SCALES)
        if scale == "shared":
            limits = span(np.concatenate([m.ravel() for m in maps.values()]))
            return {k: np.tile(limits, (len(m), 1)) for k, m in maps.items()}
        if scale == "per_detector":
            return {k: np.tile(span(m), (len(m), 1)) for k, m in maps.items()}
        return {k: np.array([span(one) for one in m]) for k, m in maps.items()}
    if not isinstance(scale, (tuple, list)) or len(scale) != 2:
        raise ValueError(
            f"scale={scale!r} is not supported; expected one of {', '.join(map(repr, _SCALES))} "
            "or a pair (vmin, vmax)."
        )
    vmin, vmax = (check_float(v, "scale") for v in scale)
    if vmax <= vmin:
        raise ValueError(f"scale={tuple(scale)!r} must have vmin < vmax.")
    return {k: np.tile((vmin, vmax), (len(m), 1)) for k, m in maps.items()}


def reconstruction_panels(
    detectors,
    X,
    *,
    image_shape=None,
    masks=None,
    scale="shared",
    cmap="inferno",
    value_range=None,
    overlay_alpha=0.75,
):
    """Inputs, reconstructions and difference heat maps of detectors, as arrays.

    Parameters
    ----------
    detectors : detector, list of detectors or dict of str to detector
        Fitted detectors with ``reconstruct(X)``, named by the dict keys or
        their class. The map is ``anomaly_map(X)`` where the detector has
        one, else ``(x - reconstruct(x)) ** 2`` summed over channels, which
        is also what a PCADetector's ``anomaly_map`` is with ``smoothing=0``
        (map kind ``'squared difference'`` in both cases; a smoothed PCA map
        is an ``'anomaly map'``).
    X : array-like of shape (n, H, W), (n, C, H, W) or (n, n_features)
        Grayscale or RGB images, or flat rows with ``image_shape``. Each
        detector gets ``X`` reshaped to its ``sample_shape_``, so detectors
        fitted on rows and on images can be compared; one fitted on images
        needs images of that shape.
    image_shape : tuple of int, default=None
        ``(H, W)`` or ``(C, H, W)`` of the images, needed when ``X`` is 2-D.
    masks : array-like of shape (n, H, W), default=None
        Ground-truth defect masks (bool or 0/1), outlined in the pictures.
    scale : {'shared', 'per_detector', 'per_image'} or (float, float), \
            default='shared'
        Colour scale of the maps: one for all maps (brighter = larger, across
        images and detectors), one per detector (maps in different units),
        one per map (where, not how much), or a fixed ``(vmin, vmax)``. The
        low end is 0 unless a map has negative values.
    cmap : {'inferno', 'viridis'}, default='inferno'
        Colormap of the heat maps; see :func:`colorize`.
    value_range : tuple of (float, float), default=None
        Values shown as black and white in the input and reconstruction
        pictures; None uses (0, 255) for integer ``X``, else (0, 1)
        (boolean and float ``X``).
    overlay_alpha : float, default=0.75
        Opacity of the heat map over the input at the top of the scale,
        lower in proportion below it.

    Returns
    -------
    panels : :class:`~sklearn.utils.Bunch`
        ``names``, ``inputs`` (uint8 ``(n, H, W, 3)``), ``masks`` and dicts by
        name: ``reconstructions``, ``heatmaps``, ``overlays`` (uint8),
        ``maps`` (float64 ``(n, H, W)``), ``limits`` (``(n, 2)`` vmin, vmax)
        and ``map_kinds`` (``'anomaly map'`` or ``'squared difference'``).

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.visualization import reconstruction_panels
    >>> X = np.random.default_rng(0).random((30, 16))
    >>> det = PCADetector(n_components=3).fit(X)
    >>> panels = reconstruction_panels(det, X[:2], image_shape=(4, 4))
    >>> panels.names, panels.heatmaps["PCADetector"].shape
    (['PCADetector'], (2, 4, 4, 3))
    >>> panels.map_kinds["PCADetector"]
    'squared difference'
    """
    named = _named_detectors(detectors)
    X, images = _check_images(X, image_shape)
    masks = _check_masks(masks, images)
    value_range = _check_value_range(value_range, X)
    overlay_alpha = check_float(overlay_alpha, "overlay_alpha", low=0, high=1, closed="both")
    lut = _lut(cmap)

    reconstructions, maps, kinds = {}, {}, {}
    for name, det in named:
        layout = _in_fitted_layout(det, name, X, images)
        rec = np.asarray(det.reconstruct(layout), dtype=np.float64)
        if rec.size != images.size:
            raise ValueError(
                f"{name}.reconstruct returned shape {rec.shape}; expected one value per "
                f"input value, {X.shape}."
            )
        rec = rec.reshape(images.shape)
        if callable(getattr(det, "anomaly_map", None)):
            values = np.asarray(det.anomaly_map(layout), dtype=np.float64)
            maps[name] = _as_maps(values, name, "anomaly_map", images)
            unsmoothed = isinstance(det, PCADetector) and getattr(det, "smoothing_", 0) == 0
            kinds[name] = "squared difference" if unsmoothed else "anomaly map"
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                difference = ((images.astype(np.float64) - rec) ** 2).sum(axis=1)
            if not np.all(np.isfinite(difference)):
                raise ValueError(
                    f"The squared difference between X and {name}.reconstruct(X) overflows "
                    "float64 (or reconstruct returned NaN or inf); rescale X."
                )
            maps[name] = difference
            kinds[name] = "squared difference"
        reconstructions[name] = _display(rec, value_range)

    inputs = _display(images, value_range)
    limits = _limits(maps, scale)
    heatmaps, overlays = {}, {}
    for name, values in maps.items():
        t = _normalized(values, limits[name][:, :1, None], limits[name][:, 1:, None])
        heatmaps[name] = _apply_lut(lut, t)
        alpha = overlay_alpha * t[..., None]
        overlays[name] = np.rint(inputs * (1 - alpha) + heatmaps[name] * alpha).astype(np.uint8)
    return Bunch(
        names=[name for name, _ in named],
        inputs=inputs,
        masks=masks,
        reconstructions=reconstructions,
        heatmaps=heatmaps,
        overlays=overlays,
        maps=maps,
        limits=limits,
        map_kinds=kinds,
    )


# ----------------------------------------------------------------- drawing
def _font(size=11):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _fmt(value):
    return f"{value:.3g}"


def _ticks(low, high):
    return _fmt(low), _fmt((low + high) / 2), _fmt(high)


def _upscale_factor(upscale, height, width):
    if upscale == "auto":
        return max(1, math.ceil(_MIN_TILE / max(height, width)))
    return check_int(upscale, "upscale", min_value=1)


def _enlarge(tile, factor):
    return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)


def _outline(mask, width):
    """A ring ``width`` pixels wide just outside ``mask``, leaving the defect visible."""
    grown = mask.copy()
    for _ in range(width):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown & ~mask


def _draw_colorbar(canvas, draw, font, box, lut, limits, label):
    """A horizontal colour bar in ``box`` = (x, y, width) with ticks and a label."""
    x, y, width = box
    height = 12
    gradient = np.broadcast_to(
        lut[np.linspace(0, 255, width).round().astype(int)], (height, width, 3)
    )
    canvas.paste(Image.fromarray(np.ascontiguousarray(gradient)), (x, y))
    draw.rectangle((x - 1, y - 1, x + width, y + height), outline=(128, 128, 128))
    for frac, text in zip((0.0, 0.5, 1.0), limits, strict=True):
        tx = x + round(frac * (width - 1))
        draw.line((tx, y + height, tx, y + height + 3), fill=_INK)
        tw, _ = _text_size(draw, text, font)
        left = min(max(tx - tw // 2, x - 4), x + width + 4 - tw)
        draw.text((left, y + height + 4), text, fill=_INK, font=font)
    line = _text_size(draw, "Ag", font)[1] + 4
    draw.text((x, y + height + 4 + line), label, fill=_INK, font=font)


def reconstruction_figure(
    detectors,
    X,
    *,
    image_shape=None,
    masks=None,
    scale="shared",
    cmap="inferno",
    value_range=None,
    overlay=True,
    upscale="auto",
    row_titles=None,
    mask_color=(0, 255, 255),
    path=None,
    overwrite=False,
):
    """Figure of input | reconstruction | difference heat map, one row per image.

    Each detector gets a block of columns: reconstruction, heat map and an
    overlay of the map on the input. Masks are outlined; each map's maximum (its
    range, with ``scale='per_image'``) is written under it, colour bars are at the
    bottom. Small images are enlarged
    by an integer nearest-neighbour factor.

    Parameters
    ----------
    detectors : detector, list of detectors or dict of str to detector
        Fitted detectors with ``reconstruct``; see :func:`reconstruction_panels`.
    X : array-like of shape (n, H, W), (n, C, H, W) or (n, n_features)
        Images, one row of the figure each; see :func:`reconstruction_panels`.
    image_shape : tuple of int, default=None
        ``(H, W)`` or ``(C, H, W)``, needed when ``X`` is 2-D.
    masks : array-like of shape (n, H, W), default=None
        Ground-truth defect masks to outline.
    scale : {'shared', 'per_detector', 'per_image'} or (float, float), \
            default='shared'
        Colour scale of the heat maps; see :func:`reconstruction_panels`.
    cmap : {'inferno', 'viridis'}, default='inferno'
        Colormap of the heat maps.
    value_range : tuple of (float, float), default=None
        Values shown as black and white; see :func:`reconstruction_panels`.
    overlay : bool, default=True
        Add a column with the heat map over the input for each detector.
    upscale : int or 'auto', default='auto'
        Integer enlargement; ``'auto'`` makes pictures at least 96 pixels across.
    row_titles : list of str, default=None
        A title for each row, written on the left.
    mask_color : tuple of (int, int, int), default=(0, 255, 255)
        RGB colour of the mask outlines.
    path : str or os.PathLike, default=None
        Where to save the figure as PNG, atomically (as model files are
        saved). None saves nothing.
    overwrite : bool, default=False
        Replace an existing file at ``path``; otherwise raise FileExistsError.

    Returns
    -------
    figure : PIL.Image.Image
        The figure, in RGB.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.datasets import load_digits_one_class
    >>> from anomalib_lite.visualization import reconstruction_figure
    >>> train, test, labels = load_digits_one_class(0, return_X_y=True)
    >>> pca = PCADetector(n_components=10).fit(train.reshape(len(train), -1))
    >>> figure = reconstruction_figure(
    ...     {"PCA": pca}, test[:3].reshape(3, -1), image_shape=(8, 8))
    >>> figure.mode, figure.height > 3 * 96
    ('RGB', True)
    """
    check_bool(overlay, "overlay")
    check_bool(overwrite, "overwrite")
    if (
        not isinstance(mask_color, (tuple, list))
        or len(mask_color) != 3
        or not all(
            isinstance(c, Integral) and not isinstance(c, bool) and 0 <= c <= 255
            for c in mask_color
        )
    ):
        raise ValueError(
            f"mask_color={mask_color!r} must be an RGB tuple of three ints in [0, 255]."
        )
    path = None if path is None else check_path(path)
    if path is not None:
        check_target(path, overwrite=overwrite, exists_error=_exists, example="figure.png")
    panels = reconstruction_panels(
        detectors,
        X,
        image_shape=image_shape,
        masks=masks,
        scale=scale,
        cmap=cmap,
        value_range=value_range,
    )
    n, h, w = panels.inputs.shape[:3]
    if row_titles is not None:
        if not isinstance(row_titles, (list, tuple, np.ndarray)) or len(row_titles) != n:
            raise ValueError(f"row_titles must be a list of {n} strings, one per image.")
        row_titles = [str(t) for t in row_titles]
    factor = _upscale_factor(upscale, h, w)
    figure = _render(panels, factor, overlay, row_titles, tuple(mask_color), scale, _lut(cmap))
    if path is not None:

        def png(fh):
            figure.save(fh, format="PNG")

        write_atomically(path, png, overwrite=overwrite, exists_error=_exists)
    return figure


def _exists(path):
    return FileExistsError(f"'{path}' exists; pass overwrite=True or another path.")


def _render(panels, factor, overlay, row_titles, mask_color, scale, lut):
    """Lay out the panels on a white canvas."""
    n, h, w = panels.inputs.shape[:3]
    tile_w, tile_h = w * factor, h * factor
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = _text_size(measure, "Ag", font)[1] + 5
    pad, gap, block_gap = 8, 4, 16
    outline_width = max(1, factor // 6)

    # Columns: (title, detector name or None, kind of picture).
    columns = [("input" + (" + mask" if panels.masks is not None else ""), None, "input")]
    for name in panels.names:
        columns.append(("reconstruction", name, "reconstruction"))
        columns.append((panels.map_kinds[name], name, "heatmap"))
        if overlay:
            columns.append(("overlay", name, "overlay"))
    col_w = max(tile_w, *(_text_size(measure, c[0], font)[0] + 6 for c in columns))
    title_w = 0
    if row_titles:
        title_w = max(_text_size(measure, t, font)[0] for t in row_titles) + 10
    # x of each column, and (start, end) of each detector's block of columns
    xs, x, previous, blocks = [], pad + title_w, None, {}
    for _, name, _ in columns:
        if xs:
            x += block_gap if name != previous else gap
        xs.append(x)
        if name is not None:
            blocks[name] = (blocks.get(name, (x,))[0], x + col_w)
        x += col_w
        previous = name

    top = pad + 2 * line
    row_h = tile_h + line + gap
    bar_top = top + n * row_h + 8
    scale_kind = scale if isinstance(scale, str) else "fixed"
    bar_h = 12 + 4 + 2 * line
    bars = _colorbars(panels, blocks, bar_top, scale_kind)
    # Wide enough for every bar and the caption under it.
    ends = (box[0] + max(box[2], _text_size(measure, label, font)[0]) for box, _, label in bars)
    width = max(x + pad, pad + title_w + 220, *(end + pad for end in ends))
    height = bar_top + bar_h + pad
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    for name, (start, end) in blocks.items():
        tw, _ = _text_size(draw, name, font)
        draw.text((start + (end - start - tw) // 2, pad), name, fill=_INK, font=font)
        draw.line((start, pad + line - 2, end, pad + line - 2), fill=(160, 160, 160))
    for (title, _, _), cx in zip(columns, xs, strict=True):
        tw, _ = _text_size(draw, title, font)
        draw.text((cx + (col_w - tw) // 2, pad + line), title, fill=_INK, font=font)

    outlines = None
    if panels.masks is not None:
        outlines = [_outline(_enlarge(m, factor), outline_width) for m in panels.masks]
    per_image = scale_kind == "per_image"
    tiles = {
        "reconstruction": panels.reconstructions,
        "heatmap": panels.heatmaps,
        "overlay": panels.overlays,
    }
    for i in range(n):
        y = top + i * row_h
        if row_titles:
            _, th = _text_size(draw, row_titles[i], font)
            draw.text((pad, y + (tile_h - th) // 2), row_titles[i], fill=_INK, font=font)
        for (_, name, kind), cx in zip(columns, xs, strict=True):
            tile = _enlarge(panels.inputs[i] if kind == "input" else tiles[kind][name][i], factor)
            if outlines is not None and kind in ("input", "overlay"):
                tile = tile.copy()
                tile[outlines[i]] = mask_color
            tx = cx + (col_w - tile_w) // 2
            canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (tx, y))
            if kind == "heatmap":
                low, high = panels.limits[name][i]
                values = panels.maps[name][i]
                text = f"{_fmt(low)} to {_fmt(high)}" if per_image else f"max {_fmt(values.max())}"
                tw, _ = _text_size(draw, text, font)
                draw.text((cx + (col_w - tw) // 2, y + tile_h + 2), text, fill=_INK, font=font)

    for box, ticks, label in bars:
        _draw_colorbar(canvas, draw, font, box, lut, ticks, label)
    return canvas


def _colorbars(panels, blocks, bar_top, scale_kind):
    """``(box, ticks, label)`` of each colour bar: one for all maps, or one per detector."""
    if scale_kind == "per_detector":
        return [
            (
                (start, bar_top, max(60, end - start)),
                _ticks(*panels.limits[name][0]),
                panels.map_kinds[name],
            )
            for name, (start, end) in blocks.items()
        ]
    start = min(s for s, _ in blocks.values())
    end = max(e for _, e in blocks.values())
    box = (start, bar_top, max(120, min(end - start, 360)))
    if scale_kind == "per_image":
        return [(box, ("low", "", "high"), "each map on its own scale; its range is under it")]
    label = " / ".join(sorted(set(panels.map_kinds.values()))) + " (one scale for all maps)"
    return [(box, _ticks(*next(iter(panels.limits.values()))[0]), label)]


# ---------------------------------------------------------------- matplotlib
def _pyplot(function):
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{function} draws with matplotlib, which is not installed; install it "
            'with pip install -e ".[plot]" from the repository root.'
        ) from exc
    return plt


def _scored_labels(detector, X, y, function=None):
    """Normality scores of X and validated labels; ``function`` (its name) needs
    both classes among them."""
    scores = check_scores(detector.score_samples(X), "score_samples", allow_inf=True)
    anomalous = anomaly_labels(y, len(scores))
    if function is not None and not anomalous.any():
        raise ValueError(f"{function} needs anomalies in y (label 1), got only normal samples (0).")
    if function is not None and anomalous.all():
        raise ValueError(f"{function} needs normal samples in y (label 0), got only anomalies (1).")
    return scores, anomalous.astype(int)


def plot_roc(detector, X, y, *, ax=None, name=None):
    """Plot a fitted detector's ROC curve on labelled data, with its threshold.

    The dot marks the rates of ``predict`` at ``offset_``. Needs matplotlib.

    Parameters
    ----------
    detector : fitted detector
        Any anomalib_lite detector.
    X : array-like
        Samples, in the layout the detector accepts.
    y : array-like of shape (n_samples,)
        Labels, 0 = normal, 1 = anomaly; both must be present.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on (again, to compare detectors); None makes a figure.
    name : str, default=None
        Legend name; None uses the detector's class name.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.datasets import load_digits_one_class
    >>> from anomalib_lite.visualization import plot_roc
    >>> train, test, labels = load_digits_one_class(8, return_X_y=True)
    >>> pca = PCADetector(n_components=10).fit(train.reshape(len(train), -1))
    >>> ax = plot_roc(pca, test.reshape(len(test), -1), labels, name="PCA")
    >>> ax.get_legend_handles_labels()[1][1]
    'PCA (AUROC = 0.976)'
    """
    plt = _pyplot("plot_roc")
    from sklearn.metrics import roc_auc_score, roc_curve

    scores, y = _scored_labels(detector, X, y, "plot_roc")
    ranks = _ranks(-scores)  # the curve depends on the order only; -inf scores rank last
    fpr, tpr, _ = roc_curve(y, ranks)
    auroc = roc_auc_score(y, ranks)
    flagged = np.asarray(detector.predict(X)) == -1
    name = type(detector).__name__ if name is None else str(name)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    if not any(line.get_label() == "chance" for line in ax.lines):
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    (curve,) = ax.plot(fpr, tpr, label=f"{name} (AUROC = {auroc:.3f})")
    ax.plot(
        flagged[y == 0].mean(),
        flagged[y == 1].mean(),
        "o",
        color=curve.get_color(),
        label=f"{name} threshold",
    )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="false positive rate (normal samples flagged)",
        ylabel="true positive rate (anomalies flagged)",
        aspect="equal",
    )
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_score_histogram(detector, X, y=None, *, ax=None, bins=30):
    """Plot the histogram of a fitted detector's scores, with its threshold.

    Scores are ``score_samples(X)``; the line is ``offset_``. With labels,
    normal samples and anomalies get separate histograms. Needs matplotlib.

    Parameters
    ----------
    detector : fitted detector
        Any anomalib_lite detector.
    X : array-like
        Samples, in the layout the detector accepts.
    y : array-like of shape (n_samples,), default=None
        Labels, 0 = normal, 1 = anomaly; None draws one histogram.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; None makes a new figure.
    bins : int, default=30
        Number of bins, shared by the histograms.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.

    Examples
    --------
    >>> from anomalib_lite import PCADetector
    >>> from anomalib_lite.datasets import load_digits_one_class
    >>> from anomalib_lite.visualization import plot_score_histogram
    >>> train, test, labels = load_digits_one_class(0, return_X_y=True)
    >>> pca = PCADetector(n_components=10).fit(train.reshape(len(train), -1))
    >>> ax = plot_score_histogram(pca, test.reshape(len(test), -1), labels)
    >>> ax.get_legend_handles_labels()[1][1:]
    ['normal (0)', 'anomaly (1)']
    """
    plt = _pyplot("plot_score_histogram")
    bins = check_int(bins, "bins", min_value=1)
    if y is None:
        scores = check_scores(detector.score_samples(X), "score_samples", allow_inf=True)
        groups = [("samples", scores, "C0")]
    else:
        scores, y = _scored_labels(detector, X, y)
        groups = [("normal (0)", scores[y == 0], "C0"), ("anomaly (1)", scores[y == 1], "C3")]
    offset = float(detector.offset_)
    edges = np.histogram_bin_edges(np.r_[scores[np.isfinite(scores)], offset], bins=bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.axvline(offset, color="k", linestyle="--", label=f"threshold offset_ = {offset:.3g}")
    for label, values, color in groups:
        # An overflowing score is -inf (maximally anomalous): drawn in the end bin.
        n_infinite = int(np.sum(np.isinf(values)))
        if n_infinite:
            label = f"{label}, {n_infinite} infinite (in the end bin)"
        shown = np.clip(values, edges[0], edges[-1])
        ax.hist(shown, bins=edges, alpha=0.6, color=color, label=label)
    ax.axvspan(edges[0], offset, color="C3", alpha=0.07, linewidth=0)
    ax.set(xlabel="score_samples (higher = more normal; shaded: flagged)", ylabel="count")
    ax.legend(fontsize="small")
    return ax
