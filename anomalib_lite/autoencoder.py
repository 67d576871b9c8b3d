"""ConvAutoencoderDetector: reconstruction error of a convolutional autoencoder."""

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._torch_detector import TorchDetector
from .nn import ConvAutoencoder, paste_defects, random_shift
from .nn.corruption import DEFECT_AREA
from .nn.functional import gaussian_blur, pad_by_slices, ssim_map
from .utils._alignment import common_detail
from .utils._choice import best_score, choice_sample, defective_copies
from .utils._maps import auto_sigma, combine_map_parts, map_scales
from .utils._torch import draw_seed, make_generator
from .utils._validation import (
    channels_first,
    check_dense,
    check_float,
    check_float32_spread,
    check_image_shape,
    check_image_size,
    check_images,
    check_int,
    check_int_tuple,
    check_numeric_dtype,
    check_option,
)

__all__ = ["ConvAutoencoderDetector"]

_LOSSES = ("mse", "ssim", "mse+ssim")
_IMAGE_SCORES = ("auto", "topk", "smooth", "mean", "max")
_CORRUPTIONS = ("defects",)
_AUGMENTATIONS = ("auto", "shift")
#: ``augmentation='shift'`` moves the training images by up to one pixel per
#: ``SHIFT_SIDE`` pixels of each side (at least one): 1 at 28 pixels, 2 at 64.
SHIFT_SIDE = 28
#: ``augmentation='auto'`` shifts unless at least this share of the training images'
#: fine detail is common to them all (``common_detail_``). On the benchmarks' sets the
#: solar cells, aligned to the pixel, share 0.59 to 0.77 of theirs, the 8x8 digits
#: 0.20 to 0.63, the MNIST classes 0.04 to 0.15 and the random-phase textures none.
ALIGNED_DETAIL = 0.25
#: ``corruption='defects'``: the chance that a training image gets a defect and
#: the range of the strength it is blended in at (1 replaces the pixels outright);
#: a defect covers a fraction in ``DEFECT_AREA`` of the image.
DEFECT_PROBABILITY = 0.5
DEFECT_STRENGTH = (0.2, 1.0)
#: Most down-sampling levels chosen by ``channels=None``.
MAX_LEVELS = 5
#: ``channels=None``: ``DEEP_CHANNELS`` deepest, halved per level above, >= ``MIN_CHANNELS``,
#: and ``FIRST_CHANNELS`` on the first level of a network of two levels or more. The
#: first level works at the full image size, where each channel costs most: 16 there
#: instead of 32 scored as well in less time, which the longer default training
#: (``max_iter``) spends (``docs/benchmarks_real.md`` compares the two).
DEEP_CHANNELS = 64
MIN_CHANNELS = 32
FIRST_CHANNELS = 16


