"""Two things about the autoencoder's training, set by set and seed by seed.

* **Shift augmentation.** ``augmentation='shift'`` trains on batches moved by a
  random offset of a pixel or two, so that the network learns a pattern
  wherever it lies; ``augmentation=None`` trains on the images where they are;
  the default, ``'auto'``, shifts unless the training images' fine detail is
  aligned (``common_detail_``).
* **Undone spikes.** An epoch whose training loss rises tenfold over the run's
  lowest is undone and the run goes on at half the learning rate
  (``SPIKE_FACTOR``). ``ConvAutoencoderDetector(spikes kept)`` is the defaults
  without that rule, as training was before it: a fit that spikes ends with the
  weights of its best epoch.

They run beside the defaults on ``bench_real``'s sets of 64 pixels or less,
with the same protocols (the docstrings of ``benchmarks/bench_real.py`` and
``benchmarks/_real_data.py``): the ELPV solar cells (aligned to the pixel),
one-class MNIST with its accessories, the one-class digits, ``make_textures``
and the directional grain (random-phase: no two images align).
``bench_real``'s two PCA references are fitted once per set beside them.
Every autoencoder fit is repeated over training seeds (``random_state``).

Run::

    python benchmarks/bench_training.py        # writes docs/benchmarks_training.md
    python benchmarks/bench_training.py --fast --output /tmp/training.md
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import command_line, machine_line, write_page  # noqa: E402
from bench_real import METHODS as REAL_METHODS  # noqa: E402
from bench_real import SpikesKeptConvAutoencoder, _conv, _conv_scores, load_set  # noqa: E402

from anomalib_lite._torch_detector import SPIKE_FACTOR  # noqa: E402
from anomalib_lite.metrics import pixel_roc_auc_score  # noqa: E402

DEFAULT = "ConvAutoencoderDetector()"
UNSHIFTED = "ConvAutoencoderDetector(augmentation=None)"
SHIFT = "ConvAutoencoderDetector(augmentation='shift')"
KEPT = "ConvAutoencoderDetector(spikes kept)"
REFERENCES = ("PCADetector()", "PCA (90% variance)")


#: name -> (factory(seed, fast), image anomaly scores(model, X), maps(model, X), seeded)
METHODS = {
    DEFAULT: (_conv(), *_conv_scores, True),
    UNSHIFTED: (_conv(augmentation=None), *_conv_scores, True),
    SHIFT: (_conv(augmentation="shift"), *_conv_scores, True),
    KEPT: (_conv(SpikesKeptConvAutoencoder), *_conv_scores, True),
    **{name: (*REAL_METHODS[name][:3], False) for name in REFERENCES},
}
#: The autoencoders, whose spikes are counted.
AUTOENCODERS = (DEFAULT, UNSHIFTED, SHIFT, KEPT)
#: Columns of the difference of two autoencoders fitted with the same seed.
DIFFERENCES = (
    (DEFAULT, UNSHIFTED, "default − `None`"),
    (SHIFT, UNSHIFTED, "`'shift'` − `None`"),
    (DEFAULT, KEPT, "default − spikes kept"),
)

#: ``(set name, variant, label, seeds)``; the one-class sets list each class.
SEEDS3, SEEDS5 = [0, 1, 2], [0, 1, 2, 3, 4]
SETS = [
    *[("elpv", (t, 64), f"ELPV 64 px, {t}", SEEDS3) for t in ("mono", "poly")],
    *[("mnist", c, "MNIST", SEEDS3) for c in range(10)],
    *[("digits", c, "digits one-class", SEEDS3) for c in range(10)],
    *[("textures", s, f"textures {s} px", SEEDS5) for s in (28, 64)],
    ("grain", 64, "grain 64 px", SEEDS5),
]
#: The smoke test's sets: one of each kind.
FAST_SETS = {("elpv", ("poly", 64)), ("mnist", 0), ("digits", 0), ("textures", 28), ("grain", 64)}


def _spikes(losses):
    """Epochs whose loss is ``SPIKE_FACTOR`` times the lowest of the epochs before."""
    return sum(loss > SPIKE_FACTOR * min(losses[:i]) for i, loss in enumerate(losses) if i)


def run_job(job):
    """Fit one method on one set with one seed: ROC-AUC per test (and pixel), fit time
    and, for the autoencoders, the epochs undone and those that spiked."""
    name, variant, method, seed, fast = job
    make, score, amap, _ = METHODS[method]
    torch.set_num_threads(1)
    with threadpool_limits(1):  # one BLAS thread per fit, as bench_real
        train, tests = load_set(name, variant, fast)
        model = make(seed, fast)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(train)
        result = {"fit": time.perf_counter() - t0, "fit_cpu": time.process_time() - c0}
        if method in AUTOENCODERS:
            result["shifted"] = int(model.augmentation_ == "shift")
            result["undone"] = sum(h["undone"] for h in model.history_)
            result["spiked"] = _spikes([h["train_loss"] for h in model.history_])
        for test, X, labels, masks in tests:
            result[test] = roc_auc_score(labels, score(model, X))
            if masks is not None:
                result[f"{test} pixel"] = pixel_roc_auc_score(masks, amap(model, X))
    return job, result


def _rows(results):
    """``{row label: {method: {seed: {column: [value per class]}}}}``; the MNIST
    fits give two rows, their one-class test and their accessories."""
    rows = {}
    labels = {(name, variant): label for name, variant, label, _ in SETS}
    for (name, variant, method, seed, _), result in results:
        for test in ("test", "accessory"):
            if test not in result:
                continue
            label = labels[(name, variant)]
            if name == "mnist":
                label += " one-class" if test == "test" else " accessories"
            cell = rows.setdefault(label, {}).setdefault(method, {}).setdefault(seed, {})
            for column in ("image", "pixel"):
                key = test if column == "image" else f"{test} pixel"
                if key in result:
                    cell.setdefault(column, []).append(result[key])
            for key in ("fit", "fit_cpu", "shifted", "undone", "spiked"):
                if key in result:
                    cell.setdefault(key, []).append(result[key])
    return rows


def _cell(per_seed, column):
    """``mean (minimum)`` over the seeds of each seed's mean over the classes."""
    values = [np.mean(per_seed[s][column]) for s in sorted(per_seed) if column in per_seed[s]]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ({min(values):.3f})"


