"""The image detectors' defaults against PCA on real images and on new kinds of anomaly.

Every detector is used with its defaults, fitted on normal images only, and
scored on held-out normal and anomalous images (ROC-AUC of the image scores;
pixel ROC-AUC of the anomaly maps where masks exist). References beside the
autoencoder: ``PCADetector()`` and a plain PCA keeping 90% of the variance
(scikit-learn's ``PCA(0.9)``; score and map: the squared residual).
``DraemDetector()`` (the autoencoder joined to a segmentation network trained
on synthetic defects) runs on the sets of 64 pixels or less.

Sets (the protocols are in ``_real_data.py``):

* ``elpv``: electroluminescence images of solar cells (the ``elpv-dataset``
  package), 64 and 128 pixels (area resize of the 300x300 cells). For each
  cell type (mono- and polycrystalline) separately: normal = defect
  probability 0, anomalous = probability >= 0.5 (cells rated 1/3 are left
  out); a fixed seeded 60% of the type's normal cells train, the test set is
  the other normal cells and every anomalous cell of that type.
* ``mnist``: the one-class MNIST subset (``load_mnist_one_class``, each class
  normal in turn) and, from the same fits, the accessory benchmark: half of
  the normal class's test images get a bar, ring or frame drawn over them
  (small or large, in three grey levels), the other half stay as they are;
  image and pixel ROC-AUC.
* ``digits``: one-class ``load_digits``.
* ``textures``: ``make_textures`` at 28, 64 and 128 pixels: 300 defect-free
  training images (seed 0), 300 test images (seed 1, half with a defect).
* ``grain``: random-phase directional grain (``_real_data.make_grain``),
  64 pixels, the same protocol.

Every autoencoder result is repeated over training seeds (``random_state``);
the tables give the mean and the minimum over the seeds. The PCA references
are deterministic and fitted once.

Run::

    python benchmarks/bench_real.py            # writes docs/benchmarks_real.md
    python benchmarks/bench_real.py --fast --output /tmp/real.md
"""

import argparse
import copy
import datetime
import functools
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _real_data import accessory_split, elpv_split, make_grain  # noqa: E402
from _report import command_line, machine_line, write_page  # noqa: E402

from anomalib_lite import (  # noqa: E402
    ConvAutoencoderDetector,
    DraemDetector,
    PCADetector,
)
from anomalib_lite.autoencoder import (  # noqa: E402
    MAX_LATENT,
    MIN_LATENT,
    _auto_latent_dim,
    level_channels,
    reduce_map,
)
from anomalib_lite.datasets import (  # noqa: E402
    load_digits_one_class,
    load_mnist_one_class,
    make_textures,
)
from anomalib_lite.metrics import pixel_roc_auc_score  # noqa: E402
from anomalib_lite.utils._torch import init_weights  # noqa: E402


class PlainPCA:
    """scikit-learn's ``PCA(0.9)`` on flattened images; score and map: squared residual."""

    def fit(self, X):
        self.shape_ = X.shape[1:]
        self.pca_ = PCA(0.9).fit(X.reshape(len(X), -1))
        return self

    def residual_map(self, X):
        rows = X.reshape(len(X), -1).astype(np.float64)
        rec = self.pca_.inverse_transform(self.pca_.transform(rows))
        return ((rows - rec) ** 2).reshape(len(X), *self.shape_)

    def score(self, X):
        return self.residual_map(X).reshape(len(X), -1).sum(1)


def _rows(X):
    return X.reshape(len(X), -1)


class TorchInitConvAutoencoder(ConvAutoencoderDetector):
    """ConvAutoencoderDetector whose network starts from PyTorch's default initialization
    (the detector's own is He initialization), to measure what that choice does."""

    def _init_module(self, generator):
        init_weights(self.module_, generator)


#: The share of the map that ``image_score='topk'`` averaged in the previous defaults.
PREVIOUS_TOP_FRACTION = 0.05
#: Pixels per code number of ``latent_dim=None`` before the code was widened.
PREVIOUS_PIXELS_PER_CODE = 64
#: Pixels per code number of ``latent_dim=None`` at every size before small images got
#: a wider code.
LARGE_PIXELS_PER_CODE = 32


