"""The ``anomalib-lite`` command line: fit, score, map, evaluate and export on image folders.

Run ``anomalib-lite --help`` (or ``python -m anomalib_lite --help``) for the
subcommands and examples. Models are written and read with
:mod:`anomalib_lite.io` only (no pickle). Images are read with
:func:`anomalib_lite.datasets.load_images` as 8-bit values, grayscale or RGB,
at their stored size unless ``--size`` resizes them; scoring reads the files
a batch at a time, so memory stays flat in the number of files.

Exit status: 0 on success, 2 for a usage error (an unknown option or
parameter), 1 for any other failure (a missing folder, an unreadable image, a
model of another image size); the message names the file or option, without
a traceback.
"""

import argparse
import ast
import contextlib
import csv
import itertools
import json
import math
import os
import sys
import tempfile
import time
import warnings
from io import TextIOWrapper
from pathlib import Path

import numpy as np

from .utils._files import file_above, write_atomically

__all__ = ["main"]

#: Detectors ``fit --detector`` builds, by command-line name.
DETECTORS = {"pca": "PCADetector", "conv-ae": "ConvAutoencoderDetector", "draem": "DraemDetector"}
#: Files read and scored at a time by ``score`` and ``maps``.
FILES_PER_BATCH = 64
#: Seconds between two updates of a progress line.
PROGRESS_INTERVAL = 0.2

_EXAMPLES = """\
examples:
  anomalib-lite fit --data bottle/ --detector conv-ae --param max_iter=60 --out bottle.model
  anomalib-lite score --model bottle.model --data new_images/ --out scores.csv
  anomalib-lite maps --model bottle.model --data bottle/test/broken_large --out maps/
  anomalib-lite evaluate --model bottle.model --data bottle/
  anomalib-lite export --model bottle.model --out bottle.onnx
"""


class CommandError(Exception):
    """A failure to report as one line, naming the file or option; exit status 1."""


class UsageError(CommandError):
    """A command-line mistake (unknown parameter, malformed value); exit status 2."""


# ------------------------------------------------------------------ progress
class _Progress:
    """One self-overwriting status line on stderr, or nothing."""

    def __init__(self, enabled, label):
        self.enabled = enabled
        self.label = label
        self.started = time.perf_counter()
        self._last = -math.inf
        self._shown = False

    def show(self, text, force=False):
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < PROGRESS_INTERVAL):
            return
        self._last = now
        sys.stderr.write(f"\r\x1b[K{self.label}: {text}")
        sys.stderr.flush()
        self._shown = True

    def count(self, done, total, unit="files"):
        elapsed = time.perf_counter() - self.started
        left = elapsed / done * (total - done) if done else float("nan")
        share = 100 * done / total
        text = f"{done}/{total} {unit} ({share:.0f}%), {elapsed:.1f} s, ~{left:.0f} s left"
        self.show(text, force=done == total)

    def close(self):
        if self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._shown = False


def _epoch_callback(progress):
    """A detector callback that shows each epoch's loss and the time left.

    A warm start numbers its epochs on from the checkpoint's and may run past
    ``max_iter``: the total is where the detector's run stops, and the time per
    epoch is that of this fit's epochs alone, from the start of its first one
    (not from the start of the command, which read the images).
    """
    first = {}

    def show(detector, record):
        epoch, total = record["epoch"], detector._run.stop_at
        now = time.perf_counter()
        first.setdefault("epoch", epoch)
        first.setdefault("started", now - record["seconds"])
        elapsed = now - first["started"]
        left = elapsed / (epoch - first["epoch"] + 1) * max(total - epoch, 0)
        valid = record.get("valid_loss")
        loss = f"loss {record['train_loss']:.6g}"
        if valid is not None:
            loss += f", validation loss {valid:.6g}"
        progress.show(f"epoch {epoch}/{total}, {loss}, ~{left:.0f} s left", force=True)

    return show


