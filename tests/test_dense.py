"""AutoencoderDetector: tabular rows, automatic sizes, training control, quality."""

import copy
import pickle
import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from anomalib_lite import AutoencoderDetector, PCADetector
from anomalib_lite.io import load
from anomalib_lite.nn import DenseAutoencoder, GeneratorDropout

FAST = {"hidden_sizes": (8,), "latent_dim": 2, "max_iter": 5, "random_state": 0}


def _curve(n=200, seed=0, noise=0.05):
    """Rows near a 1-D curve in 4-D, with features of very different scales."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-2, 2, size=(n, 1))
    X = np.hstack([t, t**2, np.sin(2 * t), -t]) + noise * rng.normal(size=(n, 4))
    return X * np.array([1.0, 10.0, 0.1, 1000.0])


@pytest.fixture(scope="module")
def fitted():
    return AutoencoderDetector(**FAST).fit(_curve())


def test_methods_shapes_and_dtypes(fitted):
    X = _curve(n=30, seed=1)
    for method in ("score_samples", "decision_function", "reconstruction_error"):
        out = getattr(fitted, method)(X)
        assert out.shape == (30,) and out.dtype == np.float64 and np.isfinite(out).all()
    assert set(np.unique(fitted.predict(X))) <= {-1, 1}
    rec = fitted.reconstruct(X)
    assert rec.shape == X.shape and rec.dtype == np.float64
    # reconstruct is in input units; the error is in standardized units.
    z = (X - fitted.mean_) / fitted.scale_
    zr = (rec - fitted.mean_) / fitted.scale_
    np.testing.assert_allclose(fitted.reconstruction_error(X), ((z - zr) ** 2).mean(1), rtol=1e-4)
    assert isinstance(fitted.module_, DenseAutoencoder)


def test_reconstruct_agrees_with_the_error_far_from_zero():
    """Standardized in float64, reconstructions come back in float64: the same data
    shifted by 1e6 (float32 spacing 0.0625 there) keep the error's identity."""
    X = _curve(n=40) / [1.0, 10.0, 0.1, 1000.0] + 1e6
    det = AutoencoderDetector(**FAST).fit(X)
    from_rec = (((det.reconstruct(X) - X) / det.scale_) ** 2).mean(1)
    np.testing.assert_allclose(from_rec, det.reconstruction_error(X), rtol=1e-6)


def test_automatic_sizes():
    X = _curve()
    det = AutoencoderDetector(max_iter=1, random_state=0).fit(X)
    assert det.hidden_sizes_ == (16,)
    Z = (X - X.mean(0)) / X.std(0)
    ratio = np.cumsum(np.linalg.svd(Z - Z.mean(0), compute_uv=False) ** 2)
    ratio /= ratio[-1]
    k = det.latent_dim_
    assert ratio[k - 1] >= 0.8 and (k == 1 or ratio[k - 2] < 0.8)
    wide = AutoencoderDetector(max_iter=1, random_state=0).fit(
        np.random.default_rng(0).normal(size=(40, 100))
    )
    assert wide.hidden_sizes_ == (128,)


def test_standardize_makes_units_irrelevant():
    X = _curve()
    rescaled = X * np.array([1e-3, 1e2, 5.0, 1e-4])
    a = AutoencoderDetector(**FAST).fit(X)
    b = AutoencoderDetector(**FAST).fit(rescaled)
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(rescaled), rtol=1e-3, atol=1e-6)
    raw = AutoencoderDetector(**{**FAST, "standardize": False}).fit(X)
    np.testing.assert_array_equal(raw.scale_, np.ones(4))


def test_constant_features_are_not_divided_by_zero():
    X = np.c_[_curve(), np.full(200, 3.0)]
    det = AutoencoderDetector(**FAST).fit(X)
    assert det.scale_[-1] == 1.0 and np.isfinite(det.score_samples(X)).all()


@settings(max_examples=15, deadline=None)
@given(value=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False))
def test_a_constant_feature_is_scaled_by_one_whatever_its_value(value):
    # np.std of a constant such as 0.1 is about 1e-17, not 0: dividing by it made a
    # rounding change in that feature score as an anomaly of order -1e12.
    X = np.c_[_curve(n=60), np.full(60, value)]
    det = AutoencoderDetector(**{**FAST, "max_iter": 1}).fit(X)
    assert det.scale_[-1] == 1.0
    nudged = X[:5].copy()
    nudged[:, -1] = np.nextafter(value, np.inf)
    np.testing.assert_allclose(det.score_samples(nudged), det.score_samples(X[:5]), atol=1e-6)