def _difference(per_method, a, b, column):
    """Mean over the seeds of ``a``'s value minus ``b``'s with the same seed, and the
    largest drop (the minimum over the seeds)."""
    diffs = [
        np.mean(per_method[a][s][column]) - np.mean(per_method[b][s][column])
        for s in sorted(per_method[a])
    ]
    return f"{np.mean(diffs):+.3f} ({min(diffs):+.3f})"


def table(results, column):
    """One row per set: ``column`` ('image' or 'pixel') ROC-AUC of every method."""
    lines = [
        "| set | "
        + " | ".join(f"`{m}`" for m in METHODS)
        + " | "
        + " | ".join(label for *_, label in DIFFERENCES)
        + " |",
        "| --- |" + " --- |" * (len(METHODS) + len(DIFFERENCES)),
    ]
    for label, per_method in _rows(results).items():
        if not any(column in s for s in per_method[DEFAULT].values()):
            continue
        cells = [_cell(per_method[m], column) for m in METHODS]
        cells += [_difference(per_method, a, b, column) for a, b, _ in DIFFERENCES]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def _fit_cell(per_seed):
    """Median wall-clock seconds over the fits, and of their CPU seconds."""
    wall = statistics.median(v for s in per_seed.values() for v in s["fit"])
    cpu = statistics.median(v for s in per_seed.values() for v in s["fit_cpu"])
    return f"{wall:.1f} ({cpu:.1f})"


def _count(per_seed, key):
    """Fits with at least one such epoch, of all fits (seeds and classes)."""
    counts = [v for s in per_seed.values() for v in s[key]]
    return f"{sum(c > 0 for c in counts)} of {len(counts)}"