def _progress_enabled(args):
    return not args.quiet and sys.stderr.isatty()


# ------------------------------------------------------------------ arguments
def _size(text):
    """``--size``: ``N`` or ``HxW``."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or min(values, default=0) < 1:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: expected N or HxW in pixels, e.g. 64 or 48x64"
        )
    return values[0] if len(values) == 1 else values


def _param(text):
    """``--param``: ``name=value``, the value a Python literal or else a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"invalid parameter {text!r}: expected name=value, e.g. max_iter=60"
        )
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        # Not a literal (nested too deep to parse is not one either): a string.
        value = raw
    return name.strip(), value


def _existing(path, option):
    path = Path(path)
    if not path.exists():
        raise CommandError(f"{option}: no such file or folder: '{path}'")
    return path


def _exists_error(path):
    return CommandError(
        f"--out: '{path}' already exists; pass --overwrite to replace it, or choose another path"
    )


def _new_file(path, option, overwrite, inputs=()):
    """``path`` checked as a new output file: not a folder, not an existing file unless
    ``overwrite``, never one of the files ``inputs`` the command reads, and in a folder
    that exists and can be written."""
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{option}: '{path}' is a folder; pass a file path inside it")
    if os.path.lexists(path) and not overwrite:  # a dangling link too: never written through
        raise CommandError(
            f"{option}: '{path}' already exists; pass --overwrite to replace it, or choose "
            "another path"
        )
    if os.path.lexists(path):
        target = path.resolve()
        read = next((p for p in inputs if Path(p).resolve() == target), None)
        if read is not None:
            raise CommandError(
                f"{option}: '{path}' is '{read}', which this command reads; --overwrite "
                "never replaces an input, so choose another path"
            )
    directory = path.absolute().parent
    blocking = file_above(directory)
    if blocking is not None:
        raise CommandError(f"{option}: '{blocking}' is a file, not a folder to write '{path}' in")
    if not directory.is_dir():
        raise CommandError(f"{option}: the folder of '{path}' does not exist; create it first")
    # Before any work: a fit would otherwise train, then fail to write.
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".anomalib-lite-", suffix=".probe")
    except OSError as exc:
        raise CommandError(
            f"{option}: cannot write in the folder of '{path}' ({exc.strerror})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return path


# ---------------------------------------------------------------------- models
def _load_model(path, threshold=True):
    """The fitted estimator of the model file ``path``; a model file may hold an
    unfitted one (``io.save`` allows it), which no subcommand can use, or, with
    ``threshold``, one without a threshold, which cannot label images."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from . import io

    path = _existing(path, "--model")
    try:
        model = io.load(path)
    except (ValueError, OSError) as exc:
        raise CommandError(f"--model '{path}': {exc}") from None
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise CommandError(
            f"--model '{path}' holds an unfitted {type(model).__name__}; fit it first "
            "(anomalib-lite fit)"
        ) from None
    if threshold and not hasattr(model, "offset_"):
        if not hasattr(_scorer(model), "module_"):  # not a network: no checkpoint
            raise CommandError(
                f"--model '{path}' holds a {type(model).__name__}, not a detector with a "
                "threshold; the command line uses PCADetector, ConvAutoencoderDetector and "
                "DraemDetector models (or a CalibratedDetector around one)"
            )
        raise CommandError(
            f"--model '{path}' holds a {type(model).__name__} with trained weights but no "
            "threshold, such as a checkpoint written during a fit; finish the fit: "
            "anomalib-lite fit with the parameters it had and --param "
            f"checkpoint_path={path} --param warm_start=True"
        )
    return model


def _scorer(model):
    """The detector that maps and reconstructs: a calibrated model's inner one."""
    from .thresholds import CalibratedDetector

    return model.detector_ if isinstance(model, CalibratedDetector) else model


class _ImageLayout:
    """How to read image files for a model: colour, size and array layout."""

    def __init__(self, model, size):
        from . import PCADetector
        from .utils._validation import channels_first

        self.model = model
        self.size = size
        inner = _scorer(model)
        # PCADetector first: a PCA model is scored without importing torch.
        if not isinstance(inner, PCADetector) and not isinstance(inner, _conv_class()):
            raise CommandError(
                f"--model holds a {type(inner).__name__}; the command line scores images "
                "with PCADetector, ConvAutoencoderDetector and DraemDetector models"
            )
        self.sample_shape = tuple(model.sample_shape_)  # a calibrated model's own layout
        # (C, H, W), or None for a PCA model fitted on rows, which knows only its size
        self.shape = getattr(inner, "input_shape_", None)
        if self.shape is None and len(self.sample_shape) > 1:
            self.shape = channels_first(self.sample_shape)
        self.n_features = int(model.n_features_in_)

    def color(self, paths, skip_unreadable=False):
        """'gray' or 'rgb', from the model or, for PCA, from the size of the first
        file of ``paths`` that reads (with ``skip_unreadable``, the others are skipped)."""
        from .datasets import _NothingRead, load_images

        if self.shape is not None:
            return "rgb" if self.shape[0] == 3 else "gray"
        on_error = "warn" if skip_unreadable else "raise"
        for probe in paths:
            try:
                h, w = load_images([probe], size=self.size, on_error=on_error).shape[1:]
            except _NothingRead:
                continue
            return self._color_of(probe, h, w)
        raise _nothing_read(paths)

    def _color_of(self, probe, h, w):
        if h * w == self.n_features:
            return "gray"
        if 3 * h * w == self.n_features:
            return "rgb"
        raise CommandError(
            f"'{probe}' is {h}x{w} pixels but the model was fitted on images of "
            f"{self.n_features} values; pass files of the fitted size, or --size"
        )

    def read(self, paths, color, skip_unreadable=False):
        """Images of ``paths``, ``(n, H, W)`` or ``(n, 3, H, W)``, and the files read.

        With ``skip_unreadable``, a batch of which no file reads gives no images
        and no files (each was skipped with a warning), so that the next batch runs.
        """
        from .datasets import _NothingRead, load_images

        try:
            images, kept = load_images(
                paths,
                size=self.size,
                color_mode=color,
                on_error="warn" if skip_unreadable else "raise",
                return_paths=True,
            )
        except _NothingRead:
            return None, []
        self.check(images, kept[0])
        return images, kept

    def as_input(self, images):
        """Images in the layout the model was fitted on."""
        return images.reshape(len(images), *self.sample_shape)

    def check(self, images, first):
        from .utils._validation import channels_first

        got = channels_first(images.shape[1:])
        if self.shape is not None and tuple(got) != tuple(self.shape):
            raise CommandError(
                f"'{first}' is {got[1]}x{got[2]} pixels with {got[0]} channel(s) but the "
                f"model was fitted on {self.shape[1]}x{self.shape[2]} pixels with "
                f"{self.shape[0]} channel(s); pass files of the fitted size, or --size "
                f"{self.shape[1]}x{self.shape[2]}"
            )
        if self.shape is None and math.prod(got) != self.n_features:
            raise CommandError(
                f"'{first}' has {math.prod(got)} values but the model was fitted on images "
                f"of {self.n_features}; pass files of the fitted size, or --size"
            )


def _nothing_read(paths):
    """The error for files of which none could be read: each was skipped with a warning."""
    return CommandError(
        f"--data: none of the {len(paths)} image files could be read (each was skipped with "
        f"a warning), e.g. '{paths[0]}'"
    )


def _conv_class():
    from . import ConvAutoencoderDetector

    return ConvAutoencoderDetector


def _image_files(data):
    """The image files of ``--data`` in order (each folder's read recursively), and
    the folder they are named relative to: the one folder given, else None."""
    from .datasets import list_images

    sources = [_existing(d, "--data") for d in data]
    try:
        if len(sources) == 1 and sources[0].is_dir():
            return list_images(sources[0]), sources[0]
        paths = []
        for source in sources:
            paths += list_images(source) if source.is_dir() else list_images([str(source)])
        return paths, None
    except ValueError as exc:
        raise CommandError(f"--data: {exc}") from None


def _in_cli_terms(exc):
    """The message of ``exc``, a loader's advice on its ``size`` parameter given as
    the ``--size`` option."""
    from .datasets import _MixedSizes

    if isinstance(exc, _MixedSizes):
        return f"{exc.detail} Pass --size HxW (or N) to resize every image to one size."
    return str(exc)


def _batches(paths):
    for start in range(0, len(paths), FILES_PER_BATCH):
        yield paths[start : start + FILES_PER_BATCH]


# ----------------------------------------------------------------- subcommands
def _training_folder(args):
    """The folder fit learns from: ``--data``, or the training folder of an
    MVTec-style root (``train/good/``, as :func:`load_folder_dataset` finds it)."""
    from .datasets import _train_folder

    root = _existing(args.data, "--data")
    if not root.is_dir():
        raise CommandError(f"--data: '{root}' is not a folder")
    parts = _evaluation_parts(root)
    if parts and not (root / "train").is_dir():
        # Read recursively, the test part's defects and masks would be learned as normal.
        raise CommandError(
            f"--data: '{root}' holds {' and '.join(f'{p}/' for p in parts)} but no train/, "
            "as an MVTec-style root without its training part; pass the folder of normal "
            "images, or a root with train/good/"
        )
    if not parts:  # a folder of normal images, which may be named train/ itself
        nested = _nested_data_sets(root)
        if nested:
            shown = ", ".join(f"{path.relative_to(root)}/" for path in nested[:3])
            more = f" and {len(nested) - 3} more" if len(nested) > 3 else ""
            raise CommandError(
                f"--data: '{root}' holds MVTec-style data sets ({shown}{more}), whose test/ "
                "and ground_truth/ parts would be learned as normal images; pass one of them, "
                f"as --data {nested[0]}"
            )
        return root
    try:
        return _train_folder(root, "train", "good", hint="")
    except ValueError as exc:
        raise CommandError(f"--data: {exc}") from None


def _evaluation_parts(folder):
    """The parts of an MVTec-style root under ``folder`` that fit must not learn from."""
    return [name for name in ("test", "ground_truth") if (folder / name).is_dir()]


def _nested_data_sets(root):
    """The folders under ``root`` that hold a ``test/`` or ``ground_truth/`` part, as the
    categories of a multi-category MVTec-style root do; a recursive read would learn
    their defects as normal. Walked as that read walks (links followed, hidden folders
    skipped); the read itself reports link loops and unreadable folders."""
    from .datasets import _walk

    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for folder, _ in _walk(root):
                path = Path(folder)
                if path != root and _evaluation_parts(path):
                    found.append(path)
        except OSError:
            pass
    return sorted(found)


def _cmd_fit(args):
    import anomalib_lite

    from . import io
    from .datasets import list_images, load_images

    # Looked up by name, so that a PCA fit does not import torch.
    detector = getattr(anomalib_lite, DETECTORS[args.detector])()
    params = dict(args.param or [])
    valid = detector.get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(
            f"--param {unknown[0]}: {type(detector).__name__} has no parameter {unknown[0]!r}; its "
            f"parameters are {', '.join(sorted(valid))}"
        )
    if "callbacks" in params:
        raise UsageError("--param callbacks: callbacks are Python functions; use the Python API")
    progress = _Progress(_progress_enabled(args), f"fit {type(detector).__name__}")
    detector.set_params(**params)
    try:
        # As fit checks them, but before the images are read: a bad value fails at once.
        detector._check_params()
    except (ValueError, TypeError) as exc:
        raise CommandError(f"--param: {exc}") from None
    folder = _training_folder(args)
    # Listed only where --out exists, the one case in which it could be an input.
    inputs = list_images(folder) if os.path.lexists(args.out) else ()
    out = _new_file(args.out, "--out", args.overwrite, inputs=inputs)
    checkpoint = params.get("checkpoint_path")
    if (
        isinstance(checkpoint, (str, os.PathLike))
        and not args.overwrite
        and Path(checkpoint).absolute().resolve() == out.absolute().resolve()
    ):
        raise CommandError(
            f"--out: '{out}' is also --param checkpoint_path, which the fit writes first; "
            "pass --overwrite to replace the checkpoint with the fitted model, or choose "
            "another path for one of them"
        )
    images = load_images(folder, size=args.size, color_mode=args.color)
    progress.show(f"{len(images)} images of {'x'.join(map(str, images.shape[1:]))}", force=True)
    if progress.enabled and "callbacks" in valid:
        detector.set_params(callbacks=[_epoch_callback(progress)])
    try:
        detector.fit(images)
    except (ValueError, TypeError) as exc:
        raise CommandError(f"fit: {exc}") from None
    except FloatingPointError as exc:  # training diverged
        raise CommandError(f"fit: {exc} Nothing was saved.") from None
    finally:
        progress.close()
        if "callbacks" in valid:
            detector.set_params(callbacks=None)
    try:
        io.save(detector, out, overwrite=args.overwrite)
    except FileExistsError:  # written by something else while the fit ran
        raise _exists_error(out) from None
    name = type(detector).__name__
    print(f"fitted {name} on {len(images)} images from '{args.data}'; saved '{out}'")


def _cmd_score(args):
    model = _load_model(args.model)
    # Labels compare scores with offset_, which holds only for the fitted scoring.
    try:
        model._check_offset_scoring()
    except ValueError as exc:
        raise CommandError(f"--model: {exc}") from None
    layout = _ImageLayout(model, args.size)
    paths, _ = _image_files(args.data)
    out = _new_file(args.out, "--out", args.overwrite, inputs=[args.model, *paths])
    color = layout.color(paths, args.skip_unreadable)
    progress = _Progress(_progress_enabled(args), "score")
    counts = {"scored": 0, "anomalies": 0, "files": 0}

    def write(fh):
        # Rows stream into the temporary file one batch of files at a time.
        # A file name that is not UTF-8 is written as its own bytes, as the file
        # system holds it (os.fsencode of the path read back undoes the escape).
        text = TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
        writer = csv.writer(text)
        writer.writerow(["path", "score", "decision", "label"])
        for batch in _batches(paths):
            images, kept = layout.read(batch, color, args.skip_unreadable)
            counts["files"] += len(batch)  # skipped files are done too
            if kept:
                score = model.score_samples(layout.as_input(images))
                decision = score - model.offset_
                for path, s, d in zip(kept, score, decision, strict=True):
                    label = "normal" if d >= 0 else "anomaly"
                    writer.writerow([path, repr(float(s)), repr(float(d)), label])
                counts["anomalies"] += int(np.sum(decision < 0))
                counts["scored"] += len(kept)
            progress.count(counts["files"], len(paths))
        if not counts["scored"]:
            raise _nothing_read(paths)
        text.flush()
        text.detach()

    try:
        write_atomically(out, write, overwrite=args.overwrite, exists_error=_exists_error)
    finally:
        progress.close()
    n_scored, n_anomalies = counts["scored"], counts["anomalies"]
    print(f"scored {n_scored} images, {n_anomalies} flagged as anomalies; wrote '{out}'")


def _figure_targets(paths, root, out, overwrite):
    """The figure file of each input (by path), and those of them that exist already.

    Everything is checked before a figure is drawn: two inputs that would share a
    figure (``a.png`` and ``a.bmp``, or ``x/a.png`` and ``y/a.png``) are refused, as
    are a figure that would replace an input image, whatever ``overwrite``, and an
    existing figure without ``overwrite``, so that no figure replaces another
    of the same run and a refusal leaves nothing half written.
    """
    targets, owners, existing = {}, {}, set()
    inputs = {os.path.normcase(os.path.realpath(p)): p for p in paths}
    for path in paths:
        name = Path(path).relative_to(root) if root is not None else Path(path).name
        target = (out / name).with_suffix(".png")
        key = os.path.normcase(target)
        if key in owners:
            raise CommandError(
                f"--data: '{owners[key]}' and '{path}' would both be drawn to '{target}'; "
                "rename one of them, or draw them with separate --out folders"
            )
        image = inputs.get(os.path.normcase(os.path.realpath(target)))
        if image is not None:
            raise CommandError(
                f"--out: the figure of '{path}' would replace the input image '{image}'; "
                "pass an --out folder apart from the images"
            )
        owners[key], targets[str(path)] = path, target
        if os.path.lexists(target):
            if not overwrite:
                raise _exists_error(target)
            existing.add(target)
    return targets, existing


def _missing(path):
    return not os.path.lexists(path)


def _cmd_maps(args):
    from .visualization import reconstruction_figure

    model = _load_model(args.model, threshold=False)  # maps need no threshold
    layout = _ImageLayout(model, args.size)
    paths, root = _image_files(args.data)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out: '{out}' is a file; pass a folder")
    if os.path.lexists(out) and not out.exists():
        raise CommandError(f"--out: '{out}' is a link to a folder that does not exist")
    targets, existing = _figure_targets(paths, root, out, args.overwrite)
    for folder in sorted({target.parent for target in targets.values()}):
        blocking = file_above(folder.absolute())
        if blocking is not None:
            raise CommandError(f"--out: '{blocking}' is a file, not a folder to draw figures in")
    # Figures of .jpg (or .bmp ...) images replace none of them, but mixed in with the
    # images, in the folder or below it, the next command on the folder (which reads
    # folders recursively) would read them as images.
    for data in args.data:
        if not Path(data).is_dir():
            continue
        if out.is_dir() and os.path.samefile(out, data):
            where = "is the --data folder"
        elif Path(data).resolve() in out.resolve().parents:
            where = "is inside the --data folder"
        else:
            continue
        raise CommandError(
            f"--out: '{out}' {where} '{data}'; the figures would be mixed in with its "
            "images, which are read recursively, so pass an --out folder apart from them"
        )
    color = layout.color(paths, args.skip_unreadable)
    inner = _scorer(model)
    progress = _Progress(_progress_enabled(args), "maps")
    written = done = 0
    drawn, made = [], []  # the figures and folders this run adds, outermost folder first
    try:
        for batch in _batches(paths):
            images, kept = layout.read(batch, color, args.skip_unreadable)
            for i, path in enumerate(kept):
                target = targets[str(path)]
                parents = (target.parent, *target.parent.parents)
                made += reversed(list(itertools.takewhile(_missing, parents)))
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise CommandError(
                        f"--out: cannot create the folder '{target.parent}' ({exc.strerror})"
                    ) from None
                try:
                    reconstruction_figure(
                        {type(inner).__name__: inner},
                        images[i : i + 1],
                        row_titles=[Path(path).name],
                        path=target,
                        overwrite=target in existing,
                    )
                except FileExistsError:
                    raise _exists_error(target) from None
                if target not in existing:
                    drawn.append(target)
                written += 1
                progress.count(done + i + 1, len(paths))
            done += len(batch)  # skipped files are done too
            progress.count(done, len(paths))
    except BaseException:
        # A failed (or interrupted) run takes back what it added, so that no half of
        # the figures is taken for all of them; those it replaced stay replaced.
        for figure in drawn:
            with contextlib.suppress(OSError):
                os.unlink(figure)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        progress.close()
    if not written:
        raise _nothing_read(paths)
    print(f"wrote {written} figures to '{out}'")


def _cmd_evaluate(args):
    from sklearn.metrics import roc_auc_score

    from .datasets import load_folder_dataset
    from .metrics import aupro_score, pixel_roc_auc_score

    model = _load_model(args.model)
    layout = _ImageLayout(model, args.size)
    root = _existing(args.data, "--data")
    if not root.is_dir():
        raise CommandError(f"--data: '{root}' is a file; evaluate reads the test/ folder under it")
    # As score chooses it: a PCA model's colour comes from the size of a test image.
    # Without a test folder, the dataset's own check below names what is missing.
    test = root / "test"
    color = layout.color(_image_files([test])[0]) if test.is_dir() else "gray"
    try:
        data = load_folder_dataset(root, train_dir=None, size=args.size, color_mode=color)
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        raise CommandError(f"--data: {_in_cli_terms(exc)}") from None
    images, labels = data.test_images, data.test_labels
    layout.check(images, data.test_paths[0])
    X = layout.as_input(images)
    decision = model.decision_function(X)
    predicted = decision < 0
    results = {
        "n_images": len(labels),
        "n_anomalous": int(labels.sum()),
        "threshold": -float(model.offset_),
        "true_positives": int(np.sum(predicted & (labels == 1))),
        "false_positives": int(np.sum(predicted & (labels == 0))),
        "true_negatives": int(np.sum(~predicted & (labels == 0))),
        "false_negatives": int(np.sum(~predicted & (labels == 1))),
        "image_roc_auc": None,
        "pixel_roc_auc": None,
        "aupro": None,
    }
    if 0 < labels.sum() < len(labels):
        results["image_roc_auc"] = float(roc_auc_score(labels, -decision))
    inner = _scorer(model)
    masks = data.test_masks
    if masks is not None and masks.any() and hasattr(inner, "anomaly_map"):
        maps = inner.anomaly_map(X)
        results["pixel_roc_auc"] = pixel_roc_auc_score(masks, maps)
        results["aupro"] = aupro_score(masks, maps)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for key, value in results.items():
        shown = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else value)
        print(f"{key:>16}: {shown}")