def test_unstandardized_precision_refusal_names_the_feature_that_varies():
    # Feature 0 is constant, feature 1 varies only below float32's spacing at 1e8:
    # the refusal named feature 0, around its mean 5, which does not vary.
    X = np.c_[np.full(40, 5.0), 1e8 + 1e-3 * np.random.default_rng(0).normal(size=40)]
    with pytest.raises(ValueError, match=r"varies in feature 1 .*around its mean 1e\+08"):
        AutoencoderDetector(**FAST, standardize=False).fit(X)


def test_dataframe_feature_names_are_kept():
    X = pd.DataFrame(_curve(), columns=["a", "b", "c", "d"])
    det = AutoencoderDetector(**FAST).fit(X)
    assert list(det.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match="feature names"):
        det.score_samples(X.to_numpy())


def test_reproducible_and_distinct_seeds():
    X = _curve()
    torch_state, torch_seed = torch.get_rng_state(), torch.initial_seed()
    a = AutoencoderDetector(**FAST).fit(X)
    b = AutoencoderDetector(**FAST).fit(X)
    # Dropout masks come from the detector's generator, not the global RNG.
    assert a.dropout_ > 0
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert torch.initial_seed() == torch_seed
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    c = AutoencoderDetector(**{**FAST, "random_state": 1}).fit(X)
    assert not np.array_equal(a.score_samples(X), c.score_samples(X))


def test_dropout_layers_follow_the_parameter_and_only_train(fitted):
    layers = [m for m in fitted.module_.modules() if isinstance(m, GeneratorDropout)]
    assert fitted.dropout == fitted.dropout_ == 0.3
    # One after each hidden activation: the encoder's and the decoder's.
    assert [m.p for m in layers] == [0.3, 0.3]
    assert all(m.generator is None for m in layers)  # the fit's generator is not kept
    X = _curve(n=30, seed=4)
    # Scoring runs without dropout: the same scores as the network with its dropout
    # layers replaced by identities, while in training mode they drop units.
    without = copy.deepcopy(fitted)
    for name, layer in list(without.module_.named_modules()):
        if isinstance(layer, GeneratorDropout):
            without.module_.set_submodule(name, torch.nn.Identity())
    np.testing.assert_array_equal(fitted.score_samples(X), without.score_samples(X))
    x = torch.ones(4, X.shape[1])
    fitted.module_.train()
    try:
        with torch.random.fork_rng():  # the masks draw from the global RNG here
            assert not torch.equal(fitted.module_(x), without.module_.eval()(x))
    finally:
        fitted.module_.eval()
    plain = AutoencoderDetector(**{**FAST, "dropout": 0.0}).fit(_curve())
    assert not any(isinstance(m, GeneratorDropout) for m in plain.module_.modules())
    assert not np.array_equal(plain.score_samples(X), fitted.score_samples(X))


@pytest.mark.parametrize(
    ("change", "shown"),
    [({"dropout": 0.0}, "dropout=0.3"), ({"hidden_sizes": (6,)}, "hidden_sizes=(8,)")],
)
def test_warm_start_refuses_a_network_built_with_other_parameters(change, shown):
    X = _curve()
    det = AutoencoderDetector(**FAST).fit(X)
    det.set_params(warm_start=True, **change)
    with pytest.raises(ValueError, match=rf"built with {re.escape(shown)}, but this detector"):
        det.fit(X)
    with pytest.raises(ValueError, match="set it back to continue"):
        det.partial_fit(X)
    det.set_params(**{k: FAST.get(k, 0.3) for k in change}).fit(X)
    assert det.n_iter_ == 2 * FAST["max_iter"]


def test_checkpoint_of_another_dropout_is_not_resumed(tmp_path):
    X = _curve()
    path = tmp_path / "dense.pt"
    AutoencoderDetector(**{**FAST, "checkpoint_path": str(path)}).fit(X)
    resumed = AutoencoderDetector(
        **{**FAST, "checkpoint_path": str(path), "warm_start": True, "dropout": 0.1}
    )
    with pytest.raises(ValueError, match=r"written with dropout=0.3 but this detector has"):
        resumed.fit(X)


def test_partial_fit_streams_batches():
    X = _curve(n=400)
    det = AutoencoderDetector(**{**FAST, "learning_rate_init": 1e-2})
    for batch in np.array_split(X, 8):
        det.partial_fit(batch)
    assert det.n_iter_ == 8 and len(det.history_) == 8
    assert det.history_[-1]["train_loss"] < det.history_[0]["train_loss"]
    # Scaling comes from the first batch and stays fixed.
    np.testing.assert_allclose(det.mean_, X[:50].mean(0))
    with pytest.raises(
        ValueError, match="X has 3 features, but AutoencoderDetector is expecting 4"
    ):
        det.partial_fit(X[:, :3])


