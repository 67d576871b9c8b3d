"""Tests of anomalib_lite.visualization, by the pixels of the pictures."""

import copy
import os
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from scipy.stats import rankdata
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from anomalib_lite import AutoencoderDetector, ConvAutoencoderDetector, PCADetector
from anomalib_lite.datasets import load_digits_one_class
from anomalib_lite.visualization import (
    COLORMAPS,
    colorize,
    plot_roc,
    plot_score_histogram,
    reconstruction_figure,
    reconstruction_panels,
)

CYAN = (0, 255, 255)


class ZeroReconstruction:
    """Reconstructs every image as zeros: the difference is the image itself."""

    def reconstruct(self, X):
        return np.zeros(np.shape(X))


class ScaledMap(ZeroReconstruction):
    """Has an anomaly map: ``factor`` times the first channel of the image."""

    def __init__(self, factor=1.0):
        self.factor = factor

    def anomaly_map(self, X):
        X = np.asarray(X, dtype=float)
        return self.factor * (X[:, 0] if X.ndim == 4 else X)


class FlatOnly(ZeroReconstruction):
    """Fitted on flat rows of 64 features, and says so with ``sample_shape_``."""

    sample_shape_ = (64,)

    def reconstruct(self, X):
        if np.ndim(X) != 2:
            raise ValueError("Found array with dim 3. Expected <= 2.")
        return super().reconstruct(X)


def _luma(rgb):
    return np.asarray(rgb, dtype=float) @ [0.299, 0.587, 0.114]


def _find(figure, tile):
    """Top-left corners where ``tile`` appears in ``figure``."""
    fig = np.asarray(figure)
    th, tw = tile.shape[:2]
    hits = []
    for y, x in zip(*np.nonzero((fig == tile[0, 0]).all(axis=-1)), strict=True):
        inside = y + th <= fig.shape[0] and x + tw <= fig.shape[1]
        if inside and np.array_equal(fig[y : y + th, x : x + tw], tile):
            hits.append((int(y), int(x)))
    return hits


def _square_images():
    """Two 8x8 images with a bright square; the second twice as bright."""
    images = np.zeros((2, 8, 8))
    images[:, 1:4, 4:7] = 0.4
    images[1] *= 2
    return images


@pytest.fixture(scope="module")
def digits_pca():
    train, test, labels = load_digits_one_class(8, return_X_y=True)
    pca = PCADetector(n_components=10).fit(train.reshape(len(train), -1))
    return pca, test, labels


# ---------------------------------------------------------------- colorize
@pytest.mark.parametrize("cmap", COLORMAPS)
def test_colorize_matches_matplotlib(cmap):
    matplotlib = pytest.importorskip("matplotlib")
    values = np.linspace(0, 1, 256)
    expected = np.round(matplotlib.colormaps[cmap](values)[:, :3] * 255)
    np.testing.assert_array_equal(colorize(values, cmap=cmap), expected)


@pytest.mark.parametrize("cmap", COLORMAPS)
def test_colorize_gets_brighter_with_the_value(cmap):
    luma = _luma(colorize(np.linspace(0, 1, 64), cmap=cmap))
    assert np.all(np.diff(luma) > 0)


@settings(max_examples=50, deadline=None)
@given(
    values=arrays(np.float64, st.integers(2, 40), elements=st.floats(-1e6, 1e6)),
    cmap=st.sampled_from(COLORMAPS),
)
def test_colorize_keeps_the_order_of_values(values, cmap):
    luma = _luma(colorize(values, cmap=cmap))
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(luma[order]) >= 0)
    assert luma[values.argmin()] == luma.min() and luma[values.argmax()] == luma.max()


def test_colorize_limits():
    rgb = colorize([-1.0, 0.0, 2.0, 3.0], vmin=0, vmax=2)
    np.testing.assert_array_equal(rgb[0], rgb[1])  # clipped to the low end
    np.testing.assert_array_equal(rgb[2], rgb[3])  # clipped to the high end
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 3)
    flat = colorize(np.full((2, 2), 5.0))
    np.testing.assert_array_equal(flat, colorize([0.0])[0] + np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="finite"):
        colorize([0.0, np.nan])
    with pytest.raises(ValueError, match="cmap='jet'"):
        colorize([0.0], cmap="jet")


