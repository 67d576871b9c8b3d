"""Training loop, batching, devices and checkpoints of the torch detectors.

:class:`TorchDetector` holds everything the autoencoder detectors share; a
subclass supplies the network and the input geometry through these hooks:

* ``_set_geometry(X)`` stores the fitted input geometry (``input_shape_``,
  scaling statistics, ...) from validated training data;
* ``_check_geometry(X)`` checks that new training data matches it;
* ``_to_tensor(X)`` turns a validated batch into a float32 CPU tensor in the
  network's space (scaled, padded);
* ``_make_module()`` builds the untrained ``nn.Module`` from the parameters
  and the geometry attributes;
* ``_train_loss(out, x)`` is the scalar training loss of a batch;
* ``_errors(x, out)`` is the per-sample squared error in input units, shaped
  like one sample; ``_score_errors(errors, x, out)`` reduces it to one anomaly
  score per sample; ``_from_tensor(out)`` maps reconstructions back to input
  units and layout.

Every public output (scores, reconstructions, errors, anomaly maps) goes
through one forward pass, :meth:`TorchDetector._forward`.
"""

import contextlib
import copy
import dataclasses
import logging
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

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
)

__all__ = ["TorchDetector"]

logger = logging.getLogger("anomalib_lite")

_SCHEDULES = ("constant", "cosine")
#: Fraction of a cosine run spent warming the learning rate up linearly.
WARMUP_FRACTION = 0.05
#: Devices on which Adam runs as one fused kernel per step instead of a loop
#: over the weight tensors, which makes a step faster.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


#: ``batch_size='auto'``: one in :data:`AUTO_BATCH_DIVISOR` training samples
#: (a detector may set its own divisor), clipped to :data:`AUTO_BATCH`, so that
#: small training sets still get about that many optimizer steps per epoch.
AUTO_BATCH = (8, 32)
AUTO_BATCH_DIVISOR = 20
#: Bytes of activations (every layer's output counted, float32) that one
#: scoring batch may hold; see :meth:`TorchDetector._batch_rows`.
SCORING_MEMORY = 64 * 2**20
#: Most rows in one scoring batch.
MAX_SCORING_ROWS = 8192


