"""Checks every detector of the library must pass: scikit-learn's estimator
checks and the shared contract.

The detectors are tests/conftest.py's ``DETECTORS``: a test that takes
``detector`` (or ``estimator`` and ``check``) runs once per entry.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from anomalib_lite._torch_detector import MIN_HELD_OUT, TorchDetector
from anomalib_lite.base import auto_threshold
from anomalib_lite.io import load, save


def test_sklearn_compatible_estimator(estimator, check):
    """scikit-learn's estimator checks, one test per detector of DETECTORS and check."""
    name = getattr(check, "func", check).__name__
    if name == "check_methods_subset_invariance" and isinstance(estimator, TorchDetector):
        # A float32 network may round a row scored alone and in a batch differently
        # (oneDNN picks its kernels by batch size): the check's absolute 1e-7 is
        # below one float32 step for scores above 0.84. The same check, to float32
        # rounding:
        _check_batch_invariance(clone(estimator).fit(_data(n=40)), _data(seed=1, n=40))
        return
    check(estimator)


def _check_batch_invariance(det, X):
    """Each row's outputs are the same alone, in a subset and in the whole batch,
    to float32 rounding (a few steps of 1.2e-7 relative)."""
    subset = np.arange(0, len(X), 3)
    for method in ("score_samples", "decision_function"):
        full = getattr(det, method)(X)
        alone = np.array([getattr(det, method)(X[i : i + 1])[0] for i in range(len(X))])
        scale = np.abs(full).max()
        np.testing.assert_allclose(alone, full, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(
            getattr(det, method)(X[subset]), full[subset], rtol=1e-5, atol=1e-5 * scale
        )
    decision = det.decision_function(X)
    clear = np.abs(decision) > 1e-5 * np.abs(decision).max()
    alone = np.array([det.predict(X[i : i + 1])[0] for i in range(len(X))])
    np.testing.assert_array_equal(alone[clear], det.predict(X)[clear])


def test_scores_do_not_depend_on_the_batch(detector):
    X = _data(n=40)
    _check_batch_invariance(clone(detector).fit(X), X)


def _data(seed=0, n=60, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d))


def _comparable(params):
    """Parameters with nested estimators (meta-estimators) compared by their own."""
    return {
        k: (type(v), _comparable(v.get_params())) if hasattr(v, "get_params") else v
        for k, v in params.items()
    }


def test_clone_and_pickle_give_identical_scores(detector):
    X = _data()
    fitted = clone(detector).fit(X)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(fitted.score_samples(X), restored.score_samples(X))
    assert restored.offset_ == fitted.offset_
    refit = clone(fitted).fit(X)
    np.testing.assert_array_equal(fitted.score_samples(X), refit.score_samples(X))
    assert _comparable(clone(fitted).get_params()) == _comparable(fitted.get_params())


@pytest.mark.parametrize(
    "setting",
    [
        (torch.set_default_dtype, torch.get_default_dtype, torch.float64),
        # 'meta' stands in for a GPU as the default: tensors made there are not on the CPU
        (torch.set_default_device, torch.get_default_device, "meta"),
    ],
    ids=["float64 dtype", "meta device"],
)
def test_torch_detectors_ignore_the_process_defaults(torch_detector, setting, tmp_path):
    """A process may set torch's default dtype (Gaussian-process code sets float64)
    or device (to a GPU); the networks stay float32 on the CPU unless ``device``
    says otherwise, so fits, scores, pickles and saved models give exactly what
    they give under torch's defaults."""
    set_default, get_default, value = setting
    X = _data(n=40)
    fitted = clone(torch_detector).fit(X)
    expected = fitted.score_samples(X)
    blob = pickle.dumps(fitted)
    save(fitted, tmp_path / "det.model")
    before = get_default()
    set_default(value)
    try:
        refit = clone(torch_detector).fit(X)
        for det in (refit, fitted, pickle.loads(blob), load(tmp_path / "det.model")):
            np.testing.assert_array_equal(det.score_samples(X), expected)
        assert refit.offset_ == fitted.offset_
    finally:
        set_default(before)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_torch_detectors_train_inside_a_callers_no_grad_block(torch_detector, mode):
    """fit and partial_fit turn gradients on for themselves, and a model is loaded
    with tensors that can train: a caller's ``no_grad`` or ``inference_mode`` block
    gives the scores of the same calls outside it."""
    X = _data(n=40)
    expected = clone(torch_detector).fit(X).score_samples(X)
    streamed = clone(torch_detector).partial_fit(X).score_samples(X)
    blob = pickle.dumps(clone(torch_detector).fit(X))
    further = pickle.loads(blob).partial_fit(X).score_samples(X)
    with mode():
        fitted = clone(torch_detector).fit(X)
        resumed = clone(torch_detector).partial_fit(X)
        np.testing.assert_array_equal(fitted.score_samples(X), expected)
        np.testing.assert_array_equal(resumed.score_samples(X), streamed)
        # a model loaded inside the block trains on, inside it and after it
        inside, after = pickle.loads(blob), pickle.loads(blob)
        np.testing.assert_array_equal(inside.partial_fit(X).score_samples(X), further)
    np.testing.assert_array_equal(after.partial_fit(X).score_samples(X), further)