def test_channels_last_images_with_a_channels_first_shape_get_the_hint():
    with pytest.raises(ValueError, match=r"does not match.*np\.moveaxis"):
        reconstruction_panels(ZeroReconstruction(), np.zeros((2, 8, 8, 3)), image_shape=(3, 8, 8))


def test_colorize_extreme_finite_values():
    # vmax - vmin overflows float64: the values are finite, so they still get colours.
    rgb = colorize([-1e308, 0.0, 1e308])
    np.testing.assert_array_equal(rgb, colorize([0.0, 0.5, 1.0]))
    np.testing.assert_array_equal(colorize([0.0], vmin=-1e308, vmax=1e308), rgb[1:2])
    # Subnormal spans are not halved away.
    np.testing.assert_array_equal(colorize([0.0, 5e-324]), colorize([0.0, 1.0]))


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        (["0.5", "1"], TypeError, "values has dtype <U"),
        (np.array([1 + 2j, 0j]), ValueError, "values has complex dtype"),
        (None, TypeError, "values must be an array-like of numbers"),
    ],
)
def test_colorize_refuses_values_that_are_not_real_numbers(values, error, match):
    with pytest.raises(error, match=match):
        colorize(values)


def test_colorize_checks_the_limits_of_empty_values():
    with pytest.raises(TypeError, match="vmin must be a float"):
        colorize([], vmin="low")


# --------------------------------------------------------------- panels
def test_heatmap_is_brighter_where_the_difference_is_larger():
    images = _square_images()
    panels = reconstruction_panels(ZeroReconstruction(), images)
    heat = _luma(panels.heatmaps["ZeroReconstruction"][0])
    square = np.zeros((8, 8), bool)
    square[1:4, 4:7] = True
    assert heat[square].min() > heat[~square].max()
    np.testing.assert_allclose(panels.maps["ZeroReconstruction"], images**2)
    assert panels.map_kinds["ZeroReconstruction"] == "squared difference"


def test_shared_scale_makes_the_worse_image_brighter():
    images = _square_images()
    shared = reconstruction_panels(ZeroReconstruction(), images, scale="shared")
    heat = _luma(shared.heatmaps["ZeroReconstruction"])
    assert heat[1].mean() > heat[0].mean()
    assert heat[1].max() > heat[0].max()
    np.testing.assert_allclose(shared.limits["ZeroReconstruction"], [[0, 0.64], [0, 0.64]])
    per_image = reconstruction_panels(ZeroReconstruction(), images, scale="per_image")
    heat = per_image.heatmaps["ZeroReconstruction"]
    np.testing.assert_array_equal(heat[0], heat[1])  # each on its own scale
    np.testing.assert_allclose(per_image.limits["ZeroReconstruction"], [[0, 0.16], [0, 0.64]])


def test_explicit_scale_saturates_above_vmax():
    images = _square_images()
    panels = reconstruction_panels(ZeroReconstruction(), images, scale=(0.0, 0.16))
    heat = panels.heatmaps["ZeroReconstruction"]
    np.testing.assert_array_equal(heat[0], heat[1])  # 0.16 and 0.64 both at the top
    np.testing.assert_array_equal(heat[1, 2, 5], colorize([1.0], vmin=0, vmax=1)[0])


def test_per_detector_scale_compares_maps_in_different_units():
    images = _square_images()
    detectors = {"small": ScaledMap(1.0), "large": ScaledMap(100.0)}
    shared = reconstruction_panels(detectors, images, scale="shared")
    assert _luma(shared.heatmaps["large"]).mean() > _luma(shared.heatmaps["small"]).mean()
    separate = reconstruction_panels(detectors, images, scale="per_detector")
    np.testing.assert_array_equal(separate.heatmaps["small"], separate.heatmaps["large"])
    assert separate.map_kinds == {"small": "anomaly map", "large": "anomaly map"}


