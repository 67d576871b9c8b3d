"""Training loop, batching, devices and checkpoints shared by the torch detectors.

A subclass of :class:`TorchDetector` supplies the hooks ``_set_geometry(X)`` /
``_check_geometry(X)`` (fitted input geometry), ``_preprocess(x)`` (a batch tensor in
input units and layout, any real dtype, to the float32 network input: the one
preprocessing path, which scoring, training and :mod:`anomalib_lite.onnx` all run),
``_from_tensor(out, like)`` (network space to input units), ``_make_module()``,
``_train_loss(out, x)``, ``_corrupt(x, gen)`` (the training input made from batch ``x``,
which stays the target), ``_errors(x, out)`` (squared error per value, input units) and
``_score_errors(errors, x, out)`` (chained by ``_score_tensor``), and may supply
``_network_input(module, x)`` (what the network reads when scoring). Every output
comes from one forward pass, ``_forward``.
"""

import contextlib
import copy
import dataclasses
import logging
import math
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch.overrides import TorchFunctionMode

from . import io as model_file
from .base import BaseDetector
from .utils._torch import (
    build_quietly,
    check_device,
    check_threads,
    deterministic_cudnn,
    device_available,
    draw_seed,
    generator_seed,
    init_weights,
    make_generator,
    process_wide,
    resolve_device,
    seeded_dropout,
    torch_threads,
)
from .utils._validation import (
    check_bool,
    check_dense,
    check_float,
    check_int,
    check_option,
    check_seed,
)

__all__ = ["TorchDetector"]

logger = logging.getLogger("anomalib_lite")

_SCHEDULES = ("constant", "cosine", "constant-then-cosine")
#: Fraction of a cosine run spent warming the learning rate up linearly.
WARMUP_FRACTION = 0.05
#: Fraction of a ``'constant-then-cosine'`` run at the full learning rate before it decays.
CONSTANT_FRACTION = 0.7
#: An epoch whose training loss is ``SPIKE_FACTOR`` times the run's lowest is undone
#: (weights and Adam's state go back to the epoch before) and the learning rate is
#: halved for the rest of the run: at Adam's high rates a run can leave its basin in
#: one epoch and not find its way back (ELPV cells at 64 pixels, one seed in three).
SPIKE_FACTOR = 10.0
#: Devices with a fused Adam kernel (one kernel per step, not one per tensor).
FUSED_ADAM_DEVICES = ("cpu", "cuda")
#: ``batch_size='auto'``: one in ``AUTO_BATCH_DIVISOR`` samples, clipped to ``AUTO_BATCH``,
#: so that small training sets still get that many optimizer steps per epoch.
AUTO_BATCH = (8, 32)
AUTO_BATCH_DIVISOR = 20
#: Fewest rows a fit holds out (``validation_fraction > 0``): Tukey's fence needs two.
MIN_HELD_OUT = 2
#: ``validation_fraction='auto'`` with ``early_stopping`` (without, it holds none out).
AUTO_VALIDATION_FRACTION = 0.1
#: Float32 activation bytes one scoring batch may hold, and its most rows.
SCORING_MEMORY = 64 * 2**20
MAX_SCORING_ROWS = 8192