def level_channels(levels):
    """Channels of ``levels`` levels by the deeper levels' rule of ``channels=None``
    (before the first level's ``FIRST_CHANNELS``): ``DEEP_CHANNELS`` deepest, halved
    per level above, at least ``MIN_CHANNELS``."""
    return tuple(max(MIN_CHANNELS, DEEP_CHANNELS // 2 ** (levels - 1 - i)) for i in range(levels))


#: ``margin='auto'`` mirrors a margin for networks of at least ``MARGIN_LEVELS``
#: levels. Shallower ones (images under 32 pixels with ``channels=None``) reach few
#: pixels past the edge: on 28x28 images a margin scored about the same once
#: ``edge_scale_`` corrected the edge, and it enlarged the network's input by a third.
MARGIN_LEVELS = 3
#: ``image_score='smooth'`` blurs the residual ``SMOOTH_WIDTH`` times wider than the
#: map: an extended change leaves a residual of one sign over its area, which the
#: wider blur keeps, while the residual of misaligned normal detail alternates in
#: sign and cancels. Small defects keep the map's narrower blur (``'max'``).
SMOOTH_WIDTH = 1.5
#: ``latent_dim=None``: one number per ``PIXELS_PER_CODE`` pixels, from ``MIN_LATENT``
#: to ``MAX_LATENT``, but at least one per ``SMALL_PIXELS_PER_CODE`` pixels up to
#: ``SMALL_LATENT`` numbers. A code half as wide left more of the normal detail in the
#: residual, where it hid grain defects and accessories drawn over digits; one per 16
#: pixels made the training of 64x64 solar cells diverge, and a code of 512 numbers
#: (128x128 images) made training spike.
MIN_LATENT = 16
MAX_LATENT = 256
PIXELS_PER_CODE = 32
SMALL_LATENT = 64
SMALL_PIXELS_PER_CODE = 16
#: ``image_score='topk'``: mean of the top ``TOP_FRACTION`` pixels, at least a 4x4 patch.
#: A small fraction keeps a small defect from being averaged with normal residual.
TOP_FRACTION = 0.01
MIN_TOP_PIXELS = 16
#: ``image_score='auto'`` chooses between these (:mod:`~anomalib_lite.utils._choice`).
#: ``'max'`` rather than ``'topk'``: once ``edge_scale_`` evens the map's edge,
#: normal images no longer peak along the border, and averaging a small defect's
#: peak with the next-worst pixels only dilutes it.
AUTO_IMAGE_SCORES = ("max", "smooth")
#: ``projection_steps``: Adam's step size on the standardized image being moved.
PROJECTION_RATE = 0.05
#: Leaky ReLU slope: plain ReLUs leave large textures longer on a blurry plateau.
NEGATIVE_SLOPE = 0.2


def reduce_map(maps, statistic, top_fraction=TOP_FRACTION):
    """One score per map of ``maps`` ``(n, H, W)``: its ``'mean'``, its ``'max'``, or
    (``'topk'``) the mean of its top ``top_fraction`` pixels, at least ``MIN_TOP_PIXELS``."""
    flat = maps.flatten(1)
    if statistic == "mean":
        return flat.mean(1)
    if statistic == "max":
        return flat.max(1).values
    n_pixels = flat.shape[1]
    k = min(n_pixels, max(MIN_TOP_PIXELS, math.ceil(top_fraction * n_pixels)))
    return flat.topk(k, dim=1).values.mean(1)


def _auto_latent_dim(height, width):
    """Code size of ``latent_dim=None`` for ``height`` x ``width`` images."""
    pixels = height * width
    small = min(SMALL_LATENT, pixels // SMALL_PIXELS_PER_CODE)
    return min(MAX_LATENT, max(MIN_LATENT, small, pixels // PIXELS_PER_CODE))


def _auto_levels(height, width):
    """Down-sampling levels for an image: halve until the side is about 4 to 7."""
    return int(min(MAX_LEVELS, max(1, math.floor(math.log2(min(height, width))) - 2)))


class ConvAutoencoderDetector(TorchDetector):
    """Anomaly detection by the reconstruction error of a convolutional autoencoder.

    The autoencoder learns to reconstruct normal images only; an image it
    reconstructs badly is anomalous, and :meth:`anomaly_map` shows where.

    Images come as ``(n, H, W)``, channels-first ``(n, C, H, W)`` (convert
    channels-last arrays with ``np.moveaxis(X, -1, 1)``), or as rows
    ``(n, C*H*W)`` with ``image_shape`` set, for use in a
    :class:`~sklearn.pipeline.Pipeline` or for images 1, 3 or 4 pixels wide,
    which 4-D ``X`` would take for channels-last. Pixel values are used as they are
    (uint8 included). Inside, each channel is standardized over the training
    pixels, images get a mirrored ``margin`` and are edge-padded to a multiple
    of ``2 ** len(channels_)``; every output is cropped back and reported in
    input units. The network starts He-initialized
    (:meth:`~anomalib_lite.nn.ConvAutoencoder.reset_parameters`, drawn from
    ``random_state``).

    Parameters
    ----------
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(C, H, W)`` of the images in the rows of a 2-D ``X``;
        one entry may be -1 (as in ``numpy.reshape``): ``(1, -1)`` reads rows
        as 1-D signals. None reads images from 3-D or 4-D ``X``.
    channels : tuple of int or None, default=None
        Feature channels of each down-sampling level of the encoder. None
        halves the smaller side until it is 4 to 7 pixels (at most 5 levels),
        with 64 channels on the deepest level and half as many on each level
        above, at least 32, but 16 on the first level of a deeper network,
        where the image is largest: ``(16, 64)`` for 28x28 images,
        ``(16, 32, 32, 64)`` for 64x64.
    latent_dim : int or None, default=None
        Size of the code. None uses one number per 32 pixels, from 16 to 256,
        as large texture images need a wider code than a digit, but one per 16
        pixels on small images, up to 64 numbers: 49 for 28x28 images, 64 for
        32x32, 128 for 64x64.
    negative_slope : float, default=0.2
        Slope of the leaky ReLUs for negative inputs; 0 gives plain ReLUs.
    margin : 'auto' or int, default='auto'
        Pixels mirrored onto each side of an image before the network (at most
        the side - 1), cropped off its output. The network reconstructs the
        outermost pixels worst (its transposed convolutions reach them from one
        side only), so that without a margin the residual of normal images
        peaks along the border and hides small defects elsewhere. ``'auto'``
        is ``2 ** (len(channels_) - 1)``, the smallest margin that keeps the
        padded side a multiple of the down-sampling, for networks of three
        levels or more (images of 32 pixels or more with ``channels=None``),
        and 0 for shallower ones, where ``edge_scale_`` alone corrects the
        edge as well at a quarter less computation; 0 disables it. Resolved
        into ``margin_``. What residual the edge keeps, ``edge_scale_``
        divides out of the map.
    loss : {'mse', 'ssim', 'mse+ssim'}, default='mse'
        Training loss: mean squared error, ``1 - SSIM`` (Gaussian window of
        sigma 1.5), or their sum.
    corruption : {None, 'defects'}, default=None
        ``'defects'`` pastes a synthetic defect into half of the images of
        every training batch (:func:`~anomalib_lite.nn.paste_defects`: a
        random blob over 1% to 25% of the image, filled with a shifted patch
        of another training image, an intensity shift, noise or one grey
        level), blended in at a random strength from 0.2 to 1 so that faint
        defects are repaired too, drawn from the fit's own generator, and
        trains the network to output the clean image: it learns to repair
        what does not belong rather than to copy its input. None trains on
        the images as they are. Scoring never corrupts.
    augmentation : {'auto', 'shift'} or None, default='auto'
        ``'shift'`` moves every training batch, input and target alike, by a
        random offset of up to one pixel per ``SHIFT_SIDE`` (28) pixels of each
        side (at least one: 1 at 28 pixels, 2 at 64), its border mirrored
        (:func:`~anomalib_lite.nn.random_shift`), so that the network learns
        the normal pattern wherever it lies rather than where it lay. It suits
        textures whose pattern is not aligned from image to image (grain,
        weave) and objects that sit a little differently in each image; it
        costs images whose layout is fixed to the pixel (cells, parts held in a
        fixture), where a defect is a local structure out of place that the
        shifted network has learned to copy (``docs/choosing.md``). None trains
        on the images where they are. ``'auto'`` tells the two kinds apart
        from the training images: it shifts unless at least ``ALIGNED_DETAIL``
        (a quarter) of their fine detail (each image minus its Gaussian blur
        at the ``smoothing='auto'`` width) is common to them all, lying at the
        same pixels (``common_detail_``; ``augmentation_`` names the choice).
        Scoring never shifts.
    image_score : {'auto', 'topk', 'smooth', 'mean', 'max'}, default='auto'
        Image score: ``'mean'`` is the mean squared error; ``'topk'`` and
        ``'max'`` reduce :meth:`anomaly_map` (smoothed, so that edge
        misalignment counts little, and divided by its edge correction,
        ``edge_scale_``) to the mean of its worst 1% pixels (at least 16) or
        to its maximum; ``'smooth'`` is the mean of the squared residual
        smoothed ``SMOOTH_WIDTH`` (1.5) times wider than the map, so that the
        alternating residual of fine normal detail cancels before squaring.
        ``'topk'`` and ``'max'`` do not dilute a small defect; ``'smooth'``
        and ``'mean'`` weigh an extended change (an object worn over the
        normal one) by all its area. No one score suits every kind
        of anomaly, so ``'auto'`` chooses between ``'max'`` and ``'smooth'``
        after training, from the data: copies of the fit's images (at
        most 1000) get synthetic defects (:func:`~anomalib_lite.nn.paste_defects`,
        blended in at half strength), and the score that tells those copies
        from the clean images with the higher ROC-AUC wins, ``'max'`` on an
        exact tie (``image_score_``, ``image_score_aucs_``; ``partial_fit``
        chooses on its batch). It chooses on all the fit's images, held-out
        ones included: the network reconstructs those it trained on better
        than new ones, but a held-out tenth alone holds too few images to
        tell two close scores apart. Read when scoring: another value set
        after ``fit`` applies at once to ``score_samples`` and
        :meth:`anomaly_map`, and ``'auto'`` is the fitted choice; the threshold
        ``offset_`` holds for the fitted one only, so ``decision_function``
        and ``predict`` refuse another (``offset_scoring_``).
    smoothing : 'auto' or float, default='auto'
        Sigma in pixels of the Gaussian that smooths the residual in
        :meth:`anomaly_map` (and, ``SMOOTH_WIDTH`` times wider, in
        ``image_score='smooth'``); 0 disables it; ``'auto'`` is the smaller
        side / 28. Read when scoring, so it can be changed after ``fit``
        (for ``predict`` too only where ``offset_scoring_`` allows it).
    projection_steps : int, default=0
        Before scoring, move each image this many Adam steps (of size 0.05 in
        standardized units) toward one that the network reconstructs closely
        while it stays near the input: Adam steps on ``||y - f(y)||^2 +
        projection_penalty * ||y - x||_1`` over ``y``, starting from ``y = x``
        (the energy-based projection of Dehaene et al., ICLR 2020). Every
        score, :meth:`anomaly_map` and :meth:`reconstruct` then use ``f(y)``
        in place of ``f(x)``. Where the network half-copies what it never saw
        (an object worn over the normal one, another digit), ``y`` moves away
        from it and ``f(y)`` falls back toward the normal class, so that the
        residual ``x - f(y)`` shows it more fully (``docs/choosing.md``). Each
        step runs the network forward and backward, so scoring, and the
        threshold at the end of ``fit``, take a few times ``projection_steps``
        as long (the ``'auto'`` choice and ``edge_scale_`` read the plain
        output: a fit chooses as it would without projection); the ONNX
        export refuses it (the graph has no gradients). 0 scores ``f(x)``.
        Read when scoring, as ``smoothing`` is (``offset_scoring_``).
    projection_penalty : float, default=0.1
        Weight of the L1 distance to the input in the projection's objective,
        per pixel of the standardized image: a higher one keeps ``y`` closer
        to ``x``. Used only with ``projection_steps > 0``.
    batch_size : int or 'auto', default='auto'
        Images per optimizer step; ``'auto'`` is a tenth of the training
        images clipped to [8, 32]. Resolved into ``batch_size_``. Scoring
        batches are larger: as many images as 64 MiB of activations hold.
    learning_rate_init : float, default=4e-3
        (Peak) learning rate of Adam.
    learning_rate : {'constant-then-cosine', 'constant', 'cosine'}, \
            default='constant-then-cosine'
        Schedule over each ``fit``: ``learning_rate_init`` for the first 70%
        of the epochs, then a half-cosine decay to zero; constant; or a
        linear warm-up over 5% of the epochs followed by a cosine decay.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW): every step shrinks the weights by
        ``weight_decay`` times its learning rate (so ``weight_decay *
        learning_rate_init`` must be below 1). A decayed network reconstructs
        what it never saw less closely, and fine normal detail more blurrily,
        so a small defect, which must stand out from that blur, suffers most
        (``docs/choosing.md`` measures it). 0 is plain Adam. A warm start trains
        with the value set now.
    max_iter : int, default=50
        Epochs per ``fit``. Small training sets take few steps per epoch
        (``batch_size='auto'``); longer training reconstructs the normal
        images more closely, so that an extended change (an accessory drawn
        over a digit) stands out more.
    early_stopping : bool, default=False
        Stop when the loss of the held-out images (``validation_fraction``)
        has not improved by ``tol`` for ``n_iter_no_change`` epochs. Without
        it a fit trains all ``max_iter`` epochs, over which the learning
        rate's schedule is laid: a fit stopped on a plateau of its training
        loss while the rate is still high misses the decay that settles the
        weights. Either way the fit ends with the weights of the epoch whose
        loss (held-out with ``early_stopping``, else training) was lowest, so that a loss spike late
        in training, which Adam's high learning rate can cause, does not
        leave the network broken.
    validation_fraction : 'auto' or float, default='auto'
        Share of the images held out of training (at least 2, the same ones
        for every run of a fit). ``contamination='auto'`` then sets its
        threshold on their scores, and ``early_stopping`` watches their loss.
        ``'auto'`` is 0.1 with ``early_stopping`` and 0 without: every image
        trains, as the ranking of a few hundred images suffers from a tenth
        fewer, and the threshold is set on the training scores, which the
        network reconstructs more closely than new images, so that it flags
        many new normal images. Set 0.1 before relying on ``predict``, or use
        :class:`~anomalib_lite.CalibratedDetector`.
    n_iter_no_change : int, default=10
        Epochs without improvement before ``early_stopping`` stops.
    tol : float, default=1e-4
        Improvement of the held-out loss that resets the count.
    warm_start : bool, default=False
        Continue from the fitted state (or ``checkpoint_path``): finish an
        interrupted run, or train another ``max_iter`` epochs.
    contamination : 'auto' or float, default='auto'
        Sets ``offset_``: ``'auto'`` at Tukey's upper fence of the held-out
        images' scores (of the training scores when none are held out; see
        ``validation_fraction``), a float ``c`` so that the share ``c`` of all
        the fit's images is flagged, as scikit-learn defines it; see
        :class:`~anomalib_lite.base.BaseDetector`. For a stated false-alarm
        rate use :class:`~anomalib_lite.CalibratedDetector`.
    device : str, default='auto'
        Torch device: ``'cpu'``, ``'cuda'`` (or ``'cuda:1'``), or ``'auto'``,
        which picks CUDA when available. Resolved into ``device_``. Apple's
        ``'mps'`` is refused: it has no float64, which scoring needs.
    n_threads : int or None, default=None
        torch CPU threads during ``fit`` and scoring, restored afterwards.
        None uses 1, so that processes sharing a machine do not slow each
        other down (see ``docs/benchmarks_threads.md``).
    checkpoint_path : str, os.PathLike or None, default=None
        File the detector is saved to after every epoch, atomically, as an
        :mod:`anomalib_lite.io` model file (never a pickle) with the state a
        resumed fit needs; ``warm_start=True`` resumes from it bit for bit if
        the shaping parameters agree. A file this detector did not write or
        load, or one replaced since (by a copy that resumed from it, say), is
        never overwritten.
    callbacks : list of callable or None, default=None
        Each called after every epoch as ``callback(detector, record)``, with
        a copy of the epoch's ``history_`` entry; a true return value stops
        the fit as early stopping does, an exception ends it as a failed fit.
        During a first fit ``score_samples`` works, but ``predict`` raises
        ``NotFittedError``: the threshold is set after the last epoch. Model
        files store ``callbacks=None``.
    random_state : int, RandomState instance or None, default=None
        Seeds a local ``torch.Generator`` (weights, split, shuffling); with an
        int, a fit on the same device and software is reproducible bit for
        bit (cuDNN runs deterministically). None draws the seed from NumPy's
        global RNG, as scikit-learn does; an int or a RandomState leaves the
        global NumPy and torch RNGs alone.
    verbose : int, default=0
        ``> 0`` logs each epoch's loss and timing to logger ``'anomalib_lite'``.

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
    negative_slope_ : float
        Slope of the network's leaky ReLUs: a copy or a model file rebuilds the
        network from it, whatever ``negative_slope`` is set to later.
    batch_size_ : int
        Images per optimizer step.
    margin_ : tuple of int
        ``(rows, columns)`` mirrored onto each side.
    padding_ : tuple of int
        ``(top, bottom, left, right)`` pixels padded before the network, the
        margin included.
    channel_mean_ : ndarray of shape (C,)
        Mean of each channel over the training pixels (input units).
    channel_scale_ : ndarray of shape (C,)
        Standard deviation of each channel over the training pixels.
    data_range_ : float
        Range of the standardized training pixels (the SSIM ``L``).
    n_iter_ : int
        Epochs trained, ``partial_fit`` calls included.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``valid_loss`` (None without
        early stopping), ``learning_rate``, ``seconds`` and ``undone`` (True
        for an epoch whose training loss rose tenfold over the run's lowest:
        its weights were put back and the learning rate halved).
    best_loss_ : float
        Best monitored loss of the last run.
    common_detail_ : float
        Share, in [0, 1], of the training images' fine detail that lies at the
        same pixels in every image (corrected for what chance leaves in the
        mean of independent images): near 1 for images aligned to the pixel,
        near 0 for textures whose pattern lies anywhere. Measured at the first
        fit on at most 1000 of its images (a warm start keeps it).
    augmentation_ : str or None
        The augmentation training uses: ``augmentation``, with ``'auto'``
        resolved from ``common_detail_``.
    image_score_ : str
        The image score of ``image_score='auto'``: the one chosen at fit, or
        ``image_score`` itself when it was fitted with another value.
    image_score_aucs_ : dict
        ``{score: ROC-AUC}`` of the choice, on synthetic defects against the
        training images; empty when no choice was made.
    energy_scale_ : float
        Weight of the map's second part, the smoothed squared residual, against
        its first, the squared smoothed residual: the first's mean over the
        second's on the fit's images (at most 1000, at the fit's ``smoothing``),
        so that both parts weigh the same there; 1 when that mean is not usable.
    edge_scale_ : ndarray of shape (H, W), dtype float32
        Divisor of :meth:`anomaly_map`. The network reconstructs the outer
        pixels of an image less closely than the rest, margin or not, so that
        the residual of normal images is higher along the edge and draws the
        image scores of textures there. On each of the outer rings of pixels
        (an eighth of the smaller side deep) it is how many times the mean
        residual of the fit's images (at most 1000, at the fit's
        ``smoothing``) on that ring exceeds its mean further in, at least 1;
        it is 1 elsewhere. Where the edge holds less residual than the inside
        (digits on a blank ground), it is 1 everywhere.
    offset_ : float
        Threshold on ``score_samples``; see ``decision_function``.
    offset_scoring_ : dict
        ``{'image_score': ..., 'smoothing': ..., 'projection_steps': ...,
        'projection_penalty': ...}`` (the statistic; the sigma in pixels, None for
        ``'mean'``, which is not smoothed; the penalty None without steps) of the
        scores ``offset_`` was set on: ``decision_function`` and ``predict``
        refuse to compare it with scores computed otherwise.
    n_features_in_ : int
        Values per image, ``C * H * W``.
    sample_shape_ : tuple of int
        Shape of one sample as ``fit`` takes it: ``input_shape_``, or
        ``(n_features_in_,)`` for rows with ``image_shape``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of a DataFrame ``X`` (2-D rows only).

    See Also
    --------
    anomalib_lite.PCADetector : Linear baseline.
    anomalib_lite.AutoencoderDetector : Fully connected autoencoder for tabular data.

    Notes
    -----
    Training indexes one pre-built tensor (no ``DataLoader``); scoring runs in
    eval mode under ``torch.inference_mode``, in batches. The defaults were
    chosen on one-class MNIST and on :func:`~anomalib_lite.datasets.make_textures`;
    the choice of image score, the two-part map, the margin, the code
    width and the threshold of ``augmentation='auto'`` were also measured on
    the ELPV cells and grain textures of ``benchmarks/bench_real.py``,
    which have no separate validation split, so those tables flatter the
    defaults somewhat. On MNIST and the textures:
    a high learning rate held for most of the fit takes large texture images
    off the blurry plateau where lower rates left some training seeds, and
    the final decay settles the weights. ``corruption='defects'`` is an
    option rather than the default because it slowed that escape.
    ``benchmarks/bench_conv_variants.py``, ``benchmarks/bench_real.py`` and
    ``benchmarks/bench_training.py`` measure the choices
    (``docs/benchmarks_conv_variants.md``, ``docs/benchmarks_real.md``,
    ``docs/benchmarks_training.md``; ``docs/choosing.md`` says which option
    suits which kind of anomaly) and ``docs/benchmarks.md`` compares the
    detector with its peers.

    Ctrl-C during ``fit`` keeps the last finished epoch (with a warning);
    ``warm_start=True`` finishes the run. After the last epoch, while the
    threshold is set, Ctrl-C keeps the weights without ``offset_``, and
    ``warm_start=True`` sets it without training further. An epoch whose training
    loss rises ``SPIKE_FACTOR`` (10) times above the run's lowest is undone, its
    weights and Adam's state put back, and the run goes on at half the learning
    rate: at a high rate a run can leave its basin in one epoch and not find its
    way back, and the best epoch it kept came before the decay that settles the
    weights. A non-finite loss raises
    ``FloatingPointError``; the model keeps the last finite epoch of the call, with
    its threshold, or, when the call finished none (a bad ``partial_fit`` batch),
    stays as it was. Pickles hold CPU weights, so a GPU-trained model
    scores on a machine without one.

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

    _module_params = ("image_shape", "channels", "latent_dim", "negative_slope", "margin")
    _auto_batch_divisor = 10
    _memory_format = torch.channels_last
    #: Fewest levels for which ``margin='auto'`` mirrors a margin.
    _margin_levels = MARGIN_LEVELS

    def __init__(
        self,
        *,
        image_shape=None,
        channels=None,
        latent_dim=None,
        negative_slope=NEGATIVE_SLOPE,
        margin="auto",
        loss="mse",
        corruption=None,
        augmentation="auto",
        image_score="auto",
        smoothing="auto",
        projection_steps=0,
        projection_penalty=0.1,
        batch_size="auto",
        learning_rate_init=4e-3,
        learning_rate="constant-then-cosine",
        weight_decay=0.0,
        max_iter=50,
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
        self.loss = loss
        self.corruption = corruption
        self.augmentation = augmentation
        self.image_score = image_score
        self.smoothing = smoothing
        self.projection_steps = projection_steps
        self.projection_penalty = projection_penalty
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Images come 3-D or 4-D; 2-D rows only with image_shape.
        tags.input_tags.three_d_array = True
        tags.input_tags.two_d_array = self.image_shape is not None
        return tags

    @property
    def sample_shape_(self):
        """Shape of one sample of ``X`` as ``fit`` takes it: flat rows with ``image_shape``."""
        check_is_fitted(self)
        return self.input_shape_ if self.image_shape is None else (self.n_features_in_,)

    # ------------------------------------------------------------ validation
    def _check_params(self):
        super()._check_params()
        self._check_network_params()
        self._check_scoring_params()

    def _check_network_params(self):
        """Validate the parameters that shape the autoencoder."""
        check_image_shape(self.image_shape)
        check_int_tuple(self.channels, "channels")
        check_int(self.latent_dim, "latent_dim", min_value=1, allow_none=True)
        check_float(self.negative_slope, "negative_slope", low=0, high=1, closed="both")
        if isinstance(self.margin, str) and self.margin != "auto":
            raise ValueError(
                f"margin={self.margin!r} is not supported; expected 'auto' or an int >= 0."
            )
        check_int(self.margin, "margin", min_value=0, allow_auto=True)

    def _check_scoring_params(self):
        """Validate the parameters of the training loss and of the scores."""
        check_option(self.loss, "loss", _LOSSES)
        if self.corruption is not None and not (
            isinstance(self.corruption, str) and self.corruption in _CORRUPTIONS
        ):
            raise ValueError(
                f"corruption={self.corruption!r} is not supported; expected None (train on "
                "the images as they are) or 'defects' (train to repair pasted defects)."
            )
        if self.augmentation is not None and not (
            isinstance(self.augmentation, str) and self.augmentation in _AUGMENTATIONS
        ):
            raise ValueError(
                f"augmentation={self.augmentation!r} is not supported; expected 'auto' (shift "
                "unless the images are aligned), 'shift' (train on randomly shifted images) "
                "or None (train on the images where they are)."
            )
        check_option(self.image_score, "image_score", _IMAGE_SCORES)
        check_float(self.smoothing, "smoothing", low=0, closed="left", allow_auto=True)
        self._projection()

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
            X = check_images(X, ensure_min_samples=min_samples, image_shape=True)
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
        return channels_first(X.shape[1:])

    def _check_geometry(self, X):
        got = self._batch_shape(X)
        if got != self.input_shape_:
            raise ValueError(
                f"X holds images of shape (C, H, W) = {got}, but this "
                f"{type(self).__name__} was fitted on images of shape {self.input_shape_}; "
                "pass images of the fitted size and channel count."
            )

    # ----------------------------------------------------------- image score
    def _choose_scoring(self, X):
        """From the images ``X`` (at most ``CHOICE_IMAGES`` of them, drawn): ``edge_scale_``,
        then for ``image_score='auto'`` the score of :data:`AUTO_IMAGE_SCORES` that
        best tells them from copies with synthetic defects blended in. Both read the
        network's plain output, without ``projection_steps``: they describe the
        network and the data, and projecting each of the copies too would multiply
        the cost of the fit's end by the steps."""
        gen = make_generator(draw_seed(self.random_state))
        X = choice_sample(X, gen)
        totals = [0.0, 0.0]

        # Running sums: the maps of all X would take n * H * W floats.
        def add_maps(x, out, _):
            for i, part in enumerate(self._map_parts(x, out)):
                totals[i] = totals[i] + part.double().sum(0).cpu().numpy()
            return x.new_zeros(x.shape[0])  # _outputs stacks one value per image

        self._outputs(X, add_maps, plain=True)
        self.energy_scale_, self.edge_scale_ = map_scales(*totals, X.shape[0])
        if self.image_score != "auto":
            self.image_score_, self.image_score_aucs_ = self.image_score, {}
            return

        def scores(x, out, _):
            errors = self._errors(x, out)
            return torch.stack([self._reduce(s, errors, x, out) for s in AUTO_IMAGE_SCORES], 1)

        mean = self.channel_mean_.astype(np.float32).reshape(1, -1, 1, 1)
        scale = self.channel_scale_.astype(np.float32).reshape(1, -1, 1, 1)
        defective = [
            self._outputs(copies.reshape(-1, *X.shape[1:]), scores, plain=True)
            for copies in defective_copies(self._as_images(X), mean, scale, gen)
        ]
        self.image_score_, self.image_score_aucs_ = best_score(
            AUTO_IMAGE_SCORES, self._outputs(X, scores, plain=True), np.concatenate(defective)
        )

    # -------------------------------------------------------------- geometry
    def _as_images(self, X):
        """Float32 ``(n, C, H, W)`` images in input units, for the fitted statistics."""
        X = np.asarray(X)
        return np.asarray(X, dtype=np.float32).reshape(X.shape[0], *self.input_shape_)

    def _set_geometry(self, X):
        shape = check_image_size(self._batch_shape(X))
        _, H, W = self.input_shape_ = shape
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
            rule = level_channels(levels)
            self.channels_ = (FIRST_CHANNELS, *rule[1:]) if levels > 1 else rule
        else:
            self.channels_ = tuple(int(c) for c in self.channels)
        self.latent_dim_ = int(self.latent_dim or _auto_latent_dim(H, W))
        self.negative_slope_ = float(self.negative_slope)
        factor = 2**levels
        if self.margin == "auto":
            margin = 2 ** (levels - 1) if levels >= self._margin_levels else 0
        else:
            margin = int(self.margin)
        # Mirroring repeats no pixel, so it reaches at most side - 1 pixels out.
        self.margin_ = (min(margin, H - 1), min(margin, W - 1))
        m_h, m_w = self.margin_
        pad_h, pad_w = (-H - 2 * m_h) % factor, (-W - 2 * m_w) % factor
        self.padding_ = (
            m_h + pad_h // 2,
            m_h + pad_h - pad_h // 2,
            m_w + pad_w // 2,
            m_w + pad_w - pad_w // 2,
        )
        images = self._as_images(X)
        self.channel_mean_ = images.mean(axis=(0, 2, 3), dtype=np.float64)
        scale = images.std(axis=(0, 2, 3), dtype=np.float64)
        per_channel = np.reshape(X, (*images.shape[:2], -1))
        varies = per_channel.max(axis=(0, 2)) != per_channel.min(axis=(0, 2))
        check_float32_spread(scale, varies, self.channel_mean_, "channel {i}")
        self.channel_scale_ = np.where(scale > 0, scale, 1.0)
        z = (images - self.channel_mean_[:, None, None]) / self.channel_scale_[:, None, None]
        span = float(z.max() - z.min())
        self.data_range_ = span if span > 0 else 1.0
        self._set_alignment(z)

    def _set_alignment(self, z):
        """``common_detail_`` of the standardized training images ``z``, which
        ``augmentation='auto'`` reads."""
        self.common_detail_ = common_detail(z, auto_sigma(*self.input_shape_[1:]))

    @property
    def augmentation_(self):
        """The augmentation training uses: ``augmentation``, with ``'auto'`` resolved
        from ``common_detail_``."""
        check_is_fitted(self)
        return self._augmentation()

    def _augmentation(self):
        if self.augmentation == "auto":
            return "shift" if self.common_detail_ < ALIGNED_DETAIL else None
        return self.augmentation

    def _padded_size(self):
        """``(H, W)`` of the network's input: the images with their padding."""
        _, H, W = self.input_shape_
        top, bottom, left, right = self.padding_
        return H + top + bottom, W + left + right

    def _make_module(self):
        act = functools.partial(nn.LeakyReLU, self.negative_slope_)
        return ConvAutoencoder(
            self.input_shape_[0],
            self._padded_size(),
            self.channels_,
            self.latent_dim_,
            act_layer=act,
        )

    def _init_module(self, generator):
        self.module_.reset_parameters(generator)

    # ---------------------------------------------------------------- tensors
    def _stats(self, like):
        mean = torch.as_tensor(self.channel_mean_, dtype=like.dtype, device=like.device)
        scale = torch.as_tensor(self.channel_scale_, dtype=like.dtype, device=like.device)
        return mean.view(1, -1, 1, 1), scale.view(1, -1, 1, 1)

    def _preprocess(self, x):
        x = x.to(torch.float32).reshape(-1, *self.input_shape_)
        mean, scale = self._stats(x)
        return self._pad((x - mean) / scale)

    def _pad(self, x, pad=F.pad):
        """Standardized images with their mirrored margin and edge padding, laid by
        ``pad``: F.pad, or :func:`~anomalib_lite.nn.functional.pad_by_slices` where a
        gradient flows back through it."""
        m_h, m_w = self.margin_
        if m_h or m_w:
            x = pad(x, (m_w, m_w, m_h, m_h), mode="reflect")
        top, bottom, left, right = self.padding_
        edge = (left - m_w, right - m_w, top - m_h, bottom - m_h)
        if any(edge):
            x = pad(x, edge, mode="replicate")
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

    def _batch_loss(self, module, xb, gen):
        if self._augmentation() == "shift":
            xb = self._pad(random_shift(self._crop(xb), self._max_shift(), gen))
            if self._memory_format is not None:
                xb = xb.contiguous(memory_format=self._memory_format)
        return super()._batch_loss(module, xb, gen)

    def _max_shift(self):
        """``(rows, columns)`` of ``augmentation='shift'``: a pixel per ``SHIFT_SIDE``
        of each side, at least one, below the side."""
        return tuple(
            min(max(1, round(side / SHIFT_SIDE)), side - 1) for side in self.input_shape_[1:]
        )

    def _corrupt(self, xb, gen):
        if self.corruption is None:
            return xb
        return self._blend_defects(xb, gen)[0]

    def _blend_defects(self, xb, gen):
        """:meth:`_paste_defects`, each image's defects blended in at a strength drawn
        from ``DEFECT_STRENGTH``. Returns the padded batch and the masks."""
        pasted, masks = self._paste_defects(xb, gen)
        low, high = DEFECT_STRENGTH
        strength = low + (high - low) * torch.rand(
            (xb.shape[0], 1, 1, 1), generator=gen, device=gen.device, dtype=xb.dtype
        ).to(xb.device)
        return xb + strength * (pasted - xb), masks

    def _paste_defects(self, xb, gen):
        """:func:`~anomalib_lite.nn.paste_defects` into the images of the padded batch
        ``xb``, whose padding is then laid again from the result, as at scoring time:
        the defects cover ``DEFECT_AREA`` of the image itself and the margin mirrors
        them. Returns the padded batch and the masks of the unpadded images."""
        pasted, masks = paste_defects(
            self._crop(xb), gen, probability=DEFECT_PROBABILITY, area=DEFECT_AREA
        )
        return self._pad(pasted), masks

    def _errors(self, x, out):
        _, scale = self._stats(out)
        return (self._crop(out) - self._crop(x)).square() * scale.square()

    def _sigma(self):
        """Smoothing in pixels: ``smoothing``, or the image side / 28 for ``'auto'``."""
        # Read when scoring: checked here too.
        check_float(self.smoothing, "smoothing", low=0, closed="left", allow_auto=True)
        if isinstance(self.smoothing, str):
            return auto_sigma(*self.input_shape_[1:])
        return float(self.smoothing)

    def _residual(self, x, out):
        """``x - out`` cropped, in input units."""
        _, scale = self._stats(out)
        return (self._crop(x) - self._crop(out)) * scale

    def _residual_map(self, x, out, sigma=None):
        """Squared Gaussian-smoothed residual, averaged over channels, input units;
        smoothed by ``sigma`` pixels, or by :meth:`_sigma` when None."""
        residual = self._residual(x, out)
        sigma = self._sigma() if sigma is None else sigma
        if sigma > 0:
            residual = gaussian_blur(residual, sigma)
        return residual.square().mean(1)

    def _map_parts(self, x, out):
        """The two parts of the map, smoothed by :meth:`_sigma` pixels and averaged
        over channels, input units: the square of the smoothed residual, in which
        the alternating residual of fine normal detail cancels, and the smoothed
        square (the residual's local energy), which keeps a thin or textured
        defect whose residual alternates in sign too."""
        residual = self._residual(x, out)
        sigma = self._sigma()
        if sigma <= 0:
            square = residual.square().mean(1)
            return square, square
        energy = gaussian_blur(residual.square(), sigma).mean(1)
        return gaussian_blur(residual, sigma).square().mean(1), energy

    def _pixel_map(self, x, out):
        """Weighted mean of :meth:`_map_parts`, the energy weighted by
        ``energy_scale_``, over ``edge_scale_``; callbacks may score before a
        first fit has set the two, which then count as 1."""
        residual = combine_map_parts(*self._map_parts(x, out), getattr(self, "energy_scale_", 1.0))
        divisor = getattr(self, "edge_scale_", None)
        if divisor is None:
            return residual
        return residual / torch.as_tensor(divisor, dtype=residual.dtype, device=residual.device)

    def _statistic(self):
        """The image score in use: ``image_score``, or the fitted choice for ``'auto'``."""
        check_option(self.image_score, "image_score", _IMAGE_SCORES)  # read when scoring
        if self.image_score == "auto":
            # Callbacks may score before a first fit has chosen.
            return getattr(self, "image_score_", AUTO_IMAGE_SCORES[0])
        return self.image_score

    def _scoring(self):
        statistic = self._statistic()
        steps, penalty = self._projection()
        # The mean squared error is not smoothed.
        return {
            "image_score": statistic,
            "smoothing": None if statistic == "mean" else self._sigma(),
            "projection_steps": steps,
            "projection_penalty": penalty if steps else None,
        }

    # ------------------------------------------------------------ projection
    def _projection(self):
        """``(projection_steps, projection_penalty)``, checked: read when scoring."""
        check_int(self.projection_steps, "projection_steps", min_value=0)
        check_float(self.projection_penalty, "projection_penalty", low=0, closed="left")
        return int(self.projection_steps), float(self.projection_penalty)

    def _network_input(self, module, x):
        steps, penalty = self._projection()
        return self._project(module, x, steps, penalty) if steps else x

    def _project(self, module, x, steps, penalty):
        """The padded batch ``x`` with its images moved ``steps`` Adam steps on
        ``||y - f(y)||^2 + penalty * ||y - x||_1`` (each image's own sum, so that
        no image moves another); the padding is laid again from each step, by
        slices whose backward is deterministic on CUDA as well."""
        start = self._crop(x)
        with torch.inference_mode(False), torch.enable_grad():
            moved = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([moved], lr=PROJECTION_RATE)
            for _ in range(steps):
                padded = self._pad(moved, pad_by_slices)
                energy = (self._crop(module(padded)) - moved).square().sum()
                energy = energy + penalty * (moved - start).abs().sum()
                (moved.grad,) = torch.autograd.grad(energy, moved)
                optimizer.step()
        return self._pad(moved.detach())

    def _score_errors(self, errors, x, out):
        return self._reduce(self._statistic(), errors, x, out)

    def _reduce(self, statistic, errors, x, out):
        """Image score ``statistic`` (one of ``_IMAGE_SCORES`` but 'auto') of each image."""
        if statistic == "mean":
            return errors.flatten(1).mean(1)
        if statistic == "smooth":
            return self._residual_map(x, out, SMOOTH_WIDTH * self._sigma()).flatten(1).mean(1)
        return reduce_map(self._pixel_map(x, out), statistic)

    def _from_tensor(self, out, like):
        mean, scale = self._stats(out)
        return (self._crop(out) * scale + mean).reshape(like.shape)

    # ------------------------------------------------------------ public API
    def anomaly_map(self, X):
        """Per-pixel anomaly score from the residual ``x - reconstruct(x)``: the mean
        of the residual smoothed by a Gaussian of sigma ``smoothing`` pixels, then
        squared, and of the squared residual smoothed the same way (weighted by
        ``energy_scale_``), averaged over channels and divided by ``edge_scale_``.
        The first finds a change of one sign, in which the alternating residual of
        fine normal detail cancels; the second keeps a thin or textured defect,
        whose residual alternates too. With ``smoothing=0`` both are the squared
        residual, and the mean of ``maps * edge_scale_`` is ``reconstruction_error``.

        Parameters
        ----------
        X : array-like
            Images, in the layout ``fit`` accepted.

        Returns
        -------
        maps : ndarray of shape (n_samples, H, W), dtype float64
            Pixels whose value overflows (an image far outside the training
            range) are ``inf``, with a warning; never NaN.
        """
        X = self._check_fitted_input(X)
        maps = self._outputs(X, lambda x, out, _: self._pixel_map(x, out))
        return self._overflow_to_inf(maps, X, "anomaly_map", stacklevel=3)
