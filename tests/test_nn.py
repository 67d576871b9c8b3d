"""The torch modules and helpers: shapes, layers, SSIM, blur, seeding, devices, threads."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from anomalib_lite._torch_detector import activation_bytes
from anomalib_lite.nn import (
    ConvAutoencoder,
    DenseAutoencoder,
    GeneratorDropout,
    SegmentationNet,
    gaussian_blur,
    ssim_map,
)
from anomalib_lite.nn.conv import UnfoldedConvTranspose2d
from anomalib_lite.nn.functional import conv_transpose2d_unfolded, pad_by_slices
from anomalib_lite.utils._torch import (
    build_quietly,
    check_device,
    deterministic_cudnn,
    init_weights,
    make_generator,
    resolve_device,
    torch_threads,
)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("size", "channels"), [((8, 8), (4,)), ((28, 28), (4, 8)), ((16, 32), (2, 4, 8))]
)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_conv_autoencoder_shapes(size, channels, in_channels):
    net = ConvAutoencoder(in_channels, size, channels, latent_dim=5)
    x = _rand(3, in_channels, *size)
    assert net.encode(x).shape == (3, 5)
    assert net.decode(net.encode(x)).shape == x.shape
    assert net(x).shape == x.shape


@pytest.mark.parametrize("norm_layer", [None, nn.BatchNorm2d])
def test_conv_autoencoder_same_type_in_train_and_eval(norm_layer):
    net = ConvAutoencoder(1, (8, 8), (4, 8), latent_dim=3, norm_layer=norm_layer)
    x = _rand(4, 1, 8, 8)
    train_out = net.train()(x)
    eval_out = net.eval()(x)
    assert type(train_out) is type(eval_out) is torch.Tensor
    assert train_out.shape == eval_out.shape


def test_conv_autoencoder_refuses_indivisible_size():
    with pytest.raises(ValueError, match=r"input_size=\(10, 8\) must be divisible by .* 4"):
        ConvAutoencoder(1, (10, 8), (4, 8))
    with pytest.raises(ValueError, match="at least one level"):
        ConvAutoencoder(1, (8, 8), ())


def test_conv_autoencoder_takes_layer_classes():
    net = ConvAutoencoder(1, (8, 8), (4,), act_layer=nn.GELU, norm_layer=nn.BatchNorm2d)
    kinds = {type(m) for m in net.modules()}
    assert nn.GELU in kinds and nn.BatchNorm2d in kinds and nn.ReLU not in kinds


@st.composite
def _conv_transpose_cases(draw):
    """A transposed convolution's input, weight, bias and hyper-parameters."""
    c_in, c_out = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, d * (kk - 1))) for d, kk in zip(dilation, k, strict=True))
    output_padding = tuple(
        draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True)
    )
    shape = (draw(st.integers(1, 3)), c_in, draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    sizes = zip(shape[2:], stride, padding, dilation, k, output_padding, strict=True)
    assume(all((n - 1) * s - 2 * p + d * (kk - 1) + o + 1 >= 1 for n, s, p, d, kk, o in sizes))
    seed = draw(st.integers(0, 2**16))
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    if draw(st.booleans()):
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(c_in, c_out, *k, generator=torch.Generator().manual_seed(seed + 1))
    b = torch.randn(c_out) if draw(st.booleans()) else None
    return x, w, b, {
        "stride": stride, "padding": padding, "output_padding": output_padding,
        "dilation": dilation,
    }  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(_conv_transpose_cases())
def test_unfolded_conv_transpose_matches_torch_values_and_gradients(case):
    x, w, b, kw = case
    tensors = [t.clone().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    grads_out = None
    results = []
    for func in (torch.nn.functional.conv_transpose2d, conv_transpose2d_unfolded):
        xs, ws, *bs = (t.detach().clone().requires_grad_() for t in tensors)
        y = func(xs, ws, bs[0] if bs else None, **kw)
        if grads_out is None:
            grads_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
        y.backward(grads_out)
        results.append((y.detach(), xs.grad, ws.grad, bs[0].grad if bs else None))
    (y_ref, *g_ref), (y_got, *g_got) = results
    assert y_got.shape == y_ref.shape
    torch.testing.assert_close(y_got, y_ref, rtol=1e-4, atol=1e-4)
    for got, ref in zip(g_got, g_ref, strict=True):
        if ref is not None:
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_unfolded_conv_transpose_layer_is_a_conv_transpose():
    plain = nn.ConvTranspose2d(6, 2, 4, stride=2, padding=1)
    layer = UnfoldedConvTranspose2d(6, 2, 4, stride=2, padding=1)
    layer.load_state_dict(plain.state_dict())
    assert isinstance(layer, nn.ConvTranspose2d)
    assert list(layer.state_dict()) == list(plain.state_dict())
    x = _rand(3, 6, 5, 5)
    torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-5)
    # Cases the unfolded route does not take run the base class's kernel.
    torch.testing.assert_close(layer(x[0]), plain(x[0]), rtol=1e-5, atol=1e-5)
    out = layer(x, output_size=(11, 11))
    torch.testing.assert_close(out, plain(x, output_size=(11, 11)), rtol=1e-5, atol=1e-5)
    grouped = UnfoldedConvTranspose2d(6, 4, 3, groups=2)
    grouped_plain = nn.ConvTranspose2d(6, 4, 3, groups=2)
    grouped_plain.load_state_dict(grouped.state_dict())
    torch.testing.assert_close(grouped(x), grouped_plain(x), rtol=1e-5, atol=1e-5)


def test_conv_autoencoder_decodes_its_last_layer_unfolded():
    net = ConvAutoencoder(1, (8, 8), (4, 8), latent_dim=3)
    ups = [m for m in net.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [type(m) for m in ups] == [nn.ConvTranspose2d, UnfoldedConvTranspose2d]


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_dense_autoencoder_shapes(dropout):
    net = DenseAutoencoder(7, hidden_sizes=(6, 4), latent_dim=2, dropout=dropout)
    x = _rand(5, 7)
    assert net.encode(x).shape == (5, 2)
    assert net(x).shape == x.shape
    assert type(net.train()(x)) is type(net.eval()(x))
    widths = [m.out_features for m in net.modules() if isinstance(m, nn.Linear)]
    assert widths == [6, 4, 2, 4, 6, 7]
    assert any(isinstance(m, nn.Dropout) for m in net.modules()) == (dropout > 0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), h=st.integers(1, 12), w=st.integers(1, 12))
def test_ssim_is_one_on_equal_images_symmetric_and_bounded(seed, h, w):
    x = _rand(2, 2, h, w, seed=seed)
    y = _rand(2, 2, h, w, seed=seed + 1)
    torch.testing.assert_close(ssim_map(x, x), torch.ones_like(x))
    torch.testing.assert_close(ssim_map(x, y), ssim_map(y, x))
    s = ssim_map(x, y)
    assert s.shape == x.shape
    assert bool((s <= 1 + 1e-5).all()) and bool((s >= -1 - 1e-5).all())


def test_ssim_drops_with_noise():
    x = _rand(1, 1, 16, 16)
    noise = _rand(1, 1, 16, 16, seed=3) - 0.5
    small, large = ssim_map(x, x + 0.05 * noise).mean(), ssim_map(x, x + 0.5 * noise).mean()
    assert 1.0 > small > large


# 1.7976931348623157e308: 3 sigma overflowed to inf, which ceil refused (OverflowError).
@pytest.mark.parametrize("sigma", [1e-30, 1e-300, 1e39, 1e300, 1.7976931348623157e308])
def test_gaussian_blur_of_an_extreme_sigma_is_finite(sigma):
    x = torch.rand(2, 1, 9, 7, generator=torch.Generator().manual_seed(0))
    out = gaussian_blur(x, sigma)
    assert torch.isfinite(out).all()
    if sigma < 1:  # no wider than a pixel: the image itself
        torch.testing.assert_close(out, x)


def test_gaussian_blur_keeps_constants_and_matches_2d_kernel():
    torch.testing.assert_close(
        gaussian_blur(torch.full((1, 2, 9, 7), 3.0), 1.5), torch.full((1, 2, 9, 7), 3.0)
    )
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    out = gaussian_blur(x, 1.0)
    t = torch.arange(-3.0, 4.0)
    k = torch.exp(-(t**2) / 2)
    k = k / k.sum()
    torch.testing.assert_close(out[0, 0, 4:11, 4:11], torch.outer(k, k))
    assert out.sum().item() == pytest.approx(1.0)


def test_gaussian_blur_small_images():
    for h, w in [(1, 1), (1, 5), (2, 2), (3, 1)]:
        x = _rand(1, 1, h, w)
        assert gaussian_blur(x, 2.0).shape == x.shape
    # As documented, the kernel shrinks to an odd size within each side: an axis of
    # 2 pixels is not blurred, one of 3 is.
    x = _rand(1, 1, 2, 3)
    out = gaussian_blur(x, 1.0)
    other = x.clone()
    other[..., 1, :] += 1.0  # the second row changed: the first row's output is not
    torch.testing.assert_close(gaussian_blur(other, 1.0)[..., 0, :], out[..., 0, :])
    assert not torch.allclose(out, x)
    torch.testing.assert_close(gaussian_blur(x, 1.0, size=3), out)


def test_init_weights_is_seeded_and_leaves_global_rng_alone():
    state, seed = torch.get_rng_state(), torch.initial_seed()

    def build():
        return build_quietly(lambda: ConvAutoencoder(1, (8, 8), (4,), norm_layer=nn.BatchNorm2d))

    a = init_weights(build(), make_generator(7))
    b = init_weights(build(), make_generator(7))
    c = init_weights(build(), make_generator(8))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.initial_seed() == seed
    for (name, pa), pb, pc in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
        if name.endswith("weight") and "encoder.1" not in name:
            assert not torch.equal(pa, pc), name


def test_init_weights_follows_the_default_bounds():
    layer = nn.Linear(50, 20)
    init_weights(layer, make_generator(0))
    bound = 1 / np.sqrt(50)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert layer.weight.abs().max() > 0.8 * bound


def _weighted_layers(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_conv_autoencoder_starts_he_initialized(slope):
    act = functools.partial(nn.LeakyReLU, slope)
    net = ConvAutoencoder(1, (64, 64), (32, 64, 64, 64), latent_dim=64, act_layer=act)
    net.reset_parameters(make_generator(0))
    gain = np.sqrt(2 / (1 + slope**2))
    for layer in _weighted_layers(net):
        last = layer is net.to_code or layer is net.decoder[-1]
        if isinstance(layer, nn.Linear):
            fan_in = layer.in_features
        else:  # input channels times kernel area: 3x3 convolutions, 4x4 transposed ones
            fan_in = layer.in_channels * layer.weight[0, 0].numel()
        expected = (1.0 if last else gain) / np.sqrt(fan_in)
        assert float(layer.weight.detach().std()) == pytest.approx(expected, rel=0.15)
        assert not layer.bias.any()


def test_conv_autoencoder_init_keeps_the_signal_through_the_encoder():
    # PyTorch's default draws shrink a standardized input by about 3x per layer;
    # He-initialized layers keep its scale down to the code.
    net = ConvAutoencoder(1, (64, 64), (32, 64, 64, 64), latent_dim=64, act_layer=nn.ReLU)
    x = torch.randn(16, 1, 64, 64, generator=make_generator(1))
    with torch.no_grad():
        net.reset_parameters(make_generator(2))
        he = float(net.encode(x).std())
        init_weights(net, make_generator(2))
        default = float(net.encode(x).std())
    assert 0.3 < he < 3.0
    assert default < he / 10


def test_conv_autoencoder_reset_parameters_is_seeded_and_leaves_global_rng_alone():
    a, b, c = (ConvAutoencoder(1, (8, 8), (4,), norm_layer=nn.BatchNorm2d) for _ in range(3))
    state = torch.get_rng_state()
    a.reset_parameters(make_generator(7))
    b.reset_parameters(make_generator(7))
    c.reset_parameters(make_generator(8))
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), pb, pc in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
        if name.endswith("weight") and "encoder.1" not in name:
            assert not torch.equal(pa, pc), name


def test_activation_bytes_counts_every_layer_output():
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Sequential(nn.Linear(5, 2), nn.Tanh()))
    assert activation_bytes(net, torch.zeros(1, 3)) == 4 * (5 + 5 + 2 + 2)
    assert activation_bytes(net, torch.zeros(7, 3)) == 7 * 4 * (5 + 5 + 2 + 2)


