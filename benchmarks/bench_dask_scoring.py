"""Batch scoring on Dask: throughput and peak memory, one process vs a LocalCluster.

Scores N generated 28x28 images (N from 10,000 to 1,000,000) with a fitted
detector through :func:`anomalib_lite.dask.score_array`. The images are made
chunk by chunk inside the tasks, so no process ever holds the collection:
peak memory must stay flat as N grows. Three ways to run the same graph:

* ``single process``: Dask's synchronous scheduler in this process;
* ``threads``: Dask's default threaded scheduler in this process;
* ``LocalCluster``: ``distributed.LocalCluster(n_workers, processes=True,
  threads_per_worker=1)``, warmed up once.

Peak memory is the peak resident set size of each process that scores (this
process, or each cluster worker) during the job: Linux's ``VmHWM``,
reset just before the job starts, so Linux only. It also measures how
small and fast each detector pickles, since that is what ships to workers.

Run::

    python benchmarks/bench_dask_scoring.py            # full, writes docs/benchmarks_dask.md
    python benchmarks/bench_dask_scoring.py --fast --output /tmp/dask.md
    python benchmarks/bench_dask_scoring.py --scheduler tcp://scheduler:8786  # a real cluster
"""

import argparse
import contextlib
import datetime
import os
import pickle
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIDE = 28


# ----------------------------------------------------------------- data
def _basis():
    """16 smooth 28x28 patterns (low-frequency cosines), one per row."""
    x = (np.arange(SIDE) + 0.5) / SIDE
    waves = [np.cos(np.pi * u * x) for u in range(4)]
    return np.stack([np.outer(a, b).ravel() for a in waves for b in waves]).astype(np.float32)


def make_images(n, seed, anomaly_ratio=0.0):
    """``n`` flat 28x28 images: smooth normal variation plus noise.

    A fraction ``anomaly_ratio`` carries a bright 5x5 square (the defect).
    """
    rng = np.random.default_rng(seed)
    basis = _basis()
    scales = np.linspace(1.0, 0.2, len(basis), dtype=np.float32)
    images = (rng.standard_normal((n, len(basis)), dtype=np.float32) * scales) @ basis
    images += 0.05 * rng.standard_normal((n, SIDE * SIDE), dtype=np.float32)
    n_bad = round(anomaly_ratio * n)
    for i in range(n_bad):
        r, c = rng.integers(0, SIDE - 5, size=2)
        square = images[i].reshape(SIDE, SIDE)
        square[r : r + 5, c : c + 5] += 2.0
    return images


def _chunk(block_info=None, seed=0):
    """One chunk of images, seeded by its position: identical on any scheduler."""
    info = block_info[None]
    (start, stop), _ = info["array-location"]
    return make_images(stop - start, seed=[seed, info["chunk-location"][0]])


