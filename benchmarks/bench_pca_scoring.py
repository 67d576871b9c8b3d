"""How much of the autoencoder's lead over PCA in ``bench_real`` is its scoring.

``bench_real`` scores its PCA references by the raw squared residual: the sum
over the image, and the residual itself as the map. The autoencoder's residual
goes through more: its map is the two-part smoothed map divided by the edge
correction (``edge_scale_``), and its image score is the one of ``'max'`` and
``'smooth'`` that each fit chooses from synthetic defects pasted into its
training images. Here a PCA keeping 90% of the variance (the reference
``PCA (90% variance)``) is scored both ways: raw, and through that same
scoring code, as the network of a ``ConvAutoencoderDetector`` whose training is
a PCA fit (:class:`PCAScoredAsAutoencoder`). ``PCADetector``'s own maps are
measured beside them, unsmoothed and with ``smoothing='auto'``. The sets and protocols are
``bench_real``'s (seeded, so that each row repeats exactly); PCA is
deterministic, so each set is fitted once. The autoencoder's own rows are in
``docs/benchmarks_real.md``.

Run::

    python benchmarks/bench_pca_scoring.py     # writes docs/benchmarks_pca_scoring.md
    python benchmarks/bench_pca_scoring.py --fast --output /tmp/pca_scoring.md
"""

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import command_line, machine_line, write_page  # noqa: E402
from bench_real import PlainPCA, load_set  # noqa: E402

from anomalib_lite import ConvAutoencoderDetector, PCADetector  # noqa: E402
from anomalib_lite.metrics import pixel_roc_auc_score  # noqa: E402

#: Share of the variance the PCA keeps, as bench_real's reference.
VARIANCE = 0.9
#: ``(set name, variant, label)``: bench_real's sets of 64 pixels or less.
SETS = [
    ("textures", 28, "textures 28 px"),
    ("textures", 64, "textures 64 px"),
    ("grain", 64, "grain 64 px"),
    ("elpv", ("mono", 64), "ELPV 64 px, mono"),
    ("elpv", ("poly", 64), "ELPV 64 px, poly"),
    *[("mnist", c, f"MNIST class {c}") for c in range(10)],
]


class _PCANetwork(nn.Module):
    """Linear projection onto principal components: ``mean + (x - mean) V^T V``."""

    def __init__(self, shape):
        super().__init__()
        n = int(np.prod(shape))
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("components", torch.zeros(0, n))

    def forward(self, x):
        flat = x.flatten(1) - self.mean
        return (flat @ self.components.T @ self.components + self.mean).view(x.shape)


class PCAScoredAsAutoencoder(ConvAutoencoderDetector):
    """A ``ConvAutoencoderDetector`` whose network is a PCA keeping ``VARIANCE``.

    Its training is one PCA fit on the training images as the network would see
    them (standardized, with the default margin), so that everything after the
    network (the map, ``edge_scale_``, the ``'auto'`` image score and its
    choice) is the library's own code.
    """

    def _make_module(self):
        return _PCANetwork((self.input_shape_[0], *self._padded_size()))

    def _init_module(self, generator):
        pass

    def _train(self, x, *, early_stopping, constant_lr=False):
        flat = x.flatten(1).double().numpy()  # standardized, padded images
        pca = PCA(VARIANCE, svd_solver="full").fit(flat)
        self.module_.mean = torch.as_tensor(pca.mean_, dtype=torch.float32)
        self.module_.components = torch.as_tensor(pca.components_, dtype=torch.float32)
        self.n_iter_ = 1
        self.history_ = [{"epoch": 1, "train_loss": float(pca.noise_variance_)}]


def measure(name, variant, fast):
    """Image (and pixel) ROC-AUC of the set's tests, PCA scored raw and as the autoencoder."""
    train, tests = load_set(name, variant, fast)
    raw = PlainPCA().fit(train)
    detectors = {
        smoothing: PCADetector(n_components=VARIANCE, smoothing=smoothing).fit(train)
        for smoothing in (0.0, "auto")
    }
    largest = PCADetector(n_components=VARIANCE, statistic="max", smoothing="auto").fit(train)
    t0 = time.perf_counter()
    chooser = PCADetector(
        n_components=VARIANCE, statistic="auto", smoothing="auto", random_state=0
    ).fit(train)
    chooser_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    mapped = PCAScoredAsAutoencoder(random_state=0).fit(train)
    seconds = time.perf_counter() - t0
    rows = []
    for test_name, X, labels, masks in tests:
        row = {
            "test": test_name,
            "raw": roc_auc_score(labels, raw.score(X)),
            "auto": roc_auc_score(labels, -mapped.score_samples(X)),
            "chosen": mapped.image_score_,
            "detector max": roc_auc_score(labels, -largest.score_samples(X)),
            "detector auto": roc_auc_score(labels, -chooser.score_samples(X)),
            "detector chosen": chooser.statistic_,
            "seconds": seconds,
            "detector seconds": chooser_seconds,
        }
        for statistic in ("max", "smooth"):
            mapped.set_params(image_score=statistic)
            row[statistic] = roc_auc_score(labels, -mapped.score_samples(X))
        mapped.set_params(image_score="auto")
        if masks is not None:
            row["raw pixel"] = pixel_roc_auc_score(masks, raw.residual_map(X))
            row["pixel"] = pixel_roc_auc_score(masks, mapped.anomaly_map(X))
            row["detector pixel"] = pixel_roc_auc_score(masks, detectors[0.0].anomaly_map(X))
            row["smoothed pixel"] = pixel_roc_auc_score(masks, detectors["auto"].anomaly_map(X))
        rows.append(row)
    return rows


