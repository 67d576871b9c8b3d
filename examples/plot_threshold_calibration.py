"""Threshold calibration: target against achieved false-alarm rate on digits.

Normal data are the handwritten digits 0 to 4 of ``load_digits``; the digits
5 to 9 are anomalies. A ``PCADetector`` (20 components) is thresholded in
four ways for each target false-alarm rate ``alpha``:

* ``contamination=alpha``: the top ``alpha`` share of the *training* scores,
  as PyOD does;
* ``CalibratedDetector(method='analytic')``: PCA's Jackson-Mudholkar control
  limit, which assumes Gaussian data;
* ``method='quantile'``: the ``1 - alpha`` quantile of held-out normal scores;
* ``method='conformal'``: the conformal rank of held-out normal scores, which
  guarantees a false-alarm rate of at most ``alpha`` on average;

and the false-alarm rate is measured on fresh normal digits, over repeated
random splits. A second panel shows what the labelled methods (``'f1'``,
``'youden'``, ``'recall'``) achieve from 10 known anomalies.

Run::

    python examples/plot_threshold_calibration.py [--fast] [--output-dir DIR]
"""

import argparse
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from anomalib_lite import CalibratedDetector, PCADetector

ALPHAS = [0.01, 0.02, 0.05, 0.1, 0.2]
N_COMPONENTS = 20
N_TRAIN = 500  # normal digits to fit and calibrate on; the rest are fresh test data
N_LABELLED = 10  # known anomalies given to the labelled methods


def _split(X, digit, seed):
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(digit <= 4))
    anomalous = rng.permutation(np.flatnonzero(digit > 4))
    train, fresh = normal[:N_TRAIN], normal[N_TRAIN:]
    labelled, unseen = anomalous[:N_LABELLED], anomalous[N_LABELLED:]
    return X[train], X[fresh], X[labelled], X[unseen]


def _threshold_rules(alpha, seed):
    pca = PCADetector(n_components=N_COMPONENTS)
    calibrated = {"random_state": seed, "alpha": alpha}
    return {
        "contamination (training top-k%)": PCADetector(
            n_components=N_COMPONENTS, contamination=alpha
        ),
        "analytic (PCA control limit)": CalibratedDetector(pca, method="analytic", alpha=alpha),
        "quantile (held-out)": CalibratedDetector(pca, method="quantile", **calibrated),
        "conformal (held-out)": CalibratedDetector(pca, method="conformal", **calibrated),
    }


def false_alarm_rates(X, digit, n_repeats):
    """Mean and standard deviation of the false-alarm rate, per rule and alpha."""
    rates = {}
    for seed in range(n_repeats):
        train, fresh, _, _ = _split(X, digit, seed)
        for alpha in ALPHAS:
            for name, det in _threshold_rules(alpha, seed).items():
                far = np.mean(det.fit(train).predict(fresh) == -1)
                rates.setdefault(name, {}).setdefault(alpha, []).append(far)
    return {
        name: (np.array([np.mean(v[a]) for a in ALPHAS]), np.array([np.std(v[a]) for a in ALPHAS]))
        for name, v in rates.items()
    }


def labelled_results(X, digit, n_repeats, alpha=0.05):
    """False-alarm rate and recall on unseen data of each labelled method."""
    methods = {
        "conformal": {"method": "conformal"},
        "f1": {"method": "f1"},
        "youden": {"method": "youden"},
        "recall 0.9": {"method": "recall", "target_recall": 0.9},
    }
    found = {name: [] for name in methods}
    for seed in range(n_repeats):
        train, fresh, labelled, unseen = _split(X, digit, seed)
        X_fit = np.vstack([train, labelled])
        y_fit = np.r_[np.zeros(len(train), int), np.ones(len(labelled), int)]
        for name, params in methods.items():
            det = CalibratedDetector(
                PCADetector(n_components=N_COMPONENTS), alpha=alpha, random_state=seed, **params
            ).fit(X_fit, y_fit)
            found[name].append(
                (np.mean(det.predict(fresh) == -1), np.mean(det.predict(unseen) == -1))
            )
    return {name: np.mean(v, axis=0) for name, v in found.items()}


def main(output_dir=str(Path(__file__).parent / "output"), fast=False):
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)  # before the work: a bad path fails first
    X, digit = load_digits(return_X_y=True)
    n_repeats = 3 if fast else 20
    with warnings.catch_warnings():
        # 20 components do not explain all variance; nothing else is expected
        warnings.simplefilter("error", UserWarning)
        rates = false_alarm_rates(X, digit, n_repeats)
        labelled = labelled_results(X, digit, n_repeats)

    print(f"false-alarm rate on fresh normal digits, mean over {n_repeats} splits")
    print(f"{'rule':34s}" + "".join(f"  a={a:<5}" for a in ALPHAS))
    for name, (mean, _) in rates.items():
        print(f"{name:34s}" + "".join(f"  {m:7.3f}" for m in mean))
    print(f"\nlabelled calibration with {N_LABELLED} known anomalies (alpha=0.05 fallback)")
    print(f"{'method':12s}  false-alarm rate  recall")
    for name, (far, recall) in labelled.items():
        print(f"{name:12s}  {far:16.3f}  {recall:6.3f}")

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax.plot([0, 0.22], [0, 0.22], color="grey", lw=1, ls="--", label="target")
    for (name, (mean, std)), marker in zip(rates.items(), "osD^", strict=True):
        ax.errorbar(ALPHAS, mean, yerr=std, marker=marker, capsize=3, label=name)
    ax.set(
        xlabel="target false-alarm rate alpha",
        ylabel="achieved false-alarm rate (fresh normal data)",
        title=f"PCADetector on digits 0-4, {n_repeats} splits (mean ± sd)",
        xlim=(0, 0.22),
        ylim=(0, None),
    )
    ax.legend(fontsize=8)
    names = list(labelled)
    far = [labelled[n][0] for n in names]
    recall = [labelled[n][1] for n in names]
    pos = np.arange(len(names))
    bx.bar(pos - 0.2, far, width=0.4, label="false-alarm rate")
    bx.bar(pos + 0.2, recall, width=0.4, label="recall (digits 5-9)")
    bx.set_xticks(pos, names)
    bx.set(ylim=(0, 1), title=f"Labelled methods, {N_LABELLED} known anomalies")
    bx.legend(fontsize=8)
    fig.tight_layout()
    path = out / "threshold_calibration.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nfigure written to {path}")
    return rates, labelled


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "output"))
    parser.add_argument("--fast", action="store_true", help="3 splits instead of 20")
    args = parser.parse_args()
    main(args.output_dir, fast=args.fast or os.environ.get("ANOMALIB_LITE_FAST") == "1")