def _cmd_export(args):
    from .onnx import export

    model = _load_model(args.model)
    out = _new_file(args.out, "--out", args.overwrite, inputs=[args.model])
    # Grayscale images go in as the command line reads them, (n, H, W), where the model
    # takes them so; a calibrated model takes only the layout it was fitted on.
    shape = tuple(model.sample_shape_)
    gray = len(shape) == 3 and shape[0] == 1 and model is _scorer(model)
    input_shape = shape[1:] if gray else None
    try:
        export(
            model,
            out,
            input_shape=input_shape,
            input_dtype=args.input_dtype,
            overwrite=args.overwrite,
        )
    except (TypeError, ValueError) as exc:
        raise CommandError(f"export: {exc}") from None
    print(f"exported {type(model).__name__} to '{out}' (input dtype {args.input_dtype})")


# ---------------------------------------------------------------------- parser
def _parser():
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="anomalib-lite",
        description="Fit anomaly detectors on folders of normal images, score new images, "
        "draw their anomaly maps, evaluate on an MVTec-style folder and export to ONNX.",
        epilog=_EXAMPLES,
        formatter_class=formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, example):
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=formatter,
        )
        p.add_argument("--quiet", action="store_true", help="no progress display on stderr")
        return p

    def size_option(p):
        p.add_argument(
            "--size",
            type=_size,
            metavar="N|HxW",
            help="resize every image to N x N or H x W pixels (as at fit time)",
        )

    def model_and_files(p, out_metavar, out_help):
        p.add_argument("--model", required=True, metavar="MODEL", help="model file from fit")
        p.add_argument(
            "--data",
            required=True,
            nargs="+",
            metavar="DIR|FILE",
            help="a folder of images (read recursively) or image files",
        )
        p.add_argument("--out", required=True, metavar=out_metavar, help=out_help)
        size_option(p)
        p.add_argument(
            "--skip-unreadable",
            action="store_true",
            help="skip unreadable files with a warning instead of failing",
        )
        p.add_argument("--overwrite", action="store_true", help="replace existing output")

    p = command(
        "fit",
        "Fit a detector on a folder of normal images and save it as a model file.",
        "anomalib-lite fit --data bottle/ --detector conv-ae --param max_iter=60 --out m.model",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="folder of normal images (read recursively), or an MVTec-style root "
        "(train/good/ is learned from)",
    )
    p.add_argument(
        "--detector",
        choices=sorted(DETECTORS),
        default="conv-ae",
        help="pca, conv-ae (convolutional autoencoder; default) or draem (autoencoder "
        "and segmentation network)",
    )
    p.add_argument(
        "--param",
        type=_param,
        action="append",
        metavar="NAME=VALUE",
        help="a detector parameter, e.g. max_iter=60 (repeatable)",
    )
    p.add_argument(
        "--color",
        choices=("gray", "rgb"),
        default="gray",
        help="read images as grayscale (default) or RGB",
    )
    size_option(p)
    p.add_argument("--out", required=True, metavar="MODEL", help="model file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd_fit)

    p = command(
        "score",
        "Score images with a model; write path, score, decision and label to a CSV file.",
        "anomalib-lite score --model m.model --data new/ --out scores.csv",
    )
    model_and_files(p, "CSV", "CSV file to write")
    p.set_defaults(func=_cmd_score)

    p = command(
        "maps",
        "Draw input | reconstruction | difference | difference over the input figures, one PNG "
        "per image.",
        "anomalib-lite maps --model m.model --data bottle/test/broken_large --out maps/",
    )
    model_and_files(p, "DIR", "folder for the figures")
    p.set_defaults(func=_cmd_maps)

    p = command(
        "evaluate",
        "Image and pixel ROC-AUC, AUPRO and the confusion counts at the model's threshold "
        "on an MVTec-style root (test/good/, test/<defect>/, ground_truth/<defect>/).",
        "anomalib-lite evaluate --model m.model --data bottle/",
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model file from fit")
    p.add_argument("--data", required=True, metavar="ROOT", help="MVTec-style root folder")
    size_option(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = command(
        "export",
        "Export a model to ONNX: raw images in, score, decision, is_anomaly and anomaly_map out.",
        "anomalib-lite export --model m.model --out m.onnx",
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model file from fit")
    p.add_argument("--out", required=True, metavar="ONNX", help="ONNX file to write")
    p.add_argument(
        "--input-dtype",
        choices=("uint8", "float32", "float64"),
        default="uint8",
        help="dtype of the graph's input (default uint8: 8-bit images, as fit reads them)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd_export)
    return parser


def _device_out_of_memory(exc):
    """Whether ``exc`` is torch's out-of-memory error of an accelerator (torch is
    loaded only when a torch detector ran)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)


def main(argv=None):
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : list of str or None, default=None
        Arguments without the program name; None reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 1 on failure, 2 on a usage error.

    Examples
    --------
    >>> from anomalib_lite.cli import main
    >>> main(["export", "--model"])  # a usage error, explained on stderr
    2
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        args.func(args)
    except UsageError as exc:
        print(f"anomalib-lite {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"anomalib-lite {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, ArithmeticError, OSError, ImportError) as exc:
        print(f"anomalib-lite {args.command}: error: {_in_cli_terms(exc)}", file=sys.stderr)
        return 1
    except MemoryError as exc:  # numpy's names the array it could not allocate
        detail = f": {exc}" if str(exc) else ""
        print(f"anomalib-lite {args.command}: error: out of memory{detail}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if not _device_out_of_memory(exc):
            raise
        print(
            f"anomalib-lite {args.command}: error: out of device memory: {exc} (lower "
            "--param batch_size, or pass --param device=cpu)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"anomalib-lite {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # python -m anomalib_lite.cli
    sys.exit(main())