def test_pca_fallback_map_sums_to_its_reconstruction_error(digits_pca):
    pca, test, _ = digits_pca
    flat = test[:5].reshape(5, -1)
    panels = reconstruction_panels(pca, flat, image_shape=(8, 8))
    maps = panels.maps["PCADetector"]
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), pca.reconstruction_error(flat))
    # images are given to PCA as flat rows, its sample_shape_
    from_images = reconstruction_panels(pca, test[:5])
    np.testing.assert_allclose(from_images.maps["PCADetector"], maps)
    expected = np.rint(np.clip(pca.reconstruct(flat), 0, 1) * 255).reshape(5, 8, 8)
    np.testing.assert_array_equal(panels.reconstructions["PCADetector"][..., 0], expected)


def test_pca_fitted_on_images_draws_its_anomaly_map(digits_pca):
    pca, test, _ = digits_pca
    on_images = PCADetector(n_components=10).fit(load_digits_one_class(8).train_images)
    panels = reconstruction_panels({"rows": pca, "images": on_images}, test[:5])
    np.testing.assert_allclose(panels.maps["images"], on_images.anomaly_map(test[:5]))
    np.testing.assert_allclose(panels.maps["images"], panels.maps["rows"])
    assert panels.map_kinds == {"rows": "squared difference", "images": "squared difference"}


def test_smoothed_pca_map_is_not_called_a_squared_difference():
    digits = load_digits_one_class(8)
    test = digits.test_images[:3]
    smoothed = PCADetector(n_components=10, smoothing=1.0).fit(digits.train_images)
    raw = PCADetector(n_components=10).fit(digits.train_images)
    panels = reconstruction_panels({"smoothed": smoothed, "raw": raw}, test)
    squared = (test - smoothed.reconstruct(test)) ** 2
    assert not np.allclose(panels.maps["smoothed"], squared)
    np.testing.assert_allclose(panels.maps["smoothed"], smoothed.anomaly_map(test))
    assert panels.map_kinds == {"smoothed": "anomaly map", "raw": "squared difference"}


def test_rgb_images_and_overlay():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 6, 6))
    panels = reconstruction_panels(ZeroReconstruction(), images, overlay_alpha=1.0)
    np.testing.assert_array_equal(
        panels.inputs, np.rint(np.moveaxis(images, 1, -1) * 255).astype(np.uint8)
    )
    np.testing.assert_allclose(panels.maps["ZeroReconstruction"], (images**2).sum(axis=1))
    # the overlay is the input where the map is lowest and the heat map where highest
    maps = panels.maps["ZeroReconstruction"]
    top = np.unravel_index(maps.argmax(), maps.shape)
    low = np.unravel_index(maps.argmin(), maps.shape)
    np.testing.assert_array_equal(
        panels.overlays["ZeroReconstruction"][top], panels.heatmaps["ZeroReconstruction"][top]
    )
    assert abs(int(panels.overlays["ZeroReconstruction"][low][0]) - panels.inputs[low][0]) <= 3


def test_uint8_images_use_the_0_255_range():
    images = np.zeros((1, 4, 4), np.uint8)
    images[0, 0, 0] = 255
    panels = reconstruction_panels(ZeroReconstruction(), images)
    assert panels.inputs[0, 0, 0].tolist() == [255, 255, 255]
    assert panels.inputs[0, 1, 1].tolist() == [0, 0, 0]
    custom = reconstruction_panels(ZeroReconstruction(), images, value_range=(0, 510))
    assert custom.inputs[0, 0, 0].tolist() == [128, 128, 128]


def test_each_detector_gets_the_layout_of_its_sample_shape():
    flat = reconstruction_panels(FlatOnly(), _square_images())
    assert flat.maps["FlatOnly"].shape == (2, 8, 8)
    with pytest.raises(ValueError, match=r"FlatOnly was fitted on samples of shape \(64,\)"):
        reconstruction_panels(FlatOnly(), np.zeros((2, 4, 4)))


