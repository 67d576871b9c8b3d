"""Loading CelebA faces: time and peak memory for 20,000 faces at 64x64.

``load_celeba(root, partition="test", image_size=64)`` reads a test
partition of 20,000 faces, with 1 thread and more decoding the JPEGs, in
grayscale and in RGB. CelebA is not on the machines that run this benchmark
(and nothing is downloaded), so by default it reads a folder in the release's
layout written to a temporary directory: annotation files listing 202,599
images like the release, and the 178x218 JPEGs of the 20,000 test faces
(drawn faces with sensor grain, 9 kB a file; CelebA's average 7 kB).
``--celeba-dir PATH`` measures a real copy instead (its test partition holds
19,962 faces).

Each setting is loaded ``--repeats`` times, interleaved, after one warm-up
load (so the files are in the page cache), each load in a fresh process so
that memory freed by an earlier load cannot hide a later one's peak; the
median time and the largest peak memory are reported. A load of a single face
gives the fixed cost of parsing the annotation files.

Run::

    python benchmarks/bench_celeba.py                 # writes docs/benchmarks_celeba.md
    python benchmarks/bench_celeba.py --fast --output /tmp/celeba.md
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _celeba_layout import make_celeba_layout  # noqa: E402
from _measure import PeakRSS  # noqa: E402
from _report import command_line, machine_line, write_page  # noqa: E402

from anomalib_lite.datasets import load_celeba  # noqa: E402

#: Images of the release and the sizes of its train and valid partitions.
N_RELEASE, N_TRAIN, N_VALID = 202_599, 162_770, 19_867
N_TEST = 20_000
MIB = 2**20


def generated_folder(tmp, fast):
    n_test = 200 if fast else N_TEST
    n_images = 2_000 if fast else N_RELEASE
    n_valid = (n_images - n_test) // 10 if fast else N_RELEASE - N_TEST - N_TRAIN
    sizes = (n_images - n_test - n_valid, n_valid, n_test)
    start = time.perf_counter()
    folder = make_celeba_layout(
        tmp, n_images, glasses_ratio=0.065, partition_sizes=sizes, images_of="test"
    )
    return folder, time.perf_counter() - start


def load_once(folder, n_threads, color_mode, single):
    """One load in this process: seconds, peak memory rise, result bytes, faces."""
    extra = {"n_normal": 1, "n_anomalous": 0, "random_state": 0} if single else {}
    with PeakRSS() as memory:
        start = time.perf_counter()
        data = load_celeba(
            folder,
            partition="test",
            image_size=64,
            n_threads=n_threads,
            color_mode=color_mode,
            **extra,
        )
        seconds = time.perf_counter() - start
    return seconds, memory.peak, data.images.nbytes, len(data.images)


def load(folder, setting):
    """:func:`load_once` in a fresh Python process."""
    spec = json.dumps([str(folder), *setting])
    result = subprocess.run(
        [sys.executable, __file__, "--one", spec], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout)


def measure(folder, settings, repeats):
    load(folder, (1, "gray", False))  # warm-up: the page cache
    runs = {s: [] for s in settings}
    for _ in range(repeats):
        for setting in settings:
            runs[setting].append(load(folder, setting))
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="200 faces, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2,4", help="n_threads values, comma-separated")
    parser.add_argument("--celeba-dir", type=Path, help="a real CelebA copy to measure instead")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks_celeba.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a single load, run by measure()
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(load_once(*json.loads(args.one))))
        return
    repeats = 1 if args.fast else args.repeats
    threads = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.celeba_dir is None:
            folder, made = generated_folder(tmp, args.fast)
            source = (
                f"a generated folder in CelebA's layout (written in {made:.0f} s): annotation "
                f"files listing {N_RELEASE if not args.fast else 2000:,} images like the "
                "release's, and the 178x218 JPEGs of the test partition's drawn faces with "
                "sensor grain (9 kB a file; CelebA's average is 7 kB)"
            )
        else:
            folder, source = args.celeba_dir, f"the CelebA copy in `{args.celeba_dir}`"
        settings = [(1, "gray", True)]
        settings += [(t, mode, False) for mode in ("gray", "rgb") for t in threads]
        load_before = os.getloadavg()
        runs = measure(folder, settings, repeats)
        load_after = os.getloadavg()

    command = command_line(__file__, argv)
    lines = [
        "# Loading CelebA faces",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}.",
        "",
        f"`load_celeba(root, partition='test', image_size=64, color_mode=..., n_threads=...)` on "
        f"{source}. CelebA itself is not on the machine that ran this (nothing is downloaded); "
        "`--celeba-dir PATH` measures a real copy. Median of "
        f"{repeats} interleaved loads per setting after a warm-up load (files in the page cache), "
        "each in a fresh Python process; peak memory is the largest rise of that process's "
        "anonymous resident memory during the load, next to the size of the returned images.",
        "",
        f"{machine_line(load_before, load_after)} (the machine is shared: other users' jobs "
        "ran too).",
        "",
        "| faces | color_mode | n_threads | median load (s) | faces/s | peak memory (MiB) "
        "| images (MiB) | all runs (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    medians = {}
    for (n_threads, mode, single), results in runs.items():
        seconds = [r[0] for r in results]
        medians[(n_threads, mode, single)] = median = statistics.median(seconds)
        peak = max(r[1] for r in results) / MIB
        nbytes, n = results[0][2], results[0][3]
        lines.append(
            f"| {n:,} | {mode} | {n_threads} | {median:.2f} | {n / median:,.0f} | {peak:.1f} | "
            f"{nbytes / MIB:.1f} | {', '.join(f'{s:.2f}' for s in seconds)} |"
        )
    parse = medians[(1, "gray", True)]
    best = {
        mode: min(threads, key=lambda t, mode=mode: medians[(t, mode, False)])
        for mode in ("gray", "rgb")
    }
    lines += [
        "",
        f"The 1-face load is the fixed cost: parsing the annotation files ({parse:.2f} s). "
        + " ".join(
            f"In {mode}, {best[mode]} thread(s) loaded fastest "
            f"({medians[(1, mode, False)] / medians[(best[mode], mode, False)]:.2f}x the speed "
            "of 1 thread)."
            for mode in ("gray", "rgb")
        ),
        "",
    ]
    write_page(args.output, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
