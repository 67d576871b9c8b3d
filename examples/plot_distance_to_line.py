"""Distance to a line: the PCA detector on 2-D data.

Normal data is scattered along a line. A ``PCADetector`` with one component
learns that line; the anomaly score of any point is its squared distance to
it. The figure shows the score as a contour map, the fitted line, and the
points the detector flags.

Run::

    python examples/plot_distance_to_line.py [--output-dir DIR]
"""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from anomalib_lite import PCADetector


def main(output_dir=str(Path(__file__).parent / "output")):
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)  # before the work: a bad path fails first
    rng = np.random.default_rng(0)
    t = rng.uniform(-4, 4, size=300)
    normal = np.c_[t, 0.6 * t + 0.5] + rng.normal(scale=0.25, size=(300, 2))
    outliers = rng.uniform(-5, 5, size=(15, 2))
    t_new = rng.uniform(-4, 4, size=100)  # new normal points, not trained on
    new_normal = np.c_[t_new, 0.6 * t_new + 0.5] + rng.normal(scale=0.25, size=(100, 2))
    X_test = np.vstack([new_normal, outliers])

    det = PCADetector(n_components=1, contamination=0.01).fit(normal)
    flagged = det.predict(X_test) == -1
    print(f"threshold (squared distance): {-det.offset_:.3f}")
    print(
        f"flagged {flagged.sum()} of {len(X_test)} test points: {flagged[100:].sum()} of "
        f"{len(outliers)} planted outliers and {flagged[:100].sum()} of 100 new normal points"
    )

    xx, yy = np.meshgrid(np.linspace(-6, 6, 300), np.linspace(-6, 6, 300))
    grid = np.c_[xx.ravel(), yy.ravel()]
    score = det.reconstruction_error(grid).reshape(xx.shape)

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    levels = np.linspace(0, score.max(), 30)
    cs = ax.contourf(xx, yy, score, levels=levels, cmap="magma_r")
    fig.colorbar(cs, ax=ax, format="%.0f", label="anomaly score: squared distance to the line")
    ax.contour(xx, yy, score, levels=[-det.offset_], colors="white", linewidths=1.5)
    line = det.mean_ + np.outer(np.linspace(-8, 8, 2), det.components_[0])
    ax.plot(line[:, 0], line[:, 1], color="deepskyblue", lw=2, label="principal subspace")
    ax.scatter(*normal.T, s=8, c="white", edgecolors="k", linewidths=0.3, label="training (normal)")
    ax.scatter(*X_test[~flagged].T, s=25, c="limegreen", edgecolors="k", label="test: normal")
    ax.scatter(*X_test[flagged].T, s=45, c="red", marker="X", edgecolors="k", label="test: anomaly")
    ax.set(xlim=(-6, 6), ylim=(-6, 6), aspect="equal", title="PCADetector: distance to a line")
    ax.legend(loc="lower right", fontsize=8)
    path = out / "distance_to_line.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"figure written to {path}")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "output"))
    parser.add_argument("--fast", action="store_true", help="accepted for uniformity; already fast")
    main(parser.parse_args().output_dir)
