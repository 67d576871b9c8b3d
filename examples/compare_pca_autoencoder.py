"""PCA against a convolutional autoencoder, on woven textures and on digits.

Both detectors learn from normal images only and score an image by how badly
they reconstruct it:

* ``PCADetector`` projects the flattened image onto the principal subspace of
  the normal images (a linear model, fitted in closed form);
* ``ConvAutoencoderDetector`` squeezes the image through a convolutional
  bottleneck trained with the mean squared error.

Two built-in data sets, nothing downloaded:

* **textures**: ``make_textures`` woven fabrics, half of the test images with
  a planted defect (scratch, spot, hole, crack or stain) and its pixel mask;
* **digits**: scikit-learn's 8x8 digits, one class normal (``0``), every
  other digit an anomaly (``load_digits_one_class``).

The script prints, per data set and detector, the image-level ROC-AUC, the
pixel-level ROC-AUC where masks exist (``anomaly_map``: the per-pixel squared
difference for PCA, its smoothed map for the autoencoder), and the fit and
scoring times; it
saves the input | reconstruction | difference figure of both detectors side
by side for each data set.

Run::

    python examples/compare_pca_autoencoder.py [--fast] [--output-dir DIR] [--seed N]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from anomalib_lite import ConvAutoencoderDetector, PCADetector
from anomalib_lite.datasets import load_digits_one_class, make_textures
from anomalib_lite.metrics import pixel_roc_auc_score
from anomalib_lite.visualization import reconstruction_figure

#: (full, fast) sizes of each run.
SIZES = {
    "texture_train": (400, 60),
    "texture_test": (200, 24),
    "texture_size": (64, 32),
    "ae_epochs": (None, 3),  # None: the detector's default max_iter
    "digits_test": (None, 120),
}


def _size(name, fast):
    return SIZES[name][1 if fast else 0]


def _timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


def evaluate(detectors, train, test, labels, masks=None):
    """Fit every detector on ``train`` and measure it on ``test``.

    Returns one row of results per detector: image ROC-AUC, pixel ROC-AUC
    (None without masks), fit seconds and scoring seconds.
    """
    rows = {}
    for name, det in detectors.items():
        _, fit_s = _timed(det.fit, train)
        scores, score_s = _timed(det.score_samples, test)
        pixel = None if masks is None else pixel_roc_auc_score(masks, det.anomaly_map(test))
        rows[name] = {
            "image ROC-AUC": roc_auc_score(labels, -scores),
            "pixel ROC-AUC": pixel,
            "fit s": fit_s,
            "score s": score_s,
        }
    return rows


def print_table(results):
    """Print one line per (data set, detector)."""
    header = f"{'data set':<10} {'detector':<10} {'image AUC':>9} {'pixel AUC':>9} "
    header += f"{'fit s':>7} {'score s':>7}"
    print(header)
    print("-" * len(header))
    for data_name, rows in results.items():
        for name, row in rows.items():
            pixel = "-" if row["pixel ROC-AUC"] is None else f"{row['pixel ROC-AUC']:.3f}"
            print(
                f"{data_name:<10} {name:<10} {row['image ROC-AUC']:>9.3f} {pixel:>9} "
                f"{row['fit s']:>7.2f} {row['score s']:>7.3f}"
            )


def _epochs(fast):
    epochs = _size("ae_epochs", fast)
    return {} if epochs is None else {"max_iter": epochs}


def _detectors(fast, seed):
    return {
        "PCA": PCADetector(n_components=0.9),
        "ConvAE": ConvAutoencoderDetector(random_state=seed, **_epochs(fast)),
    }


def _pick_rows(labels, kinds, n_rows):
    """One normal image, then anomalies of as many different kinds as fit."""
    picked = [int(np.flatnonzero(labels == 0)[0])]
    for kind in dict.fromkeys(kinds[labels == 1]):
        if len(picked) == n_rows:
            break
        picked.append(int(np.flatnonzero(kinds == kind)[0]))
    return np.array(picked)


def run_textures(fast, seed, output_dir):
    size = _size("texture_size", fast)
    train = make_textures(
        _size("texture_train", fast), image_size=size, anomaly_ratio=0.0, random_state=seed
    )
    test = make_textures(
        _size("texture_test", fast), image_size=size, anomaly_ratio=0.5, random_state=seed + 1
    )
    detectors = _detectors(fast, seed)
    rows = evaluate(detectors, train.images, test.images, test.labels, test.masks)
    picked = _pick_rows(test.labels, test.defect_types, 5)
    reconstruction_figure(
        detectors,
        test.images[picked],
        masks=test.masks[picked],
        row_titles=list(test.defect_types[picked]),
        scale="per_detector",  # the smoothed map has lower peaks than PCA's raw difference
        path=output_dir / "textures_pca_vs_autoencoder.png",
        overwrite=True,
    )
    return rows


def run_digits(fast, seed, output_dir):
    data = load_digits_one_class(normal_class=0, random_state=seed)
    n_test = _size("digits_test", fast) or len(data.test_images)
    test, labels = data.test_images[:n_test], data.test_labels[:n_test]
    detectors = _detectors(fast, seed)
    rows = evaluate(detectors, data.train_images, test, labels)
    picked = _pick_rows(labels, data.test_classes[:n_test].astype(str), 5)
    reconstruction_figure(
        detectors,
        test[picked],
        row_titles=[f"digit {c}" for c in data.test_classes[picked]],
        path=output_dir / "digits_pca_vs_autoencoder.png",
        overwrite=True,
    )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="small data, few epochs")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("ANOMALIB_LITE_FAST") == "1"
    args.output_dir.mkdir(parents=True, exist_ok=True)

    results = {
        "textures": run_textures(fast, args.seed, args.output_dir),
        "digits": run_digits(fast, args.seed, args.output_dir),
    }
    print_table(results)
    print(f"\nFigures written to {args.output_dir}/:")
    print("  textures_pca_vs_autoencoder.png, digits_pca_vs_autoencoder.png")


if __name__ == "__main__":
    main()
