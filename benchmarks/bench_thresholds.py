"""How many new images ``predict`` flags at each threshold rule, on real images.

Each detector is fitted on normal images only, as in ``bench_real.py`` (same
sets and protocols), and ``predict`` runs on the test images. Reported: the
ROC-AUC of the scores, the share of the test set's normal images flagged
(false alarms) and the share of its anomalous images flagged (recall).

Threshold rules:

* ``ConvAutoencoderDetector()``: ``contamination='auto'``, Tukey's fence on
  the training images' scores (the default holds no image out).
* ``ConvAutoencoderDetector(validation_fraction=0.1)``: the same fence on the
  scores of the tenth of the images held out of training.
* ``CalibratedDetector(ConvAutoencoderDetector(), alpha=0.05)``: the
  conformal threshold on a quarter of the images held out of training, with
  a stated false-alarm rate of 5%.
* ``PCADetector()``: Tukey's fence on the training scores.

Run::

    python benchmarks/bench_thresholds.py      # writes docs/benchmarks_thresholds.md
    python benchmarks/bench_thresholds.py --fast --output /tmp/thresholds.md
"""

import argparse
import datetime
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import command_line, machine_line, write_page  # noqa: E402
from bench_real import _rows, load_set  # noqa: E402

from anomalib_lite import CalibratedDetector, ConvAutoencoderDetector, PCADetector  # noqa: E402


def _conv(seed, fast, **params):
    return ConvAutoencoderDetector(random_state=seed, **{**params, **_epochs(fast)})


def _epochs(fast):
    return {"max_iter": 2} if fast else {}


#: name -> factory(seed, fast) of a model that fits ``(n, H, W)`` images
METHODS = {
    "ConvAutoencoderDetector()": _conv,
    "ConvAutoencoderDetector(validation_fraction=0.1)": lambda seed, fast: _conv(
        seed, fast, validation_fraction=0.1
    ),
    "CalibratedDetector(ConvAutoencoderDetector(), alpha=0.05)": lambda seed, fast: (
        # a quarter of the fast sets' few images is too few to calibrate 5%
        CalibratedDetector(_conv(seed, fast), alpha=0.2 if fast else 0.05, random_state=seed)
    ),
    "PCADetector()": lambda seed, fast: make_pipeline(FunctionTransformer(_rows), PCADetector()),
}
#: column label -> (set name, variants, seeds)
SETS = {
    "MNIST one-class": ("mnist", range(10), (0,)),
    "digits one-class": ("digits", range(10), (0,)),
    "textures 64 px": ("textures", (64,), (0, 1)),
    "ELPV 64 px mono": ("elpv", (("mono", 64),), (0, 1)),
    "ELPV 64 px poly": ("elpv", (("poly", 64),), (0, 1)),
}


def run_job(job):
    """Fit one method on one set with one seed: ROC-AUC, false alarms and recall."""
    label, variant, method, seed, fast = job
    torch.set_num_threads(1)
    name = SETS[label][0]
    train, tests = load_set(name, variant, fast)
    _, X, labels, _ = tests[0]
    model = METHODS[method](seed, fast).fit(train)
    flagged = model.predict(X) == -1
    return job, {
        "auc": roc_auc_score(labels, -model.score_samples(X)),
        "false alarms": float(flagged[labels == 0].mean()),
        "recall": float(flagged[labels == 1].mean()),
    }


def jobs_of(fast):
    jobs = []
    for label, (_, variants, seeds) in SETS.items():
        for variant in list(variants)[: 2 if fast else None]:
            for method in METHODS:
                for seed in seeds[:1] if fast or method == "PCADetector()" else seeds:
                    jobs.append((label, variant, method, seed, fast))
    return jobs


def table(results):
    lines = [
        "| method | " + " | ".join(SETS) + " |",
        "| --- |" + " --- |" * len(SETS),
    ]
    for method in METHODS:
        cells = []
        for label in SETS:
            mine = [r for (lb, _, m, _, _), r in results.items() if (lb, m) == (label, method)]
            auc, alarms, recall = (
                np.mean([r[k] for r in mine]) for k in ("auc", "false alarms", "recall")
            )
            cells.append(f"{auc:.3f} · {alarms:.3f} / {recall:.3f}")
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny data, 2 epochs, 1 seed")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks_thresholds.md")
    parser.add_argument("--jobs", type=int, default=2, help="fits run side by side")
    args = parser.parse_args(argv)
    jobs = jobs_of(args.fast)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for job, result in pool.map(run_job, jobs):
            results[job] = result
            print(job[:4], {k: round(v, 3) for k, v in result.items()}, flush=True)
    minutes = (time.perf_counter() - t0) / 60
    lines = [
        "# Thresholds on real images: what `predict` flags",
        "",
        f"Generated by `{command_line(__file__, argv)}` on "
        f"{datetime.date.today().isoformat()} in {minutes:.1f} min.",
        "",
        "Each detector fitted on normal images only (the sets and protocols of "
        "`benchmarks/bench_real.py`), then `predict` on the test images. Cells give "
        "`ROC-AUC · false alarms / recall`: the share of the test set's normal images "
        "flagged, and of its anomalous ones; means over the classes (MNIST, digits; "
        "seed 0) or over the training seeds 0 and 1 (textures, ELPV). The threshold "
        "rules are in the docstring of `benchmarks/bench_thresholds.py`: "
        "`contamination='auto'` is Tukey's fence on the training scores by default and on "
        "the held-out images' scores with `validation_fraction=0.1`; "
        "`CalibratedDetector` promises at most 5% false alarms on new normal images.",
        "",
        f"{machine_line(load_before, os.getloadavg())}.",
        "",
        *table(results),
        "",
    ]
    write_page(args.output, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