def test_images_of_another_shape_than_the_fitted_images_are_refused():
    digits = load_digits_one_class(8)
    on_images = PCADetector(n_components=10).fit(digits.train_images)  # 8x8 images
    test = digits.test_images[:3]
    match = r"PCADetector was fitted on samples of shape \(8, 8\)"
    with pytest.raises(ValueError, match=match):
        reconstruction_panels(on_images, test.reshape(3, 4, 16))
    with pytest.raises(ValueError, match=match):
        reconstruction_panels(on_images, test.reshape(3, -1), image_shape=(4, 16))
    # The same images as rows, or with their channel, are the fitted shape.
    expected = on_images.anomaly_map(test)
    for X, image_shape in [(test.reshape(3, -1), (8, 8)), (test[:, None], None)]:
        panels = reconstruction_panels(on_images, X, image_shape=image_shape)
        np.testing.assert_allclose(panels.maps["PCADetector"], expected)


def test_detectors_fitted_on_rows_and_on_images_are_compared_on_the_same_images(digits_pca):
    pca, test, _ = digits_pca
    train = test[:40]
    fast = {"channels": (4,), "latent_dim": 2, "max_iter": 2, "random_state": 0}
    detectors = {
        "pca": pca,
        "images": ConvAutoencoderDetector(**fast).fit(train),
        "rows": ConvAutoencoderDetector(image_shape=(8, 8), **fast).fit(train.reshape(40, -1)),
        "dense": AutoencoderDetector(hidden_sizes=(4,), latent_dim=2, max_iter=2).fit(
            train.reshape(40, -1)
        ),
    }
    assert detectors["pca"].sample_shape_ == detectors["rows"].sample_shape_ == (64,)
    assert detectors["images"].sample_shape_ == (1, 8, 8)
    panels = reconstruction_panels(detectors, test[:3])
    np.testing.assert_allclose(panels.maps["images"], detectors["images"].anomaly_map(test[:3]))
    flat = test[:3].reshape(3, -1)
    np.testing.assert_allclose(panels.maps["rows"], detectors["rows"].anomaly_map(flat))
    np.testing.assert_allclose(
        panels.maps["dense"].sum(axis=(1, 2)),
        ((flat - detectors["dense"].reconstruct(flat)) ** 2).sum(axis=1),
    )


def test_detector_errors_reach_the_caller_unchanged():
    class Picky(ZeroReconstruction):
        def reconstruct(self, X):
            raise ValueError("no thanks")

    with pytest.raises(ValueError, match=r"^no thanks$"):
        reconstruction_panels(Picky(), _square_images())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"detectors": object()}, TypeError, "no reconstruct method"),
        ({"detectors": []}, ValueError, "empty"),
        ({"X": np.zeros((2, 64))}, ValueError, "image_shape"),
        ({"X": np.zeros((2, 64)), "image_shape": (7, 7)}, ValueError, "needs 49 features"),
        ({"X": np.zeros((2, 4, 5, 5))}, ValueError, "4 channels"),
        ({"X": np.full((2, 8, 8), np.nan)}, ValueError, "NaN"),
        ({"X": np.zeros((0, 8, 8))}, ValueError, "no image"),
        ({"X": np.zeros((2, 8))}, ValueError, "image_shape"),
        ({"scale": "global"}, ValueError, "scale='global'"),
        ({"scale": (1.0, 0.5)}, ValueError, "vmin < vmax"),
        ({"masks": np.zeros((2, 4, 4), bool)}, ValueError, "masks has shape"),
        ({"masks": np.full((2, 8, 8), 2)}, ValueError, "0 and 1"),
        ({"value_range": (1, 1)}, ValueError, "low < high"),
        ({"overlay_alpha": 2.0}, ValueError, "overlay_alpha"),
        ({"X": np.zeros((2, 4, 16)), "image_shape": (8, 8)}, ValueError, "does not match"),
        ({"X": np.zeros((2, 0, 8))}, ValueError, "at least one channel and one pixel"),
        ({"detectors": {1: ZeroReconstruction(), "1": FlatOnly()}}, ValueError, "named '1'"),
    ],
)
def test_reconstruction_panels_rejects_bad_input(kwargs, error, match):
    arguments = {"detectors": ZeroReconstruction(), "X": _square_images(), **kwargs}
    with pytest.raises(error, match=match):
        reconstruction_panels(arguments.pop("detectors"), arguments.pop("X"), **arguments)


