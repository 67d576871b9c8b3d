"""Faces with and without glasses: where does the reconstruction difference lie?

The classic demonstration of reconstruction-based anomaly detection on
CelebA: learn faces *without* glasses, then show faces *with* glasses as
input | reconstruction | difference. The glasses do not reconstruct, so the
difference lights up on them; it also lights up on hair and background,
because normal faces vary widely. This script runs it end to end on a copy of
CelebA that you already have (it downloads nothing):

* fits ``ConvAutoencoderDetector``, ``DraemDetector`` and ``PCADetector``
  on faces without glasses from the ``train`` partition;
* prints the image ROC-AUC of glasses against no glasses on the ``test``
  partition, with fit and scoring times;
* measures where each anomaly map's mass lies: the share inside a band
  around the two eye landmarks (points within 0.45 eye distances of the
  segment between the eyes, where glasses sit), for faces with glasses and
  without, next to the band's share of the image area (the share of a map
  spread evenly);
* saves the input | reconstruction | difference | overlay figure of the
  three detectors for faces with and without glasses, with the band outlined.

Run::

    python examples/faces_with_glasses.py --celeba-dir PATH [--fast] [--output-dir DIR]

``PATH`` holds ``img_align_celeba/`` and the annotation files, or a
``celeba/`` folder with them (torchvision's layout).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from anomalib_lite import ConvAutoencoderDetector, DraemDetector, PCADetector
from anomalib_lite.datasets import load_celeba
from anomalib_lite.visualization import reconstruction_figure, reconstruction_panels

HOW_TO_GET_CELEBA = """\
This example needs CelebA, which it does not download. Get the aligned images
(img_align_celeba.zip) and the files list_attr_celeba.txt, list_eval_partition.txt
and list_landmarks_align_celeba.txt from the CelebA page,
https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, or let torchvision fetch them:
    python -c "import torchvision; torchvision.datasets.CelebA('data', download=True)"
then run
    python examples/faces_with_glasses.py --celeba-dir data
"""
#: Half-width of the eye band, in distances between the two eye landmarks.
BAND = 0.45
#: Faces of each kind drawn in the figure.
ROWS = 4


def eye_band(eyes, size):
    """Boolean masks ``(n, size, size)``: pixels near the segment joining the eyes."""
    y, x = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    points = np.stack([x, y], axis=-1)[None]  # (1, H, W, 2)
    left, right = eyes[:, None, None, 0], eyes[:, None, None, 1]
    along = right - left
    length = np.linalg.norm(along, axis=-1)
    t = np.clip(((points - left) * along).sum(-1) / length**2, 0, 1)
    distance = np.linalg.norm(points - left - t[..., None] * along, axis=-1)
    return distance <= BAND * length


def band_share(maps, band):
    """Share of each map's mass inside its band."""
    maps = np.clip(maps, 0, None)
    return (maps * band).sum(axis=(1, 2)) / np.maximum(maps.sum(axis=(1, 2)), 1e-12)


def timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="Without --celeba-dir: how to get CelebA."
    )
    parser.add_argument("--celeba-dir", type=Path, help="folder of your CelebA copy")
    parser.add_argument("--fast", action="store_true", help="few faces, small, 2 epochs")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "output")
    parser.add_argument("--n-train", type=int, help="faces without glasses (4000; --fast 40)")
    parser.add_argument("--n-test", type=int, help="test faces of each kind (500; --fast 8)")
    parser.add_argument("--image-size", type=int, help="side in pixels (64; --fast 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.celeba_dir is None:
        print(HOW_TO_GET_CELEBA, file=sys.stderr, end="")
        return 2
    fast = args.fast or os.environ.get("ANOMALIB_LITE_FAST") == "1"
    # What is given wins; --fast only shrinks the defaults.
    defaults = (40, 8, 32) if fast else (4000, 500, 64)
    given = (args.n_train, args.n_test, args.image_size)
    n_train, n_test, size = (d if g is None else g for g, d in zip(given, defaults, strict=True))
    args.output_dir.mkdir(parents=True, exist_ok=True)

    options = dict(image_size=size, color_mode="rgb", random_state=args.seed)
    train, load_train = timed(
        lambda: load_celeba(
            args.celeba_dir, partition="train", n_normal=n_train, n_anomalous=0, **options
        )
    )
    test = load_celeba(
        args.celeba_dir, partition="test", n_normal=n_test, n_anomalous=n_test, **options
    )
    print(
        f"{len(train.images)} training faces without glasses ({size}x{size} RGB, loaded in "
        f"{load_train:.1f} s); test: {int((test.labels == 0).sum())} without glasses, "
        f"{int(test.labels.sum())} with."
    )
    X_train = train.images.astype(np.float32) / 255
    X_test = test.images.astype(np.float32) / 255

    epochs = {"max_iter": 2} if fast else {}  # full run: the detector's default max_iter
    detectors = {
        "ConvAE": ConvAutoencoderDetector(random_state=args.seed, **epochs),
        "DRAEM": DraemDetector(random_state=args.seed, **epochs),
        "PCA": PCADetector(),
    }
    band = eye_band(test.eyes, size)
    glasses = test.labels == 1
    print(
        f"\n{'detector':<8} {'ROC-AUC':>7} {'fit (s)':>8} {'score (s)':>9} "
        f"{'eye-band share, glasses':>23} {'no glasses':>10}"
    )
    for name, det in detectors.items():
        _, fit_s = timed(det.fit, X_train)
        scores, score_s = timed(det.score_samples, X_test)
        auc = roc_auc_score(test.labels, -scores)
        maps = reconstruction_panels(det, X_test).maps[type(det).__name__]
        share = band_share(maps, band)
        print(
            f"{name:<8} {auc:>7.3f} {fit_s:>8.1f} {score_s:>9.2f} "
            f"{np.mean(share[glasses]):>23.3f} {np.mean(share[~glasses]):>10.3f}"
        )
    print(
        "\nEye-band share: the part of an image's anomaly map (ConvAE, DRAEM: anomaly_map; PCA:\n"
        "the squared difference) inside the band, averaged over the faces of each kind. The band\n"
        f"covers {band.mean():.3f} of the image: a map spread evenly puts that share in it."
    )

    rows = np.r_[np.flatnonzero(glasses)[:ROWS], np.flatnonzero(~glasses)[:ROWS]]
    path = args.output_dir / "faces_with_glasses.png"
    reconstruction_figure(
        detectors,
        X_test[rows],
        masks=band[rows],
        row_titles=["glasses" if g else "no glasses" for g in glasses[rows]],
        scale="per_detector",
        path=path,
        overwrite=True,
    )
    print(f"\nFigure written to {path} (eye band outlined).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