#: The ROC-AUC columns of the table, in order: keys of :func:`measure`'s rows.
COLUMNS = (
    "raw",
    "raw pixel",
    "auto",
    "max",
    "smooth",
    "pixel",
    "detector pixel",
    "smoothed pixel",
    "detector max",
    "detector auto",
)


def _cell(values):
    return f"{np.mean(values):.3f}" if values else "—"


def table(results):
    """One row per set (MNIST: the mean over its classes, per test)."""
    groups = {}
    for (name, _, label), rows in results:
        for row in rows:
            if name != "mnist":
                key = label
            else:
                key = "MNIST one-class" if row["test"] == "test" else "MNIST accessories"
            groups.setdefault(key, []).append(row)
    lines = [
        "| set | raw: image | raw: pixel | as the autoencoder: `'auto'` | `'max'` | `'smooth'` "
        "| pixel | `PCADetector`: pixel | `smoothing='auto'`: pixel | `statistic='max'`: image "
        "| `statistic='auto'`: image | fits choosing `'smooth'` / `'spe'` | fit, s: "
        "as the autoencoder / `statistic='auto'` |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, rows in groups.items():
        cells = " | ".join(_cell([r[c] for r in rows if c in r]) for c in COLUMNS)
        chose = sum(r["chosen"] == "smooth" for r in rows)
        spe = sum(r["detector chosen"] == "spe" for r in rows)
        seconds = np.median([r["seconds"] for r in rows])
        own = np.median([r["detector seconds"] for r in rows])
        lines.append(
            f"| {key} | {cells} | {chose} / {spe} of {len(rows)} | {seconds:.1f} / {own:.1f} |"
        )
    return lines


def _in_fast_run(name, variant, _):
    """The smoke test's sets: the textures and one MNIST class."""
    return name == "textures" or (name == "mnist" and variant == 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="small sets, for the smoke test")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks_pca_scoring.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_before, started = os.getloadavg(), time.perf_counter()
    sets = [s for s in SETS if not args.fast or _in_fast_run(*s)]
    results = [(s, measure(s[0], s[1], args.fast)) for s in sets]
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "# PCA scored as the autoencoder: how much of the gap is the scoring",
        "",
        f"Generated by `{command_line(__file__, argv)}` on {datetime.date.today()} "
        f"in {minutes:.1f} min.",
        "",
        "A PCA keeping 90% of the variance, fitted once per set on its normal training "
        "images (for MNIST, once per class; the rows give the mean over the classes). "
        "`raw` is `docs/benchmarks_real.md`'s `PCA (90% variance)` reference: a PCA of the "
        "images, scored by the sum of the squared residual, with the squared residual as the "
        "map. `as the autoencoder` is a PCA keeping 90% of the variance of the images as the "
        "autoencoder's network sees them (standardized, with the mirrored margin the defaults "
        "add at 32 pixels and more), whose reconstruction goes through "
        "`ConvAutoencoderDetector`'s own scoring: the two-part smoothed map over `edge_scale_` "
        "(`pixel`), and the image "
        "score `'auto'`, the one of `'max'` and `'smooth'` that the fit chose from synthetic "
        "defects pasted into its training images (the columns `'max'` and `'smooth'` score "
        "with each). `PCADetector` is `PCADetector(n_components=0.9)` fitted on the images "
        "as they are, its map the squared residual, and with `smoothing='auto'` the same "
        "two-part smoothed map over its own `edge_scale_`, computed from its residual in "
        "numpy; `statistic='max'` scores an image by the largest pixel of that map, and "
        "`statistic='auto'` by the one of it and the sum of the squared residual (`'spe'`) "
        "that the fit chose from synthetic defects, as the autoencoder chooses. "
        "Image and pixel ROC-AUC on the test sets of `benchmarks/bench_real.py`; "
        "the autoencoder's own rows are in `docs/benchmarks_real.md`. Fit time: the median "
        "wall-clock seconds of the fits, one torch thread.",
        "",
        machine_line(load_before, os.getloadavg()) + ".",
        "",
        *table(results),
        "",
    ]
    write_page(args.output, lines)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