def test_image_shape_of_images_may_add_the_channel_or_infer_a_size():
    images = _square_images()
    for image_shape in ((1, 8, 8), (-1, 8), (1, 8, -1)):
        panels = reconstruction_panels(ZeroReconstruction(), images, image_shape=image_shape)
        assert panels.inputs.shape == (2, 8, 8, 3)


def test_unfitted_detector_says_so():
    with pytest.raises(NotFittedError):
        reconstruction_panels(PCADetector(), _square_images())


# --------------------------------------------------------------- figure
def test_figure_places_the_enlarged_pictures(digits_pca):
    pca, test, _ = digits_pca
    panels = reconstruction_panels(pca, test[:3])
    figure = reconstruction_figure(pca, test[:3])
    assert figure.mode == "RGB"
    factor = 12  # 'auto': 8x8 digits become 96x96 pictures
    for i in range(3):
        for tile in (panels.inputs[i], panels.heatmaps["PCADetector"][i]):
            enlarged = np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)
            assert len(_find(figure, enlarged)) == 1
    # the heat map of row i sits right of its input, rows go downwards
    corners = [
        _find(figure, np.kron(panels.heatmaps["PCADetector"][i], np.ones((12, 12, 1), np.uint8)))[0]
        for i in range(3)
    ]
    assert corners[0][0] < corners[1][0] < corners[2][0]
    assert corners[0][1] == corners[1][1] == corners[2][1]


def test_figure_grows_with_rows_detectors_and_upscale(digits_pca):
    pca, test, _ = digits_pca
    one = reconstruction_figure(pca, test[:2], upscale=4)
    more_rows = reconstruction_figure(pca, test[:4], upscale=4)
    two = reconstruction_figure([pca, pca], test[:2], upscale=4)
    no_overlay = reconstruction_figure(pca, test[:2], upscale=4, overlay=False)
    bigger = reconstruction_figure(pca, test[:2], upscale=20)  # wider than the titles
    assert more_rows.height > one.height and more_rows.width == one.width
    assert two.width > one.width and two.height == one.height
    assert no_overlay.width < one.width
    assert bigger.width > one.width and bigger.height > one.height


def test_figure_shared_scale_shows_the_worse_image_brighter():
    images = _square_images()
    figure = reconstruction_figure(ZeroReconstruction(), images, upscale=12, overlay=False)
    panels = reconstruction_panels(ZeroReconstruction(), images)
    fig = np.asarray(figure)
    brightness = []
    for i in range(2):
        tile = np.kron(panels.heatmaps["ZeroReconstruction"][i], np.ones((12, 12, 1), np.uint8))
        ((y, x),) = _find(figure, tile)
        brightness.append(_luma(fig[y : y + 96, x : x + 96]).mean())
    assert brightness[1] > brightness[0]


def test_figure_outlines_the_masks_outside_the_defect():
    images = _square_images()
    masks = images > 0
    figure = np.asarray(reconstruction_figure(ZeroReconstruction(), images, masks=masks))
    plain = np.asarray(reconstruction_figure(ZeroReconstruction(), images))
    assert not (plain == CYAN).all(axis=-1).any()
    outline = (figure == CYAN).all(axis=-1)
    assert outline.any()
    # the pixels inside the square keep their colour: the ring lies around them
    panels = reconstruction_panels(ZeroReconstruction(), images)
    inside = np.kron(panels.inputs[0][1:4, 4:7], np.ones((12, 12, 1), np.uint8))
    assert _find(figure, inside)


