"""AutoencoderDetector: reconstruction error of a fully connected autoencoder."""

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._torch_detector import TorchDetector
from .nn import DenseAutoencoder
from .utils._trimming import n_kept
from .utils._validation import (
    check_bool,
    check_float,
    check_float32_spread,
    check_int,
    check_int_tuple,
)

__all__ = ["AutoencoderDetector"]

#: Standardized variance whose principal components set ``latent_dim=None``'s code size.
LATENT_VARIANCE = 0.8
#: Widest hidden layer chosen by ``hidden_sizes=None``.
MAX_HIDDEN = 128


def _is_constant(std, mean, n_samples):
    """Whether each feature is constant: its ``std`` is within float64 rounding of 0.

    The standard deviation of a constant that binary fractions cannot hold
    exactly (0.1, say) is about 1e-17, not 0; dividing by it would blow rounding
    errors up to huge scores. The bound is :class:`sklearn.preprocessing.StandardScaler`'s.
    """
    eps = np.finfo(np.float64).eps
    var = np.square(std)
    return var <= n_samples * eps * var + np.square(n_samples * mean * eps)


def _components_for(X, fraction):
    """Fewest principal components explaining ``fraction`` of the variance of ``X``."""
    var = np.linalg.svd(X - X.mean(axis=0), compute_uv=False) ** 2
    total = var.sum()
    if total <= 0:
        return 1
    return int(np.searchsorted(np.cumsum(var) / total, fraction) + 1)


