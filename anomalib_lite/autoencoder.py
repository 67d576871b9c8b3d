"""ConvAutoencoderDetector: reconstruction error of a convolutional autoencoder."""

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._torch_detector import TorchDetector
from .nn import ConvAutoencoder
from .nn.functional import gaussian_blur, ssim_map
from .utils._validation import (
    check_dense,
    check_float,
    check_image_shape,
    check_int,
    check_int_tuple,
    check_numeric_dtype,
    check_option,
)

__all__ = ["ConvAutoencoderDetector"]

_LOSSES = ("mse", "ssim", "mse+ssim")
_IMAGE_SCORES = ("mean", "smooth", "max", "topk")
#: Most down-sampling levels chosen by ``channels=None``.
MAX_LEVELS = 5
#: Channels chosen by ``channels=None``: ``DEEP_CHANNELS`` on the deepest
#: level, half as many on each level above it, but at least ``MIN_CHANNELS``.
DEEP_CHANNELS = 64
MIN_CHANNELS = 32
#: Image side for which ``smoothing='auto'`` is 1 pixel; it scales with the side.
SMOOTHING_SIDE = 28
#: ``latent_dim=None``: one code number per ``PIXELS_PER_CODE`` pixels of an
#: image, at least ``MIN_LATENT``.
MIN_LATENT = 16
PIXELS_PER_CODE = 64
#: ``image_score='topk'`` averages the top ``TOP_FRACTION`` of the pixels, at
#: least ``MIN_TOP_PIXELS`` of them (a 4x4 patch).
TOP_FRACTION = 0.05
MIN_TOP_PIXELS = 16
#: Slope of the network's leaky ReLUs for negative inputs. A plain ReLU
#: (slope 0) leaves 64x64 textures longer on a blurry plateau early in
#: training (see the class Notes).
NEGATIVE_SLOPE = 0.2


def _auto_levels(height, width):
    """Down-sampling levels for an image: halve until the side is about 4 to 7."""
    return int(min(MAX_LEVELS, max(1, math.floor(math.log2(min(height, width))) - 2)))


