"""Synthetic defects for training: they change only their masks, within bounds, seeded."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from anomalib_lite.nn import defect_masks, paste_defects

sizes = st.integers(min_value=1, max_value=24)


def _images(n, c, h, w, seed):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    c=st.integers(1, 3),
    h=sizes,
    w=sizes,
    seed=st.integers(0, 2**31 - 1),
    probability=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_paste_defects_changes_only_the_masks_and_never_its_input(n, c, h, w, seed, probability):
    x = _images(n, c, h, w, seed)
    before = x.clone()
    out, masks = paste_defects(x, torch.Generator().manual_seed(seed), probability=probability)
    assert torch.equal(x, before)  # the training target is never touched
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    assert masks.shape == (n, 1, h, w) and masks.dtype == torch.bool
    assert torch.equal(out[~masks.expand_as(out)], x[~masks.expand_as(x)])
    if probability == 0.0:
        assert not masks.any()
    if probability == 1.0:
        assert masks.flatten(1).any(1).all()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), h=sizes, w=sizes, seed=st.integers(0, 2**31 - 1))
def test_defect_masks_cover_a_fraction_within_the_area_range(n, h, w, seed):
    low, high = 0.05, 0.3
    masks = defect_masks(n, h, w, torch.Generator().manual_seed(seed), area=(low, high))
    counts = masks.flatten(1).sum(1)
    assert (counts >= 1).all()
    assert (counts >= math.floor(low * h * w)).all()
    # ties in the upsampled noise could only add pixels at the threshold
    assert (counts <= max(1, math.ceil(high * h * w)) + 2).all()


def test_paste_defects_is_seeded_and_leaves_the_global_rng_alone():
    x = _images(16, 1, 12, 12, 0)
    state = torch.random.get_rng_state()
    a = paste_defects(x, torch.Generator().manual_seed(3), probability=1.0)
    b = paste_defects(x, torch.Generator().manual_seed(3), probability=1.0)
    c = paste_defects(x, torch.Generator().manual_seed(4), probability=1.0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_paste_defects_changes_the_images_it_marks():
    x = _images(32, 1, 16, 16, 1)
    out, _ = paste_defects(x, torch.Generator().manual_seed(0), probability=1.0)
    changed = (out != x).flatten(1).any(1)
    assert changed.float().mean() > 0.9  # a 'patch' of an equal image could change nothing


def test_paste_defects_takes_an_empty_batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(0, 2, 5, 6)
    out, masks = paste_defects(x, generator, probability=1.0)
    assert out.shape == x.shape and out is not x
    assert masks.shape == (0, 1, 5, 6) and masks.dtype == torch.bool


def test_paste_defects_keeps_the_dtype_of_its_input():
    # Half-precision images came back in float32: the shift, noise and flat fills
    # are drawn in float32.
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = torch.randn(6, 2, 8, 8).to(dtype)
        out, _ = paste_defects(x, torch.Generator().manual_seed(0), probability=1.0)
        assert out.dtype == dtype


def test_paste_defects_computes_a_float32_batch_in_float32_under_a_float64_default():
    # The defect signs came from torch.where on two Python scalars, which take the
    # default dtype: under float64, every fill of a float32 batch was made in float64.
    made = set()

    class RecordDtypes(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                made.add(out.dtype)
            return out

    x = _images(6, 2, 8, 8, 0)
    expected = paste_defects(x, torch.Generator().manual_seed(0), probability=1.0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with RecordDtypes():
            out, masks = paste_defects(x, torch.Generator().manual_seed(0), probability=1.0)
    finally:
        torch.set_default_dtype(default)
    assert torch.float64 not in made
    assert torch.equal(out, expected[0]) and torch.equal(masks, expected[1])


@pytest.mark.parametrize(
    "area, error, match",
    [
        ((0.3, 0.1), ValueError, r"area=\(0.3, 0.1\).*0 < low <= high <= 1"),
        ((0.0, 0.2), ValueError, "0 < low"),
        ((0.1, 1.5), ValueError, "high <= 1"),
        ((float("nan"), 0.2), ValueError, "area"),
        (0.2, TypeError, "pair"),
        ((0.1, 0.2, 0.3), TypeError, "pair"),
        (("0.1", "0.2"), TypeError, "pair"),
        ((True, 1), TypeError, "pair"),
    ],
)
def test_masks_and_defects_refuse_a_bad_area(area, error, match):
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(error, match=match):
        defect_masks(2, 8, 8, gen, area=area)
    with pytest.raises(error, match=match):
        paste_defects(torch.zeros(2, 1, 8, 8), gen, area=area)


@pytest.mark.parametrize(
    "probability, error",
    [
        (1.5, ValueError),
        (-0.1, ValueError),
        (float("nan"), ValueError),
        ("0.5", TypeError),
        (True, TypeError),
    ],
)
def test_paste_defects_refuses_a_bad_probability(probability, error):
    with pytest.raises(error, match="probability"):
        paste_defects(torch.zeros(2, 1, 8, 8), torch.Generator(), probability=probability)


def test_an_area_of_equal_bounds_covers_that_fraction():
    masks = defect_masks(3, 10, 10, torch.Generator().manual_seed(0), area=(0.2, 0.2))
    assert (masks.flatten(1).sum(1) >= 20).all()