def auto_batch_size(n_samples, batch_size, divisor=AUTO_BATCH_DIVISOR):
    """``batch_size``, or ``n_samples // divisor`` clipped to :data:`AUTO_BATCH` for ``'auto'``."""
    if batch_size != "auto":
        return int(batch_size)
    low, high = AUTO_BATCH
    return int(min(high, max(low, n_samples // divisor)))


class _CountOutputs(TorchFunctionMode):
    """The storages that the torch calls under this mode return, each once (views
    share their base's), but ``input``'s. They are held, so that a freed one cannot
    be reused at the same address and escape the count."""

    def __init__(self, input):
        super().__init__()
        self.storages = {input.untyped_storage().data_ptr(): None}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                self.storages.setdefault(storage.data_ptr(), storage)
        return out


def activation_bytes(module, x):
    """Bytes of every tensor that ``module``'s forward pass on ``x`` creates: the
    outputs of its layers and of the functions its ``forward`` calls (a U-Net's
    pooling, interpolation and concatenation), as if none were freed."""
    counter = _CountOutputs(x)
    with torch.inference_mode(), counter:
        module(x)
    return sum(s.nbytes() for s in counter.storages.values() if s is not None)


def _check_callbacks(callbacks):
    if callbacks is None:
        return
    if callable(callbacks) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            f"callbacks must be None or a list of callables, got "
            f"{type(callbacks).__name__} {callbacks!r}; pass callbacks=[func] for one."
        )
    for i, callback in enumerate(callbacks):
        if not callable(callback):
            raise TypeError(
                f"callbacks[{i}] is a {type(callback).__name__} ({callback!r}), not a "
                "callable; each callback is called as callback(detector, record)."
            )


def _map_tree(tree, leaf, func, other=lambda v: v):
    """A (nested) state dict with ``func`` applied to each ``leaf`` and ``other`` to the rest."""
    if isinstance(tree, leaf):
        return func(tree)
    if isinstance(tree, dict):
        return {k: _map_tree(v, leaf, func, other) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tree(v, leaf, func, other) for v in tree)
    return other(tree)


def _cpu_copy(tree):
    """A detached CPU copy of a (nested) state dict."""
    return _map_tree(tree, torch.Tensor, lambda t: t.detach().to("cpu", copy=True), copy.deepcopy)


def _arrays(tree):
    """A copy of a (nested) state dict with every tensor as a numpy array."""
    return _map_tree(tree, torch.Tensor, lambda t: t.detach().to("cpu", copy=True).numpy())


def _tensors(tree):
    """The inverse of :func:`_arrays`: numpy arrays back to CPU tensors."""
    return _map_tree(tree, np.ndarray, lambda a: torch.from_numpy(np.array(a, order="C")))


@dataclasses.dataclass
class _RunState:
    """Training state beyond the fitted attributes: with them, all a resumed fit needs
    to go on exactly as if it had never stopped."""

    built_with: dict  # the shaping parameters the network was built with, as JSON values
    seed: int  # of the run's generator (shuffling, dropout, corruption)
    split_seed: int  # the first run's seed, which draws the held-out rows of every run
    start: int = 0  # n_iter_ when the current run started ...
    stop_at: int = 0  # ... and where it ends
    done: bool = True  # all epochs run, early stopping or a callback's request
    no_improve: int = 0  # epochs in a row without improvement
    rng: object = None  # the generator's state after the last epoch
    optimizer: object = None  # Adam's state dict on the CPU; None starts a new one
    best: object = None  # weights of the run's epoch with the lowest monitored loss
    lowest_loss: object = None  # the run's lowest training loss of an epoch yet
    lr_scale: float = 1.0  # halved whenever an epoch is undone for a loss spike
    row_bytes: int = 0  # activation bytes of one scoring row
    # The checkpoint file this object wrote or resumed from, as (resolved path, the
    # version's _file_version); never saved, so that no file, pickle or copy names a
    # file for a later fit to write.
    checkpoint: object = None

    def to_tree(self):
        """The state as JSON values and numpy arrays (the ``checkpoint`` claim left out)."""
        fields = [f.name for f in dataclasses.fields(self) if f.name != "checkpoint"]
        return _arrays({name: getattr(self, name) for name in fields})

    @classmethod
    def from_tree(cls, tree):
        return cls(**_tensors(tree))


def _file_version(path):
    """What tells one version of the file at ``path`` from another: checkpoints are
    replaced by an atomic rename, so each one written is a new inode."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _claims(claim, path):
    """Whether ``claim`` (a ``_RunState.checkpoint``) is on the very version of the file
    at ``path``: not one that another detector (a resumed copy) or a user put there since."""
    try:
        return claim == (str(path.resolve()), _file_version(path))
    except OSError:  # gone since
        return False


def _as_tuples(value):
    """JSON lists back to (nested) tuples."""
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    return value


_LOGGING = {"lock": threading.Lock(), "blocks": 0, "kept": None}


@contextlib.contextmanager
def _progress_logging(verbose):
    """Let ``verbose`` progress messages reach the user for the duration of the call:
    a stderr handler where logging is not configured, and level INFO if needed."""
    if not verbose:
        yield
        return

    def enter():
        handler, old_level = None, logger.level
        if not logger.hasHandlers():
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        return handler, old_level

    def leave(kept):
        handler, old_level = kept
        logger.setLevel(old_level)
        if handler is not None:
            logger.removeHandler(handler)

    # Verbose fits in several threads share the handler: the last one out removes it.
    with process_wide(_LOGGING, enter, leave):
        yield


class TorchDetector(BaseDetector):
    """Base class of the torch autoencoder detectors (not used directly): the MLP
    training parameters, epoch loop, early stopping, learning-rate schedule,
    ``partial_fit``, interruption, divergence checks, checkpoints, pickling and
    batched inference."""

    #: Parameters that shape the network; a checkpoint must agree on them.
    _module_params = ()
    #: dtype a numpy batch is converted to before ``_preprocess``; the
    #: preprocessing converts any other tensor dtype to it the same way.
    _input_dtype = np.float32
    #: ``batch_size='auto'`` uses one in this many training samples.
    _auto_batch_divisor = AUTO_BATCH_DIVISOR
    #: An epoch whose training loss is this many times the run's lowest is undone.
    _spike_factor = SPIKE_FACTOR

    # ------------------------------------------------------------ validation
    def _check_params(self):
        super()._check_params()
        check_int(self.batch_size, "batch_size", min_value=1, allow_auto=True)
        check_float(self.learning_rate_init, "learning_rate_init", low=0)
        check_option(self.learning_rate, "learning_rate", _SCHEDULES)
        check_float(self.weight_decay, "weight_decay", low=0, closed="left")
        if self.weight_decay * self.learning_rate_init >= 1:
            raise ValueError(
                f"weight_decay={self.weight_decay!r} times learning_rate_init="
                f"{self.learning_rate_init!r} must be below 1: a step shrinks the weights by "
                "that share of themselves, so at 1 or more it zeroes or flips them."
            )
        check_int(self.max_iter, "max_iter", min_value=1)
        check_bool(self.early_stopping, "early_stopping")
        if isinstance(self.validation_fraction, str) and self.validation_fraction != "auto":
            raise ValueError(
                f"validation_fraction={self.validation_fraction!r} must be 'auto' or a "
                "float in [0, 1)."
            )
        check_float(
            self.validation_fraction,
            "validation_fraction",
            low=0,
            high=1,
            closed="left",
            allow_auto=True,
        )
        if self.early_stopping and self._validation_share() == 0:
            raise ValueError(
                "early_stopping=True stops on the loss of held-out rows, but "
                "validation_fraction=0 holds none out; set validation_fraction to 'auto' or "
                "a share in (0, 1), or early_stopping=False."
            )
        check_int(self.n_iter_no_change, "n_iter_no_change", min_value=1)
        check_float(self.tol, "tol", low=0, closed="left")
        check_bool(self.warm_start, "warm_start")
        if not isinstance(self.verbose, (bool, np.bool_)):
            check_int(self.verbose, "verbose", min_value=0)
        check_device(self.device)
        check_threads(self.n_threads)
        check_seed(self.random_state)
        path = self.checkpoint_path
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"checkpoint_path must be None or a file path (str or os.PathLike), "
                f"got {type(path).__name__} {path!r}."
            )
        _check_callbacks(self.callbacks)

    def _validate_input(self, X, *, reset):
        check_dense(X)
        return super()._validate_input(X, reset=reset)

    # ------------------------------------------------------------ the module
    def _build_module(self):
        """Build ``module_``, untrained, on the CPU, leaving the global torch RNG alone
        (``fit`` and ``_set_state`` then set its weights)."""
        self.module_ = build_quietly(self._make_module)
        self.module_.eval()
        one = self._to_tensor(np.zeros((1, self.n_features_in_), dtype=np.float32))
        self._run.row_bytes = activation_bytes(self.module_, one) + 4 * one.numel()
        return self.module_

    def _init_module(self, generator):
        """Draw ``module_``'s starting weights from ``generator``: PyTorch's default
        scheme, unless a detector's network has its own."""
        init_weights(self.module_, generator)

    #: Memory format of the network's inputs and weights (None: torch's default).
    _memory_format = None

    def _place_module(self):
        """Move ``module_`` to ``device_`` in :attr:`_memory_format`."""
        if self._memory_format is None:
            self.module_.to(self.device_)
        else:
            self.module_.to(self.device_, memory_format=self._memory_format)

    def _placed(self, x):
        """``x`` on the network's device, in its memory format."""
        if self._memory_format is None:
            return x.to(self._module_device())
        return x.to(self._module_device(), memory_format=self._memory_format)

    def _module_device(self):
        return next((t.device for t in self.module_.parameters()), torch.device("cpu"))

    # ----------------------------------------------------------------- state
    def _is_trained(self):
        return hasattr(self, "module_")

    def _discard_fit(self, keep=()):
        """Drop the fitted attributes but those named in ``keep``."""
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            if name not in keep:
                delattr(self, name)

    _fit_flags = ("_training", "_trained_run", "_kept_weights", "_wrote_checkpoint")

    def _keeps_failed_fit(self, saved, exc):
        """A ``fit`` or ``partial_fit`` that failed after training the network the
        detector already held for an epoch or more keeps it: its weights changed in
        place. One that failed before an epoch finished has its weights back as they
        were, so it restores the rest too (the threshold among them). Ctrl-C once
        training is over keeps the trained network (:meth:`_keep_unscored`)."""
        if isinstance(exc, KeyboardInterrupt) and vars(self).get("_trained_run"):
            self._keep_unscored()
        held = getattr(self, "module_", None) is saved.get("module_")
        trained = getattr(self, "n_iter_", None) != saved.get("n_iter_")
        changed = getattr(self, "_training", False) and held and trained
        return changed or getattr(self, "_kept_weights", False)

    def _state_before_fit(self):
        saved = super()._state_before_fit()
        if "_run" in saved:
            saved["_run"] = copy.copy(self._run)  # a new run starts by changing it in place
        return saved

    def _keep_unscored(self):
        """Keep the weights of a run that Ctrl-C stopped after training, while fit set
        how samples score and the threshold: without ``offset_``, and the run left
        open, with no epoch to go if it had finished, so that ``fit`` with
        ``warm_start=True`` finishes it and sets them."""
        finished = self._run.done
        if finished:
            self._run.stop_at = self.n_iter_
            self._run.done = False
        vars(self)["_kept_weights"] = True
        rest = (
            "sets the threshold without training further"
            if finished
            else f"trains the run's remaining {self._run.stop_at - self.n_iter_} epochs and "
            "sets the threshold"
        )
        warnings.warn(
            f"Interrupted (KeyboardInterrupt) while the threshold was being set; the model "
            f"keeps the weights of epoch {self.n_iter_} without a threshold (offset_): "
            f"score_samples works, and fit with warm_start=True {rest}.",
            UserWarning,
            stacklevel=5,
        )

    def _start_fresh(self, X):
        # Nothing of a previous fit (its threshold, its choice of score) may be read by
        # a callback scoring during this one; the validation just set the input's own.
        self._discard_fit(keep=("n_features_in_", "feature_names_in_"))
        self.device_ = resolve_device(self.device)
        self.batch_size_ = auto_batch_size(X.shape[0], self.batch_size, self._auto_batch_divisor)
        self._set_geometry(X)
        init_seed = draw_seed(self.random_state)
        seed = generator_seed(make_generator(init_seed))
        self._run = _RunState(
            built_with={k: _jsonable(getattr(self, k)) for k in self._module_params},
            seed=seed,
            split_seed=seed,
            checkpoint=getattr(self, "_run", None) and self._run.checkpoint,
        )
        self._build_module()
        self._init_module(make_generator(init_seed))
        self._place_module()
        self.n_iter_ = 0
        self.history_ = []
        self.best_loss_ = math.inf

    def _changed_module_param(self, recorded):
        """``(name, recorded value)`` of the first shaping parameter changed since, or None."""
        for name, value in recorded.items():
            if _jsonable(getattr(self, name)) != value:
                return name, _as_tuples(value)
        return None

    def _prepare_warm(self, X, caller="warm_start"):
        """Continue from the fitted state, on the requested device; refuse to continue
        a network built with other shaping parameters. ``caller`` names what continues
        (``'warm_start'`` or ``'partial_fit'``, which continues whatever warm_start is)."""
        changed = self._changed_module_param(self._run.built_with)
        if changed is not None:
            name, value = changed
            anew = (
                "call fit with warm_start=False"
                if caller == "partial_fit"
                else "set warm_start=False"
            )
            raise ValueError(
                f"{caller} continues the fitted network, which was built with "
                f"{name}={value!r}, but this detector now has {name}="
                f"{getattr(self, name)!r}; set it back to continue, or {anew} to fit anew."
            )
        self._check_geometry(X)
        self.batch_size_ = auto_batch_size(X.shape[0], self.batch_size, self._auto_batch_divisor)
        self.device_ = resolve_device(self.device)
        self._place_module()

    def _new_run(self, n_epochs):
        run = self._run
        if run.rng is not None:
            gen = make_generator(0)
            gen.set_state(run.rng)
            run.seed = generator_seed(gen)
        run.start = self.n_iter_
        run.stop_at = self.n_iter_ + n_epochs
        run.done = False
        run.no_improve = 0
        run.best = None
        run.rng = None
        run.lowest_loss = None
        run.lr_scale = 1.0
        self.best_loss_ = math.inf

    # --------------------------------------------------------------- fitting
    def _check_continuation(self, X):
        # Checked against the state a warm start continues, as in partial_fit:
        # renamed or reordered columns are refused rather than scaled by another
        # column's statistics.
        if self._resumes():
            self._validate_input(X, reset=False)

    def _resumes(self):
        """Whether ``warm_start`` continues: the fitted state, or else the one at
        ``checkpoint_path``, loaded here."""
        if not self.warm_start:
            return False
        if self._is_trained():
            return True
        with self._runtime():
            return self._load_checkpoint()

    def _fit(self, X):
        self._n_held_out(X.shape[0])  # refused before anything changes
        with self._runtime():
            resume = self.warm_start and self._is_trained()  # fit loaded a checkpoint
            self._claim_checkpoint()
            if resume:
                self._prepare_warm(X)
            else:
                self._start_fresh(X)
            if self._run.done:
                self._new_run(self.max_iter)
                self._run.optimizer = None
            self._train_checked(X, early_stopping=self.early_stopping)
            vars(self)["_trained_run"] = True
            self._choose_scoring(X)

    def _train_checked(self, X, **train_options):
        """Train on validated ``X``; after a divergence that kept an epoch of this
        call, score its weights and re-raise; after training, refuse weights whose
        output is not finite.

        Weights that cannot be scored go back to those the call started from, so
        that a failed ``partial_fit`` or warm start leaves the detector as it was.
        """
        start = (self.n_iter_, len(self.history_))
        weights = self._weights_copy()
        try:
            self._train(self._to_tensor(X), **train_options)
        except FloatingPointError:
            # A first epoch that diverged discarded the network; a later one that
            # finished none of this call's epochs has the weights back as they were.
            if getattr(self, "n_iter_", 0) > start[0]:
                try:
                    self._score_kept_weights(X)
                except (FloatingPointError, ValueError):
                    self._back_to(weights, start)
                    raise
            raise
        try:
            self._check_output(X)
        except FloatingPointError:
            self._back_to(weights, start)
            raise

    def _back_to(self, weights, start):
        """The weights and record of the epoch ``start = (n_iter_, len(history_))``."""
        self.module_.load_state_dict(weights)
        self.module_.eval()
        self.n_iter_ = start[0]
        del self.history_[start[1] :]

    def _check_output(self, X):
        """Refuse weights whose output on the first training batch is not finite.

        An epoch's loss is the mean of its steps' losses, each measured before its
        step, so a last step that ruins the weights shows only in their output.
        """
        _, out = self._forward(X[: self.batch_size_], plain=True)
        if all(bool(torch.isfinite(t).all()) for t in (out if isinstance(out, tuple) else (out,))):
            return
        lr = self.learning_rate_init
        raise FloatingPointError(
            f"Training diverged: after epoch {self.n_iter_} the network's output on the "
            f"training samples is not finite. Lower learning_rate_init (now {lr:g}), e.g. "
            f"to {lr / 10:g}, or check the scale of the input."
        )

    def _score_kept_weights(self, X):
        """After a divergence that kept the weights of the last finite epoch, set how
        they score and their threshold, as a finished fit would."""
        if not (self._is_trained() and self.history_):
            return
        self._check_output(X)
        self._choose_scoring(X)
        self._set_offset(self._batched(self._anomaly_score, X))
        vars(self)["_kept_weights"] = True

    def partial_fit(self, X, y=None):
        """Train for one more epoch over ``X``.

        For data that does not fit in memory, or to continue a fit. The first call
        sets the geometry and scaling, or with ``warm_start=True`` resumes from an
        existing ``checkpoint_path``; each runs one epoch at ``learning_rate_init``
        (optimizer state kept, no early stopping) on ``X`` less the rows a fit on
        ``X`` would hold out, and sets ``offset_`` from ``X`` as ``fit`` does.

        Parameters
        ----------
        X : array-like
            A batch of training samples, in the layouts ``fit`` accepts.
        y : array-like of shape (n_samples,), default=None
            Optional 0/1 labels; rows labelled 1 (anomalies) are skipped.

        Returns
        -------
        self : object
            The updated detector.
        """
        with self._as_before_on_failure():
            self._check_params()
            self._resumes()
            first = not self._is_trained()
            X = self._validate_input(X, reset=first)
            X = self._normal_rows(X, y)
            self._n_held_out(X.shape[0])  # refused before anything changes
            with self._runtime():
                self._claim_checkpoint()
                if first:
                    self._start_fresh(X)
                else:
                    self._prepare_warm(X, caller="partial_fit")
                self._new_run(1)
                self._train_checked(X, early_stopping=False, constant_lr=True)
                vars(self)["_trained_run"] = True
                self._choose_scoring(X)
            self._set_offset(self._batched(self._anomaly_score, X))
        return self

    @contextlib.contextmanager
    def _runtime(self):
        """What fitting runs under: the thread count, deterministic cuDNN, progress
        logging, and gradients on, also in a caller's ``torch.no_grad()`` or
        ``torch.inference_mode()`` block, where training could not step."""
        with (
            torch_threads(self.n_threads),
            deterministic_cudnn(),
            _progress_logging(self.verbose),
            torch.inference_mode(False),
            torch.enable_grad(),
        ):
            yield

    def _validation_share(self):
        """``validation_fraction`` as a number: ``'auto'`` holds out
        ``AUTO_VALIDATION_FRACTION`` with ``early_stopping`` and nothing without."""
        if isinstance(self.validation_fraction, str):
            return AUTO_VALIDATION_FRACTION if self.early_stopping else 0.0
        return self.validation_fraction

    def _n_held_out(self, n):
        """Rows a fit on ``n`` rows holds out: ``validation_fraction`` of them, at
        least ``MIN_HELD_OUT``, or 0; refuses ``n`` that leaves none to train on."""
        share = self._validation_share()
        if share == 0:
            return 0
        n_val = max(MIN_HELD_OUT, math.ceil(share * n))
        if n - n_val < 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction!r} holds out {n_val} rows "
                f"(at least {MIN_HELD_OUT}, for the threshold), and n_samples={n} leaves "
                f"none to train on. Pass at least {n_val + 1} samples or set "
                "validation_fraction=0."
            )
        return n_val

    def _held_out(self, n, gen=None):
        """``(held out, trained on)`` positions of a fit's ``n`` rows, or None when
        ``validation_fraction`` is 0: :meth:`_n_held_out` rows drawn by ``gen`` or a
        new generator seeded as the fit's first run, so that every later run
        (``warm_start``, ``partial_fit`` on a batch of the same size) holds out the
        same rows."""
        n_val = self._n_held_out(n)
        if n_val == 0:
            return None
        gen = gen or make_generator(self._run.split_seed)
        perm = torch.randperm(n, generator=gen, device=gen.device)
        return perm[:n_val], perm[n_val:]

    def _split(self, x):
        """Training rows, held-out rows (or None) and the run's generator. The first
        run draws the split with its own generator before shuffling; a later run
        draws the same split with a copy of that generator."""
        gen = make_generator(self._run.seed)
        first_run = self._run.seed == self._run.split_seed
        split = self._held_out(x.shape[0], gen if first_run else None)
        if split is None:
            return x, None, gen
        return x[split[1]], x[split[0]], gen

    def _fence_scores(self, anomaly_scores):
        """The held-out rows' scores: the network fits the rows it trained on more
        closely than new ones, so a fence on those would flag most new normal rows."""
        split = self._held_out(len(anomaly_scores))
        return anomaly_scores if split is None else anomaly_scores[split[0].numpy()]

    def _lr_factor(self, progress):
        """Learning-rate multiplier at ``progress`` in [0, 1) of the run."""
        if self.learning_rate == "constant":
            return 1.0
        if self.learning_rate == "constant-then-cosine":
            if progress < CONSTANT_FRACTION:
                return 1.0
            p = (progress - CONSTANT_FRACTION) / (1.0 - CONSTANT_FRACTION)
            return 0.5 * (1.0 + math.cos(math.pi * p))
        if progress < WARMUP_FRACTION:
            # From a thousandth of the rate up to the rate itself, never past it.
            return min(1.0, (progress + 1e-3) / WARMUP_FRACTION)
        p = (progress - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
        return 0.5 * (1.0 + math.cos(math.pi * p))

    def _make_optimizer(self, constant_lr):
        fused = True if self._module_device().type in FUSED_ADAM_DEVICES else None
        optimizer = torch.optim.AdamW(
            self.module_.parameters(),
            lr=self.learning_rate_init,
            weight_decay=self.weight_decay,
            fused=fused,
        )
        if self._run.optimizer is not None:
            # A copy: on the CPU load_state_dict would keep the saved moments
            # themselves, which the steps update in place, so that a run that fails
            # would leave the state a resumed run starts from changed.
            state = _cpu_copy(self._run.optimizer)
            # The kernel follows this run's device, not the saved one.
            # weight_decay is read every run, as the learning rate is.
            state["param_groups"] = [
                {**group, "fused": fused, "foreach": None, "weight_decay": self.weight_decay}
                for group in state["param_groups"]
            ]
            optimizer.load_state_dict(state)
            # Saved moments are C-ordered; give them their weight's layout, as a
            # fresh optimizer would, for the same arithmetic in the fused kernel.
            for param, moments in optimizer.state.items():
                for key, value in moments.items():
                    if value.shape == param.shape and value.stride() != param.stride():
                        moments[key] = torch.empty_like(param).copy_(value)
        if constant_lr:
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate_init
        return optimizer

    def _train(self, x, *, early_stopping, constant_lr=False):
        """Run the current run's remaining epochs on the CPU tensor ``x``."""
        vars(self)["_training"] = True
        # The weights are about to change: a threshold set on the old ones no longer
        # applies (fit sets a new one), nor may a checkpoint of this run hold it.
        vars(self).pop("offset_", None)
        run = self._run
        train, val, gen = self._split(x)
        if run.rng is not None:
            gen.set_state(run.rng)
        train = self._placed(train)
        val = self._placed(val) if early_stopping else None
        optimizer = self._make_optimizer(constant_lr)
        span = max(run.stop_at - run.start, 1)
        steps = math.ceil(train.shape[0] / self.batch_size_)
        snapshot = self._snapshot(optimizer)
        started = time.perf_counter()
        try:
            while self.n_iter_ < run.stop_at and not run.done:
                t0 = time.perf_counter()
                done = self.n_iter_ - run.start
                lr_at = (
                    None
                    if constant_lr
                    else (
                        lambda s, d=done, k=run.lr_scale: (
                            k * self._lr_factor((d + s / steps) / span)
                        )
                    )
                )
                train_loss = self._epoch(train, optimizer, gen, lr_at)
                if not math.isfinite(train_loss):
                    self._restore(snapshot, optimizer)
                    self._diverged(train_loss)
                undone = self._spiked(train_loss)
                if undone:
                    self._restore(snapshot, optimizer)
                    run.lr_scale /= 2
                val_loss = None if val is None else self._eval_loss(val)
                self.n_iter_ += 1
                run.rng = gen.get_state()
                improved = self._monitor(train_loss if val is None else val_loss, early_stopping)
                entry = {
                    "epoch": self.n_iter_,
                    "train_loss": train_loss,
                    "valid_loss": val_loss,
                    "learning_rate": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - t0,
                    "undone": undone,
                }
                self.history_.append(entry)
                snapshot = self._snapshot(optimizer)
                if improved:  # the snapshot's copy of the weights, never changed
                    run.best = snapshot[0]
                if self._call_back(entry) or self.n_iter_ >= run.stop_at:
                    run.done = True
                self._log_epoch(entry, started)
                self._write_checkpoint(snapshot[1])
        except KeyboardInterrupt:
            if not self.history_:
                self._discard_fit()
                raise
            self._restore(snapshot, optimizer)
            run.optimizer = _cpu_copy(snapshot[1])
            warnings.warn(
                f"Training interrupted (KeyboardInterrupt) after {self.n_iter_} epochs; "
                f"the model holds the weights of epoch {self.n_iter_}. Call fit again "
                "with warm_start=True, or partial_fit, to continue.",
                UserWarning,
                stacklevel=4,
            )
            return
        except BaseException:
            # Weights part-way through an epoch match no epoch of the record: go back
            # to the last finished one, which a warm start continues from (a first
            # epoch that diverged has discarded the network already).
            if self._is_trained():
                self._restore(snapshot, optimizer)
                run.optimizer = _cpu_copy(snapshot[1])
            raise
        run.done = True  # also when a run left open after its last epoch is finished
        if run.best is not None and run.best is not snapshot[0]:
            # The best epoch was not the last: a loss spike late in a run must not
            # leave its weights in the model.
            self.module_.load_state_dict(run.best)
            run.best = None  # not saved in the checkpoint
            self._write_checkpoint(self._snapshot(optimizer)[1])
        run.best = None
        run.optimizer = _cpu_copy(optimizer.state_dict())
        self.module_.eval()

    def _spiked(self, loss):
        """Whether the training loss of an epoch rose ``SPIKE_FACTOR`` times above the
        run's lowest; tracks the lowest."""
        run = self._run
        if run.lowest_loss and loss > self._spike_factor * run.lowest_loss:
            return True
        run.lowest_loss = loss if run.lowest_loss is None else min(run.lowest_loss, loss)
        return False

    def _epoch(self, train, optimizer, gen, lr_at):
        module = self.module_
        module.train()
        n = train.shape[0]
        order = torch.randperm(n, generator=gen, device=gen.device).to(train.device)
        total = torch.zeros((), dtype=torch.float64, device=train.device)
        with seeded_dropout(module, gen):
            for step, start in enumerate(range(0, n, self.batch_size_)):
                idx = order[start : start + self.batch_size_]
                xb = train[idx]
                if self._memory_format is not None:
                    xb = xb.contiguous(memory_format=self._memory_format)
                if lr_at is not None:
                    lr = self.learning_rate_init * lr_at(step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                loss = self._batch_loss(module, xb, gen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach().double() * idx.shape[0]
        module.eval()
        return float(total) / n

    def _choose_scoring(self, X):
        """Set how samples are scored, from the validated training samples ``X``
        after training; detectors with one fixed score do nothing."""

    def _batch_loss(self, module, xb, gen):
        """Training loss of ``module`` on batch ``xb``, drawing from ``gen``, the fit's
        generator: the network's output on :meth:`_corrupt`'s input against ``xb``."""
        return self._train_loss(module(self._corrupt(xb, gen)), xb)

    def _corrupt(self, xb, gen):
        """Network input for training batch ``xb``: ``xb``, unless a detector corrupts it
        (drawing from ``gen``, the fit's generator); the target stays ``xb``."""
        return xb

    def _call_back(self, entry):
        """Call every callback with the epoch's record; True when one asks to stop."""
        stop = False
        for callback in self.callbacks or ():
            stop = bool(callback(self, dict(entry))) or stop
        return stop

    def _eval_loss(self, val):
        """Mean loss of the held-out images ``val``, from a generator seeded by the fit,
        so that every epoch draws the same (for detectors that draw at all)."""
        gen = make_generator(self._run.seed)
        total = 0.0
        with torch.inference_mode():
            for start in range(0, val.shape[0], self.batch_size_):
                xb = val[start : start + self.batch_size_]
                total += float(self._eval_batch_loss(xb, gen)) * xb.shape[0]
        return total / val.shape[0]

    def _eval_batch_loss(self, xb, gen):
        """Loss of held-out batch ``xb``: the network's output on it against it."""
        return self._train_loss(self.module_(xb), xb)

    def _monitor(self, loss, early_stopping):
        """Track the validation or training loss; True when ``loss`` is the run's
        lowest yet, whose weights ``_train`` keeps. With ``early_stopping``, scikit-learn
        MLP's stopping rule ends the run. A run without it trains every epoch: the
        learning rate's schedule is laid over them, and a run stopped on a plateau of
        its training loss while the rate is still high would miss the decay that
        settles the weights."""
        run = self._run
        if loss > self.best_loss_ - self.tol:
            run.no_improve += 1
        else:
            run.no_improve = 0
        if early_stopping and run.no_improve >= self.n_iter_no_change:
            run.done = True
        if loss < self.best_loss_:
            self.best_loss_ = float(loss)
            return True
        return False

    def _weights_copy(self):
        return {k: v.detach().clone() for k, v in self.module_.state_dict().items()}

    def _snapshot(self, optimizer):
        return self._weights_copy(), copy.deepcopy(optimizer.state_dict())

    def _restore(self, snapshot, optimizer):
        self.module_.load_state_dict(snapshot[0])
        optimizer.load_state_dict(snapshot[1])
        self.module_.eval()

    def _diverged(self, loss):
        lr = self.learning_rate_init
        epoch = self.n_iter_ + 1
        if not self.history_:
            self._discard_fit()
        raise FloatingPointError(
            f"Training diverged: the training loss of epoch {epoch} is {loss} (not "
            f"finite). Lower learning_rate_init (now {lr:g}), e.g. to {lr / 10:g}, or "
            "check the scale of the input."
            + (f" The model keeps the weights of epoch {epoch - 1}." if self._is_trained() else "")
        )

    def _log_epoch(self, entry, started):
        if not self.verbose:
            return
        elapsed = time.perf_counter() - started
        run = self._run
        done = entry["epoch"] - run.start
        left = 0.0 if run.done else elapsed / done * (run.stop_at - entry["epoch"])
        val = entry["valid_loss"]
        valid = "" if val is None else f", validation loss {val:.6g}"
        if entry["undone"]:
            valid += " (undone: weights put back, learning rate halved)"
        logger.info(
            "%s epoch %d/%d: train loss %.6g%s, %.2f s, elapsed %.1f s, ~%.1f s left",
            type(self).__name__,
            entry["epoch"],
            run.stop_at,
            entry["train_loss"],
            valid,
            entry["seconds"],
            elapsed,
            left,
        )

    # ----------------------------------------------------------- checkpoints
    def _checkpoint_file(self):
        return None if self.checkpoint_path is None else Path(self.checkpoint_path)

    def _claim_checkpoint(self):
        """Refuse to overwrite a file this detector did not write or load."""
        path = self._checkpoint_file()
        if path is None or not path.exists():
            return
        if not _claims(getattr(self, "_run", None) and self._run.checkpoint, path):
            if self._is_trained():
                hint = (
                    "this fitted detector did not write it and continues its own state, "
                    "not the file's: resume from the file with an unfitted copy "
                    "(sklearn.base.clone) and warm_start=True, or choose another path."
                )
            else:
                hint = "pass warm_start=True to resume from it, or choose another path."
            raise ValueError(
                f"checkpoint_path={str(path)!r} already exists and an existing file is "
                f"never overwritten; {hint}"
            )

    def _write_checkpoint(self, optimizer_state):
        """Save the detector, with ``optimizer_state``, as a model file at ``checkpoint_path``."""
        path = self._checkpoint_file()
        if path is None:
            return
        self._run.optimizer = optimizer_state
        path.parent.mkdir(parents=True, exist_ok=True)
        model_file.save(self, path, overwrite=True)
        self._run.checkpoint = (str(path.resolve()), _file_version(path))
        vars(self)["_wrote_checkpoint"] = True

    def _after_restore(self, failed):
        """A failed call restored to the trained state it started from writes that
        state back over the epochs it had checkpointed, so that the file and the
        detector agree and a resumed run does not start from a ruined epoch."""
        # Only a call that wrote one, so with a valid checkpoint_path: a failure to
        # validate the parameters must surface as itself.
        if not (failed.get("_wrote_checkpoint") and self._is_trained()):
            return
        path = self._checkpoint_file()
        if path is None:
            return
        # The failed call's claim: the version it wrote last, which this one replaces.
        if _claims(getattr(failed.get("_run"), "checkpoint", None), path):
            self._write_checkpoint(self._run.optimizer)

    def _load_checkpoint(self):
        """Resume from the model file at ``checkpoint_path``; False when there is none."""
        path = self._checkpoint_file()
        if path is None or not path.exists():
            return False
        try:
            version = _file_version(path)  # of the file read, as a claim on it
            saved = model_file.load(path)
        except (ValueError, OSError) as exc:
            raise ValueError(
                f"checkpoint_path={str(path)!r} is not a readable anomalib_lite "
                f"checkpoint ({type(exc).__name__}: {exc}); choose another path."
            ) from None
        if type(saved) is not type(self) or not saved._is_trained():
            raise ValueError(
                f"checkpoint_path={str(path)!r} holds a {type(saved).__name__!r} model file, "
                f"not a trained {type(self).__name__}; choose another path."
            )
        changed = self._changed_module_param(saved._run.built_with)
        if changed is not None:
            name, value = changed
            raise ValueError(
                f"The checkpoint at {str(path)!r} was written with {name}={value!r} "
                f"but this detector has {name}={getattr(self, name)!r}; use the same "
                "parameters to resume, or another checkpoint_path to start anew."
            )
        # The fitted state only: the parameters, checkpoint_path included, are ours.
        params = self._get_param_names()
        vars(self).update({k: v for k, v in vars(saved).items() if k not in params})
        self._run.checkpoint = (str(path.resolve()), version)
        return True

    # ----------------------------------------------------------------- state
    def _get_state(self):
        state = super()._get_state()
        module = state.pop("module_", None)
        if module is not None:
            state["_weights"] = _arrays(module.state_dict())
        if "_run" in state:
            state["_run"] = self._run.to_tree()
        return state

    def _set_state(self, state):
        """Take back a state; the network is rebuilt on ``device_``, or on the CPU (warning)."""
        # Tensors made inside a caller's torch.inference_mode() block (a model unpickled
        # or loaded there) could never be trained on: partial_fit and warm starts train.
        with torch.inference_mode(False):
            state = dict(state)
            weights = state.pop("_weights", None)
            if "_run" in state:
                state["_run"] = _RunState.from_tree(state["_run"])
            super()._set_state(state)
            if weights is None:
                return
            if not device_available(self.device_):
                warnings.warn(
                    f"This {type(self).__name__} was trained on device_={self.device_!r}, which "
                    "is not available here; it is loaded on the CPU (device_='cpu').",
                    UserWarning,
                    stacklevel=3,
                )
                self.device_ = "cpu"
            self._check_weights(weights)
            self._build_module()
            self.module_.load_state_dict(_tensors(weights))
            self._place_module()

    def _check_weights(self, weights):
        """Refuse stored weights that do not fit the network the state declares,
        before that network is built.

        The network is laid out on torch's ``meta`` device, which allocates no
        memory, so that a forged geometry (``hidden_sizes_=(7000, 7000)`` in a
        model file of a few kilobytes) costs nothing: once the shapes match,
        the network is no larger than the weights the state holds.
        """
        layers = sum(len(getattr(self, k, ())) for k in ("channels_", "hidden_sizes_"))
        if layers > len(weights):  # every layer holds weights: a cheap bound first
            raise ValueError(f"the state declares {layers} layers but holds {len(weights)} weights")
        shape = getattr(self, "input_shape_", None)
        if shape is not None and math.prod(shape) != self.n_features_in_:
            n_features = self.n_features_in_
            raise ValueError(f"input_shape_={shape!r} does not hold n_features_in_={n_features!r}")
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in self._make_module().state_dict().items()}
        stored = {k: tuple(np.shape(v)) for k, v in weights.items()}
        if expected != stored:
            name = next(
                k for k in sorted(set(expected) | set(stored)) if expected.get(k) != stored.get(k)
            )
            raise ValueError(
                f"the stored weights do not fit the network the state declares: {name!r} is "
                f"stored as {stored.get(name)} but the network has {expected.get(name)}"
            )

    # -------------------------------------------------------------- scoring
    def _batch_rows(self, X):
        """Rows per scoring batch: as many as ``SCORING_MEMORY`` of activations hold, in
        [``batch_size_``, ``MAX_SCORING_ROWS``]. Scores in eval mode do not depend on
        the batching (beyond float32 rounding), so it is sized for throughput."""
        rows = min(MAX_SCORING_ROWS, SCORING_MEMORY // max(1, self._run.row_bytes))
        return max(self.batch_size_, rows)

    def _batched(self, func, X):
        check_threads(self.n_threads)  # read when scoring too
        with torch_threads(self.n_threads), deterministic_cudnn():
            return super()._batched(func, X)

    def _to_tensor(self, X):
        """A validated numpy batch as network input, through :meth:`_preprocess`."""
        with np.errstate(over="ignore"):  # beyond float32: inf, then an inf score
            X = np.ascontiguousarray(X, dtype=self._input_dtype)
        if not X.flags.writeable:
            # torch warns on a read-only array (a file opened with
            # np.load(mmap_mode='r'), say); one batch's copy costs little.
            X = X.copy()
        return self._preprocess(torch.from_numpy(X))

    def _score_tensor(self, x, out):
        """Anomaly score of each sample from the network input ``x`` and output ``out``."""
        return self._score_errors(self._errors(x, out), x, out)

    def _forward(self, X, *, plain=False):
        """The one inference path: ``(x, out)`` tensors of a validated batch; the
        network reads :meth:`_network_input`, or ``x`` itself with ``plain``."""
        module = self.module_
        module.eval()
        x = self._placed(self._to_tensor(X))
        network_input = x if plain else self._network_input(module, x)
        with torch.inference_mode():
            out = module(network_input)
        return x, out

    def _network_input(self, module, x):
        """What the network reads when scoring the batch ``x``: ``x`` itself."""
        return x

    def _anomaly_score(self, X):
        return self._outputs(X, lambda x, out, _: self._score_tensor(x, out))

    def _outputs(self, X, func, *, plain=False):
        """``func(x, out, batch)`` over the batches of validated ``X``, as float64;
        ``plain`` as in :meth:`_forward`."""

        def run(batch):
            x, out = self._forward(batch, plain=plain)
            with torch.inference_mode():
                return func(x, out, batch).double().cpu().numpy()

        return self._batched(run, X)

    def decision_function(self, X):
        if self._is_trained() and not hasattr(self, "offset_"):
            raise NotFittedError(
                f"This {type(self).__name__} has trained weights but no threshold "
                "(offset_) yet: fit sets it once the last epoch is over, so "
                "decision_function and predict cannot answer before then (in a "
                "callback during a fit); score_samples can. After Ctrl-C at that "
                "step, fit with warm_start=True sets it."
            )
        return super().decision_function(X)

    decision_function.__doc__ = BaseDetector.decision_function.__doc__

    def reconstruct(self, X):
        """Reconstruction of each sample by the autoencoder, in input units.

        Parameters
        ----------
        X : array-like
            Samples, in the layout ``fit`` accepted.

        Returns
        -------
        X_rec : ndarray of float64, same shape as ``X``
            In input units; ``inf`` (or ``-inf``) where a sample far outside the
            training range overflowed, with a warning; never NaN.
        """
        X = self._check_fitted_input(X)
        rec = self._outputs(X, lambda x, out, batch: self._from_tensor(out, batch))
        return self._overflow_to_inf(rec, X, "reconstruct", stacklevel=3)

    def reconstruction_error(self, X):
        """Mean squared reconstruction error of each sample (higher: more anomalous).

        Parameters
        ----------
        X : array-like
            Samples to score, as for ``fit``.

        Returns
        -------
        errors : ndarray of shape (n_samples,), dtype float64
            In input units (standardized units for tabular ``standardize=True``);
            ``inf`` where an error overflowed, with a warning; never NaN.
        """
        X = self._check_fitted_input(X)
        errors = self._outputs(X, lambda x, out, _: self._errors(x, out).flatten(1).mean(1))
        return self._overflow_to_inf(errors, X, "reconstruction_error", stacklevel=3)


def _jsonable(value):
    """Parameters and geometry as JSON values (tuples become lists)."""
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return value