class ConvAutoencoderDetector(TorchDetector):
    """Anomaly detection by the reconstruction error of a convolutional autoencoder.

    A convolutional autoencoder is trained with the mean squared error (or
    SSIM) to reconstruct normal images only. An image it reconstructs badly is
    anomalous: its anomaly score aggregates the per-pixel squared difference
    between the image and its reconstruction, and that difference,
    :meth:`anomaly_map`, shows where the anomaly is.

    Images may come as ``(n, H, W)`` (grayscale), ``(n, C, H, W)``
    (channels first: the one multi-channel convention; convert channels-last
    arrays with ``np.moveaxis(X, -1, 1)``), or as 2-D rows ``(n, C*H*W)``
    with ``image_shape`` set, so that the detector can follow scikit-learn
    transformers in a :class:`~sklearn.pipeline.Pipeline`. Pixel values are
    used as they are, uint8 included (as by :class:`~anomalib_lite.PCADetector`),
    so score images in the units they were fitted in. Inside, each
    channel is standardized with one mean and one standard deviation over all
    training pixels, images are padded (edge values repeated) to a multiple of
    ``2 ** len(channels_)`` and the padding is cropped from every output.
    Errors, maps and reconstructions are reported in input units.

    Parameters
    ----------
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(C, H, W)`` of the images held in the rows of a 2-D
        ``X``. One entry may be -1, inferred from the number of features as
        in ``numpy.reshape``: ``(1, -1)`` reads each row as a one-pixel-high
        image (a 1-D signal). None reads images from 3-D or 4-D ``X``.
    channels : tuple of int or None, default=None
        Feature channels of each down-sampling level of the encoder. None
        picks the levels from the image size (halving the smaller side until
        it is 4 to 7 pixels, at most 5 levels), 64 channels on the deepest
        level and half as many on each level above it, at least 32:
        ``(64,)`` for 8x8 images, ``(32, 64)`` for 28x28,
        ``(32, 32, 32, 32, 64)`` for 128x128.
    latent_dim : int or None, default=None
        Size of the code. None uses one number per 64 pixels, at least 16:
        16 for images up to 32x32, 64 for 64x64, 256 for 128x128. Larger
        images of texture need a wider code than a digit does.
    negative_slope : float, default=0.2
        Slope for negative inputs of the network's leaky ReLUs; 0 gives
        plain ReLUs.
    loss : {'mse', 'ssim', 'mse+ssim'}, default='mse'
        Training loss: mean squared error, ``1 - SSIM`` (structural
        similarity, Gaussian window of sigma 1.5), or their sum.
    image_score : {'topk', 'smooth', 'mean', 'max'}, default='topk'
        Image-level anomaly score. ``'mean'``: the mean squared error.
        The others aggregate :meth:`anomaly_map`, the squared residual after
        Gaussian smoothing (which ignores the pixel-level misalignment at
        edges that every reconstruction has): ``'topk'`` the mean of its worst
        5% pixels (at least 16, a 4x4 patch), ``'smooth'`` its mean, ``'max'``
        its maximum. ``'topk'`` and ``'max'`` do not dilute a small defect in
        a large image; ``'topk'`` still sees the spread-out error of a wrong
        object (measured in ``docs/benchmarks.md``).
    smoothing : 'auto' or float, default='auto'
        Standard deviation, in pixels, of the Gaussian that smooths the
        residual ``x - reconstruct(x)`` in :meth:`anomaly_map`; 0 disables
        it. ``'auto'`` scales it with the image: the smaller side / 28 (1
        pixel for 28x28 images, 0.29 for 8x8, 4.6 for 128x128). It is read
        when scoring, so it can be changed after ``fit``.
    batch_size : int or 'auto', default='auto'
        Images per optimizer step. ``'auto'`` uses a tenth of the
        training images, clipped to [8, 32], so that small training sets
        still get about 10 steps per epoch. Resolved in ``fit`` into
        ``batch_size_``. Scoring runs in larger batches: as many images as
        64 MiB of the network's activations hold, at least ``batch_size_``
        and at most 8,192, so that memory stays flat in the number of images.
    learning_rate_init : float, default=2e-3
        (Peak) learning rate of Adam.
    learning_rate : {'constant', 'cosine'}, default='constant'
        Schedule over each ``fit``: ``'constant'`` keeps
        ``learning_rate_init``; ``'cosine'`` warms up linearly over the first
        5% of the ``max_iter`` epochs and then decays to zero along a cosine.
    max_iter : int, default=30
        Epochs per ``fit``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training images, stop when
        their loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and keep the weights of the best validation epoch. Without
        it, training stops when the training loss has not improved by
        ``tol`` for ``n_iter_no_change`` epochs (as in scikit-learn's MLP).
    validation_fraction : float, default=0.1
        Fraction of training images held out when ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping.
    tol : float, default=1e-4
        Improvement of the monitored loss (validation loss with
        ``early_stopping``, training loss otherwise) that resets the count.
    warm_start : bool, default=False
        Continue from the fitted state (or from ``checkpoint_path``) instead
        of starting anew: an interrupted run is finished; otherwise another
        ``max_iter`` epochs are trained.
    contamination : 'auto' or float, default='auto'
        Sets ``offset_`` from the training scores; see
        :class:`~anomalib_lite.base.BaseDetector`.
    device : str, default='auto'
        Torch device of the fit: ``'auto'`` picks CUDA when available, else
        the CPU. Resolved in ``fit`` into ``device_``.
    n_threads : int or None, default=None
        torch CPU threads during ``fit`` and scoring, restored afterwards
        (torch's thread count is process-wide). None uses 1 thread: on a
        shared machine a 2-thread fit slows down many times over when another
        process holds a core, and 1 thread lets N worker processes run side by
        side (see ``docs/benchmarks_threads.md``).
    checkpoint_path : str, os.PathLike or None, default=None
        File to save the detector to after every epoch, atomically, as a
        model file of :mod:`anomalib_lite.io` (never a pickle), with the
        optimizer and random-generator state a resumed fit needs. A new fit
        with ``warm_start=True`` resumes from it, bit for bit, after checking
        that the parameters that shape the network agree. An existing file
        that this detector did not write is never overwritten.
    callbacks : list of callable or None, default=None
        Called in order after every epoch (``partial_fit`` included) as
        ``callback(detector, record)``, where ``record`` is a copy of the
        epoch's ``history_`` entry: to log, plot or score during training.
        A callback that returns a true value asks the fit to stop after this
        epoch; it then ends as early stopping does (with
        ``early_stopping=True`` the best epoch's weights are kept). Model
        files store ``callbacks=None``: code is never saved.
    random_state : int, RandomState instance or None, default=None
        Seeds a local ``torch.Generator`` for the initial weights, the
        validation split and the shuffling; with an int, a fit on the same
        device and software is reproducible bit for bit, on a CPU and on CUDA
        (fits and scoring use cuDNN's deterministic kernels). The global RNGs
        are not used.
    verbose : int, default=0
        ``> 0`` logs the loss and the elapsed and remaining time of every
        epoch through :mod:`logging` (logger ``'anomalib_lite'``).

    Attributes
    ----------
    module_ : ConvAutoencoder
        The trained network, in eval mode.
    device_ : str
        Device the network lives on.
    input_shape_ : tuple of int
        ``(C, H, W)`` of the training images.
    channels_ : tuple of int
        Channels of each level of the network.
    latent_dim_ : int
        Size of the code.
    batch_size_ : int
        Images per optimizer step.
    padding_ : tuple of int
        ``(top, bottom, left, right)`` pixels padded before the network.
    channel_mean_ : ndarray of shape (C,)
        Mean of each channel over the training pixels (input units).
    channel_scale_ : ndarray of shape (C,)
        Standard deviation of each channel over the training pixels.
    data_range_ : float
        Range of the standardized training pixels (the SSIM ``L``).
    n_iter_ : int
        Epochs trained, ``partial_fit`` calls included.
    history_ : list of dict
        One entry per epoch: ``epoch``, ``train_loss``, ``valid_loss`` (None
        without early stopping), ``learning_rate`` and ``seconds``.
    best_loss_ : float
        Best monitored loss of the last run.
    offset_ : float
        Threshold on ``score_samples``; see ``decision_function``.
    n_features_in_ : int
        Values per image, ``C * H * W``.
    sample_shape_ : tuple of int
        Shape of one sample of ``X`` as ``fit`` takes it: ``input_shape_``
        for images, ``(n_features_in_,)`` for flat rows with ``image_shape``.
        Image tools such as
        :func:`~anomalib_lite.visualization.reconstruction_panels` pass
        images to the detector reshaped to it.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` is a DataFrame with
        string column names (2-D rows only).

    See Also
    --------
    anomalib_lite.PCADetector : Linear baseline; the same score for a linear
        autoencoder.
    anomalib_lite.AutoencoderDetector : Fully connected autoencoder for tabular
        data.

    Notes
    -----
    Training indexes one pre-built tensor of the training images (no
    ``DataLoader``); scoring runs in eval mode under ``torch.inference_mode``
    in batches (see ``batch_size``), so scoring many images holds one
    batch of intermediate tensors at a time. Reconstructions, errors,
    anomaly maps and scores come from the same forward pass.

    The defaults were chosen on one-class MNIST (validated on the training
    split only) and on the textures of
    :func:`~anomalib_lite.datasets.make_textures`. Digits are served well by
    a small network and a constant learning rate; textures set the rest:
    the code grows with the image, because a small code leaves large
    textures on a blurry plateau; leaky ReLUs leave that plateau sooner than
    plain ones; and ``'topk'`` scores a defect of a few dozen pixels that a
    mean would dilute. An optimizer step has a fixed cost besides its
    arithmetic, so ``batch_size='auto'`` takes few, large steps per epoch.
    Shorter schedules suit digit-like data but not images in general; on
    textures the fit is still improving after 30 epochs. Each choice is
    measured against the defaults, over several training seeds, by
    ``benchmarks/bench_conv_variants.py`` in
    ``docs/benchmarks_conv_variants.md``; ``docs/benchmarks.md`` compares the
    detector with PCA and its peers.

    Pressing Ctrl-C during ``fit`` keeps the model of the last finished epoch
    (with a warning); ``fit`` with ``warm_start=True`` then finishes the run.
    A non-finite training loss stops the fit with a ``FloatingPointError``.
    Pickles hold the weights on the CPU, so that a model trained on a GPU
    unpickles and scores on a machine without one.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import ConvAutoencoderDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0.4, 0.6, size=(64, 8, 8))
    >>> det = ConvAutoencoderDetector(max_iter=5, random_state=0).fit(X)
    >>> defect = X[:1].copy()
    >>> defect[0, 2:4, 2:4] = 3.0
    >>> bool(det.score_samples(defect)[0] < det.score_samples(X[:1])[0])
    True
    >>> det.anomaly_map(defect).shape
    (1, 8, 8)

    A callback sees the record of every epoch and may stop the fit:

    >>> losses = []
    >>> def log_and_stop(detector, record):
    ...     losses.append(record["train_loss"])
    ...     return record["epoch"] == 3  # stop after the third epoch
    >>> det = ConvAutoencoderDetector(max_iter=5, callbacks=[log_and_stop], random_state=0)
    >>> det.fit(X).n_iter_, len(losses)
    (3, 3)
    """

    _module_params = ("image_shape", "channels", "latent_dim", "negative_slope")
    _auto_batch_divisor = 10
    _memory_format = torch.channels_last

    def __init__(
        self,
        *,
        image_shape=None,
        channels=None,
        latent_dim=None,
        negative_slope=NEGATIVE_SLOPE,
        loss="mse",
        image_score="topk",
        smoothing="auto",
        batch_size="auto",
        learning_rate_init=2e-3,
        learning_rate="constant",
        max_iter=30,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        contamination="auto",
        device="auto",
        n_threads=None,
        checkpoint_path=None,
        callbacks=None,
        random_state=None,
        verbose=0,
    ):
        self.image_shape = image_shape
        self.channels = channels
        self.latent_dim = latent_dim
        self.negative_slope = negative_slope
        self.loss = loss
        self.image_score = image_score
        self.smoothing = smoothing
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.contamination = contamination
        self.device = device
        self.n_threads = n_threads
        self.checkpoint_path = checkpoint_path
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    @property
    def sample_shape_(self):
        """Shape of one sample of ``X`` as ``fit`` takes it: flat rows with ``image_shape``."""
        check_is_fitted(self)
        if self.image_shape is not None:
            return (self.n_features_in_,)
        return self.input_shape_

    # ------------------------------------------------------------ validation
    def _check_params(self):
        super()._check_params()
        check_image_shape(self.image_shape)
        check_int_tuple(self.channels, "channels")
        check_int(self.latent_dim, "latent_dim", min_value=1, allow_none=True)
        check_float(self.negative_slope, "negative_slope", low=0, high=1, closed="both")
        check_option(self.loss, "loss", _LOSSES)
        check_option(self.image_score, "image_score", _IMAGE_SCORES)
        if not (isinstance(self.smoothing, str) and self.smoothing == "auto"):
            check_float(self.smoothing, "smoothing", low=0, closed="left")

    def _validate_input(self, X, *, reset):
        check_dense(X)
        check_numeric_dtype(X)
        min_samples = 2 if reset else 1
        if self.image_shape is not None:
            ndim = getattr(X, "ndim", 2)
            if ndim > 2:
                raise ValueError(
                    f"image_shape={self.image_shape!r} is set, so X must be 2-D with one "
                    f"flattened image per row; got {ndim}-D X. Pass X.reshape(len(X), -1) "
                    "or leave image_shape=None to pass (n, H, W) or (n, C, H, W) images."
                )
            X = validate_data(self, X, reset=reset, dtype="numeric", ensure_min_samples=min_samples)
            check_image_shape(self.image_shape, X.shape[1])
        else:
            X = np.asarray(X)
            ndim = X.ndim
            if ndim == 2:
                raise ValueError(
                    f"X is 2-D (n_samples, n_features) = {np.shape(X)}; pass "
                    "image_shape=(H, W) or (C, H, W) to read each row as an image, or "
                    "pass images as (n, H, W) or (n, C, H, W)."
                )
            if ndim not in (3, 4):
                raise ValueError(
                    f"X must hold images as (n, H, W) or (n, C, H, W), got {ndim}-D X of "
                    f"shape {np.shape(X)}."
                )
            X = check_array(
                X,
                dtype="numeric",
                allow_nd=True,
                ensure_2d=False,
                ensure_min_samples=min_samples,
                input_name="X",
            )
            if ndim == 4 and X.shape[-1] in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
                raise ValueError(
                    f"X has shape {X.shape}, which looks channels-last (n, H, W, C); "
                    "images must be channels-first (n, C, H, W). Convert them with "
                    "np.moveaxis(X, -1, 1)."
                )
            if reset:
                self.n_features_in_ = int(math.prod(X.shape[1:]))
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
        if not reset:
            self._check_geometry(X)
        return X

    def _batch_shape(self, X):
        if self.image_shape is not None:
            return check_image_shape(self.image_shape, X.shape[1])
        return (1, *X.shape[1:]) if X.ndim == 3 else tuple(X.shape[1:])

    def _check_geometry(self, X):
        got = self._batch_shape(X)
        if got != self.input_shape_:
            raise ValueError(
                f"X holds images of shape (C, H, W) = {got}, but this "
                f"{type(self).__name__} was fitted on images of shape {self.input_shape_}; "
                "pass images of the fitted size and channel count."
            )

    # -------------------------------------------------------------- geometry
    def _as_images(self, X):
        """Float32 ``(n, C, H, W)`` images in input units."""
        X = np.asarray(X)
        images = np.ascontiguousarray(X, dtype=np.float32)
        if not images.flags.writeable:
            # torch warns on a read-only array (a file opened with
            # np.load(mmap_mode='r'), say); one batch's copy costs little.
            images = images.copy()
        return images.reshape(X.shape[0], *self.input_shape_)

    def _set_geometry(self, X):
        _, H, W = self.input_shape_ = self._batch_shape(X)
        levels = len(self.channels) if self.channels is not None else _auto_levels(H, W)
        min_side = 2 ** (levels - 1)
        if min(H, W) < min_side:
            raise ValueError(
                f"Images of {H}x{W} pixels are too small for channels={self.channels!r}: "
                f"{levels} down-sampling levels need images of at least "
                f"{min_side}x{min_side} pixels (at most half of each padded side is "
                "padding). Pass fewer channels entries, or channels=None to choose the "
                "levels from the image size."
            )
        if self.channels is None:
            self.channels_ = tuple(
                max(MIN_CHANNELS, DEEP_CHANNELS // 2 ** (levels - 1 - i)) for i in range(levels)
            )
        else:
            self.channels_ = tuple(int(c) for c in self.channels)
        if self.latent_dim is None:
            self.latent_dim_ = max(MIN_LATENT, H * W // PIXELS_PER_CODE)
        else:
            self.latent_dim_ = int(self.latent_dim)
        factor = 2**levels
        pad_h, pad_w = (-H) % factor, (-W) % factor
        self.padding_ = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
        images = self._as_images(X)
        self.channel_mean_ = images.mean(axis=(0, 2, 3), dtype=np.float64)
        scale = images.std(axis=(0, 2, 3), dtype=np.float64)
        self.channel_scale_ = np.where(scale > 0, scale, 1.0)
        z = (images - self.channel_mean_[:, None, None]) / self.channel_scale_[:, None, None]
        span = float(z.max() - z.min())
        self.data_range_ = span if span > 0 else 1.0

    def _make_module(self):
        _, H, W = self.input_shape_
        top, bottom, left, right = self.padding_
        act = functools.partial(nn.LeakyReLU, self.negative_slope)
        return ConvAutoencoder(
            self.input_shape_[0],
            (H + top + bottom, W + left + right),
            self.channels_,
            self.latent_dim_,
            act_layer=act,
        )

    # ---------------------------------------------------------------- tensors
    def _stats(self, like):
        mean = torch.as_tensor(self.channel_mean_, dtype=like.dtype, device=like.device)
        scale = torch.as_tensor(self.channel_scale_, dtype=like.dtype, device=like.device)
        return mean.view(1, -1, 1, 1), scale.view(1, -1, 1, 1)

    def _to_tensor(self, X):
        x = torch.from_numpy(self._as_images(X))
        mean, scale = self._stats(x)
        x = (x - mean) / scale
        top, bottom, left, right = self.padding_
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom), mode="replicate")
        return x

    def _crop(self, t):
        _, H, W = self.input_shape_
        top, _, left, _ = self.padding_
        return t[..., top : top + H, left : left + W]

    def _train_loss(self, out, x):
        out, x = self._crop(out), self._crop(x)
        loss = 0.0
        if self.loss in ("mse", "mse+ssim"):
            loss = loss + F.mse_loss(out, x)
        if self.loss in ("ssim", "mse+ssim"):
            loss = loss + (1.0 - ssim_map(out, x, data_range=self.data_range_).mean())
        return loss

    def _errors(self, x, out):
        _, scale = self._stats(out)
        return (self._crop(out) - self._crop(x)).square() * scale.square()

    def _sigma(self):
        """Smoothing in pixels: ``smoothing``, or the image side / 28 for ``'auto'``."""
        if isinstance(self.smoothing, str):
            return min(self.input_shape_[1:]) / SMOOTHING_SIDE
        return float(self.smoothing)

    def _pixel_map(self, x, out):
        """Squared Gaussian-smoothed residual, averaged over channels, input units."""
        _, scale = self._stats(out)
        residual = (self._crop(x) - self._crop(out)) * scale
        sigma = self._sigma()
        if sigma > 0:
            residual = gaussian_blur(residual, sigma)
        return residual.square().mean(1)

    def _score_errors(self, errors, x, out):
        if self.image_score == "mean":
            return errors.flatten(1).mean(1)
        pixel_map = self._pixel_map(x, out).flatten(1)
        if self.image_score == "smooth":
            return pixel_map.mean(1)
        if self.image_score == "max":
            return pixel_map.max(1).values
        n_pixels = pixel_map.shape[1]
        k = min(n_pixels, max(MIN_TOP_PIXELS, math.ceil(TOP_FRACTION * n_pixels)))
        return pixel_map.topk(k, dim=1).values.mean(1)

    def _from_tensor(self, out, like):
        mean, scale = self._stats(out)
        return (self._crop(out) * scale + mean).reshape(like.shape)

    # ------------------------------------------------------------ public API
    def anomaly_map(self, X):
        """Per-pixel anomaly score: squared error between image and reconstruction.

        Parameters
        ----------
        X : array-like
            Images, in the layout ``fit`` accepted.

        Returns
        -------
        maps : ndarray of shape (n_samples, H, W), dtype float64
            At each pixel, the square of the residual ``x - reconstruct(x)``
            smoothed by a Gaussian of sigma ``smoothing`` pixels, averaged over
            channels, in input units, at input resolution. With
            ``smoothing=0`` its mean over the pixels is
            ``reconstruction_error``.
        """
        X = self._check_fitted_input(X)
        return self._outputs(X, lambda x, out, _: self._pixel_map(x, out))
