"""Private torch helpers: devices, random generators, weight init and threads."""

import contextlib
import math
import threading

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn

from ..nn.dropout import GeneratorDropout
from ._validation import check_int

#: Threads a fit or a scoring call uses when ``n_threads=None``; see
#: ``docs/benchmarks_threads.md`` for the measurement behind this default.
DEFAULT_THREADS = 1

_INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_INIT_LAYERS += (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
_NORM_LAYERS += (nn.InstanceNorm1d, nn.InstanceNorm2d)


def check_device(device):
    """Check that ``device`` names a torch device (resolved later, in ``fit``)."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a string such as 'auto', 'cpu' or 'cuda', got "
            f"{type(device).__name__} {device!r}."
        )
    if device != "auto":
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"device={device!r} is not a torch device; expected 'auto', 'cpu', "
                "'cuda' or 'cuda:1'."
            ) from None
    return device


def device_available(device):
    """Whether ``device`` (a resolved device string) exists on this machine; a
    name torch does not know does not, so that a model file's device never
    makes loading fail."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return False
    if dev.type == "cuda":
        return torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()
    return dev.type == "cpu"


def resolve_device(device):
    """The device a fit runs on, as a string: ``'auto'`` picks CUDA when present.

    Only CPU and CUDA are accepted, the devices a model file's device may be
    restored on (:func:`device_available`); any other backend is refused here,
    before torch fails deep inside a fit. Apple's MPS has no float64, in which
    the detectors sum losses, reduce scores and standardize tabular data.
    """
    check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "mps":
        raise ValueError(
            f"device={device!r}: the detectors sum losses, reduce scores and standardize "
            "in float64, which Apple's MPS backend does not have; use device='cpu'."
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device={device!r} but the detectors run only on CPU and CUDA devices; "
            "use device='auto', 'cpu' or 'cuda'."
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available on this machine; use "
                "device='auto' or device='cpu'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but this machine has {torch.cuda.device_count()} "
                "CUDA device(s); pick an existing index."
            )
    return str(dev)


def draw_seed(random_state):
    """A 31-bit seed drawn from ``random_state`` the scikit-learn way."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def make_generator(seed):
    """A CPU ``torch.Generator`` seeded with ``seed``; the global RNG is not used."""
    return torch.Generator().manual_seed(int(seed))


def generator_seed(generator):
    """Draw a fresh 31-bit seed from ``generator`` (for sub-streams)."""
    return int(
        torch.randint(np.iinfo(np.int32).max, (1,), generator=generator, device=generator.device)
    )


def build_quietly(factory):
    """Call ``factory()`` (layer constructors draw from the global torch RNG)
    with the global RNG state restored afterwards (see :func:`init_weights`),
    and return the module on the CPU in float32, the dtype of every input,
    whatever default device and dtype a caller's process has set (the fit then
    places it on its ``device_``), with parameters that can train, also when
    built (a model loaded) inside a caller's ``torch.inference_mode()`` block."""
    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch.inference_mode(False):
        return factory().float()


def init_weights(module, generator):
    """Re-draw linear and convolution weights from ``generator`` with PyTorch's
    default scheme, and reset normalization layers: seeded fits, no global seed."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, _INIT_LAYERS):
                weight = layer.weight
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    fan_in = weight.shape[1] * math.prod(weight.shape[2:])
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            elif isinstance(layer, _NORM_LAYERS):
                layer.reset_parameters()
    return module


def check_threads(n_threads):
    """Validate ``n_threads``: None or an int >= 1."""
    return check_int(n_threads, "n_threads", min_value=1, allow_none=True)


@contextlib.contextmanager
def process_wide(state, enter, leave):
    """Run the block with a process-wide setting that overlapping blocks (fits or
    scoring calls in several threads) share: the first one in calls ``enter()``
    and keeps what it returns, the last one out calls ``leave(kept)``. Without the
    count, a block that ended first would restore what a later one found, the
    earlier block's temporary setting, and leave it so. ``state`` is the
    setting's ``{"lock": threading.Lock(), "blocks": 0, "kept": None}``."""
    with state["lock"]:
        if state["blocks"] == 0:
            state["kept"] = enter()
        state["blocks"] += 1
    try:
        yield
    finally:
        with state["lock"]:
            state["blocks"] -= 1
            if state["blocks"] == 0:
                leave(state["kept"])


_CUDNN = {"lock": threading.Lock(), "blocks": 0, "kept": None}


@contextlib.contextmanager
def deterministic_cudnn():
    """Run the block with cuDNN's deterministic algorithms, then restore the flags,
    so that two seeded GPU fits agree. A no-op without cuDNN."""
    cudnn = torch.backends.cudnn
    if not cudnn.is_available():
        yield
        return

    def enter():
        before = (cudnn.deterministic, cudnn.benchmark)
        cudnn.deterministic, cudnn.benchmark = True, False
        return before

    def leave(before):
        cudnn.deterministic, cudnn.benchmark = before

    with process_wide(_CUDNN, enter, leave):
        yield


@contextlib.contextmanager
def seeded_dropout(module, generator):
    """Let every :class:`~anomalib_lite.nn.GeneratorDropout` of ``module``
    draw its masks from ``generator`` during the block, then from none."""
    layers = [m for m in module.modules() if isinstance(m, GeneratorDropout)]
    for layer in layers:
        layer.generator = generator
    try:
        yield
    finally:
        for layer in layers:
            layer.generator = None


_THREADS = {"lock": threading.Lock(), "blocks": 0, "kept": None}


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run the block with ``n_threads`` torch threads (None: :data:`DEFAULT_THREADS`),
    then restore the count.

    torch keeps one process-wide count, which a thread takes up at its first
    torch call, and one per thread that has called. A block that ends while
    another runs (fits in several threads) gives its own thread back the count
    it found; the last one out gives the process back the count that the first
    one in found, not a count another block had set for itself.
    """
    wanted = DEFAULT_THREADS if n_threads is None else int(n_threads)

    def set_count(count):
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)

    with _THREADS["lock"]:
        before = torch.get_num_threads()
        if _THREADS["blocks"] == 0:
            _THREADS["kept"] = before
        _THREADS["blocks"] += 1
        set_count(wanted)
    try:
        yield wanted
    finally:
        with _THREADS["lock"]:
            _THREADS["blocks"] -= 1
            if _THREADS["blocks"]:
                set_count(before)
            else:  # the process-wide count too, whatever this thread's is
                torch.set_num_threads(_THREADS["kept"])
