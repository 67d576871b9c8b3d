"""Time and memory measurement shared by the benchmark scripts."""

import threading
import time


def seconds(func):
    """Wall-clock seconds that ``func()`` takes."""
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def anon_rss():
    """Anonymous resident memory of this process in bytes (Linux: RssAnon).

    File-backed pages, such as those of a memory-mapped input, do not count.
    Elsewhere the whole resident set (psutil).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Peak anonymous resident memory above the level at entry, sampled every 2 ms."""

    def __init__(self):
        self.peak = 0

    def __enter__(self):
        self._start = anon_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, anon_rss() - self._start)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anon_rss() - self._start)


class ForwardRows:
    """Rows of the largest batch passed to a torch ``module`` inside the block.

    The rows a detector scores at once, counted with a forward pre-hook on its
    public ``module_`` (the hook costs one comparison per batch).
    """

    def __init__(self, module):
        self.module = module
        self.rows = 0

    def _hook(self, _module, args):
        self.rows = max(self.rows, args[0].shape[0])

    def __enter__(self):
        self._handle = self.module.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
