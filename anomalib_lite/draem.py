"""DraemDetector: an autoencoder and a segmentation network trained on synthetic defects."""

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import ConvAutoencoderDetector, reduce_map
from .nn import ReconstructAndSegment, SegmentationNet
from .nn.functional import gaussian_blur
from .utils._torch import init_weights
from .utils._validation import check_float, check_int, check_option

__all__ = ["DraemDetector"]

_IMAGE_SCORES = ("max", "topk", "mean")
#: Most down-sampling levels of the segmentation network.
SEGMENTER_LEVELS = 2
#: Focusing exponent of the focal loss on the segmentation logits.
FOCAL_GAMMA = 2.0


def focal_loss(logits, target, gamma=FOCAL_GAMMA):
    """Mean focal loss (Lin et al., 2017) of pixel ``logits`` against a 0/1 ``target``:
    binary cross-entropy weighted by ``(1 - p_true) ** gamma``, so that the many
    easy normal pixels do not drown the few defective ones."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.exp(-bce)
    return ((1.0 - p_true) ** gamma * bce).mean()


class DraemDetector(ConvAutoencoderDetector):
    """Anomaly segmentation learned from synthetic defects, in the spirit of DRAEM.

    Two networks train together on normal images into half of which synthetic
    defects are pasted (:func:`~anomalib_lite.nn.paste_defects`: blobs over 1%
    to 25% of the image, mirrored into the margin, blended in at a random
    strength): the autoencoder of :class:`ConvAutoencoderDetector` learns to
    output the clean image (mean squared error), and a small U-Net
    (:class:`~anomalib_lite.nn.SegmentationNet`) reads the input beside that
    reconstruction and learns where the defect is (focal loss on its mask). The
    reconstruction is detached before the U-Net reads it, so that each network
    learns from its own loss only.
    :meth:`anomaly_map` is the segmenter's smoothed probability that a pixel is
    anomalous; the image score reduces it. Comparing the input with what the
    autoencoder makes of it generalizes beyond the synthetic defects: the
    segmenter learns what a mismatch between the two looks like, rather than
    the defects themselves (Zavrtanik et al., "DRAEM", ICCV 2021).

    It localizes defects on textures and surfaces where the reconstruction error
    alone does not (the autoencoder also reconstructs some of a defect), at
    several times the fit time of :class:`ConvAutoencoderDetector`; on varied
    objects whose anomalies look nothing like a pasted blob it can be weaker
    (``docs/benchmarks_real.md``, ``docs/choosing.md``). Images come in the
    layouts :class:`ConvAutoencoderDetector` takes (``sample_shape_`` names the
    fitted one) and are preprocessed as it does them.

    Parameters
    ----------
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(C, H, W)`` of the images in the rows of a 2-D ``X``
        (one entry may be -1); None reads images from 3-D or 4-D ``X``.
    channels : tuple of int or None, default=None
        Channels of each level of the autoencoder's encoder; None chooses them
        from the image size as :class:`ConvAutoencoderDetector` does.
    latent_dim : int or None, default=None
        Size of the autoencoder's code; None chooses it from the image size as
        :class:`ConvAutoencoderDetector` does.
    negative_slope : float, default=0.2
        Slope of both networks' leaky ReLUs for negative inputs.
    margin : 'auto' or int, default='auto'
        Pixels mirrored onto each side of an image before the networks,
        cropped off their outputs; ``'auto'`` is ``2 ** (len(channels_) - 1)``
        at every depth, where :class:`ConvAutoencoderDetector` mirrors none
        for networks of fewer than three levels.
    segmenter_width : int, default=8
        Channels of the segmentation network's first level (doubled at each of
        its down-sampling levels, at most 2).
    image_score : {'max', 'topk', 'mean'}, default='max'
        Image score from :meth:`anomaly_map`: its maximum, the mean of its
        worst 1% pixels (at least 16), or its mean. Read when scoring, by
        ``score_samples``; ``predict``, whose threshold was set on the fitted
        one, refuses another (``offset_scoring_``).
    smoothing : 'auto' or float, default='auto'
        Sigma in pixels of the Gaussian that smooths the probability map; 0
        disables it; ``'auto'`` is the smaller side / 28. Read when scoring,
        as ``image_score`` is.
    batch_size : int or 'auto', default='auto'
        Images per optimizer step; ``'auto'`` is a tenth of the training
        images clipped to [8, 32]. Resolved into ``batch_size_``.
    learning_rate_init : float, default=4e-3
        (Peak) learning rate of Adam.
    learning_rate : {'constant-then-cosine', 'constant', 'cosine'}, \
            default='constant-then-cosine'
        Schedule over each ``fit``, as in :class:`ConvAutoencoderDetector`.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW): every step shrinks the weights by
        ``weight_decay`` times its learning rate, as in
        :class:`ConvAutoencoderDetector`; 0 is plain Adam.
    max_iter : int, default=40
        Epochs per ``fit``.
    early_stopping : bool, default=False
        Stop when the loss of the held-out images (``validation_fraction``)
        stops improving; without it a fit trains all ``max_iter`` epochs, as
        :class:`ConvAutoencoderDetector`'s does. Either way the fit ends with
        its best epoch's weights. The held-out images
        get synthetic defects as the training ones do, the same ones every
        epoch, so that the loss measures finding them.
    validation_fraction : 'auto' or float, default='auto'
        Share of the images held out of training, as in
        :class:`ConvAutoencoderDetector`: ``contamination='auto'`` then sets
        its threshold on their scores, and ``early_stopping`` watches their
        loss. ``'auto'`` is 0.1 with ``early_stopping``, else 0: every image
        trains and the threshold is set on the training scores, which flags
        many new normal images.
    n_iter_no_change : int, default=10
        Epochs without improvement before ``early_stopping`` stops.
    tol : float, default=1e-4
        Improvement of the held-out loss that resets the count.
    warm_start : bool, default=False
        Continue from the fitted state (or ``checkpoint_path``).
    contamination : 'auto' or float, default='auto'
        Sets ``offset_`` as :class:`ConvAutoencoderDetector` does: ``'auto'``
        on the held-out images' scores, or the training scores when none are
        held out.
    device : str, default='auto'
        Torch device: ``'cpu'``, ``'cuda'`` (or ``'cuda:1'``), or ``'auto'``,
        which picks CUDA when available (``'mps'`` is refused: no float64).
    n_threads : int or None, default=None
        torch CPU threads during ``fit`` and scoring; None uses 1.
    checkpoint_path : str, os.PathLike or None, default=None
        Model file written atomically after every epoch, for
        ``warm_start=True`` to resume from.
    callbacks : list of callable or None, default=None
        Each called after every epoch as ``callback(detector, record)``; a true
        return value stops the fit.
    random_state : int, RandomState instance or None, default=None
        Seeds a local ``torch.Generator`` (weights, shuffling, defects). None
        draws the seed from NumPy's global RNG, as scikit-learn does; an int or
        a RandomState leaves the global NumPy and torch RNGs alone.
    verbose : int, default=0
        ``> 0`` logs each epoch's loss and timing to logger ``'anomalib_lite'``.

    Attributes
    ----------
    module_ : ReconstructAndSegment
        The trained networks, in eval mode.
    device_ : str
        Device the networks live on.
    input_shape_ : tuple of int
        ``(C, H, W)`` of the training images.
    channels_ : tuple of int
        Channels of each level of the autoencoder.
    latent_dim_ : int
        Size of the autoencoder's code.
    negative_slope_ : float
        Slope of both networks' leaky ReLUs (``negative_slope`` at fit).
    segmenter_levels_ : int
        Down-sampling levels of the segmentation network.
    segmenter_width_ : int
        Channels of the segmentation network's first level (``segmenter_width``
        at fit), from which a copy or a model file rebuilds it.
    batch_size_ : int
        Images per optimizer step.
    margin_ : tuple of int
        ``(rows, columns)`` mirrored onto each side.
    padding_ : tuple of int
        ``(top, bottom, left, right)`` pixels padded before the networks.
    channel_mean_ : ndarray of shape (C,)
        Mean of each channel over the training pixels (input units).
    channel_scale_ : ndarray of shape (C,)
        Standard deviation of each channel over the training pixels.
    data_range_ : float
        Range of the standardized training pixels (no score uses it here).
    n_iter_ : int
        Epochs trained, ``partial_fit`` calls included.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``valid_loss``, ``learning_rate``,
        ``seconds`` and ``undone`` (True for an epoch whose training loss rose
        tenfold over the run's lowest: its weights were put back and the
        learning rate halved).
    best_loss_ : float
        Best monitored loss of the last run.
    offset_ : float
        Threshold on ``score_samples``; see ``decision_function``.
    offset_scoring_ : dict
        ``{'image_score': ..., 'smoothing': ...}`` of the scores ``offset_`` was set
        on: ``decision_function`` and ``predict`` refuse another.
    n_features_in_ : int
        Values per image, ``C * H * W``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of a DataFrame ``X`` (2-D rows only).

    See Also
    --------
    anomalib_lite.ConvAutoencoderDetector : The reconstruction error alone.
    anomalib_lite.PCADetector : Linear baseline.

    Notes
    -----
    DRAEM's synthetic anomalies are Perlin-noise masks filled with images of
    an external texture set; here they are the blobs and fills of
    :func:`~anomalib_lite.nn.paste_defects`, drawn from the training images
    themselves, so that nothing is downloaded. The networks are small enough
    to train on a CPU. ``reconstruct`` and ``reconstruction_error`` give the
    autoencoder's output; scores come from the segmenter alone.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import DraemDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0.4, 0.6, size=(64, 16, 16))
    >>> det = DraemDetector(max_iter=5, random_state=0).fit(X)
    >>> det.anomaly_map(X[:2]).shape
    (2, 16, 16)
    >>> bool(((0 <= det.anomaly_map(X[:2])) & (det.anomaly_map(X[:2]) <= 1)).all())
    True
    """

    _module_params = (*ConvAutoencoderDetector._module_params, "segmenter_width")
    # A margin at every depth: without one, shallow networks too found fewer defects
    # (28x28 one-class MNIST, and the pixels of accessories drawn over digits).
    _margin_levels = 1

    def __init__(
        self,
        *,
        image_shape=None,
        channels=None,
        latent_dim=None,
        negative_slope=0.2,
        margin="auto",
        segmenter_width=8,
        image_score="max",
        smoothing="auto",
        batch_size="auto",
        learning_rate_init=4e-3,
        learning_rate="constant-then-cosine",
        weight_decay=0.0,
        max_iter=40,
        early_stopping=False,
        validation_fraction="auto",
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
        self.margin = margin
        self.segmenter_width = segmenter_width
        self.image_score = image_score
        self.smoothing = smoothing
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
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

    def _check_network_params(self):
        super()._check_network_params()
        check_int(self.segmenter_width, "segmenter_width", min_value=1)

    def _check_scoring_params(self):
        check_option(self.image_score, "image_score", _IMAGE_SCORES)
        check_float(self.smoothing, "smoothing", low=0, closed="left", allow_auto=True)

    def _choose_scoring(self, X):
        """Nothing to choose: the image score is ``image_score``."""

    # -------------------------------------------------------------- network
    def _init_module(self, generator):
        """PyTorch's default initialization for the whole network, the autoencoder
        included (not ConvAutoencoderDetector's He initialization): this detector's
        settings were chosen with it."""
        init_weights(self.module_, generator)

    def _set_alignment(self, z):
        """Nothing to measure: the segmenter's training has no augmentation."""

    def _set_geometry(self, X):
        super()._set_geometry(X)
        # The deepest level keeps at least 2 pixels a side, for batch statistics.
        side = min(self._padded_size())
        self.segmenter_levels_ = min(SEGMENTER_LEVELS, math.ceil(math.log2(side)) - 1)
        self.segmenter_width_ = int(self.segmenter_width)

    def _make_module(self):
        autoencoder = super()._make_module()
        segmenter = SegmentationNet(
            2 * self.input_shape_[0],
            self.segmenter_width_,
            self.segmenter_levels_,
            act_layer=functools.partial(nn.LeakyReLU, self.negative_slope_),
        )
        return ReconstructAndSegment(autoencoder, segmenter)

    def _parts(self, out):
        """``(reconstruction, logits)`` of the network's output."""
        # No slice of the batch dimension, here or in _pixel_map: torch.export up to
        # 2.7 at least guards one against the largest size, failing the ONNX export.
        return out.split([self.input_shape_[0], 1], dim=1)

    # ------------------------------------------------------------- training
    def _batch_loss(self, module, xb, gen):
        corrupted, masks = self._blend_defects(xb, gen)
        return self._train_loss(module(corrupted), xb, masks)

    def _train_loss(self, out, x, masks):
        """Reconstruction MSE against the clean ``x`` plus the segmenter's focal loss
        against ``masks``, on the cropped images."""
        rec, logits = (self._crop(t) for t in self._parts(out))
        return F.mse_loss(rec, self._crop(x)) + focal_loss(logits, masks.to(logits))

    def _eval_batch_loss(self, xb, gen):
        # Defects drawn from the fit's seed: the same every epoch, and a segmenter
        # that flags nothing does not score well.
        return self._batch_loss(self.module_, xb, gen)

    def _check_weights(self, weights):
        # Bounded before the network is laid out: the levels set its depth.
        levels = getattr(self, "segmenter_levels_", None)
        if not isinstance(levels, int) or not 0 <= levels <= SEGMENTER_LEVELS:
            raise ValueError(
                f"segmenter_levels_={levels!r} must be an int in [0, {SEGMENTER_LEVELS}]"
            )
        super()._check_weights(weights)

    # -------------------------------------------------------------- scoring
    def _errors(self, x, out):
        return super()._errors(x, self._parts(out)[0])

    def _from_tensor(self, out, like):
        return super()._from_tensor(self._parts(out)[0], like)

    def _pixel_map(self, x, out):
        """Smoothed probability that each pixel is anomalous."""
        probability = torch.sigmoid(self._crop(self._parts(out)[1]).float())
        sigma = self._sigma()
        if sigma > 0:
            # The blur's weights sum to 1 only to float32 rounding: a map of ones
            # could come out a step above 1.
            probability = gaussian_blur(probability, sigma).clamp(max=1.0)
        return probability.squeeze(1)

    def _score_tensor(self, x, out):
        # The image score reduces the segmenter's map; no reconstruction error needed.
        return self._score_errors(None, x, out)

    def _statistic(self):
        check_option(self.image_score, "image_score", _IMAGE_SCORES)  # read when scoring
        return self.image_score

    def _scoring(self):
        # Every image score reduces the smoothed map.
        return {"image_score": self._statistic(), "smoothing": self._sigma()}

    def _projection(self):
        # The segmenter learned to read the plain reconstruction's output: no projection.
        return 0, None

    def _score_errors(self, errors, x, out):
        return reduce_map(self._pixel_map(x, out), self._statistic())

    def anomaly_map(self, X):
        """Per-pixel anomaly score: the segmentation network's probability that the
        pixel is anomalous, smoothed by a Gaussian of sigma ``smoothing`` pixels.

        Parameters
        ----------
        X : array-like
            Images, in the layout ``fit`` accepted.

        Returns
        -------
        maps : ndarray of shape (n_samples, H, W), dtype float64
            Values in [0, 1]; ``inf`` where an image far outside the training
            range overflowed, with a warning; never NaN.
        """
        return super().anomaly_map(X)