def test_checkpoint_round_trip_resumes(tmp_path):
    X = _curve()
    path = tmp_path / "dense.pt"
    det = AutoencoderDetector(**{**FAST, "checkpoint_path": str(path)}).fit(X)
    saved = load(path)  # a model file of the detector as of its last epoch
    assert type(saved) is AutoencoderDetector and saved.n_iter_ == det.n_iter_
    assert saved.checkpoint_path is None
    resumed = AutoencoderDetector(**{**FAST, "checkpoint_path": str(path), "warm_start": True})
    resumed.fit(X)
    assert resumed.n_iter_ == det.n_iter_ + FAST["max_iter"]
    assert resumed.history_[: det.n_iter_] == det.history_
    np.testing.assert_array_equal(resumed.mean_, det.mean_)


def test_pickle_round_trip(fitted):
    X = _curve(n=20, seed=3)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.score_samples(X), fitted.score_samples(X))
    assert clone(fitted).get_params() == fitted.get_params()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidden_sizes": 8}, "hidden_sizes must be None or a tuple of ints"),
        ({"hidden_sizes": (8, 0)}, "each entry of hidden_sizes=0 must be >= 1"),
        ({"latent_dim": 0}, "latent_dim=0 must be >= 1"),
        ({"standardize": "yes"}, "standardize must be a bool"),
        ({"batch_size": 0}, "batch_size=0 must be >= 1"),
        ({"validation_fraction": 1.0}, r"validation_fraction=1.0 must be in \[0, 1\)"),
        ({"validation_fraction": "half"}, "validation_fraction='half' must be 'auto' or a float"),
        (
            {"validation_fraction": 0.0, "early_stopping": True},
            "early_stopping=True stops on the loss of held-out rows, but validation_fraction=0",
        ),
        ({"learning_rate": "adaptive"}, "learning_rate='adaptive' is not supported"),
        ({"loss_trim_fraction": 1.0}, r"loss_trim_fraction=1.0 must be in \[0, 1\)"),
        ({"loss_trim_fraction": "0.2"}, "loss_trim_fraction must be a float"),
        ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
        ({"dropout": "0.3"}, "dropout must be a float"),
    ],
)
def test_parameter_errors(params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        AutoencoderDetector(**{**FAST, **params}).fit(_curve())


def test_sparse_input_is_refused():
    import scipy.sparse as sp

    with pytest.raises(TypeError, match="sparse input is not supported"):
        AutoencoderDetector(**FAST).fit(sp.csr_matrix(_curve()))


@settings(max_examples=30, deadline=None)
@given(
    X=arrays(np.float64, st.tuples(st.integers(1, 15), st.just(4)), elements=st.floats(-1e3, 1e3)),
    seed=st.integers(0, 1000),
)
def test_score_invariants(fitted, X, seed):
    scores = fitted.score_samples(X)
    assert scores.shape == (len(X),) and scores.dtype == np.float64 and np.isfinite(scores).all()
    np.testing.assert_allclose(fitted.decision_function(X), scores - fitted.offset_)
    np.testing.assert_array_equal(fitted.predict(X), np.where(scores >= fitted.offset_, 1, -1))
    perm = np.random.default_rng(seed).permutation(len(X))
    np.testing.assert_allclose(fitted.score_samples(X[perm]), scores[perm], rtol=1e-5, atol=1e-7)


def test_off_curve_points_score_higher():
    X = _curve(n=400)
    det = AutoencoderDetector(random_state=0, max_iter=60).fit(X)
    on = _curve(n=50, seed=7)
    off = on.copy()
    off[:, 1] *= -1  # t**2 flipped: far from the curve, inside the feature ranges
    assert np.median(det.score_samples(off)) < np.percentile(det.score_samples(on), 5)


def test_untrimmed_default_learns_the_hard_ends_of_a_clean_curve():
    """Why loss_trim_fraction defaults to 0: on clean rows a trimmed loss leaves out
    the hardest normal rows (here the ends of the curve), which then score as
    anomalous as rows off the curve."""
    X = _curve(n=400)
    on = _curve(n=200, seed=7)
    off = on.copy()
    off[:, 1] *= -1
    labels = np.r_[np.zeros(len(on)), np.ones(len(off))]
    aucs = {}
    for trim in (0.0, 0.2):
        aucs[trim] = np.mean(
            [
                roc_auc_score(labels, -det.score_samples(np.vstack([on, off])))
                for det in (
                    AutoencoderDetector(
                        random_state=seed, max_iter=60, loss_trim_fraction=trim
                    ).fit(X)
                    for seed in range(3)
                )
            ]
        )
    assert AutoencoderDetector().loss_trim_fraction == 0.0
    assert aucs[0.0] > aucs[0.2] + 0.05, aucs


def test_digits_roc_auc_floor():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    det = AutoencoderDetector(max_iter=40, random_state=0).fit(X_tr[y_tr == 0])
    auc = roc_auc_score(y_te != 0, -det.score_samples(X_te))
    pca = PCADetector().fit(X_tr[y_tr == 0])
    assert auc > 0.97
    assert auc > roc_auc_score(y_te != 0, -pca.score_samples(X_te)) - 0.03


@settings(max_examples=40, deadline=None)
@given(
    errors=arrays(
        np.float32, st.tuples(st.integers(1, 40), st.just(3)), elements=st.floats(-5, 5, width=32)
    ),
    fraction=st.floats(0.0, 0.95),
)
# The float-error cases: 1/3 of 15 rows leaves out 5 and 0.7 of 10 leaves out 7.
@example(errors=np.arange(45, dtype=np.float32).reshape(15, 3), fraction=1 / 3)
@example(errors=np.arange(30, dtype=np.float32).reshape(10, 3), fraction=0.7)
def test_trimmed_loss_drops_the_worst_rows(fitted, errors, fraction):
    det = clone(fitted).set_params(loss_trim_fraction=fraction)
    det.module_ = fitted.module_
    x = torch.zeros(errors.shape)
    out = torch.from_numpy(errors)
    per_row = np.sort((errors.astype(np.float64) ** 2).mean(1))
    # floor(fraction * n) rows go, the product rounded first: with fraction 1/3 and
    # 15 rows, ceil((1 - fraction) * 15) is 11 by float error, not the 10 meant.
    keep = max(1, len(per_row) - int(np.floor(round(fraction * len(per_row), 9))))
    assert keep == {(15, 1 / 3): 10, (10, 0.7): 3}.get((len(per_row), fraction), keep)
    det.module_.train()
    try:
        trimmed = float(det._train_loss(out, x))
    finally:
        det.module_.eval()
    np.testing.assert_allclose(trimmed, per_row[:keep].mean(), rtol=1e-5, atol=1e-6)
    assert trimmed <= per_row.mean() * (1 + 1e-5) + 1e-6
    # Evaluation (the validation loss) is never trimmed.
    np.testing.assert_allclose(float(det._train_loss(out, x)), per_row.mean(), rtol=1e-5, atol=1e-6)


def test_trimming_keeps_training_outliers_anomalous():
    """Digits 0 with 10% other digits mixed into the training rows (unlabelled)."""
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    normal = X[y == 0]
    outliers = X[y != 0][rng.choice((y != 0).sum(), size=len(normal) // 10, replace=False)]
    train = np.vstack([normal, outliers])
    is_outlier = np.r_[np.zeros(len(normal)), np.ones(len(outliers))]
    aucs = {}
    for fraction in (0.0, 0.2):
        det = AutoencoderDetector(loss_trim_fraction=fraction, random_state=0).fit(train)
        aucs[fraction] = roc_auc_score(is_outlier, -det.score_samples(train))
    assert aucs[0.2] > aucs[0.0] + 0.01, aucs


def test_the_code_is_sized_on_standardized_variance_with_or_without_standardize():
    # One feature 1000 times wider must not make its variance the only component.
    X = np.random.default_rng(0).normal(size=(300, 5)) * np.r_[1000, 1, 1, 1, 1]
    sizes = {
        standardize: AutoencoderDetector(standardize=standardize, max_iter=1, random_state=0)
        .fit(X)
        .latent_dim_
        for standardize in (True, False)
    }
    assert sizes[True] == sizes[False] == 4


def test_a_rolled_back_partial_fit_writes_the_restored_state_over_its_checkpoint(tmp_path):
    # One step per epoch: the ruined epoch is checkpointed before its output is checked.
    X = np.random.default_rng(0).normal(size=(40, 6))
    path = tmp_path / "ck.model"
    params = {"max_iter": 2, "batch_size": 64, "random_state": 0, "checkpoint_path": path}
    det = AutoencoderDetector(**params).fit(X)
    scores = det.score_samples(X)
    det.set_params(learning_rate_init=1e39)
    with pytest.raises(FloatingPointError):
        det.partial_fit(X)
    assert det.n_iter_ == 2
    saved = load(path)
    assert saved.n_iter_ == 2
    np.testing.assert_array_equal(saved.score_samples(X), scores)
    assert all(bool(torch.isfinite(p).all()) for p in saved.module_.parameters())
    # The detector, still holding the file, keeps training from it.
    det.set_params(learning_rate_init=1e-3).partial_fit(X)
    assert det.n_iter_ == load(path).n_iter_ == 3