def auto_batch_size(n_samples, batch_size, divisor=AUTO_BATCH_DIVISOR):
    """``batch_size``, or ``n_samples // divisor`` clipped to :data:`AUTO_BATCH` for ``'auto'``."""
    if batch_size != "auto":
        return int(batch_size)
    low, high = AUTO_BATCH
    return int(min(high, max(low, n_samples // divisor)))


def activation_bytes(module, x):
    """Bytes of the float32 outputs of every leaf layer of ``module`` on input ``x``."""
    total = 0

    def count(_layer, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * 4

    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return total


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


def _cpu_copy(tree):
    """A detached CPU copy of a (nested) state dict."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: _cpu_copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cpu_copy(v) for v in tree)
    return copy.deepcopy(tree)


def _arrays(tree):
    """A copy of a (nested) state dict with every tensor as a numpy array."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True).numpy()
    if isinstance(tree, dict):
        return {k: _arrays(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_arrays(v) for v in tree)
    return tree


def _tensors(tree):
    """The inverse of :func:`_arrays`: numpy arrays back to CPU tensors."""
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.array(tree, order="C"))
    if isinstance(tree, dict):
        return {k: _tensors(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tensors(v) for v in tree)
    return tree


@dataclasses.dataclass
class _RunState:
    """Where training stands beyond the fitted attributes.

    With the network and ``n_iter_``, ``history_``, ``best_loss_``, it is all
    a resumed fit needs to go on exactly as if it had never stopped.
    """

    #: The shaping parameters the network was built with, as JSON values.
    built_with: dict
    #: Seed of the run's generator (validation split, shuffling, dropout).
    seed: int
    #: ``n_iter_`` when the current run started, and where it ends.
    start: int = 0
    stop_at: int = 0
    #: The run has ended (every epoch, early stopping or a callback's request).
    done: bool = True
    #: Epochs in a row without improvement of the monitored loss.
    no_improve: int = 0
    #: The generator's state after the last epoch; None before a run's first.
    rng: object = None
    #: Adam's state dict, on the CPU; None starts a new optimizer.
    optimizer: object = None
    #: Weights of the run's best epoch so far (early stopping).
    best: object = None
    #: Activation bytes of one scoring row, measured when the network is built.
    row_bytes: int = 0
    #: The checkpoint file this object wrote or resumed from; never saved,
    #: so that no file, pickle or copy names a file for a later fit to write.
    checkpoint: object = None

    def to_tree(self):
        """The state as JSON values and numpy arrays (the ``checkpoint`` claim left out)."""
        fields = [f.name for f in dataclasses.fields(self) if f.name != "checkpoint"]
        return _arrays({name: getattr(self, name) for name in fields})

    @classmethod
    def from_tree(cls, tree):
        return cls(**_tensors(tree))


def _as_tuples(value):
    """JSON lists back to (nested) tuples."""
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    return value


@contextlib.contextmanager
def _progress_logging(verbose):
    """Let ``verbose`` progress messages reach the user.

    Where logging is not configured, a stderr handler is attached for the
    duration of the call; the ``anomalib_lite`` logger is set to INFO while
    it runs when its effective level would drop the messages.
    """
    if not verbose:
        yield
        return
    handler = None
    old_level = logger.level
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(old_level)
        if handler is not None:
            logger.removeHandler(handler)


class TorchDetector(BaseDetector):
    """Base class of the detectors built on a torch autoencoder.

    Not meant to be used directly. It implements the scikit-learn MLP
    training parameters, the epoch loop, early stopping, the learning-rate
    schedule, ``partial_fit``, interruption, divergence checks,
    checkpoints, pickling and batched inference.
    """

    #: Parameters that shape the network; a checkpoint must agree on them.
    _module_params = ()
    #: ``batch_size='auto'`` uses one in this many training samples.
    _auto_batch_divisor = AUTO_BATCH_DIVISOR

    # ------------------------------------------------------------ validation
    def _check_params(self):
        super()._check_params()
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_int(self.batch_size, "batch_size", min_value=1)
        check_float(self.learning_rate_init, "learning_rate_init", low=0)
        check_option(self.learning_rate, "learning_rate", _SCHEDULES)
        check_int(self.max_iter, "max_iter", min_value=1)
        check_bool(self.early_stopping, "early_stopping")
        check_float(self.validation_fraction, "validation_fraction", low=0, high=1)
        check_int(self.n_iter_no_change, "n_iter_no_change", min_value=1)
        check_float(self.tol, "tol", low=0, closed="left")
        check_bool(self.warm_start, "warm_start")
        if not isinstance(self.verbose, (bool, np.bool_)):
            check_int(self.verbose, "verbose", min_value=0)
        check_device(self.device)
        check_threads(self.n_threads)
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
        """Build ``module_`` from the parameters and the geometry, untrained.

        The network lives on the CPU; the global torch RNG is left untouched.
        Used by ``fit``, by unpickling and by the model-file loader of
        :mod:`anomalib_lite.io`, which then loads the weights.

        Returns
        -------
        module : torch.nn.Module
            The new ``module_``.
        """
        self.module_ = build_quietly(self._make_module)
        self.module_.eval()
        one = self._to_tensor(np.zeros((1, self.n_features_in_), dtype=np.float32))
        self._run.row_bytes = activation_bytes(self.module_, one) + 4 * one.numel()
        return self.module_

    #: Memory format of the network's inputs and weights (channels-last
    #: convolutions run faster on CPUs); None keeps the default.
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
        for tensor in self.module_.parameters():
            return tensor.device
        return torch.device("cpu")

    # ----------------------------------------------------------------- state
    def _is_trained(self):
        return hasattr(self, "module_")

    def _discard_fit(self):
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)

    def _start_fresh(self, X):
        self.device_ = resolve_device(self.device)
        self.batch_size_ = auto_batch_size(X.shape[0], self.batch_size, self._auto_batch_divisor)
        self._set_geometry(X)
        init_seed = draw_seed(self.random_state)
        self._run = _RunState(
            built_with=self._module_param_values(),
            seed=generator_seed(make_generator(init_seed)),
            checkpoint=getattr(self, "_run", None) and self._run.checkpoint,
        )
        self._build_module()
        init_weights(self.module_, make_generator(init_seed))
        self._place_module()
        self.n_iter_ = 0
        self.history_ = []
        self.best_loss_ = math.inf

    def _module_param_values(self):
        """The parameters that shape the network, as JSON values."""
        return {k: _jsonable(getattr(self, k)) for k in self._module_params}

    def _changed_module_param(self, recorded):
        """``(name, recorded value)`` of the first recorded shaping parameter
        whose value differs now, or None."""
        for name, value in recorded.items():
            if _jsonable(getattr(self, name)) != value:
                return name, _as_tuples(value)
        return None

    def _check_module_params(self):
        """Refuse to continue a network built with other shaping parameters."""
        changed = self._changed_module_param(self._run.built_with)
        if changed is not None:
            name, value = changed
            raise ValueError(
                f"warm_start continues the fitted network, which was built with "
                f"{name}={value!r}, but this detector now has {name}="
                f"{getattr(self, name)!r}; set it back to continue, or set "
                "warm_start=False to fit anew."
            )

    def _prepare_warm(self, X):
        """Continue from the fitted state, moving it to the requested device."""
        self._check_module_params()
        self._check_geometry(X)
        if self.batch_size != "auto":
            self.batch_size_ = int(self.batch_size)
        device = resolve_device(self.device)
        if device != self.device_:
            self.device_ = device
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
        self.best_loss_ = math.inf

    # --------------------------------------------------------------- fitting
    def _fit(self, X):
        with self._runtime():
            resume = self.warm_start and (self._is_trained() or self._load_checkpoint())
            self._claim_checkpoint()
            if resume:
                self._prepare_warm(X)
            else:
                self._start_fresh(X)
            if self._run.done:
                self._new_run(self.max_iter)
                self._run.optimizer = None
            self._train(self._to_tensor(X), early_stopping=self.early_stopping)

    def partial_fit(self, X, y=None):
        """Train for one more epoch over ``X``.

        For data that does not fit in memory, or to continue a fit. The first
        call sets the input geometry and scaling from its batch. Each call
        runs one epoch at a constant ``learning_rate_init`` with the
        optimizer state carried over, adds one to ``n_iter_`` and one entry to
        ``history_``; ``early_stopping`` does not apply. ``offset_`` is set
        from the scores of ``X``.

        Parameters
        ----------
        X : array-like
            A batch of training samples, in the layouts ``fit`` accepts.
        y : array-like of shape (n_samples,), default=None
            Optional labels, ``0`` = normal, ``1`` = anomaly; only normal rows
            are learned from.

        Returns
        -------
        self : object
            The updated detector.
        """
        self._check_params()
        first = not self._is_trained()
        X = self._validate_input(X, reset=first)
        X = self._normal_rows(X, y)
        with self._runtime():
            self._claim_checkpoint()
            if first:
                self._start_fresh(X)
            else:
                self._prepare_warm(X)
            self._new_run(1)
            self._train(self._to_tensor(X), early_stopping=False, constant_lr=True)
        self._set_offset(self._batched(self._anomaly_score, X))
        return self

    @contextlib.contextmanager
    def _runtime(self):
        with torch_threads(self.n_threads), deterministic_cudnn(), _progress_logging(self.verbose):
            yield

    def _split(self, x, early_stopping):
        n = x.shape[0]
        gen = make_generator(self._run.seed)
        if not early_stopping:
            return x, None, gen
        n_val = math.ceil(self.validation_fraction * n)
        if n_val < 1 or n - n_val < 1:
            raise ValueError(
                f"early_stopping=True with validation_fraction={self.validation_fraction} "
                f"leaves {n_val} validation and {n - n_val} training samples out of "
                f"n_samples={n}; both need at least one. Pass more samples, change "
                "validation_fraction or set early_stopping=False."
            )
        perm = torch.randperm(n, generator=gen)
        return x[perm[n_val:]], x[perm[:n_val]], gen

    def _lr_factor(self, progress):
        """Learning-rate multiplier at ``progress`` in [0, 1) of the run."""
        if self.learning_rate == "constant":
            return 1.0
        if progress < WARMUP_FRACTION:
            return (progress + 1e-3) / WARMUP_FRACTION
        p = (progress - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
        return 0.5 * (1.0 + math.cos(math.pi * p))

    def _make_optimizer(self, constant_lr):
        fused = True if self._module_device().type in FUSED_ADAM_DEVICES else None
        optimizer = torch.optim.Adam(
            self.module_.parameters(), lr=self.learning_rate_init, fused=fused
        )
        if self._run.optimizer is not None:
            # The kernel choice follows the device of this run, not the one
            # the state was saved on (a GPU checkpoint may resume elsewhere).
            state = dict(self._run.optimizer)
            state["param_groups"] = [
                {**group, "fused": fused, "foreach": None} for group in state["param_groups"]
            ]
            optimizer.load_state_dict(state)
            # Saved moments are C-ordered arrays; give them their weight's
            # layout (channels-last) as a fresh optimizer would, for the same
            # arithmetic in the fused kernel.
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
        run = self._run
        train, val, gen = self._split(x, early_stopping)
        if run.rng is not None:
            gen.set_state(run.rng)
        train = self._placed(train)
        val = None if val is None else self._placed(val)
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
                    else (lambda s, d=done: self._lr_factor((d + s / steps) / span))
                )
                train_loss = self._epoch(train, optimizer, gen, lr_at)
                if not math.isfinite(train_loss):
                    self._restore(snapshot, optimizer)
                    self._diverged(train_loss)
                val_loss = None if val is None else self._eval_loss(val)
                self.n_iter_ += 1
                run.rng = gen.get_state()
                self._monitor(train_loss if val is None else val_loss, early_stopping)
                entry = {
                    "epoch": self.n_iter_,
                    "train_loss": train_loss,
                    "valid_loss": val_loss,
                    "learning_rate": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - t0,
                }
                self.history_.append(entry)
                snapshot = self._snapshot(optimizer)
                if self.n_iter_ >= run.stop_at:
                    run.done = True
                if self._call_back(entry):
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
        if early_stopping and run.best is not None:
            self.module_.load_state_dict(run.best)
            run.best = None
            self._write_checkpoint(self._snapshot(optimizer)[1])
        run.best = None
        run.optimizer = _cpu_copy(optimizer.state_dict())
        self.module_.eval()

    def _epoch(self, train, optimizer, gen, lr_at):
        module = self.module_
        module.train()
        n = train.shape[0]
        order = torch.randperm(n, generator=gen).to(train.device)
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
                loss = self._train_loss(module(xb), xb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach().double() * idx.shape[0]
        module.eval()
        return float(total) / n

    def _call_back(self, entry):
        """Call every callback with the epoch's record; True when one asks to stop."""
        stop = False
        for callback in self.callbacks or ():
            stop = bool(callback(self, dict(entry))) or stop
        return stop

    def _eval_loss(self, val):
        total = 0.0
        with torch.inference_mode():
            for start in range(0, val.shape[0], self.batch_size_):
                xb = val[start : start + self.batch_size_]
                total += float(self._train_loss(self.module_(xb), xb)) * xb.shape[0]
        return total / val.shape[0]

    def _monitor(self, loss, early_stopping):
        """scikit-learn MLP's stopping rule, on the validation or training loss."""
        run = self._run
        if loss > self.best_loss_ - self.tol:
            run.no_improve += 1
        else:
            run.no_improve = 0
        if loss < self.best_loss_:
            self.best_loss_ = float(loss)
            if early_stopping:
                run.best = {k: v.detach().clone() for k, v in self.module_.state_dict().items()}
        if run.no_improve >= self.n_iter_no_change:
            run.done = True

    def _snapshot(self, optimizer):
        weights = {k: v.detach().clone() for k, v in self.module_.state_dict().items()}
        return weights, copy.deepcopy(optimizer.state_dict())

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
        valid = (
            "" if entry["valid_loss"] is None else f", validation loss {entry['valid_loss']:.6g}"
        )
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
        if not hasattr(self, "_run") or self._run.checkpoint != str(path.resolve()):
            raise ValueError(
                f"checkpoint_path={str(path)!r} already exists and an existing file is "
                "never overwritten; pass warm_start=True to resume from it, or choose "
                "another path."
            )

    def _write_checkpoint(self, optimizer_state):
        """Save the detector, with ``optimizer_state``, as a model file at ``checkpoint_path``."""
        path = self._checkpoint_file()
        if path is None:
            return
        self._run.optimizer = optimizer_state
        path.parent.mkdir(parents=True, exist_ok=True)
        model_file.save(self, path, overwrite=True)
        self._run.checkpoint = str(path.resolve())

    def _load_checkpoint(self):
        """Resume from the model file at ``checkpoint_path``; False when there is none."""
        path = self._checkpoint_file()
        if path is None or not path.exists():
            return False
        try:
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
        self._run.checkpoint = str(path.resolve())
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
        """Take back a state; the network is rebuilt on ``device_``, or on the
        CPU with a warning when that device is not available here."""
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
        self._build_module()
        self.module_.load_state_dict(_tensors(weights))
        self._place_module()

    # -------------------------------------------------------------- scoring
    def _batch_rows(self, X):
        """Rows per scoring batch: as many as :data:`SCORING_MEMORY` of
        activations allows, at least ``batch_size_``, at most
        :data:`MAX_SCORING_ROWS`.

        Scores do not depend on the batching beyond float32 rounding
        (evaluation mode: each sample's score is its own), so the batch is
        sized for throughput: on a GPU a batch of ``batch_size_`` small
        images is launch-bound, and on a CPU a dense network runs faster on
        thousands of rows at once.
        """
        rows = min(MAX_SCORING_ROWS, SCORING_MEMORY // max(1, self._run.row_bytes))
        return max(self.batch_size_, rows)

    def _batched(self, func, X):
        with torch_threads(self.n_threads), deterministic_cudnn():
            return super()._batched(func, X)

    def _forward(self, X):
        """The one inference path: ``(x, out)`` tensors of a validated batch."""
        module = self.module_
        module.eval()
        x = self._placed(self._to_tensor(X))
        with torch.inference_mode():
            out = module(x)
        return x, out

    def _anomaly_score(self, X):
        return self._outputs(X, lambda x, out, _: self._score_errors(self._errors(x, out), x, out))

    def _outputs(self, X, func):
        """``func(x, out, batch)`` over the batches of validated ``X``, as float64."""

        def run(batch):
            x, out = self._forward(batch)
            with torch.inference_mode():
                return func(x, out, batch).double().cpu().numpy()

        return self._batched(run, X)

    def reconstruct(self, X):
        """Reconstruction of each sample by the autoencoder.

        Parameters
        ----------
        X : array-like
            Samples, in the layout ``fit`` accepted.

        Returns
        -------
        X_rec : ndarray of float64, same shape as ``X``
            Reconstructions in input units.
        """
        X = self._check_fitted_input(X)
        return self._outputs(X, lambda x, out, batch: self._from_tensor(out, batch))

    def reconstruction_error(self, X):
        """Mean squared reconstruction error of each sample.

        Parameters
        ----------
        X : array-like
            Samples, in the layout ``fit`` accepted.

        Returns
        -------
        errors : ndarray of shape (n_samples,), dtype float64
            Mean over the sample's values of the squared difference between
            the sample and its reconstruction, in the detector's error units
            (input units for images, standardized units for tabular data with
            ``standardize=True``); higher means more anomalous.
        """
        X = self._check_fitted_input(X)
        return self._outputs(X, lambda x, out, _: self._errors(x, out).flatten(1).mean(1))


def _jsonable(value):
    """Parameters and geometry as JSON values (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return value