def image_array(n, rows_per_chunk, seed=0):
    """A lazy ``(n, 784)`` float32 dask array generated chunk by chunk."""
    import dask.array as da

    sizes = [rows_per_chunk] * (n // rows_per_chunk)
    if n % rows_per_chunk:
        sizes.append(n % rows_per_chunk)
    return da.map_blocks(
        _chunk,
        chunks=(tuple(sizes), (SIDE * SIDE,)),
        dtype=np.float32,
        seed=seed,
        meta=np.empty((0, 0), np.float32),
    )


# ------------------------------------------------------------ detectors
def fit_detectors(fast):
    """Fitted detectors of the library to ship, by name."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from anomalib_lite import CalibratedDetector, PCADetector
    from anomalib_lite.autoencoder import ConvAutoencoderDetector
    from anomalib_lite.dense import AutoencoderDetector

    X = make_images(500 if fast else 10000, seed=1)
    n_torch = 64 if fast else 1000
    torch_kw = {"max_iter": 1, "random_state": 0}
    return {
        "PCADetector": PCADetector(n_components=16).fit(X),
        "Pipeline(StandardScaler, PCADetector)": make_pipeline(
            StandardScaler(), PCADetector(n_components=16)
        ).fit(X),
        "CalibratedDetector(PCADetector)": CalibratedDetector(
            PCADetector(n_components=16), random_state=0
        ).fit(X),
        "ConvAutoencoderDetector": ConvAutoencoderDetector(**torch_kw).fit(
            X[:n_torch].reshape(-1, SIDE, SIDE)
        ),
        # The same network on flat rows, to score the benchmark's row chunks.
        "ConvAutoencoderDetector (rows)": ConvAutoencoderDetector(
            image_shape=(SIDE, SIDE), **torch_kw
        ).fit(X[:n_torch]),
        "AutoencoderDetector": AutoencoderDetector(**torch_kw).fit(X[:n_torch]),
    }


def pickle_costs(detectors, repeats):
    """Pickled size and median dump / load times of each fitted detector."""
    rows = []
    for name, det in detectors.items():
        dumps, loads = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            blob = pickle.dumps(det, protocol=pickle.HIGHEST_PROTOCOL)
            t1 = time.perf_counter()
            pickle.loads(blob)
            t2 = time.perf_counter()
            dumps.append(t1 - t0)
            loads.append(t2 - t1)
        rows.append((name, len(blob), statistics.median(dumps), statistics.median(loads)))
    return rows


# ------------------------------------------------------------- scoring
def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak():
    """Reset this process's peak RSS (Linux ``clear_refs``), so the job's peak is seen."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mb():
    """Peak RSS since the last :func:`_reset_peak` (``VmHWM``), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _import_scoring():
    import anomalib_lite.dask  # noqa: F401


def run_in_process(detector, n, rows_per_chunk, scheduler, score=True):
    """Score n images in this process with a local Dask scheduler."""
    from anomalib_lite.dask import score_array

    # Warm up (lazy imports, first-call costs) on one small chunk, as on the cluster.
    score_array(detector, image_array(100, 100)).compute(scheduler=scheduler)
    darr = image_array(n, rows_per_chunk)
    baseline = _rss_mb()
    _reset_peak()
    t0 = time.perf_counter()
    if score:
        result = score_array(detector, darr).compute(scheduler=scheduler)
    else:
        result = darr.sum(axis=1).compute(scheduler=scheduler)
    seconds = time.perf_counter() - t0
    return seconds, baseline, _peak_mb(), float(np.mean(result))


def run_on_cluster(client, detector, n, rows_per_chunk):
    from anomalib_lite.dask import score_array

    darr = image_array(n, rows_per_chunk)
    baseline = client.run(_rss_mb)
    client.run(_reset_peak)
    t0 = time.perf_counter()
    result = client.compute(score_array(detector, darr)).result()
    seconds = time.perf_counter() - t0
    peaks = client.run(_peak_mb)
    return seconds, max(baseline.values()), max(peaks.values()), float(np.mean(result))


# ------------------------------------------------------------- report
def _machine(busy_at_start):
    import dask
    import distributed
    import sklearn

    import anomalib_lite

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    busy = _busy_processes()
    return [
        f"- Date: {datetime.date.today().isoformat()}; machine: {platform.processor() or ''} "
        f"{platform.machine()}, {os.cpu_count()} logical cores, Python {platform.python_version()}",
        f"- Versions: anomalib_lite {anomalib_lite.__version__}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}",
        f"- Load average (1/5/15 min) when the run ended: {load}",
        f"- Other busy processes at the start: {busy_at_start or 'none above 10% CPU'}",
        f"- Other busy processes at the end: {busy or 'none above 10% CPU'}",
    ]


def _busy_processes():
    """Other processes above 10% CPU over one second (not this one or its workers)."""
    try:
        import psutil
    except ImportError:
        return "unknown (psutil not installed)"
    mine = {os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))}
    procs = [p for p in psutil.process_iter(["pid", "name", "cmdline"]) if p.pid not in mine]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
        except psutil.Error:
            continue
        if cpu >= 10:
            words = p.info["cmdline"] or [p.info["name"]]
            cmd = " ".join([os.path.basename(words[0]), *words[1:3]])
            busy.append(f"`{cmd[:70]}` {cpu:.0f}%")
    return ", ".join(busy)


def write_report(path, command, rows_per_chunk, tables, pickles, repeats, busy_at_start=""):
    """Write the markdown report: one throughput table per detector, then pickles."""
    lines = [
        "# Batch scoring on Dask: throughput and memory",
        "",
        "Generated by `benchmarks/bench_dask_scoring.py`; do not edit by hand.",
        "",
        f"Command: `{command}`",
        "",
        *_machine(busy_at_start),
        "",
        f"`score_array(detector, X).compute()` on float32 rows of generated 28x28 images, "
        f"{rows_per_chunk:,} images per chunk, made inside each task (never held whole). "
        f"Throughput is N / median wall time of the runs (up to {repeats}; one run from N = "
        "100,000 on), scoring plus generating the images; the *generate only* row is the "
        "cost of making the images alone. Peak memory is the peak RSS of each scoring "
        "process during the job (for the cluster: the largest worker; Linux `VmHWM` reset at "
        "the start of the job), and *baseline* its RSS before the job (interpreter, "
        "libraries, detector, after a warm-up on a few small chunks). *single process* and "
        "*threads* are Dask's synchronous and threaded schedulers in the benchmark's own "
        "process; the cluster has one thread per worker process.",
    ]
    for title, rows in tables:
        lines += [
            "",
            f"## {title}",
            "",
            "| way | N | runs | median s | images/s | ratio vs single process "
            "| baseline MB | peak MB per process |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for way, n, n_runs, sec, base, peak, ref in rows:
            lines.append(
                f"| {way} | {n:,} | {n_runs} | {sec:.2f} | {n / sec:,.0f} "
                f"| {ref / sec:.2f} | {base:.0f} | {peak:.0f} |"
            )
    lines += [
        "",
        "## What ships to workers: pickled detectors",
        "",
        "Fitted on 28x28 generated images (torch detectors trained for one epoch; the size does "
        f"not depend on training length). Median of {max(5, repeats)} dumps and loads, pickle "
        "protocol 5.",
        "",
        "| detector | pickled KiB | dumps ms | loads ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, size, dump, load in pickles:
        lines.append(f"| {name} | {size / 1024:.1f} | {dump * 1e3:.2f} | {load * 1e3:.2f} |")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")


def measure(client, det, sizes, rows, repeats, cluster_label):
    """Rows of one detector's table: every way, every N (ascending)."""
    table = []
    for n in sizes:
        ways = {
            "generate only": lambda n=n: run_in_process(det, n, rows, "synchronous", score=False),
            "single process": lambda n=n: run_in_process(det, n, rows, "synchronous"),
            "threads": lambda n=n: run_in_process(det, n, rows, "threads"),
            cluster_label: lambda n=n: run_on_cluster(client, det, n, rows),
        }
        means, found = {}, {}
        for way, run in ways.items():
            measured = [run() for _ in range(repeats if n < 100_000 else 1)]
            sec = statistics.median(m[0] for m in measured)
            base, peak = measured[-1][1], max(m[2] for m in measured)
            found[way] = (way, n, len(measured), sec, base, peak)
            means[way] = measured[-1][3]
            print(
                f"{way:>20} N={n:>9,}: {sec:7.2f} s, {n / sec:>10,.0f} images/s, "
                f"baseline {base:.0f} MB, peak {peak:.0f} MB",
                flush=True,
            )
        ref = found["single process"][3]
        table += [(*row, ref) for row in found.values()]
        scored = [v for k, v in means.items() if k != "generate only"]
        if not np.allclose(scored, scored[0], rtol=1e-5):
            raise RuntimeError(f"the ways disagree on the mean score: {means}")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny N: a smoke run")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument(
        "--conv-max-n",
        type=int,
        default=None,
        help="largest N scored with ConvAutoencoderDetector (slower than PCA)",
    )
    parser.add_argument("--rows-per-chunk", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler (e.g. tcp://host:8786) to use instead of "
        "starting a LocalCluster",
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks_dask.md"))
    args = parser.parse_args(argv)
    sizes = sorted(args.sizes or ([1_000, 4_000] if args.fast else [10_000, 100_000, 1_000_000]))
    conv_max_n = args.conv_max_n or (1_000 if args.fast else 100_000)
    rows = args.rows_per_chunk or (500 if args.fast else 10_000)
    repeats = args.repeats or (1 if args.fast else 3)
    script = Path(__file__).resolve().relative_to(ROOT)
    command = "python " + " ".join(shlex.quote(str(a)) for a in [script, *(argv or sys.argv[1:])])

    from distributed import Client, LocalCluster

    from anomalib_lite.dask import score_array

    busy_at_start = _busy_processes()
    detectors = fit_detectors(args.fast)
    shipped = {k: v for k, v in detectors.items() if not k.endswith("(rows)")}
    pickles = pickle_costs(shipped, repeats=max(5, repeats))
    for name, size, dump, load in pickles:
        print(
            f"pickle {name}: {size / 1024:.1f} KiB, dumps {dump * 1e3:.2f} ms, "
            f"loads {load * 1e3:.2f} ms"
        )
    jobs = [("PCADetector(n_components=16)", detectors["PCADetector"], sizes)]
    jobs.append(
        (
            "ConvAutoencoderDetector(image_shape=(28, 28)), trained 1 epoch",
            detectors["ConvAutoencoderDetector (rows)"],
            [n for n in sizes if n <= conv_max_n],
        )
    )
    cluster = None
    if args.scheduler is None:
        cluster = LocalCluster(
            n_workers=args.workers, processes=True, threads_per_worker=1, dashboard_address=":0"
        )
    tables = []
    with Client(cluster or args.scheduler) as client:
        threads = list(client.nthreads().values())
        kind = "LocalCluster" if cluster is not None else "cluster"
        label = f"{kind} {len(threads)}x{max(threads)}"
        client.run(_import_scoring)
        for title, det, det_sizes in jobs:
            # Warm up each worker (first-call costs) on small chunks.
            client.compute(score_array(det, image_array(200 * len(threads), 100))).result()
            print(title)
            table = measure(client, det, det_sizes, rows, repeats, label)
            tables.append((f"Scoring N images with {title}", table))
    if cluster is not None:
        cluster.close()
    write_report(args.output, command, rows, tables, pickles, repeats, busy_at_start)
    print(f"report written to {args.output}")
    return tables


if __name__ == "__main__":
    main()