class _Functional(nn.Module):
    """A forward pass with functions between its layers, a view and an in-place op."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.act(self.conv(x))  # 2 x 8 x 8, once: in place
        pooled = F.max_pool2d(y, 2)  # 2 x 4 x 4
        up = F.interpolate(pooled, scale_factor=2.0)  # 2 x 8 x 8
        both = torch.cat([y, up], 1)  # 4 x 8 x 8
        return both.flatten(1)[:, :10]  # views: nothing new


def test_activation_bytes_counts_the_functions_between_layers_once_each():
    expected = 4 * (128 + 32 + 128 + 256)
    assert activation_bytes(_Functional(), torch.zeros(1, 1, 8, 8)) == expected
    assert activation_bytes(_Functional(), torch.zeros(3, 1, 8, 8)) == 3 * expected
    # The input is not an activation, not even when the forward pass returns it.
    assert activation_bytes(nn.Identity(), torch.zeros(5, 4)) == 0


def test_deterministic_cudnn_sets_and_restores_the_flags(monkeypatch):
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark)
    with deterministic_cudnn():
        if not cudnn.is_available():
            assert (cudnn.deterministic, cudnn.benchmark) == before
    assert (cudnn.deterministic, cudnn.benchmark) == before
    # With cuDNN (told so on a machine without it): set inside, restored after an error.
    monkeypatch.setattr(cudnn, "is_available", lambda: True)
    monkeypatch.setattr(cudnn, "deterministic", False)
    monkeypatch.setattr(cudnn, "benchmark", True)
    with pytest.raises(RuntimeError, match="inside"), deterministic_cudnn():
        assert (cudnn.deterministic, cudnn.benchmark) == (True, False)
        raise RuntimeError("inside")
    assert (cudnn.deterministic, cudnn.benchmark) == (False, True)


def test_overlapping_deterministic_blocks_restore_the_flags_once_all_are_out(monkeypatch):
    # The flags are the process's: threads scoring side by side overlap their blocks,
    # which must neither drop determinism while one runs nor leave it set after.
    cudnn = torch.backends.cudnn
    monkeypatch.setattr(cudnn, "is_available", lambda: True)
    monkeypatch.setattr(cudnn, "deterministic", False)
    monkeypatch.setattr(cudnn, "benchmark", True)
    first, second = deterministic_cudnn(), deterministic_cudnn()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert (cudnn.deterministic, cudnn.benchmark) == (True, False)  # the second still runs
    second.__exit__(None, None, None)
    assert (cudnn.deterministic, cudnn.benchmark) == (False, True)


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device='banana' is not a torch device"):
        check_device("banana")
    with pytest.raises(TypeError, match="device must be a string"):
        check_device(0.5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_request_without_cuda_says_so():
    with pytest.raises(ValueError, match=r"CUDA is not available.*device='auto'"):
        resolve_device("cuda")


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(3) as n:
        assert n == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(2):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_generator_dropout_is_seeded_scaled_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    layer = GeneratorDropout(0.25)
    x = torch.ones(64, 32)
    masks = []
    for _ in range(2):
        layer.generator = torch.Generator().manual_seed(3)
        masks.append(layer(x))
    assert torch.equal(masks[0], masks[1])
    assert torch.equal(torch.get_rng_state(), state)
    # Kept elements are scaled by 1 / (1 - p); about a quarter are dropped.
    assert torch.equal(masks[0].unique(), torch.tensor([0.0, 1.0 / 0.75]))
    assert 0.2 < float((masks[0] == 0).float().mean()) < 0.3
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(GeneratorDropout(0.0)(x), x)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1.0"):
        GeneratorDropout(1.0)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: DenseAutoencoder(4, dropout="0.3"), "dropout"),
        (lambda: DenseAutoencoder(4, dropout=None), "dropout"),
        (lambda: DenseAutoencoder(4, dropout=False), "dropout"),
        (lambda: GeneratorDropout("0.5"), "p"),
        (lambda: GeneratorDropout(None), "p"),
        (lambda: GeneratorDropout(False), "p"),
    ],
)
def test_dropout_that_is_not_a_number_is_named(build, name):
    # A string failed inside torch ("'<' not supported"), None inside float(), and
    # False was taken for 0.
    with pytest.raises(TypeError, match=rf"^{name} must be a float in \[0, 1\), got "):
        build()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sigma": 1.0, "size": 4}, ValueError, "size must be an odd int >= 1 or None, got 4"),
        ({"sigma": 1.0, "size": 0}, ValueError, "size must be an odd int >= 1"),
        ({"sigma": 1.0, "size": 3.0}, TypeError, "size must be an odd int or None"),
        ({"sigma": -2.0}, ValueError, "sigma must be a finite number >= 0"),
        ({"sigma": float("nan")}, ValueError, "sigma must be a finite number >= 0"),
        ({"sigma": "1.0"}, TypeError, "sigma must be a number, got str '1.0'"),
        ({"sigma": True}, TypeError, "sigma must be a number, got bool True"),
        ({"sigma": None}, TypeError, "sigma must be a number, got NoneType None"),
    ],
)
def test_blur_refuses_a_kernel_without_a_centre_or_a_negative_sigma(kwargs, error, match):
    # An even kernel returned an image one pixel larger; ssim_map passes size on.
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(error, match=match):
        gaussian_blur(x, **kwargs)
    if "size" in kwargs:
        with pytest.raises(error, match=match):
            ssim_map(x, x, **kwargs)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ConvAutoencoder(1, (0, 0)), "input_size must hold sizes >= 1"),
        (lambda: ConvAutoencoder(1, (-8, 8)), "input_size must hold sizes >= 1"),
        (lambda: ConvAutoencoder(0, (8, 8)), "in_channels must hold sizes >= 1"),
        (lambda: ConvAutoencoder(1, (8, 8), channels=(0,)), "channels must hold sizes >= 1"),
        (lambda: ConvAutoencoder(1, (8, 8), latent_dim=0), "latent_dim must hold sizes >= 1"),
        (lambda: DenseAutoencoder(0), "n_features must hold sizes >= 1"),
        (lambda: DenseAutoencoder(4, hidden_sizes=(3, 0)), "hidden_sizes must hold sizes >= 1"),
        (lambda: DenseAutoencoder(4, dropout=1.0), r"dropout must be in \[0, 1\)"),
        (lambda: SegmentationNet(2, width=0), "width must hold sizes >= 1"),
        (lambda: SegmentationNet(2, levels=-1), "levels must be >= 0"),
    ],
)
def test_modules_name_a_size_that_holds_no_unit(build, match):
    # Such sizes failed deep inside torch (ZeroDivisionError, negative dimension).
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ConvAutoencoder(1, (8, 8), latent_dim=2.5), "latent_dim must hold ints"),
        (lambda: ConvAutoencoder(1, (8.0, 8)), "input_size must hold ints"),
        (lambda: ConvAutoencoder(None, (8, 8)), "in_channels must hold ints"),
        (lambda: DenseAutoencoder(4, hidden_sizes=(3.7,)), "hidden_sizes must hold ints"),
        (lambda: SegmentationNet(2, width=2.7), "width must hold ints"),
        (lambda: SegmentationNet(2, levels=1.5), "levels must be an int >= 0"),
        (lambda: SegmentationNet(2, levels=None), "levels must be an int >= 0"),
    ],
)
def test_modules_name_a_size_that_is_not_an_int(build, match):
    # int() truncated 2.5 to 2 silently, and None failed without naming the size.
    with pytest.raises(TypeError, match=match):
        build()


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    pad=st.tuples(*[st.integers(0, 8)] * 4),
    mode=st.sampled_from(["reflect", "replicate"]),
    seed=st.integers(0, 2**16),
)
def test_pad_by_slices_gives_the_values_and_gradient_of_f_pad(height, width, pad, mode, seed):
    left, right, top, bottom = pad
    if mode == "reflect":
        assume(max(left, right) < width and max(top, bottom) < height)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, height, width, generator=gen, dtype=torch.float64, requires_grad=True)
    expected, got = F.pad(x, pad, mode=mode), pad_by_slices(x, pad, mode)
    assert torch.equal(got, expected)
    weights = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    (want,) = torch.autograd.grad((expected * weights).sum(), x)
    (have,) = torch.autograd.grad((got * weights).sum(), x)
    torch.testing.assert_close(have, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("pad", [(-1, 0, 0, 0), (0, 0, 0, -2), (1, 1, -1, 0)])
def test_pad_by_slices_refuses_a_negative_pad(pad, mode):
    # F.pad crops by a negative pad; a replicated image grew instead, silently.
    with pytest.raises(ValueError, match=r"pad must hold sizes >= 0 .*got \("):
        pad_by_slices(torch.zeros(1, 1, 3, 4), pad, mode)


@pytest.mark.parametrize("mode", ["constant", "circular", "Reflect"])
def test_pad_by_slices_refuses_another_mode(mode):
    # Any mode but 'reflect' was padded as 'replicate', silently.
    with pytest.raises(ValueError, match="mode must be 'reflect' or 'replicate'"):
        pad_by_slices(torch.zeros(1, 1, 3, 3), (1, 1, 1, 1), mode)