def test_fit_learns_from_normal_rows_only(detector):
    X = _data()
    y = np.zeros(len(X), dtype=int)
    y[:10] = 1
    with_labels = clone(detector).fit(np.vstack([X, 100 + X[:10]]), np.r_[y * 0, np.ones(10, int)])
    normals_only = clone(detector).fit(X)
    np.testing.assert_allclose(with_labels.score_samples(X), normals_only.score_samples(X))
    assert with_labels.offset_ == pytest.approx(normals_only.offset_)


def _weights(det):
    return [v.numpy() for v in det.module_.state_dict().values()]


def test_torch_detectors_fence_rows_they_did_not_train_on(torch_detector):
    """``contamination='auto'`` puts its fence on the held-out rows' scores, and
    those rows do not shape the network: swapping two of them leaves every weight
    as it was, swapping one with a trained-on row does not."""
    X = _data(n=60)
    detector = clone(torch_detector).set_params(contamination="auto", validation_fraction=0.1)
    det = clone(detector).fit(X)
    held, trained = det._held_out(len(X))
    assert len(held) == max(MIN_HELD_OUT, 6)
    assert sorted(np.r_[held, trained]) == list(range(len(X)))
    # The fit scores every row in one pass; scoring the held-out rows alone would
    # batch them otherwise, and float32 kernels may round by batch size.
    assert det.offset_ == -auto_threshold(-det.score_samples(X)[held.numpy()])

    def refit_swapped(i, j):
        swapped = X.copy()
        swapped[[i, j]] = X[[j, i]]
        return _weights(clone(detector).fit(swapped))

    for a, b in zip(_weights(det), refit_swapped(held[0], held[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    moved = refit_swapped(held[0], trained[0])
    assert any(not np.array_equal(a, b) for a, b in zip(_weights(det), moved, strict=True))
    if not det.early_stopping:  # holding none out, the fence is on every training score
        every = clone(detector).set_params(validation_fraction=0).fit(X)
        assert every._held_out(len(X)) is None
        assert every.offset_ == -auto_threshold(-every.score_samples(X))


def test_caller_data_is_not_modified(detector):
    X = _data()
    X_copy = X.copy()
    det = clone(detector).fit(X)
    det.predict(X)
    det.score_samples(X)
    np.testing.assert_array_equal(X, X_copy)


def test_read_only_and_non_contiguous_input_work(detector):
    X = np.asfortranarray(_data(n=80, d=10))[:, ::2]
    X.setflags(write=False)
    det = clone(detector).fit(X)
    np.testing.assert_allclose(det.score_samples(X), det.score_samples(np.ascontiguousarray(X)))


# ------------------------------------------------- torch detectors: resuming
def _frame(columns="abcd"):
    pd = pytest.importorskip("pandas")
    X = np.random.default_rng(0).normal(size=(20, 4)) * [1, 10, 100, 1000]
    return pd.DataFrame(X, columns=list("abcd"))[list(columns)]


def test_resuming_refuses_columns_other_than_those_it_continues(torch_detector, tmp_path):
    """warm_start and checkpoint_path continue per-column statistics: reordered
    columns are refused, as partial_fit and scoring refuse them."""
    X, reordered = _frame(), _frame("dcba")
    det = clone(torch_detector).set_params(max_iter=2).fit(X)
    scores = det.score_samples(X)
    with pytest.raises(ValueError, match="feature names should match"):
        det.set_params(warm_start=True).fit(reordered)
    assert list(det.feature_names_in_) == list("abcd") and det.n_iter_ == 2
    np.testing.assert_array_equal(det.score_samples(X), scores)
    path = tmp_path / "run.model"
    clone(torch_detector).set_params(max_iter=2, checkpoint_path=path).fit(X)
    resumed = clone(torch_detector).set_params(max_iter=2, checkpoint_path=path, warm_start=True)
    with pytest.raises(ValueError, match="feature names should match"):
        resumed.fit(reordered)
    assert not hasattr(resumed, "module_")
    assert resumed.fit(X).n_iter_ == 4


def test_a_refused_training_call_changes_nothing(torch_detector):
    """A batch too small to hold rows out is refused before the run state changes,
    so that the next warm start trains its full max_iter epochs."""
    X = _data(n=20, d=4)
    det = clone(torch_detector).set_params(max_iter=2, early_stopping=True).fit(X)
    before = (det.best_loss_, det.n_iter_, det.offset_)
    for refused in (det.partial_fit, det.set_params(warm_start=True).fit):
        with pytest.raises(ValueError, match="leaves none to train on"):
            refused(X[:2])
        assert (det.best_loss_, det.n_iter_, det.offset_) == before
    assert det.fit(X).n_iter_ == 4


def test_only_early_stopping_ends_a_run_before_its_last_epoch(torch_detector):
    """Without early stopping a run trains every epoch its schedule is laid over,
    however flat its training loss; with it, the held-out loss ends the run."""
    X = _data(n=20, d=4)
    params = {"max_iter": 5, "n_iter_no_change": 1, "tol": 1e9}
    det = clone(torch_detector).set_params(**params, early_stopping=False).fit(X)
    assert det.n_iter_ == len(det.history_) == 5
    det = clone(torch_detector).set_params(**params, early_stopping=True).fit(X)
    assert det.n_iter_ == len(det.history_) == 2


#: A constant learning rate at which DECAY shrinks the weights by 20% a step.
CONSTANT_RATE = {"learning_rate": "constant", "learning_rate_init": 1e-2, "random_state": 0}
DECAY = 20.0


def _squared_norm(det):
    return sum(float(p.detach().square().sum()) for p in det.module_.parameters())


def test_weight_decay_shrinks_the_weights_and_zero_trains_as_plain_adam(
    torch_detector, monkeypatch
):
    """Decoupled weight decay pulls every weight toward zero each step; at 0 a fit
    is bit for bit the one plain Adam trains."""
    X = _data(n=20, d=4)
    plain = clone(torch_detector).set_params(**CONSTANT_RATE, max_iter=3).fit(X)
    decayed = clone(plain).set_params(weight_decay=DECAY).fit(X)
    assert _squared_norm(decayed) < 0.8 * _squared_norm(plain)

    def adam(params, weight_decay, **kwargs):
        assert weight_decay == 0.0
        return torch.optim.Adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", adam)
    reference = clone(plain).fit(X)
    np.testing.assert_array_equal(reference.score_samples(X), plain.score_samples(X))


def test_resuming_an_interrupted_run_trains_with_the_weight_decay_set_now(
    torch_detector, monkeypatch
):
    """The optimizer state a resumed run continues holds the weight_decay it was
    saved with; the value set now replaces it, as a changed learning rate would."""
    X = _data(n=20, d=4)
    original_epoch = TorchDetector._epoch
    decays = []

    def epoch(self, train, optimizer, *args):
        decays.append(optimizer.param_groups[0]["weight_decay"])
        if len(decays) == 2:
            raise KeyboardInterrupt
        return original_epoch(self, train, optimizer, *args)

    monkeypatch.setattr(TorchDetector, "_epoch", epoch)
    det = clone(torch_detector).set_params(max_iter=3, weight_decay=0.5)
    with pytest.warns(UserWarning, match="interrupted"):
        det.fit(X)
    det.set_params(warm_start=True, weight_decay=0.25).fit(X)
    assert det.n_iter_ == 3 and decays == [0.5, 0.5, 0.25, 0.25]


def test_predict_in_a_callback_of_a_first_fit_says_the_threshold_comes_last(torch_detector):
    X = _data(n=20, d=4)
    scores = []

    def callback(det, record):
        scores.append(det.score_samples(X))
        for method in (det.predict, det.decision_function):
            with pytest.raises(
                NotFittedError, match=r"no threshold \(offset_\) yet.*score_samples"
            ):
                method(X)

    det = clone(torch_detector).set_params(max_iter=2, callbacks=[callback]).fit(X)
    assert len(scores) == 2 and set(det.predict(X)) <= {-1, 1}


def test_ctrl_c_after_the_last_epoch_keeps_the_weights(torch_detector, monkeypatch):
    """Ctrl-C while fit sets the threshold keeps the trained network without one;
    a warm start then sets it, as the uninterrupted fit did, without training."""
    X = _data(n=20, d=4)
    reference = clone(torch_detector).set_params(max_iter=2).fit(X)
    original = TorchDetector._set_offset

    def interrupted(self, scores):
        raise KeyboardInterrupt

    monkeypatch.setattr(TorchDetector, "_set_offset", interrupted)
    det = clone(torch_detector).set_params(max_iter=2, warm_start=True)
    for i, call in enumerate((det.fit, det.fit, det.partial_fit)):  # first, warm, partial
        with pytest.warns(UserWarning, match="without a thres"), pytest.raises(KeyboardInterrupt):
            call(X)
        assert not hasattr(det, "offset_") and det.history_  # a warm start's old one too
        with pytest.raises(NotFittedError, match="warm_start=True sets it"):
            det.predict(X)
        monkeypatch.setattr(TorchDetector, "_set_offset", original)
        det.fit(X)  # no epoch to go, only the threshold
        monkeypatch.setattr(TorchDetector, "_set_offset", interrupted)
        if i == 0:
            assert det.n_iter_ == 2 and det.offset_ == reference.offset_
            np.testing.assert_array_equal(det.predict(X), reference.predict(X))
    monkeypatch.undo()
    assert det.n_iter_ == 5 and det.fit(X).n_iter_ == 7


def test_partial_fit_resumes_a_stream_from_its_checkpoint(torch_detector, tmp_path):
    X = _data(n=30, d=4)
    batches = (X[:10], X[10:20], X[20:])
    stream = clone(torch_detector)
    for batch in batches:
        stream.partial_fit(batch)
    path = tmp_path / "stream.model"
    first = clone(torch_detector).set_params(checkpoint_path=path)
    first.partial_fit(batches[0]).partial_fit(batches[1])
    with pytest.raises(ValueError, match="pass warm_start=True to resume from it"):
        clone(first).partial_fit(batches[2])
    resumed = clone(first).set_params(warm_start=True).partial_fit(batches[2])
    assert resumed.n_iter_ == 3 and resumed.offset_ == stream.offset_
    np.testing.assert_array_equal(resumed.score_samples(X), stream.score_samples(X))
    loaded = load(path).set_params(checkpoint_path=path, warm_start=True)  # stores None
    with pytest.raises(ValueError, match=r"continues its own state.*sklearn\.base\.clone"):
        loaded.partial_fit(batches[2])


def test_only_random_state_none_draws_from_a_global_rng(torch_detector):
    """As documented: None draws the seed from NumPy's global RNG, the way
    scikit-learn does; an int or a RandomState leaves NumPy's and torch's alone."""
    assert "None draws the seed from NumPy's global RNG" in " ".join(
        type(torch_detector).__doc__.split()
    )
    X = _data(n=20, d=4)
    for random_state, draws in ((0, False), (np.random.RandomState(0), False), (None, True)):
        _, keys, pos, *_ = np.random.get_state()  # noqa: NPY002 (the legacy global RNG)
        torch_state = torch.get_rng_state()
        clone(torch_detector).set_params(max_iter=1, random_state=random_state).fit(X)
        _, keys_after, pos_after, *_ = np.random.get_state()  # noqa: NPY002
        assert (pos_after != pos or not np.array_equal(keys_after, keys)) == draws
        assert torch.equal(torch.get_rng_state(), torch_state)


def test_a_warm_start_that_fails_keeps_the_last_epoch_without_the_old_threshold(
    torch_detector, tmp_path, monkeypatch
):
    """An error inside a warm start's training leaves the weights of its last
    finished epoch, no threshold (the old one was set on other weights), and a
    checkpoint that holds the same; a warm start then sets one."""
    X = _data(n=20, d=4)
    path = tmp_path / "run.model"
    det = clone(torch_detector).set_params(max_iter=2, warm_start=True, checkpoint_path=path)
    det.fit(X)
    original = TorchDetector._epoch
    calls = []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 2:  # part-way through the second epoch of the warm start
            original(self, *args)  # the weights have moved
            raise RuntimeError("out of memory")
        return original(self, *args)

    monkeypatch.setattr(TorchDetector, "_epoch", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        det.fit(X)
    monkeypatch.undo()
    assert det.n_iter_ == 3 == len(det.history_)
    assert not hasattr(det, "offset_")
    with pytest.raises(NotFittedError, match="no threshold"):
        det.predict(X)
    saved = load(path)  # written after epoch 3, the last finished one
    assert saved.n_iter_ == 3 and not hasattr(saved, "offset_")
    np.testing.assert_array_equal(saved.score_samples(X), det.score_samples(X))
    # the next warm start finishes the run's last epoch and sets the threshold
    assert det.fit(X).n_iter_ == 4 and set(det.predict(X)) <= {-1, 1}


def test_a_finished_warm_starts_checkpoint_holds_no_stale_threshold(torch_detector, tmp_path):
    X = _data(n=20, d=4)
    path = tmp_path / "run.model"
    det = clone(torch_detector).set_params(max_iter=2, warm_start=True, checkpoint_path=path)
    det.fit(X).fit(X)
    saved = load(path)
    assert saved.n_iter_ == det.n_iter_ == 4 and not hasattr(saved, "offset_")
    with pytest.raises(NotFittedError, match="no threshold"):
        saved.predict(X)


def test_ctrl_c_in_training_and_again_at_the_threshold_keeps_the_rest_of_the_run(
    torch_detector, monkeypatch
):
    X = _data(n=20, d=4)
    original_epoch = TorchDetector._epoch
    calls = []

    def epoch(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original_epoch(self, *args)

    def offset(self, scores):
        raise KeyboardInterrupt

    monkeypatch.setattr(TorchDetector, "_epoch", epoch)
    monkeypatch.setattr(TorchDetector, "_set_offset", offset)
    det = clone(torch_detector).set_params(max_iter=4, warm_start=True)
    with pytest.warns(UserWarning) as record, pytest.raises(KeyboardInterrupt):
        det.fit(X)
    assert "remaining 3 epochs" in str(record[-1].message)
    monkeypatch.undo()
    assert det.n_iter_ == 1 and det.fit(X).n_iter_ == 4  # the run's other 3 epochs


def test_input_tags_say_which_arrays_each_detector_takes():
    from sklearn.utils import get_tags

    from anomalib_lite import CalibratedDetector, ConvAutoencoderDetector, PCADetector

    def shapes(est):
        tags = get_tags(est).input_tags
        return tags.two_d_array, tags.three_d_array

    assert shapes(PCADetector()) == (True, True)
    assert shapes(ConvAutoencoderDetector()) == (False, True)
    assert shapes(ConvAutoencoderDetector(image_shape=(8, 8))) == (True, True)
    assert shapes(CalibratedDetector(ConvAutoencoderDetector())) == (False, True)


# ------------------------------------------------------------- loss spikes
def _spiking_epoch(monkeypatch, at_epochs, factor=100.0):
    """Patch every fit's epochs ``at_epochs`` (1-based) to report ``factor`` times their
    training loss, as an epoch that left its basin would; the epochs train as usual."""
    original = TorchDetector._epoch

    def epoch(self, *args):
        loss = original(self, *args)
        return loss * factor if self.n_iter_ + 1 in at_epochs else loss

    monkeypatch.setattr(TorchDetector, "_epoch", epoch)


def test_an_epoch_whose_loss_spikes_is_undone_and_the_run_goes_on_at_half_the_rate(
    torch_detector, monkeypatch
):
    X = _data(n=20, d=4)
    params = {"max_iter": 5, "learning_rate": "constant", "learning_rate_init": 1e-3}
    weights = []

    def keep_weights(det, record):
        weights.append({k: v.clone() for k, v in det.module_.state_dict().items()})

    reference = clone(torch_detector).set_params(**params).fit(X)
    _spiking_epoch(monkeypatch, at_epochs=(3,))
    det = clone(torch_detector).set_params(**params, callbacks=[keep_weights]).fit(X)
    assert [h["undone"] for h in det.history_] == [False, False, True, False, False]
    assert not any(h["undone"] for h in reference.history_)
    # The undone epoch's weights are those of the epoch before it.
    for name, value in weights[1].items():
        assert torch.equal(weights[2][name], value), name
    assert det.history_[:2] == [
        {**h, "seconds": g["seconds"]}
        for h, g in zip(reference.history_[:2], det.history_[:2], strict=True)
    ]
    rates = [h["learning_rate"] for h in det.history_]
    assert rates == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4]
    assert det.history_[2]["train_loss"] > 10 * min(h["train_loss"] for h in det.history_[:2])


def test_a_loss_within_tenfold_of_the_lowest_is_kept(torch_detector, monkeypatch):
    X = _data(n=20, d=4)
    params = {"max_iter": 4, "learning_rate": "constant"}
    reference = clone(torch_detector).set_params(**params).fit(X)
    _spiking_epoch(monkeypatch, at_epochs=(3,), factor=1.5)
    det = clone(torch_detector).set_params(**params).fit(X)
    assert not any(h["undone"] for h in det.history_)
    np.testing.assert_array_equal(det.score_samples(X), reference.score_samples(X))


def test_a_run_resumed_after_an_undone_epoch_goes_on_as_if_never_stopped(
    torch_detector, tmp_path, monkeypatch
):
    """The halved rate and the run's lowest loss travel in the checkpoint: the first
    epoch after the resume is undone too when its loss spikes."""
    X = _data(n=20, d=4)
    path = tmp_path / "run.model"
    params = {"max_iter": 6, "learning_rate": "constant"}
    _spiking_epoch(monkeypatch, at_epochs=(2, 4))
    reference = clone(torch_detector).set_params(**params).fit(X)
    spiking = TorchDetector._epoch

    def interrupted(self, *args):
        if self.n_iter_ == 3:
            raise KeyboardInterrupt
        return spiking(self, *args)

    monkeypatch.setattr(TorchDetector, "_epoch", interrupted)
    with pytest.warns(UserWarning, match="interrupted"):
        clone(torch_detector).set_params(**params, checkpoint_path=path).fit(X)
    monkeypatch.setattr(TorchDetector, "_epoch", spiking)
    resumed = clone(torch_detector).set_params(**params, checkpoint_path=path, warm_start=True)
    resumed.fit(X)
    undone = [False, True, False, True, False, False]
    assert [h["undone"] for h in resumed.history_] == [h["undone"] for h in reference.history_]
    assert [h["undone"] for h in reference.history_] == undone
    assert [h["learning_rate"] for h in resumed.history_] == [
        h["learning_rate"] for h in reference.history_
    ]
    np.testing.assert_array_equal(resumed.score_samples(X), reference.score_samples(X))
