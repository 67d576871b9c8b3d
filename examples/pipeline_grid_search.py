"""Model selection: a Pipeline searched with GridSearchCV on labelled anomalies.

A detector learns from normal data only, but choosing its size needs a few
*labelled* anomalies: the reconstruction error of normal data alone always
prefers a bigger model, which also reconstructs the anomalies better. Every
detector accepts ``fit(X, y)`` and learns from the rows with ``y == 0`` only,
so scikit-learn's ``GridSearchCV`` works unchanged: each fold's detector trains
on its normal rows (a ``StandardScaler`` before it in the Pipeline is fitted on
every row of the fold, anomalies included: see "Pipelines" in
``docs/thresholds.md``) and is scored, normal and anomalous rows alike, by the library's
anomaly scorers (``anomalib_lite.metrics.get_scorer``), which rank by the
anomaly score and never mistake the sign.

Data: digit ``1`` of ``load_digits`` is normal; 60 images of other digits are
the labelled anomalies, split 60/40 into a search part (cross-validated) and a
test part (scored once, by the refitted best model).

Two searches:

* ``StandardScaler`` + ``PCADetector`` over ``n_components`` and ``statistic``
  (the scaler standardizes each pixel, after the global division by 16; pixels
  that never vary keep a scale of 1);
* ``ConvAutoencoderDetector`` on the flat rows (``image_shape=(8, 8)``) over
  ``latent_dim`` and ``image_score``.

The script prints the cross-validated scores and the held-out ROC-AUC and
average precision of each best model, and plots the cross-validated ROC-AUC
against ``n_components`` for each statistic.

Run::

    python examples/pipeline_grid_search.py [--fast] [--output-dir DIR]
"""

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from anomalib_lite import ConvAutoencoderDetector, PCADetector
from anomalib_lite.metrics import get_scorer

NORMAL_DIGIT = 1
N_ANOMALIES = 60
SCORING = {
    "roc_auc": get_scorer("anomaly_roc_auc"),
    "average_precision": get_scorer("anomaly_average_precision"),
}


def labelled_digits(seed):
    """Normal digit rows plus ``N_ANOMALIES`` other digits, split for search and test."""
    X, digit = load_digits(return_X_y=True)
    X = X / 16.0  # one global scale for every pixel
    rng = np.random.default_rng(seed)
    others = rng.choice(np.flatnonzero(digit != NORMAL_DIGIT), N_ANOMALIES, replace=False)
    rows = np.r_[np.flatnonzero(digit == NORMAL_DIGIT), others]
    y = (digit[rows] != NORMAL_DIGIT).astype(int)  # 0 = normal, 1 = anomaly
    return train_test_split(X[rows], y, test_size=0.4, stratify=y, random_state=seed)


def search(estimator, grid, X, y, seed):
    """Cross-validated search, refitted on every normal row by the best ROC-AUC."""
    return GridSearchCV(
        estimator,
        grid,
        scoring=SCORING,
        refit="roc_auc",
        cv=StratifiedKFold(3, shuffle=True, random_state=seed),  # anomalies in every fold
    ).fit(X, y)


def report(name, result, X_test, y_test):
    print(f"\n{name}: best {result.best_params_}")
    cv = result.cv_results_
    for i, params in enumerate(cv["params"]):
        print(
            f"  {params!s:<48} CV ROC-AUC {cv['mean_test_roc_auc'][i]:.3f} "
            f"± {cv['std_test_roc_auc'][i]:.3f}   AP {cv['mean_test_average_precision'][i]:.3f}"
        )
    auc = SCORING["roc_auc"](result, X_test, y_test)
    ap = SCORING["average_precision"](result, X_test, y_test)
    print(f"  held-out test: ROC-AUC {auc:.3f}, average precision {ap:.3f}")
    return auc, ap


def plot_pca_search(result, path):
    cv = result.cv_results_
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    statistics = list(dict.fromkeys(p["detector__statistic"] for p in cv["params"]))
    for statistic in statistics:
        idx = [i for i, p in enumerate(cv["params"]) if p["detector__statistic"] == statistic]
        k = [cv["params"][i]["detector__n_components"] for i in idx]
        mean, std = cv["mean_test_roc_auc"][idx], cv["std_test_roc_auc"][idx]
        ax.errorbar(k, mean, yerr=std, marker="o", capsize=3, label=f"statistic='{statistic}'")
    ax.set_xscale("log")
    sizes = sorted({p["detector__n_components"] for p in cv["params"]})
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.minorticks_off()
    ax.set_xlabel("n_components")
    ax.set_ylabel("cross-validated anomaly ROC-AUC")
    ax.set_title(f"PCADetector on digits (normal: {NORMAL_DIGIT})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="small grids, few epochs")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("ANOMALIB_LITE_FAST") == "1"
    args.output_dir.mkdir(parents=True, exist_ok=True)

    X_train, X_test, y_train, y_test = labelled_digits(args.seed)
    print(
        f"search part: {np.sum(y_train == 0)} normal + {np.sum(y_train == 1)} anomalies; "
        f"test part: {np.sum(y_test == 0)} normal + {np.sum(y_test == 1)} anomalies"
    )

    pipe = Pipeline([("scale", StandardScaler()), ("detector", PCADetector())])
    pca_grid = {
        "detector__n_components": [2, 5, 10, 20, 40] if not fast else [2, 10],
        "detector__statistic": ["spe", "t2", "combined"] if not fast else ["spe", "t2"],
    }
    pca_search = search(pipe, pca_grid, X_train, y_train, args.seed)
    report("StandardScaler + PCADetector", pca_search, X_test, y_test)
    plot_pca_search(pca_search, args.output_dir / "pipeline_grid_search.png")

    epochs = {"max_iter": 10} if fast else {}  # full run: the default max_iter
    ae = ConvAutoencoderDetector(image_shape=(8, 8), random_state=args.seed, **epochs)
    ae_grid = {
        "latent_dim": [16] if fast else [4, 16],
        "image_score": ["mean", "smooth"] if fast else ["mean", "smooth", "max"],
    }
    ae_search = search(ae, ae_grid, X_train, y_train, args.seed)
    report("ConvAutoencoderDetector", ae_search, X_test, y_test)
    print(f"\nFigure written to {args.output_dir / 'pipeline_grid_search.png'}")


if __name__ == "__main__":
    main()