def test_figure_row_titles_and_scales_render(digits_pca):
    pca, test, _ = digits_pca
    for scale in ("shared", "per_detector", "per_image", (0.0, 1.0)):
        figure = reconstruction_figure(
            {"a": pca, "b": pca}, test[:2], scale=scale, row_titles=["x", "y"], cmap="viridis"
        )
        assert figure.width > 0
    with pytest.raises(ValueError, match="row_titles"):
        reconstruction_figure(pca, test[:2], row_titles=["only one"])
    with pytest.raises(ValueError, match="mask_color"):
        reconstruction_figure(pca, test[:2], mask_color=(0, 0, 300))
    with pytest.raises(ValueError, match="upscale"):
        reconstruction_figure(pca, test[:2], upscale=0)


def test_figure_refuses_a_boolean_mask_color(digits_pca):
    pca, test, _ = digits_pca
    masks = np.zeros((2, 8, 8), bool)
    with pytest.raises(ValueError, match="mask_color"):  # not silently (1, 0, 1)
        reconstruction_figure(pca, test[:2], masks=masks, mask_color=(True, False, True))


def test_figure_is_saved_without_overwriting(tmp_path, digits_pca):
    pca, test, _ = digits_pca
    X = test[:2].copy()
    path = tmp_path / "figure.png"
    figure = reconstruction_figure(pca, X, path=path)
    np.testing.assert_array_equal(X, test[:2])
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), np.asarray(figure))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        reconstruction_figure(pca, X, path=path, upscale=2)
    assert path.read_bytes() == before
    with pytest.raises(TypeError, match="overwrite must be a bool"):
        reconstruction_figure(pca, X, path=path, upscale=2, overwrite="no")
    assert path.read_bytes() == before
    reconstruction_figure(pca, X, path=str(path), upscale=2, overwrite=True)
    assert path.read_bytes() != before


def test_figure_path_that_is_a_folder_or_a_dangling_link(tmp_path, digits_pca):
    pca, test, _ = digits_pca
    for overwrite in (False, True):
        with pytest.raises(IsADirectoryError, match="is a folder; pass a file path"):
            reconstruction_figure(pca, test[:2], path=tmp_path, overwrite=overwrite)
    if not hasattr(os, "symlink") or sys.platform == "win32":
        pytest.skip("symbolic links need privileges on Windows")
    link = tmp_path / "figure.png"
    link.symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        reconstruction_figure(pca, test[:2], path=link)
    assert not (tmp_path / "elsewhere.png").exists()
    reconstruction_figure(pca, test[:2], path=link, overwrite=True)  # replaces the link itself
    assert not link.is_symlink() and not (tmp_path / "elsewhere.png").exists()


@pytest.mark.parametrize("scale", ["shared", "per_detector", "per_image"])
def test_figure_is_wide_enough_for_every_text_it_draws(monkeypatch, scale):
    from PIL import ImageDraw

    X = np.random.default_rng(0).random((30, 64))
    det = PCADetector(n_components=3).fit(X)
    drawn, text = [], ImageDraw.ImageDraw.text

    def record(self, xy, string, *args, **kwargs):
        drawn.append((string, self.textbbox(xy, string, font=kwargs["font"])[2]))
        return text(self, xy, string, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    figure = reconstruction_figure(
        det, X[:2], image_shape=(8, 8), scale=scale, overlay=False, upscale=1
    )
    assert drawn and all(right <= figure.width for _, right in drawn), drawn


def test_boolean_images_show_true_as_white():
    X = np.random.default_rng(0).random((30, 16)) > 0.5
    panels = reconstruction_panels(PCADetector(n_components=2).fit(X), X[:2], image_shape=(4, 4))
    inputs = panels.inputs.reshape(2, -1, 3)
    np.testing.assert_array_equal(inputs, np.where(X[:2, :, None], 255, 0).repeat(3, -1))


# ------------------------------------------------------------ matplotlib
def test_plot_roc_draws_the_curve_and_the_threshold(digits_pca):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    pca, test, labels = digits_pca
    X = test.reshape(len(test), -1)
    ax = plot_roc(pca, X, labels, name="PCA")
    ax = plot_roc(PCADetector(n_components=2).fit(X[labels == 0]), X, labels, ax=ax)
    names = ax.get_legend_handles_labels()[1]
    assert names.count("chance") == 1
    assert names[1] == "PCA (AUROC = 0.976)"
    flagged = pca.predict(X) == -1
    point = ax.lines[2].get_xydata()[0]
    np.testing.assert_allclose(point, [flagged[labels == 0].mean(), flagged[labels == 1].mean()])
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="anomalies"):
        plot_roc(pca, X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="plot_roc needs normal samples"):
        plot_roc(pca, X, np.ones(len(X), int))
    # A detector from elsewhere that scores NaN: refused, not ranked.
    broken = copy.copy(pca)
    broken.score_samples = lambda X: np.where(np.arange(len(X)) == 3, np.nan, 0.0)
    with pytest.raises(ValueError, match=r"score_samples contains NaN .* index 3"):
        plot_roc(broken, X, labels)
    for y in (labels, None):  # without labels too: a NaN is not left out of the counts
        with pytest.raises(ValueError, match=r"score_samples contains NaN .* index 3"):
            plot_score_histogram(broken, X, y)