class AutoencoderDetector(TorchDetector):
    """Anomaly detection by the reconstruction error of a fully connected autoencoder.

    The non-linear counterpart of :class:`~anomalib_lite.PCADetector` for
    tabular data: the anomaly score is a row's mean squared reconstruction
    error, on standardized features so that each weighs the same.

    Parameters
    ----------
    hidden_sizes : tuple of int or None, default=None
        Widths of the encoder's hidden layers; the decoder mirrors them. None
        uses one layer of ``min(128, max(16, 2 * n_features))`` units.
    latent_dim : int or None, default=None
        Size of the code. None uses the number of principal components that
        explain 80% of the standardized training variance.
    standardize : bool, default=True
        Standardize each feature by its training mean and standard deviation
        (constant features by 1); errors are in standard-deviation units.
    loss_trim_fraction : float, default=0.0
        Fraction in [0, 1) of each training batch, its worst-reconstructed
        rows, left out of the loss, so that outliers among the training rows
        are not learnt. It also leaves out the hardest normal rows, hence the
        default 0. The validation loss is not trimmed.
    dropout : float, default=0.3
        Dropout probability after each hidden activation during training, in
        [0, 1), with masks from ``random_state``'s generator. It keeps the
        network from fitting single rows, such as outliers. 0 disables it.
    batch_size : int, default=64
        Rows per optimizer step; scoring uses larger batches.
    learning_rate_init : float, default=2e-3
        Peak learning rate of Adam.
    learning_rate : {'cosine', 'constant', 'constant-then-cosine'}, default='cosine'
        ``'cosine'`` warms up linearly over 5% of ``max_iter`` and decays to
        zero along a cosine; ``'constant'`` keeps ``learning_rate_init``;
        ``'constant-then-cosine'`` keeps it for 70% of the epochs, then
        decays to zero along a half cosine.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW): every step shrinks the weights by
        ``weight_decay`` times its learning rate (so ``weight_decay *
        learning_rate_init`` must be below 1); 0 is plain Adam. A warm start
        trains with the value set now.
    max_iter : int, default=100
        Epochs per ``fit``.
    early_stopping : bool, default=True
        Stop after ``n_iter_no_change`` epochs without a ``tol`` improvement
        of the held-out rows' loss (``validation_fraction``); without it a fit
        trains all ``max_iter`` epochs, over which the learning rate's
        schedule is laid. Either way the fit ends with the weights of the
        epoch whose loss (held-out with ``early_stopping``, else training) was lowest.
    validation_fraction : 'auto' or float, default='auto'
        Share of the rows held out of training (at least 2, the same ones for
        every run of a fit): ``early_stopping`` watches their loss and
        ``contamination='auto'`` sets its threshold on their scores, as the
        network fits the rows it trained on more closely than new ones.
        ``'auto'`` is 0.1 with ``early_stopping``, else 0 (every row trains
        and the threshold is set on the training scores).
    n_iter_no_change : int, default=10
        Epochs without improvement before ``early_stopping`` stops.
    tol : float, default=1e-4
        Improvement of the held-out loss that resets the count.
    warm_start : bool, default=False
        Continue from the fitted state (or ``checkpoint_path``): finish an
        interrupted run, else train another ``max_iter`` epochs.
    contamination : 'auto' or float, default='auto'
        Sets ``offset_``: ``'auto'`` at Tukey's upper fence of the held-out
        rows' scores, a float ``c`` so that the share ``c`` of all the fit's
        rows is flagged; see :class:`~anomalib_lite.base.BaseDetector`.
    device : str, default='auto'
        Torch device of the fit: ``'cpu'``, ``'cuda'`` (or ``'cuda:1'``), or
        ``'auto'``, which picks CUDA when available; resolved in ``fit`` into
        ``device_`` (``'mps'`` is refused: it has no float64).
    n_threads : int or None, default=None
        torch CPU threads during ``fit`` and scoring; None uses 1.
    checkpoint_path : str, os.PathLike or None, default=None
        File to save a checkpoint to after every epoch.
    callbacks : list of callable or None, default=None
        Called as ``callback(detector, record)`` after every epoch; a true
        return value stops the fit.
    random_state : int, RandomState instance or None, default=None
        Seeds a local ``torch.Generator``. None draws the seed from NumPy's
        global RNG, as scikit-learn does; an int or a RandomState leaves the
        global NumPy and torch RNGs alone.
    verbose : int, default=0
        ``> 0`` logs every epoch through :mod:`logging`.

    Attributes
    ----------
    module_ : DenseAutoencoder
        The trained network, in eval mode.
    device_ : str
        Device the network lives on.
    hidden_sizes_ : tuple of int
        Widths of the encoder's hidden layers.
    latent_dim_ : int
        Size of the code.
    dropout_ : float
        Dropout probability the network was trained with.
    mean_ : ndarray of shape (n_features_in_,)
        Mean of each training feature (zeros without ``standardize``).
    scale_ : ndarray of shape (n_features_in_,)
        Standard deviation of each training feature, 1 where it is constant
        (ones without ``standardize``).
    n_iter_ : int
        Epochs trained, ``partial_fit`` calls included.
    history_ : list of dict
        One entry per epoch: ``epoch``, ``train_loss``, ``valid_loss``,
        ``learning_rate``, ``seconds`` and ``undone`` (True for an epoch whose
        training loss rose tenfold over the run's lowest: its weights were put
        back and the learning rate halved).
    best_loss_ : float
        Best monitored loss of the last run.
    offset_ : float
        Threshold on ``score_samples``; see ``decision_function``.
    n_features_in_ : int
        Number of features seen during fit.
    sample_shape_ : tuple of int
        ``(n_features_in_,)``: samples are flat rows.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    anomalib_lite.PCADetector : The linear baseline.
    anomalib_lite.ConvAutoencoderDetector : Convolutional autoencoder for images.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import AutoencoderDetector
    >>> rng = np.random.default_rng(0)
    >>> t = rng.normal(size=(300, 1))
    >>> X = np.hstack([t, t**2, -t]) + 0.05 * rng.normal(size=(300, 3))
    >>> det = AutoencoderDetector(max_iter=30, random_state=0).fit(X)
    >>> det.predict([[1.0, 1.0, -1.0], [1.0, -3.0, 2.0]])
    array([ 1, -1])
    """

    _module_params = ("hidden_sizes", "latent_dim", "standardize", "dropout")

    def __init__(
        self,
        *,
        hidden_sizes=None,
        latent_dim=None,
        standardize=True,
        loss_trim_fraction=0.0,
        dropout=0.3,
        batch_size=64,
        learning_rate_init=2e-3,
        learning_rate="cosine",
        weight_decay=0.0,
        max_iter=100,
        early_stopping=True,
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
        self.hidden_sizes = hidden_sizes
        self.latent_dim = latent_dim
        self.standardize = standardize
        self.loss_trim_fraction = loss_trim_fraction
        self.dropout = dropout
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

    @property
    def sample_shape_(self):
        """Shape of one sample of ``X`` as ``fit`` took it: ``(n_features_in_,)``."""
        check_is_fitted(self)
        return (self.n_features_in_,)

    def _check_params(self):
        super()._check_params()
        check_int_tuple(self.hidden_sizes, "hidden_sizes")
        check_int(self.latent_dim, "latent_dim", min_value=1, allow_none=True)
        check_bool(self.standardize, "standardize")
        check_float(self.loss_trim_fraction, "loss_trim_fraction", low=0, high=1, closed="left")
        check_float(self.dropout, "dropout", low=0, high=1, closed="left")

    def _check_geometry(self, X):
        expected = self.mean_.shape[0]
        if X.shape[1] != expected:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} was fitted on "
                f"{expected}; warm_start and partial_fit need the fitted features. Set "
                "warm_start=False to fit anew."
            )

    def _set_geometry(self, X):
        X64 = np.asarray(X, dtype=np.float64)
        n_features = X64.shape[1]
        # The standardization: applied with standardize, and the code is sized on it.
        mean, std = X64.mean(axis=0), X64.std(axis=0)
        scale = np.where(_is_constant(std, mean, len(X64)), 1.0, std)
        if self.standardize:
            self.mean_, self.scale_ = mean, scale
        else:
            self.mean_ = np.zeros(n_features)
            self.scale_ = np.ones(n_features)
            # The network then sees X itself, in float32.
            spread = X64.astype(np.float32).std(axis=0, dtype=np.float64)
            varies = np.ptp(X64, axis=0) > 0
            # The widest of the features that vary: a constant one may tie at 0.
            top = int(np.argmax(np.where(varies, spread, -1.0))) if varies.any() else 0
            check_float32_spread(
                spread[top], varies.any(), X64[:, top].mean(), f"feature {top} (the widest)"
            )
        if self.hidden_sizes is None:
            self.hidden_sizes_ = (int(min(MAX_HIDDEN, max(16, 2 * n_features))),)
        else:
            self.hidden_sizes_ = tuple(int(h) for h in self.hidden_sizes)
        if self.latent_dim is None:
            # Standardized variance, as documented, also where the network sees X as is.
            self.latent_dim_ = _components_for((X64 - mean) / scale, LATENT_VARIANCE)
        else:
            self.latent_dim_ = int(self.latent_dim)
        self.dropout_ = float(self.dropout)

    def _make_module(self):
        return DenseAutoencoder(
            self.n_features_in_, self.hidden_sizes_, self.latent_dim_, dropout=self.dropout_
        )

    #: Standardized in float64, then handed to the network in float32.
    _input_dtype = np.float64

    def _preprocess(self, x):
        mean = torch.as_tensor(self.mean_, dtype=torch.float64, device=x.device)
        scale = torch.as_tensor(self.scale_, dtype=torch.float64, device=x.device)
        return ((x.to(torch.float64) - mean) / scale).to(torch.float32)

    def _train_loss(self, out, x):
        if not (self.loss_trim_fraction and self.module_.training):
            return torch.nn.functional.mse_loss(out, x)
        per_row = (out - x).square().mean(1)
        keep = n_kept(per_row.shape[0], self.loss_trim_fraction)
        return per_row.topk(keep, largest=False).values.mean()

    def _errors(self, x, out):
        return (out - x).square()

    def _score_errors(self, errors, x, out):
        return errors.mean(1)

    def _from_tensor(self, out, like):
        # Back to input units in float64, as the input was standardized: float32
        # would round a feature far from zero to its float32 spacing there.
        scale = torch.as_tensor(self.scale_, dtype=torch.float64, device=out.device)
        mean = torch.as_tensor(self.mean_, dtype=torch.float64, device=out.device)
        return (out.double() * scale + mean).reshape(like.shape)