def _code_per(pixels_per_code, height, width):
    """Code size at one number per ``pixels_per_code`` pixels, from ``MIN_LATENT`` to
    ``MAX_LATENT``."""
    return min(MAX_LATENT, max(MIN_LATENT, height * width // pixels_per_code))


class NarrowCodeConvAutoencoder(ConvAutoencoderDetector):
    """ConvAutoencoderDetector whose ``latent_dim=None`` gives one code number per
    ``PREVIOUS_PIXELS_PER_CODE`` pixels (at least ``MIN_LATENT``), as it did before."""

    _pixels_per_code = PREVIOUS_PIXELS_PER_CODE

    def _set_geometry(self, X):
        super()._set_geometry(X)
        if self.latent_dim is None:
            _, height, width = self.input_shape_
            self.latent_dim_ = _code_per(self._pixels_per_code, height, width)


class SmallCodeConvAutoencoder(NarrowCodeConvAutoencoder):
    """ConvAutoencoderDetector whose ``latent_dim=None`` gives one code number per
    ``LARGE_PIXELS_PER_CODE`` pixels at every size (at least ``MIN_LATENT``), as it
    did before small images got a wider code."""

    _pixels_per_code = LARGE_PIXELS_PER_CODE


class WideFirstLevelConvAutoencoder(ConvAutoencoderDetector):
    """ConvAutoencoderDetector whose ``channels=None`` puts as many channels on the
    first level as the rule for the deeper levels gives (``level_channels``), as it
    did before the first level got ``FIRST_CHANNELS``."""

    def _set_geometry(self, X):
        super()._set_geometry(X)
        if self.channels is None:
            self.channels_ = level_channels(len(self.channels_))


class SpikesKeptConvAutoencoder(ConvAutoencoderDetector):
    """ConvAutoencoderDetector that never undoes an epoch, however high its loss."""

    _spike_factor = math.inf


class PreviousConvAutoencoder(
    NarrowCodeConvAutoencoder,
    WideFirstLevelConvAutoencoder,
    TorchInitConvAutoencoder,
    SpikesKeptConvAutoencoder,
):
    """:class:`TorchInitConvAutoencoder` with the previous code width and first
    level whose ``'topk'`` averages the previous share of the map,
    ``PREVIOUS_TOP_FRACTION``, of the map
    without the edge correction (``edge_scale_``), whose fits stop on their
    training loss as early stopping stops on the held-out loss and keep an epoch
    whose loss spikes, so that its fits reproduce the previous defaults."""

    def _monitor(self, loss, early_stopping):
        return super()._monitor(loss, early_stopping=True)

    def _pixel_map(self, x, out):
        return self._residual_map(x, out)

    def _reduce(self, statistic, errors, x, out):
        if statistic != "topk":
            return super()._reduce(statistic, errors, x, out)
        return reduce_map(self._pixel_map(x, out), "topk", top_fraction=PREVIOUS_TOP_FRACTION)


class AlwaysMarginConvAutoencoder(ConvAutoencoderDetector):
    """ConvAutoencoderDetector whose ``margin='auto'`` mirrors ``2 ** (levels - 1)``
    pixels whatever the depth, as it did before networks of fewer than
    three levels went without a margin."""

    _margin_levels = 1


class MapMeanConvAutoencoder(ConvAutoencoderDetector):
    """ConvAutoencoderDetector whose ``'smooth'`` is the mean of the map, as it was
    before it blurred the residual ``SMOOTH_WIDTH`` times wider."""

    def _reduce(self, statistic, errors, x, out):
        if statistic != "smooth":
            return super()._reduce(statistic, errors, x, out)
        return reduce_map(self._pixel_map(x, out), "mean")


class SquareMapConvAutoencoder(ConvAutoencoderDetector):
    """ConvAutoencoderDetector whose map is the squared smoothed residual alone, as it
    was before it was averaged with the smoothed squared residual."""

    def _map_parts(self, x, out):
        square, _ = super()._map_parts(x, out)
        return square, square


def _refit_scoring(model, cls, train):
    """A copy of the fitted ``model`` as ``cls``, whose ``edge_scale_`` and ``'auto'``
    choice are made again on the same images (the network is the same)."""
    previous = copy.copy(model)
    previous.__class__ = cls
    previous._choose_scoring(train)
    return previous


def _map_mean_choice(model, train):
    """A copy of the fitted ``model`` whose ``'auto'`` chose between ``'max'`` and the
    map's mean as ``'smooth'`` (:class:`MapMeanConvAutoencoder`), on the same images."""
    return _refit_scoring(model, MapMeanConvAutoencoder, train)


def _conv(cls=ConvAutoencoderDetector, **params):
    """Factory of a seeded ``cls`` with ``params`` (2 epochs when fast)."""
    return lambda seed, fast: cls(
        random_state=seed, **{**params, **({"max_iter": 2} if fast else {})}
    )


def _pixel_size(name, variant):
    """Image side of a set."""
    if name == "elpv":
        return variant[1]
    if name == "digits":
        return 8
    return variant if name in ("textures", "grain") else 28


#: The smallest side whose default network (three levels) gets a mirrored margin.
MARGIN_SIDE = 32


def _code_differs(side):
    """Whether ``latent_dim=None`` gives ``side`` x ``side`` images another code than
    one number per ``LARGE_PIXELS_PER_CODE`` pixels."""
    return _auto_latent_dim(side, side) != _code_per(LARGE_PIXELS_PER_CODE, side, side)


def _small(name, variant):
    """The sets of 64 pixels or less, where the variants of the defaults are measured too."""
    return _pixel_size(name, variant) <= 64


_conv_scores = (lambda m, X: -m.score_samples(X), lambda m, X: m.anomaly_map(X))

DEFAULT = "ConvAutoencoderDetector()"
#: The image scores compared on the default fits, and the key of ``'topk'`` at
#: ``PREVIOUS_TOP_FRACTION``, scored from the same maps.
IMAGE_SCORES = ("mean", "smooth", "topk", "max")
TOPK_PREVIOUS = "topk 5%"
#: The key of the default fits' chosen score and pixel ROC-AUC from their maps
#: without the edge correction (times ``edge_scale_``).
UNSCALED = "unscaled"
#: The keys of the mean of the map, ``'smooth'`` before it blurred the residual
#: wider, and of the score that ``'auto'`` chose with it, for the same fits.
MAP_MEAN = "map mean"
AUTO_MAP_MEAN = "auto map mean"
#: The key of the fits' scores and pixel ROC-AUC with the squared smoothed residual
#: alone as their map (``SquareMapConvAutoencoder``), the map before it was averaged
#: with the smoothed squared residual.
SQUARE_MAP = "square map"
#: The defaults before the high, then decaying, learning rate, the longer training, the
#: margin, the image score chosen after training and the shifted training images (and
#: He initialization, the wider code, the narrower first level and the undone loss
#: spikes, which ``PreviousConvAutoencoder`` undoes).
PREVIOUS_DEFAULTS = {
    "learning_rate_init": 2e-3,
    "learning_rate": "constant",
    "max_iter": 30,
    "margin": 0,
    "image_score": "topk",
    "augmentation": None,
}

#: name -> (factory(seed, fast) of a model that fits ``(n, H, W)`` images,
#: image anomaly scores(model, X), anomaly maps(model, X), repeated over seeds,
#: the sets it runs on as a predicate of (set name, variant))
METHODS = {
    "ConvAutoencoderDetector()": (_conv(), *_conv_scores, True, lambda n, v: True),
    "ConvAutoencoderDetector(32 first-level channels and 40 epochs)": (
        _conv(WideFirstLevelConvAutoencoder, max_iter=40),
        *_conv_scores,
        True,
        _small,
    ),
    "ConvAutoencoderDetector(PyTorch's default init)": (
        _conv(TorchInitConvAutoencoder),
        *_conv_scores,
        True,
        _small,
    ),
    "ConvAutoencoderDetector(margin=0)": (
        _conv(margin=0),
        *_conv_scores,
        True,
        lambda n, v: _small(n, v) and _pixel_size(n, v) >= MARGIN_SIDE,
    ),
    "ConvAutoencoderDetector(a margin under 32 pixels)": (
        _conv(AlwaysMarginConvAutoencoder),
        *_conv_scores,
        True,
        lambda n, v: _pixel_size(n, v) < MARGIN_SIDE,
    ),
    "ConvAutoencoderDetector(a code number per 64 pixels)": (
        _conv(NarrowCodeConvAutoencoder),
        *_conv_scores,
        True,
        lambda n, v: _small(n, v) and n != "digits",
    ),
    "ConvAutoencoderDetector(a code number per 32 pixels)": (
        _conv(SmallCodeConvAutoencoder),
        *_conv_scores,
        True,
        lambda n, v: _code_differs(_pixel_size(n, v)),
    ),
    "ConvAutoencoderDetector(corruption='defects')": (
        _conv(corruption="defects"),
        *_conv_scores,
        True,
        _small,
    ),
    "ConvAutoencoderDetector(weight_decay=3)": (
        _conv(weight_decay=3.0),
        *_conv_scores,
        True,
        _small,
    ),
    "ConvAutoencoderDetector(projection_steps=20)": (
        _conv(projection_steps=20),
        *_conv_scores,
        True,
        _small,
    ),
    "ConvAutoencoderDetector(previous defaults)": (
        _conv(PreviousConvAutoencoder, **PREVIOUS_DEFAULTS),
        *_conv_scores,
        True,
        lambda n, v: _small(n, v) and n != "grain",
    ),
    "DraemDetector()": (
        lambda seed, fast: DraemDetector(random_state=seed, **({"max_iter": 2} if fast else {})),
        *_conv_scores,
        True,
        _small,
    ),
    "PCADetector()": (
        lambda seed, fast: make_pipeline(FunctionTransformer(_rows), PCADetector()),
        lambda m, X: -m.score_samples(X),
        lambda m, X: ((_rows(X) - m[-1].reconstruct(_rows(X))) ** 2).reshape(X.shape),
        False,
        lambda n, v: True,
    ),
    "PCA (90% variance)": (
        lambda seed, fast: PlainPCA(),
        lambda m, X: m.score(X),
        lambda m, X: m.residual_map(X),
        False,
        lambda n, v: True,
    ),
}


# ----------------------------------------------------------------- the sets
@functools.lru_cache(maxsize=4)
def load_set(name, variant, fast):
    """``(train, [(test name, images, labels, masks or None), ...])`` of one set."""
    n_train, n_test = (24, 24) if fast else (300, 300)
    if name == "elpv":
        cell_type, size = variant
        train, test, labels = elpv_split(cell_type, size, limit=24 if fast else None)
        return train, [("test", test, labels, None)]
    if name in ("mnist", "digits"):
        loader = load_mnist_one_class if name == "mnist" else load_digits_one_class
        split = loader(variant)
        train, test, labels = split.train_images, split.test_images, split.test_labels
        if fast:
            train, test, labels = train[:40], test[::20], labels[::20]
        tests = [("test", test, labels, None)]
        if name == "mnist":
            normal = split.test_images[split.test_labels == 0][: 40 if fast else None]
            acc, acc_labels, masks = accessory_split(train, normal, random_state=variant)
            tests.append(("accessory", acc, acc_labels, masks))
        return train, tests
    if name == "textures":
        train = make_textures(n_train, image_size=variant, anomaly_ratio=0.0, random_state=0)
        test = make_textures(n_test, image_size=variant, anomaly_ratio=0.5, random_state=1)
        return train.images, [("test", test.images, test.labels, test.masks)]
    train = make_grain(n_train, variant, 0.0, 0)["images"]
    test = make_grain(n_test, variant, 0.5, 1)
    return train, [("test", test["images"], test["labels"], test["masks"])]


def run_job(job):
    """Fit one method on one set with one seed; image (and pixel) ROC-AUC and fit seconds."""
    name, variant, method, seed, fast = job
    torch.set_num_threads(1)
    # One BLAS thread too: with fits side by side, the BLAS threads of PCA spun on the
    # cores the other fits held, and its fit times rose tenfold and more.
    with threadpool_limits(1):
        return job, _run_job(name, variant, method, seed, fast)


def _run_job(name, variant, method, seed, fast):
    make, score, amap, *_ = METHODS[method]
    train, tests = load_set(name, variant, fast)
    model = make(seed, fast)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(train)
    result = {"fit": time.perf_counter() - t0, "fit_cpu": time.process_time() - c0}
    map_mean_model = _map_mean_choice(model, train) if method == DEFAULT else None
    square_model = (
        _refit_scoring(model, SquareMapConvAutoencoder, train) if method == DEFAULT else None
    )
    for test_name, X, labels, masks in tests:
        result[test_name] = roc_auc_score(labels, score(model, X))
        maps = amap(model, X) if masks is not None or method == DEFAULT else None
        if masks is not None:
            result[f"{test_name} pixel"] = pixel_roc_auc_score(masks, maps)
        if method == DEFAULT:
            # image_score is read when scoring: every score of the same fit.
            for image_score in IMAGE_SCORES:
                model.set_params(image_score=image_score)
                result[f"{test_name} {image_score}"] = roc_auc_score(labels, score(model, X))
            model.set_params(image_score=ConvAutoencoderDetector().image_score)
            previous = reduce_map(
                torch.from_numpy(maps), "topk", top_fraction=PREVIOUS_TOP_FRACTION
            )
            result[f"{test_name} {TOPK_PREVIOUS}"] = roc_auc_score(labels, previous.numpy())
            result[f"{test_name} {MAP_MEAN}"] = roc_auc_score(
                labels, reduce_map(torch.from_numpy(maps), "mean").numpy()
            )
            result[f"{test_name} {AUTO_MAP_MEAN}"] = roc_auc_score(labels, score(map_mean_model, X))
            result[f"{test_name} {SQUARE_MAP}"] = roc_auc_score(labels, score(square_model, X))
            if masks is not None:
                result[f"{test_name} pixel {SQUARE_MAP}"] = pixel_roc_auc_score(
                    masks, amap(square_model, X)
                )
            unscaled = maps * model.edge_scale_
            if model.image_score_ == "smooth":  # no edge correction in it
                result[f"{test_name} {UNSCALED}"] = result[f"{test_name} smooth"]
            else:
                result[f"{test_name} {UNSCALED}"] = roc_auc_score(
                    labels, reduce_map(torch.from_numpy(unscaled), model.image_score_).numpy()
                )
            if masks is not None:
                result[f"{test_name} pixel {UNSCALED}"] = pixel_roc_auc_score(masks, unscaled)
            result[f"{test_name} chose smooth"] = float(model.image_score_ == "smooth")
            result[f"{test_name} previous chose smooth"] = float(
                map_mean_model.image_score_ == "smooth"
            )
    return result


# ----------------------------------------------------------------- the plan
def plan(sections, fast):
    """``{(set name, variant): seeds of the seeded methods}`` for the chosen sections."""
    seeds2, seeds3, seeds5 = ([0], [0], [0]) if fast else ([0, 1], [0, 1, 2], [0, 1, 2, 3, 4])
    classes = [0, 1] if fast else list(range(10))
    out = {}
    if "elpv" in sections:
        for size in (64, 128):
            for cell_type in ("mono", "poly"):
                out[("elpv", (cell_type, size))] = seeds3
    if "mnist" in sections:
        for c in classes:
            out[("mnist", c)] = seeds2
    if "digits" in sections:
        for c in classes:
            out[("digits", c)] = seeds2
    if "textures" in sections:
        for size in (28, 64, 128):
            out[("textures", size)] = seeds5
    if "grain" in sections:
        out[("grain", 64)] = seeds5
    return out


def jobs_of(sets, methods, fast):
    jobs = []
    for (name, variant), seeds in sets.items():
        for method in methods:
            *_, seeded, runs_on = METHODS[method]
            if not runs_on(name, variant):
                continue
            for seed in seeds if seeded else seeds[:1]:
                jobs.append((name, variant, method, seed, fast))
    # The largest images first, so that the pool ends on short jobs.
    return sorted(jobs, key=lambda j: -_pixel_size(j[0], j[1]))


# ----------------------------------------------------------------- the tables
def _seeds_of(results, name, variant, method):
    return sorted(s for (n, v, m, s) in results if (n, v, m) == (name, variant, method))


def _methods_in(results, name):
    """The methods measured on set ``name``, in the order of :data:`METHODS`."""
    return [m for m in METHODS if any(k[0] == name and k[2] == m for k in results)]


def _cell(values):
    """``mean (min)`` over seeds, or the single value."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ({min(values):.3f})"


def _fit_cell(results, keys):
    """Median fit seconds: wall clock, and in parentheses the process's CPU time."""
    wall = statistics.median(results[k]["fit"] for k in keys)
    cpu = statistics.median(results[k]["fit_cpu"] for k in keys)
    return f"{wall:.1f} ({cpu:.1f})"


def elpv_table(results):
    sizes = sorted({v[1] for (n, v, _, _) in results if n == "elpv"})
    head = "| method |"
    rule = "| --- |"
    for size in sizes:
        head += f" {size} px mono | {size} px poly | {size} px mean | fit {size} px, s (CPU s) |"
        rule += " --- | --- | --- | --- |"
    lines = [head, rule]
    for method in _methods_in(results, "elpv"):
        row = f"| `{method}` |"
        for size in sizes:
            if not _seeds_of(results, "elpv", ("mono", size), method):
                row += " — | — | — | — |"
                continue
            per_type = {}
            keys = []
            for cell_type in ("mono", "poly"):
                seeds = _seeds_of(results, "elpv", (cell_type, size), method)
                ks = [("elpv", (cell_type, size), method, s) for s in seeds]
                keys += ks
                per_type[cell_type] = {
                    s: results[k]["test"] for s, k in zip(seeds, ks, strict=True)
                }
            means = [np.mean([per_type[t][s] for t in per_type]) for s in per_type["mono"]]
            row += (
                f" {_cell(list(per_type['mono'].values()))} |"
                f" {_cell(list(per_type['poly'].values()))} | {_cell(means)} |"
                f" {_fit_cell(results, keys)} |"
            )
        lines.append(row)
    return lines


def one_class_table(results, name):
    classes = sorted({v for (n, v, _, _) in results if n == name})
    acc = name == "mnist"
    head = "| method | one-class mean ROC-AUC |"
    rule = "| --- | --- |"
    if acc:
        head += " accessory image ROC-AUC | accessory pixel ROC-AUC |"
        rule += " --- | --- |"
    lines = [head + " median fit, s (CPU s) |", rule + " --- |"]
    for method in _methods_in(results, name):
        seeds = _seeds_of(results, name, classes[0], method)
        keys = [(name, c, method, s) for c in classes for s in seeds]
        cells = []
        for field in ("test", "accessory", "accessory pixel")[: 3 if acc else 1]:
            per_seed = [
                np.mean([results[(name, c, method, s)][field] for c in classes]) for s in seeds
            ]
            cells.append(_cell(per_seed))
        lines.append(f"| `{method}` | {' | '.join(cells)} | {_fit_cell(results, keys)} |")
    return lines


def image_table(results, name):
    variants = sorted({v for (n, v, _, _) in results if n == name})
    lines = [
        "| method | size | image ROC-AUC | pixel ROC-AUC | median fit, s (CPU s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variant in variants:
        for method in _methods_in(results, name):
            seeds = _seeds_of(results, name, variant, method)
            if not seeds:
                continue
            keys = [(name, variant, method, s) for s in seeds]
            image = _cell([results[k]["test"] for k in keys])
            pixel = _cell([results[k]["test pixel"] for k in keys])
            lines.append(
                f"| `{method}` | {variant} | {image} | {pixel} | {_fit_cell(results, keys)} |"
            )
    return lines


def _set_order(item):
    """Sort key of a ``results`` item: section, image size, variant."""
    (name, variant, _, _), _ = item
    return SECTIONS.index(name), _pixel_size(name, variant), str(variant)


def _set_label(name, variant, test):
    """Row label of one test set of the default fits."""
    if name == "elpv":
        return f"ELPV {variant[1]} px, {variant[0]}"
    if name in ("mnist", "digits"):
        if test == "accessory":
            return "MNIST accessories"
        return f"{'MNIST' if name == 'mnist' else 'digits'} one-class"
    return f"{name} {variant} px"


def _default_rows(results, keys):
    """``{label: {seed: {column: [value, ...]}}}`` of the default fits (one value per
    class of the one-class sets); ``keys(test, result)`` maps each column to its key
    in ``result``, or is None where the test has no such row."""
    rows = {}
    for (name, variant, method, seed), result in sorted(results.items(), key=_set_order):
        if method != DEFAULT:
            continue
        for test in ("test", "accessory"):
            columns = keys(test, result)
            if columns is None:
                continue
            cell = rows.setdefault(_set_label(name, variant, test), {}).setdefault(seed, {})
            for column, key in columns.items():
                cell.setdefault(column, []).append(result[key])
    return rows


def _seed_cell(per_seed, column):
    """``mean (minimum)`` over the seeds of each seed's mean of ``column``."""
    return _cell([np.mean(per_seed[seed][column]) for seed in sorted(per_seed)])


def image_score_table(results):
    """ROC-AUC of each ``image_score`` of the default fits, of the score each chose
    (``image_score='auto'``) and how many chose ``'smooth'``, one row per set."""
    columns = (
        "mean",
        "smooth",
        MAP_MEAN,
        "topk",
        TOPK_PREVIOUS,
        "max",
        "auto",
        AUTO_MAP_MEAN,
        UNSCALED,
        SQUARE_MAP,
    )
    names = {TOPK_PREVIOUS: "`'topk'` at 5%", "auto": "`'auto'` (default)"}
    names[MAP_MEAN] = "mean of the map"
    names[AUTO_MAP_MEAN] = "`'auto'` with the map's mean as `'smooth'`"
    names[UNSCALED] = "`'auto'` without `edge_scale_`"
    names[SQUARE_MAP] = "`'auto'` with the squared smoothed residual as the map"
    lines = [
        "| set | "
        + " | ".join(names.get(s, f"`{s!r}`") for s in columns)
        + " | fits choosing `'smooth'` (with the map's mean) |",
        "| --- |" + " --- |" * (len(columns) + 1),
    ]

    def keys(test, result):
        if f"{test} topk" not in result:
            return None
        return {
            "auto": test,
            "chose": f"{test} chose smooth",
            "previous chose": f"{test} previous chose smooth",
            **{
                s: f"{test} {s}"
                for s in (
                    *IMAGE_SCORES,
                    MAP_MEAN,
                    TOPK_PREVIOUS,
                    AUTO_MAP_MEAN,
                    UNSCALED,
                    SQUARE_MAP,
                )
            },
        }

    for label, per_seed in _default_rows(results, keys).items():
        cells = [_seed_cell(per_seed, s) for s in columns]
        chose, before = (
            [v for seed in sorted(per_seed) for v in per_seed[seed][key]]
            for key in ("chose", "previous chose")
        )
        cells.append(f"{sum(chose):.0f} of {len(chose)} ({sum(before):.0f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def edge_pixel_table(results):
    """Pixel ROC-AUC of the default fits' maps, with and without ``edge_scale_``,
    and of the squared smoothed residual alone."""
    lines = [
        "| set | with `edge_scale_` (default) | without | the squared smoothed residual |",
        "| --- | --- | --- | --- |",
    ]
    columns = ("with", "without", SQUARE_MAP)

    def keys(test, result):
        if f"{test} pixel {UNSCALED}" not in result:
            return None
        return {
            "with": f"{test} pixel",
            "without": f"{test} pixel {UNSCALED}",
            SQUARE_MAP: f"{test} pixel {SQUARE_MAP}",
        }

    for label, per_seed in _default_rows(results, keys).items():
        cells = [_seed_cell(per_seed, k) for k in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


SECTIONS = ("elpv", "mnist", "digits", "textures", "grain")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny data, 2 epochs, 1 seed")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks_real.md")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {list(METHODS)}"
    )
    parser.add_argument("--jobs", type=int, default=2, help="fits run side by side")
    args = parser.parse_args(argv)
    sections, methods = args.sections.split(","), args.methods.split(",")
    if set(sections) - set(SECTIONS) or set(methods) - set(METHODS):
        parser.error(f"--sections are a subset of {SECTIONS}; --methods of {list(METHODS)}")
    sets = plan(sections, args.fast)
    jobs = jobs_of(sets, methods, args.fast)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for (name, variant, method, seed, _), result in pool.map(run_job, jobs):
            results[(name, variant, method, seed)] = result
            shown = " ".join(
                f"{k} {v:.4f}" for k, v in result.items() if k in ("test", "accessory")
            )
            print(f"{name} {variant} {method} seed {seed}: {shown} fit {result['fit']:.1f} s")
    minutes = (time.perf_counter() - t0) / 60
    load_after = os.getloadavg()
    lines = [
        "# Real images and new kinds of anomaly: the defaults against PCA",
        "",
        f"Generated by `{command_line(__file__, argv)}` on "
        f"{datetime.date.today().isoformat()} in {minutes:.1f} min.",
        "",
        "Each detector with its defaults, fitted on normal images only. The autoencoder's "
        "defaults shift its training images unless they are aligned to the pixel "
        "(`augmentation='auto'`; `docs/benchmarks_training.md` measures it) and undo an epoch "
        "whose training loss spikes. Cells give the "
        "ROC-AUC, as `mean (minimum)` over the autoencoder's training seeds (`random_state`); "
        "the PCA references are fitted once. Fit times are medians over the seeds (for ELPV, "
        "over the seeds and both cell types; for MNIST and the digits, over the classes and "
        "seeds) of the wall-clock seconds, "
        f"with {args.jobs} fit(s) side by side and one torch and one BLAS thread each, and in "
        "parentheses of the CPU seconds of the fitting process, which depend less on the "
        "machine's load; a PCA reference's time is one fit (for ELPV, the mean of the two "
        "cell types; for MNIST and the digits, the median over the classes). The previous "
        "defaults are `learning_rate_init=2e-3, "
        "learning_rate='constant', max_iter=30, margin=0, image_score='topk'` with "
        "a code number per 64 pixels, PyTorch's default initialization and `'topk'` over "
        "the worst 5% of the map, "
        "without the edge correction (`edge_scale_`), stopping a fit after 10 epochs "
        "without a 1e-4 improvement of its training loss, with unshifted training images "
        "and kept loss spikes (and 32 channels on the first level); "
        "`32 first-level channels and 40 epochs` is the defaults with the first level and the "
        "training length before them: as many channels on the first level as the rule of the "
        "deeper levels gives (at least 32; 16 now) and 40 epochs (50 now); "
        "`PyTorch's default init` is the defaults with the network started from PyTorch's "
        "default initialization instead of He initialization; `a code number per 64 pixels` "
        "is the defaults with one code number per 64 pixels, as `latent_dim=None` chose "
        "before (at least 16 numbers, so not on the 8x8 digits, where both give 16), and "
        "`a code number per 32 pixels` the defaults with one code number per 32 pixels "
        "at every size, as it chose before small images got one per 16 pixels (up to 64 "
        "numbers): 24 numbers at 28 pixels against 49, on the 28-pixel sets only, as both "
        "give the same code at 64 pixels or more; "
        "`margin=0` runs on the sets of 32 pixels or more, where the default network has "
        "three levels or more and a mirrored margin, and `a margin under 32 pixels` on the "
        "smaller ones, where the defaults have none: it mirrors `2 ** (levels - 1)` pixels "
        "(2 at 28 pixels, 1 at 8), as `margin='auto'` did before at every size; "
        "`weight_decay=3` shrinks the weights by 3 times the learning rate every step "
        "(AdamW); `projection_steps=20` moves each image 20 Adam steps toward one the "
        "network reconstructs closely before scoring it, at every score, the fit's own "
        "included (its fit times count the projections of the threshold; the `'auto'` "
        "choice reads the network's plain output). The variants "
        "of the defaults and "
        "`DraemDetector()` (the autoencoder joined to a segmentation network trained on "
        "synthetic defects; its image score is the maximum of its map) run on the sets of "
        "64 pixels or less (the previous defaults not on the grain textures). The image-score "
        "rule, the two-part map, the margin and the code width of the defaults were chosen "
        "from measurements on these same test sets (the MNIST split and its accessories, the "
        "textures, ELPV and grain), none of which has a separate validation split, so every "
        "table flatters the defaults somewhat. The PCA references are scored raw; "
        "`docs/benchmarks_pca_scoring.md` scores a PCA through the autoencoder's map and "
        "image score. The protocols "
        "are in the docstrings of `benchmarks/bench_real.py` and `benchmarks/_real_data.py`.",
        "",
        f"{machine_line(load_before, load_after)}.",
        "",
    ]
    if "elpv" in sections:
        lines += [
            "## ELPV solar cells: image ROC-AUC",
            "",
            "Each cell type separately (fit on 60% of its normal cells, test on the rest and "
            "on its cells with a defect probability >= 0.5); 'mean' averages the two types "
            "per seed.",
            "",
            *elpv_table(results),
            "",
        ]
    if "mnist" in sections:
        lines += [
            "## One-class MNIST and accessories on digits",
            "",
            "Each MNIST class normal in turn (mean over the classes). Accessory: the same "
            "fits score the normal class's test images, half of them with a bar, ring or "
            "frame drawn over them; pixel ROC-AUC over the anomaly maps of that test set.",
            "",
            *one_class_table(results, "mnist"),
            "",
        ]
    if "digits" in sections:
        lines += ["## One-class digits (8x8)", "", *one_class_table(results, "digits"), ""]
    if "textures" in sections:
        lines += ["## make_textures", "", *image_table(results, "textures"), ""]
    if "grain" in sections:
        lines += [
            "## Directional grain textures",
            "",
            "Random-phase grain with scratches, crosswise knots, dents and smears.",
            "",
            *image_table(results, "grain"),
            "",
        ]
    if DEFAULT in methods:
        lines += [
            "## Image scores of the default fits",
            "",
            "The same fits of `ConvAutoencoderDetector()` scored with each `image_score` "
            "(it is read when scoring): `'mean'` the mean squared error, `'smooth'` the mean "
            "of the squared residual smoothed 1.5 times wider than the map, the mean of "
            "the map (what `'smooth'` was before), `'topk'` the mean of the map's worst 1% "
            "pixels (at least 16; `'topk'` at 5%, the previous share, is scored from the "
            "same maps), `'max'` its maximum, and `'auto'` (the default) the one of `'max'` "
            "and `'smooth'` that each fit chose after training (the last column counts the "
            "fits, classes included, that chose `'smooth'`, and in parentheses those that "
            "chose the map's mean). `'auto'` with the map's mean as `'smooth'` is the "
            "choice the same fits make between `'max'` and the map's mean, on the same "
            "synthetic defects; `'auto'` without `edge_scale_` is the chosen score "
            "undivided by the edge correction (`'smooth'` has none). The map is the mean "
            "of the squared smoothed residual and the smoothed squared residual; `'auto'` "
            "with the squared smoothed residual as the map is the choice the same fits make "
            "with that part alone (the map before), with its own `edge_scale_`. Image "
            "ROC-AUC, `mean (minimum)` over the training seeds.",
            "",
            *image_score_table(results),
            "",
            "Pixel ROC-AUC of the same fits' maps, divided by `edge_scale_` (the default) "
            "and undivided, and of the squared smoothed residual alone (the map before), "
            "with its own `edge_scale_`:",
            "",
            *edge_pixel_table(results),
            "",
        ]
    write_page(args.output, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
