"""Model search and batch scoring of an image folder on a Dask cluster.

A laptop ``LocalCluster`` stands in for a real cluster: the code is the same
on both, only the address given to ``Client`` changes. The script

1. chooses ``n_components`` of a ``PCADetector`` by ``GridSearchCV`` on the
   cluster (joblib's Dask backend), trained on the normal digit only;
2. writes a collection of digit images as PNG files, then scores it with
   ``anomalib_lite.dask.score_files``: each task reads and scores one chunk
   of files, so the collection is never loaded whole;
3. compares the throughput with one process and plots the scores.

Run::

    python examples/distributed_scoring.py [--fast] [--output-dir DIR]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from anomalib_lite import PCADetector
from anomalib_lite.dask import score_files
from anomalib_lite.datasets import load_images
from anomalib_lite.metrics import get_scorer

NORMAL_DIGIT = 8


def load_rows(paths):
    """Read image files as float rows in [0, 1], the layout the detector was fitted on."""
    images = load_images(paths, dtype="float32")
    return images.reshape(len(images), -1)


def write_collection(folder, images, labels, n_files, seed=0):
    """Write ``n_files`` PNGs drawn from ``images`` with light noise; return paths, labels."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(images), size=n_files)
    noisy = images[pick] + rng.normal(scale=0.03, size=(n_files, *images.shape[1:]))
    pixels = np.rint(np.clip(noisy, 0, 1) * 255).astype(np.uint8)
    paths = []
    for i, image in enumerate(pixels):
        path = folder / f"digit_{i:06d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths, labels[pick]


def main(output_dir=str(Path(__file__).parent / "output"), fast=False):
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)  # before the work: a bad path fails first
    X, digit = load_digits(return_X_y=True)
    X = X / 16.0
    y = (digit != NORMAL_DIGIT).astype(int)  # 0 = normal, 1 = anomaly
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )

    # The only line that changes on a real cluster: Client("tcp://scheduler:8786").
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    client = Client(cluster)
    print(f"cluster: {len(client.nthreads())} workers x 1 thread")

    search = GridSearchCV(
        PCADetector(),
        {"n_components": [2, 4, 8, 16, 32], "statistic": ["spe", "combined"]},
        scoring=get_scorer("anomaly_roc_auc"),
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    )
    with joblib.parallel_backend("dask"):
        search.fit(X_train, y_train)
    detector = search.best_estimator_
    print(f"best parameters: {search.best_params_}, CV ROC-AUC {search.best_score_:.3f}")

    n_files = 400 if fast else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths, labels = write_collection(Path(tmp), X_test.reshape(-1, 8, 8), y_test, n_files)
        print(f"wrote {n_files:,} PNG files in {time.perf_counter() - t0:.1f} s")

        per_chunk = 100 if fast else 2_000
        lazy = score_files(detector, paths, files_per_chunk=per_chunk, loader=load_rows)
        timings = {}
        t0 = time.perf_counter()
        scores = client.compute(lazy).result()
        timings["LocalCluster\n2 workers x 1 thread"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        single = lazy.compute(scheduler="synchronous")
        timings["one process"] = time.perf_counter() - t0
    client.close()
    cluster.close()

    assert np.array_equal(scores, single), "the cluster and one process disagree"
    auc = roc_auc_score(labels, -scores)
    flagged = scores - detector.offset_ < 0
    print(f"scored {n_files:,} files in {len(lazy.chunks[0])} chunks; ROC-AUC {auc:.3f}")
    print(
        f"flagged {flagged.sum():,} files: {flagged[labels == 1].mean():.1%} of anomalies, "
        f"{flagged[labels == 0].mean():.1%} of normal images"
    )
    for way, seconds in timings.items():
        print(f"{way.replace(chr(10), ' ')}: {seconds:.2f} s, {n_files / seconds:,.0f} files/s")

    fig, (ax_hist, ax_bar) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=[2, 1])
    bins = np.linspace(np.percentile(scores, 0.5), scores.max(), 50)
    ax_hist.hist(scores[labels == 0], bins=bins, alpha=0.7, label=f"digit {NORMAL_DIGIT} (normal)")
    ax_hist.hist(scores[labels == 1], bins=bins, alpha=0.7, label="other digits (anomalies)")
    ax_hist.axvline(detector.offset_, color="k", ls="--", label="threshold (offset_)")
    ax_hist.set(
        xlabel="score_samples (higher = more normal)",
        ylabel="files",
        title=f"{n_files:,} files scored on the cluster, ROC-AUC {auc:.3f}",
    )
    ax_hist.legend(fontsize=8)
    ax_bar.bar(list(timings), [n_files / s for s in timings.values()], color=["C2", "C7"])
    ax_bar.set(ylabel="files per second", title="read + score throughput")
    path = out / "distributed_scoring.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"figure written to {path}")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "output"))
    parser.add_argument("--fast", action="store_true", help="400 files instead of 20,000")
    args = parser.parse_args()
    main(args.output_dir, fast=args.fast or os.environ.get("ANOMALIB_LITE_FAST") == "1")