def test_plot_score_histogram_draws_the_threshold(digits_pca):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    pca, test, labels = digits_pca
    X = test.reshape(len(test), -1)
    ax = plot_score_histogram(pca, X, labels, bins=20)
    assert ax.lines[0].get_xdata()[0] == pytest.approx(pca.offset_)
    counts = sum(patch.get_height() for patch in ax.patches if patch.get_width() > 0)
    assert counts >= len(X)
    plt.close(ax.figure)
    ax = plot_score_histogram(pca, X)
    assert ax.get_legend_handles_labels()[1][1] == "samples"
    plt.close(ax.figure)
    for label in (0, 1):  # labels of one class only: one histogram is empty
        part = X[labels == label]
        ax = plot_score_histogram(pca, part, np.full(len(part), label))
        assert sum(bar.get_height() for bars in ax.containers for bar in bars) == len(part)
        plt.close(ax.figure)


def test_plots_draw_an_overflowing_score_as_the_most_anomalous(digits_pca):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    pca, test, labels = digits_pca
    X = test.reshape(len(test), -1).astype(np.float64)
    X[np.flatnonzero(labels == 1)[0]] = 1.5e200  # its score overflows to -inf
    with pytest.warns(UserWarning, match="overflowed"):
        scores = pca.score_samples(X)
    assert np.isneginf(scores).sum() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ax = plot_roc(pca, X, labels, name="PCA")
        expected = roc_auc_score(labels, rankdata(-scores))
        assert ax.get_legend_handles_labels()[1][1] == f"PCA (AUROC = {expected:.3f})"
        plt.close(ax.figure)
        ax = plot_score_histogram(pca, X, labels)
    assert ax.get_legend_handles_labels()[1][2] == "anomaly (1), 1 infinite (in the end bin)"
    assert sum(bar.get_height() for bars in ax.containers for bar in bars) == len(X)
    plt.close(ax.figure)


def test_panels_refuse_a_squared_difference_that_overflows(digits_pca):
    # A detector fitted on rows has no anomaly_map: the panels square its difference
    # themselves, which overflows for finite values near 1e160.
    pca, test, _ = digits_pca
    X = test[:2].reshape(2, -1).astype(np.float64)
    X[0, 0] = 1e160
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match=r"squared difference .*overflows.*rescale X"):
            reconstruction_panels(pca, X, image_shape=(8, 8))


def test_plots_name_the_extra_when_matplotlib_is_missing(monkeypatch, digits_pca):
    pca, test, labels = digits_pca
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[plot\]\""):
        plot_roc(pca, test.reshape(len(test), -1), labels)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[plot\]\""):
        plot_score_histogram(pca, test.reshape(len(test), -1))


def test_importing_visualization_does_not_need_matplotlib(monkeypatch):
    import importlib

    import anomalib_lite.visualization as visualization

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # any import of it fails
    importlib.reload(visualization)
    assert visualization.colorize([0.0, 1.0]).shape == (2, 3)