def fit_table(results):
    """Fit time of each autoencoder, how many default fits shifted, how many fits
    undid an epoch and (of the fits that keep their spikes) how many spiked tenfold."""
    lines = [
        "| set | "
        + " | ".join(f"`{m}`: fit, s (CPU s)" for m in AUTOENCODERS)
        + " | default fits that shifted | fits that undid an epoch (default / `None` / "
        "`'shift'`) | fits that spiked, spikes kept |",
        "| --- |" + " --- |" * (len(AUTOENCODERS) + 3),
    ]
    for label, per_method in _rows(results).items():
        if label.endswith("accessories"):
            continue  # the MNIST fits, counted on their one-class row
        times = " | ".join(_fit_cell(per_method[m]) for m in AUTOENCODERS)
        shifted = _count(per_method[DEFAULT], "shifted")
        undone = " / ".join(_count(per_method[m], "undone") for m in (DEFAULT, UNSHIFTED, SHIFT))
        spiked = _count(per_method[KEPT], "spiked")
        lines.append(f"| {label} | {times} | {shifted} | {undone} | {spiked} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny data, 2 epochs, 1 seed")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks_training.md")
    parser.add_argument("--jobs", type=int, default=2, help="fits run side by side")
    args = parser.parse_args(argv)
    jobs = [
        (name, variant, method, seed, args.fast)
        for name, variant, _, seeds in SETS
        if not args.fast or (name, variant) in FAST_SETS
        for method, (*_, seeded) in METHODS.items()
        for seed in (seeds[:1] if args.fast or not seeded else seeds)
    ]
    jobs.sort(key=lambda j: j[0] not in ("elpv", "grain", "textures"))  # long fits first
    load_before, t0 = os.getloadavg(), time.perf_counter()
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for job, result in pool.map(run_job, jobs):
            results.append((job, result))
            shown = " ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "fit_cpu")
            print(f"{job[0]} {job[1]} {job[2]} seed {job[3]}: {shown}", flush=True)
    # Rows in the order of SETS, methods in the order of METHODS.
    set_order = [s[:2] for s in SETS]
    results.sort(
        key=lambda item: (set_order.index(item[0][:2]), list(METHODS).index(item[0][2]), item[0][3])
    )
    minutes = (time.perf_counter() - t0) / 60
    lines = [
        "# Training: shift augmentation and undone loss spikes",
        "",
        f"Generated by `{command_line(__file__, argv)}` on "
        f"{datetime.date.today().isoformat()} in {minutes:.1f} min.",
        "",
        "`ConvAutoencoderDetector()` is the defaults: `augmentation='auto'`, which shifts the "
        "training batches unless a quarter or more of the training images' fine detail lies at "
        "the same pixels in every image (`common_detail_`), and the rule that undoes an epoch "
        f"whose training loss rises {SPIKE_FACTOR:g} times over the run's lowest and goes on at "
        "half the learning rate. `augmentation='shift'` always shifts, by a random offset of up "
        "to a pixel per 28 pixels of side (1 at 28 pixels, 2 at 64), the border mirrored; "
        "`augmentation=None` never does; `ConvAutoencoderDetector(spikes kept)` is the defaults "
        "without the rule for spikes (a fit that spikes ends with the weights of its best "
        "epoch). The sets and protocols are those of `benchmarks/bench_real.py`, at 64 "
        "pixels or less. Cells give the ROC-AUC as `mean (minimum)` over the training seeds "
        "(3; 5 for the textures and the grain; for the one-class sets, each seed's mean over "
        "the ten classes); the PCA references are deterministic and fitted once. The last "
        "columns compare two autoencoders fitted with the same seed: the mean over the seeds "
        "of the difference, and in parentheses its smallest value. The defaults were chosen "
        "on these same test sets, none of which has a separate validation split "
        "(`docs/benchmarks_real.md`); the threshold of `'auto'` was set from the shares these "
        "same sets give, between the cells' and the MNIST classes'.",
        "",
        f"{machine_line(load_before, os.getloadavg())}.",
        "",
        "## Image ROC-AUC",
        "",
        *table(results, "image"),
        "",
        "## Pixel ROC-AUC",
        "",
        "The sets with masks: the accessories drawn over MNIST digits, and the textures' defects.",
        "",
        *table(results, "pixel"),
        "",
        "## Fit time and spikes",
        "",
        f"Median wall-clock seconds of the fits, with {args.jobs} fit(s) side by side and one "
        "torch and one BLAS thread each, and in parentheses of their CPU seconds; how many "
        "fits (seeds, and classes of the one-class sets) undid an epoch, and how many of the "
        f"fits that keep their spikes had an epoch whose loss rose {SPIKE_FACTOR:g} times "
        "over the lowest before it.",
        "",
        *fit_table(results),
        "",
    ]
    write_page(args.output, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
