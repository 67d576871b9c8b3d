"""Pipelines and hyper-parameter search with detectors on labelled data."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedKFold,
    cross_validate,
    train_test_split,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from anomalib_lite import CalibratedDetector, PCADetector
from anomalib_lite.autoencoder import ConvAutoencoderDetector
from anomalib_lite.metrics import anomaly_f1, anomaly_recall, anomaly_roc_auc

GRID = [1, 8, 50]


@pytest.fixture(scope="module")
def digits():
    """Digit 1 is normal; 40 images of other digits are the labelled anomalies."""
    X, digit = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    others = rng.choice(np.flatnonzero(digit != 1), 40, replace=False)
    rows = np.r_[np.flatnonzero(digit == 1), others]
    y = (digit[rows] != 1).astype(int)
    return train_test_split(X[rows], y, test_size=0.4, stratify=y, random_state=0)


def _pipe(n_components=0.9):
    """The untrimmed PCA: these tests are about model selection, not trimming."""
    pca = PCADetector(n_components=n_components, trim_fraction=0)
    return Pipeline([("scale", StandardScaler()), ("detector", pca)])


def _held_out_auc(estimator, X, y):
    return anomaly_roc_auc(estimator, X, y)


def test_pipeline_exposes_the_detector_api(digits):
    X_train, X_test, y_train, _ = digits
    pipe = _pipe(8).fit(X_train, y_train)
    scaled = pipe[0].transform(X_test)
    det = pipe[-1]
    np.testing.assert_allclose(pipe.score_samples(X_test), det.score_samples(scaled))
    np.testing.assert_allclose(pipe.decision_function(X_test), det.decision_function(scaled))
    np.testing.assert_array_equal(pipe.predict(X_test), det.predict(scaled))
    np.testing.assert_array_equal(
        pipe.fit_predict(X_train, y_train), _pipe(8).fit(X_train, y_train).predict(X_train)
    )


def test_each_fold_trains_on_its_normal_rows_and_scores_every_held_out_row(digits):
    X_train, _, y_train, _ = digits
    result = cross_validate(
        _pipe(8),
        X_train,
        y_train,
        scoring={"auc": anomaly_roc_auc, "recall": anomaly_recall},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        return_estimator=True,
        return_indices=True,
    )
    for est, train, test in zip(
        result["estimator"], result["indices"]["train"], result["indices"]["test"], strict=True
    ):
        assert est[-1].n_samples_fit_ == np.sum(y_train[train] == 0)
        assert np.sum(y_train[test] == 1) > 0  # stratified: each fold scores anomalies
    assert np.all(result["test_auc"] > 0.8)


def test_grid_search_over_n_components_in_a_pipeline(digits):
    X_train, X_test, y_train, y_test = digits
    search = GridSearchCV(
        _pipe(),
        {"detector__n_components": GRID},
        scoring=anomaly_roc_auc,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X_train, y_train)
    results = search.cv_results_
    assert list(results["param_detector__n_components"]) == GRID
    assert np.all(np.isfinite(results["mean_test_score"]))
    assert search.best_score_ == results["mean_test_score"].max()
    assert search.best_params_ == {"detector__n_components": 8}
    # the selected model beats the worst candidate on data the search never saw
    worst = GRID[int(np.argmin(results["mean_test_score"]))]
    worst_model = _pipe(worst).fit(X_train, y_train)
    best_auc = _held_out_auc(search.best_estimator_, X_test, y_test)
    assert best_auc > _held_out_auc(worst_model, X_test, y_test) + 0.03
    assert best_auc > 0.95


def test_held_out_normal_error_alone_picks_the_model_that_reconstructs_everything(digits):
    """Why model selection needs anomalies (or a proxy): see docs/thresholds.md."""
    X_train, X_test, y_train, y_test = digits
    normal_error, auc = [], []
    for k in GRID:
        pipe = _pipe(k).fit(X_train, y_train)
        scaled = pipe[0].transform(X_test[y_test == 0])
        normal_error.append(pipe[-1].reconstruction_error(scaled).mean())
        auc.append(_held_out_auc(pipe, X_test, y_test))
    # lower error on held-out normal data at every step up in size ...
    assert np.all(np.diff(normal_error) < 0)
    # ... so that criterion picks the largest model, which separates anomalies worst
    assert int(np.argmin(normal_error)) == len(GRID) - 1
    assert auc[-1] == min(auc)


def test_plain_pipeline_scaler_sees_anomalies_but_a_wrapped_one_does_not(digits):
    X_train, _, y_train, _ = digits
    normal = y_train == 0
    plain = _pipe(8).fit(X_train, y_train)
    # a Pipeline passes every row to its transformers; only the detector drops anomalies
    np.testing.assert_allclose(plain[0].mean_, X_train.mean(axis=0))
    assert plain[-1].n_samples_fit_ == normal.sum()
    wrapped = CalibratedDetector(_pipe(8), method="quantile", random_state=0).fit(X_train, y_train)
    # refit on every normal row: the scaler's statistics are those of the normal rows
    np.testing.assert_allclose(wrapped.detector_[0].mean_, X_train[normal].mean(axis=0))


def test_grid_search_over_calibration_method_with_a_threshold_scorer(digits):
    X_train, X_test, y_train, y_test = digits
    search = GridSearchCV(
        CalibratedDetector(_pipe(8), alpha=0.1, random_state=0),
        {"method": ["conformal", "f1"], "detector__detector__n_components": [1, 8]},
        scoring={"f1": anomaly_f1, "auc": anomaly_roc_auc},
        refit="f1",
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every fold held anomalies: no fallback warning
        search.fit(X_train, y_train)
    scores = search.cv_results_["mean_test_f1"]
    assert np.all(np.isfinite(scores))
    assert search.best_index_ == int(np.argmax(scores))
    by_params = {
        (p["method"], p["detector__detector__n_components"]): i
        for i, p in enumerate(search.cv_results_["params"])
    }
    auc = search.cv_results_["mean_test_auc"]
    for method in ("conformal", "f1"):  # the larger model ranks and decides better
        assert auc[by_params[method, 8]] > auc[by_params[method, 1]]
        assert scores[by_params[method, 8]] > scores[by_params[method, 1]]
    # better on unseen data than the trivial detector that flags everything
    flag_all = 2 * y_test.sum() / (len(y_test) + y_test.sum())
    assert anomaly_f1(search.best_estimator_, X_test, y_test) > flag_all + 0.1


def test_make_pipeline_step_names_work_too(digits):
    X_train, _, y_train, _ = digits
    search = GridSearchCV(
        make_pipeline(StandardScaler(), PCADetector()),
        {"pcadetector__n_components": [1, 8]},
        scoring=anomaly_roc_auc,
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    ).fit(X_train, y_train)
    assert search.best_params_ == {"pcadetector__n_components": 8}


def test_grid_search_over_the_latent_size_of_a_conv_autoencoder(digits):
    """2-D rows with image_shape, so that the detector works like any estimator."""
    X_train, X_test, y_train, y_test = (a / 16.0 if a.ndim == 2 else a for a in digits)

    def autoencoder(**params):
        return ConvAutoencoderDetector(
            image_shape=(8, 8),
            channels=(8,),
            image_score="mean",
            max_iter=10,
            learning_rate_init=2e-3,
            learning_rate="constant",
            early_stopping=False,
            random_state=0,
            **params,
        )

    grid = [1, 32]  # one number cannot code a digit class; 32 can
    search = GridSearchCV(
        autoencoder(),
        {"latent_dim": grid},
        scoring=anomaly_roc_auc,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X_train, y_train)
    means = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(means))
    assert search.best_params_ == {"latent_dim": grid[int(np.argmax(means))]}
    worst = autoencoder(latent_dim=grid[int(np.argmin(means))]).fit(X_train, y_train)
    best_auc = anomaly_roc_auc(search.best_estimator_, X_test, y_test)
    assert best_auc > anomaly_roc_auc(worst, X_test, y_test) + 0.05
