"""random_shift, a seeded shift of a whole batch, its border mirrored; and
common_detail, what tells ``augmentation='auto'`` whether to shift."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalib_lite.nn import random_shift
from anomalib_lite.utils._alignment import common_detail


def _offset(x, out, rows, columns):
    """The ``(dy, dx)`` with ``out[..., i, j] == x[..., i + dy, j + dx]`` wherever that
    lies in the image, or None where no offset within the bounds gives ``out``."""
    h, w = x.shape[-2:]
    for dy in range(-rows, rows + 1):
        for dx in range(-columns, columns + 1):
            i, j = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
            si, sj = slice(i.start + dy, i.stop + dy), slice(j.start + dx, j.stop + dx)
            if torch.equal(out[..., i, j], x[..., si, sj]):
                return dy, dx
    return None


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    c=st.integers(1, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    shift=st.tuples(st.integers(0, 11), st.integers(0, 11)),
    seed=st.integers(0, 2**31 - 1),
)
def test_a_batch_moves_by_one_offset_within_the_bounds_with_a_mirrored_border(
    n, c, h, w, shift, seed
):
    rows, columns = min(shift[0], h - 1), min(shift[1], w - 1)
    # Distinct values, so that the offset that explains the output is the only one.
    x = torch.randperm(n * c * h * w, generator=torch.Generator().manual_seed(seed)).float()
    x = x.view(n, c, h, w)
    before = x.clone()
    out = random_shift(x, (rows, columns), torch.Generator().manual_seed(seed))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)
    offset = _offset(x, out, rows, columns)
    assert offset is not None
    dy, dx = offset
    # What comes in from outside the image is the image mirrored at its border.
    mirrored = np.pad(x.numpy(), [(0, 0), (0, 0), (rows, rows), (columns, columns)], "reflect")
    expected = mirrored[..., rows + dy : rows + dy + h, columns + dx : columns + dx + w]
    np.testing.assert_array_equal(out.numpy(), expected)


def test_every_offset_within_the_bounds_is_drawn_and_none_beyond():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    seen = {
        _offset(x, random_shift(x, (2, 1), torch.Generator().manual_seed(seed)), 2, 1)
        for seed in range(300)
    }
    assert seen == {(dy, dx) for dy in range(-2, 3) for dx in range(-1, 2)}


def test_the_shift_is_seeded_and_leaves_the_global_rng_alone():
    x = torch.randn(3, 1, 9, 9)
    torch.manual_seed(0)
    a = random_shift(x, 2, torch.Generator().manual_seed(5))
    after = torch.rand(1)
    torch.manual_seed(0)
    b = random_shift(x, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(torch.rand(1), after)


def test_no_shift_returns_an_equal_copy():
    x = torch.randn(2, 1, 5, 5)
    out = random_shift(x, 0, torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize(
    ("max_shift", "error", "match"),
    [
        (-1, ValueError, r"max_shift=-1 must be >= 0 and below the image's sides \(4, 6\)"),
        (4, ValueError, r"max_shift=4 must be >= 0 and below the image's sides \(4, 6\)"),
        ((0, 6), ValueError, "below the image's sides"),
        (1.0, TypeError, "max_shift must be an int or a pair"),
        (True, TypeError, "max_shift must be an int or a pair"),
        ((1, 2, 3), TypeError, "max_shift must be an int or a pair"),
        ("1", TypeError, "max_shift must be an int or a pair"),
    ],
)
def test_a_bad_max_shift_is_refused_by_name(max_shift, error, match):
    with pytest.raises(error, match=match):
        random_shift(torch.zeros(1, 1, 4, 6), max_shift, torch.Generator())


def test_a_batch_that_is_not_a_4d_tensor_is_refused():
    with pytest.raises(
        ValueError, match=r"x must be a 4-D tensor \(n, C, H, W\), got shape \(4, 6\)"
    ):
        random_shift(torch.zeros(4, 6), 1, torch.Generator())
    with pytest.raises(TypeError, match=r"x must be a 4-D tensor .*, got ndarray"):
        random_shift(np.zeros((1, 1, 4, 6)), 1, torch.Generator())


# ------------------------------------------------------------ common detail
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 40),
    c=st.integers(1, 3),
    side=st.integers(4, 20),
    seed=st.integers(0, 2**31 - 1),
)
def test_common_detail_is_a_share_that_ignores_order_and_is_full_for_copies(n, c, side, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, c, side, side))
    share = common_detail(images, 1.0)
    assert 0.0 <= share <= 1.0
    assert common_detail(images[rng.permutation(n)], 1.0) == pytest.approx(share, abs=1e-12)
    copies = np.repeat(images[:1], n, axis=0)
    assert common_detail(copies, 1.0) == pytest.approx(1.0)
    # Scaled or moved in level alike, the images share as much of their detail.
    assert common_detail(3 * images + 2, 1.0) == pytest.approx(share, abs=1e-9)


def test_common_detail_tells_aligned_images_from_a_pattern_that_lies_anywhere():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:32, :32]

    def pattern(dy, dx):
        return np.cos(0.9 * (y + dy)) + np.cos(0.7 * (x + dx) + 0.4 * (y + dy))

    aligned = np.stack([pattern(0, 0) + 0.3 * rng.normal(size=(32, 32)) for _ in range(200)])
    anywhere = np.stack([pattern(*rng.integers(0, 32, size=2)) for _ in range(200)])
    noise = rng.normal(size=(200, 32, 32))
    assert common_detail(aligned[:, None], 1.0) > 0.5
    assert common_detail(anywhere[:, None], 1.0) < 0.05
    assert common_detail(noise[:, None], 1.0) < 0.02  # chance's 1/n corrected away


def test_common_detail_is_full_where_there_is_nothing_to_tell():
    assert common_detail(np.zeros((1, 1, 8, 8)) + np.eye(8), 1.0) == 1.0  # one image
    assert common_detail(np.ones((5, 1, 8, 8)), 1.0) == 1.0  # no detail
