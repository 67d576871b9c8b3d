"""The detectors compared by ``bench_peers.py``, each called as its users call it.

Every method is a :class:`Method`: a factory taking the data's geometry, the
layout it reads (``'rows'``: ``(n, n_features)``; ``'images'``: ``(n, H, W)``)
and a function giving the anomaly score (higher = more abnormal) of a fitted
model. PyOD's methods are listed only when PyOD imports; PyOD's deep models
also need ``tqdm``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from anomalib_lite import AutoencoderDetector, ConvAutoencoderDetector, PCADetector

SEED = 0


@dataclass
class Method:
    """A detector as benchmarked.

    ``make(n_features, image_shape, fast, params)`` returns an unfitted
    model; ``params`` are keyword arguments found by a search (the tuned
    variant), empty for defaults.
    """

    name: str
    family: str  # 'anomalib_lite', 'PyOD' or 'scikit-learn'
    layout: str  # 'rows' or 'images'
    make: Callable
    anomaly: Callable = field(default=lambda model, X: -model.score_samples(X))
    images_only: bool = False
    tunable: dict | None = None  # GridSearchCV grid of the anomalib_lite variant
    slow: bool = False  # may run on fewer classes (--slow-classes)
    tables_only: bool = False  # run on tabular data only


def _ours(cls, fast_params, **fixed):
    def make(n_features, image_shape, fast, params):
        kwargs = {**fixed, **(fast_params if fast else {}), **params}
        return cls(**kwargs)

    return make


def _sklearn(factory):
    return lambda n_features, image_shape, fast, params: factory()


def _pyod_score(model, X):
    # PyOD's decision_function is an anomaly score: higher = more abnormal.
    return model.decision_function(X)


def _pyod_methods():
    """PyOD's PCA, AutoEncoder, VAE and DeepSVDD, with their defaults.

    ``verbose=0`` only silences the progress bars; the seeds are fixed so that
    every run is the same. ``fast`` trains one epoch (smoke runs only).
    """
    try:
        from pyod.models.auto_encoder import AutoEncoder
        from pyod.models.deep_svdd import DeepSVDD
        from pyod.models.pca import PCA
        from pyod.models.vae import VAE
    except ImportError:
        return []

    def deep(cls, epochs_name, **extra):
        def make(n_features, image_shape, fast, params):
            kwargs = {"verbose": 0, "random_state": SEED, **extra}
            if cls is DeepSVDD:
                kwargs["n_features"] = n_features
            if fast:
                kwargs[epochs_name] = 1
            return cls(**kwargs)

        return make

    return [
        Method(
            "PyOD PCA()",
            "PyOD",
            "rows",
            lambda n_features, image_shape, fast, params: PCA(random_state=SEED),
            _pyod_score,
        ),
        Method(
            "PyOD AutoEncoder()",
            "PyOD",
            "rows",
            deep(AutoEncoder, "epoch_num"),
            _pyod_score,
            slow=True,
        ),
        Method("PyOD VAE()", "PyOD", "rows", deep(VAE, "epoch_num"), _pyod_score, slow=True),
        Method("PyOD DeepSVDD()", "PyOD", "rows", deep(DeepSVDD, "epochs"), _pyod_score, slow=True),
    ]


def all_methods():
    """Every method, anomalib_lite's first, then PyOD's, then scikit-learn's."""
    fast_torch = {"max_iter": 1}
    return [
        Method(
            "PCADetector()",
            "anomalib_lite",
            "rows",
            _ours(PCADetector, {}),
            tunable={"n_components": [0.8, 0.9, 0.95, 0.99], "statistic": ["spe", "combined"]},
        ),
        Method(
            "AutoencoderDetector()",
            "anomalib_lite",
            "rows",
            _ours(AutoencoderDetector, fast_torch, random_state=SEED),
            tunable={"latent_dim": [8, 16]},
        ),
        Method(
            "ConvAutoencoderDetector()",
            "anomalib_lite",
            "images",
            _ours(ConvAutoencoderDetector, fast_torch, random_state=SEED),
            images_only=True,
            tunable={"latent_dim": [16, 32]},
        ),
        Method(
            "PCADetector(statistic='combined')",
            "anomalib_lite",
            "rows",
            _ours(PCADetector, {}, statistic="combined"),
            tables_only=True,
        ),
        Method(
            "AutoencoderDetector(loss_trim_fraction=0.2)",
            "anomalib_lite",
            "rows",
            _ours(AutoencoderDetector, fast_torch, random_state=SEED, loss_trim_fraction=0.2),
            tables_only=True,
        ),
        Method(
            "PCADetector(trim_fraction=0.2)",
            "anomalib_lite",
            "rows",
            _ours(PCADetector, {}, trim_fraction=0.2),
        ),
        Method(
            "PCADetector(trim_fraction=0)",
            "anomalib_lite",
            "rows",
            _ours(PCADetector, {}, trim_fraction=0.0),
        ),
        Method(
            "make_pipeline(StandardScaler(), PCADetector())",
            "anomalib_lite",
            "rows",
            lambda n_features, image_shape, fast, params: make_pipeline(
                StandardScaler(), PCADetector()
            ),
            tables_only=True,
        ),
        *_pyod_methods(),
        Method(
            "IsolationForest()",
            "scikit-learn",
            "rows",
            _sklearn(lambda: IsolationForest(random_state=SEED)),
        ),
        Method("OneClassSVM()", "scikit-learn", "rows", _sklearn(OneClassSVM)),
        Method(
            "LocalOutlierFactor(novelty=True)",
            "scikit-learn",
            "rows",
            _sklearn(lambda: LocalOutlierFactor(novelty=True)),
        ),
    ]


def select(names=None, *, images=True):
    """Methods whose name starts with one of ``names`` (all when None)."""
    chosen = []
    for method in all_methods():
        if (method.images_only and not images) or (method.tables_only and images):
            continue
        if names is None or any(method.name.lower().startswith(n.lower()) for n in names):
            chosen.append(method)
    return chosen
