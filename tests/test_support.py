"""The torch-semantics helpers, against torch itself on random inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retarget.support import functional as S
from retarget.support import layers as L

RNG = np.random.default_rng(0)


def close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), expected.detach().numpy(), rtol=tol, atol=tol)


X4 = RNG.standard_normal((2, 3, 9, 11)).astype(np.float32)


@pytest.mark.parametrize("kernel, stride, padding, ceil", [(3, 2, 1, False), (3, 2, 1, True), (2, 2, 0, True),
                                                           (3, 3, 1, True)])
@pytest.mark.parametrize("include_pad", [True, False])
def test_pooling(kernel, stride, padding, ceil, include_pad):
    t = torch.from_numpy(X4)
    close(S.avg_pool_nd(jnp.asarray(X4), kernel, stride, padding, ceil, include_pad),
          F.avg_pool2d(t, kernel, stride, padding, ceil, include_pad))
    close(S.max_pool_nd(jnp.asarray(X4), kernel, stride, padding, 1, ceil), F.max_pool2d(t, kernel, stride, padding,
                                                                                          1, ceil))


@pytest.mark.parametrize("size", [(4, 3), (1, 1), (5, 11)])
def test_adaptive_pooling(size):
    t = torch.from_numpy(X4)
    close(S.adaptive_pool_nd(jnp.asarray(X4), size), F.adaptive_avg_pool2d(t, size))
    close(S.adaptive_pool_nd(jnp.asarray(X4), size, jnp.max), F.adaptive_max_pool2d(t, size))


@pytest.mark.parametrize("mode, align", [("nearest", None), ("bilinear", False), ("bilinear", True)])
@pytest.mark.parametrize("kw", [{"scale_factor": 2}, {"size": (5, 7)}])
def test_interpolate(mode, align, kw):
    close(S.interpolate(jnp.asarray(X4), mode=mode, align_corners=align, **kw),
          F.interpolate(torch.from_numpy(X4), mode=mode, align_corners=align, **kw), 1e-5)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("stride, padding, out_pad, dilation", [(2, 1, 1, 1), (1, 0, 0, 2), (3, 2, 2, 1)])
def test_conv_transpose(groups, stride, padding, out_pad, dilation):
    x = RNG.standard_normal((2, 6, 5, 5)).astype(np.float32)
    w = RNG.standard_normal((6, 4 // groups, 3, 3)).astype(np.float32)
    close(S.conv_transpose_nd(jnp.asarray(x), jnp.asarray(w), None, stride, padding, out_pad, groups, dilation),
          F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), None, stride, padding, out_pad, groups,
                             dilation), 1e-4)


@pytest.mark.parametrize("pad, mode", [((1, 2, -1, 3), "constant"), ((1, 2, 2, 3), "reflect"),
                                       ((2, 0, 1, 1), "replicate"), ((1, 1, 2, 2), "circular")])
def test_pad(pad, mode):
    close(S.pad(jnp.asarray(X4), pad, mode=mode), F.pad(torch.from_numpy(X4), pad, mode=mode))


def test_losses_match_torch():
    logits = RNG.standard_normal((6, 5)).astype(np.float32)
    target = np.array([0, 4, -100, 2, 1, 3])
    weight = RNG.random(5).astype(np.float32)
    t_logits, t_target, t_weight = map(torch.from_numpy, (logits, target, weight))
    for kw in ({}, {"label_smoothing": 0.2}, {"reduction": "sum"}, {"reduction": "none"}):
        close(S.cross_entropy(jnp.asarray(logits), jnp.asarray(target), weight=jnp.asarray(weight), **kw),
              F.cross_entropy(t_logits, t_target, weight=t_weight, **kw))
    logp = F.log_softmax(t_logits, 1)
    close(S.nll_loss(jnp.asarray(logp.numpy()), jnp.asarray(target), weight=jnp.asarray(weight)),
          F.nll_loss(logp, t_target, weight=t_weight))
    a, b = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    probs = 1 / (1 + np.exp(-a))
    close(S.mse_loss(jnp.asarray(a), jnp.asarray(b)), F.mse_loss(torch.from_numpy(a), torch.from_numpy(b)))
    close(S.l1_loss(jnp.asarray(a), jnp.asarray(b), "sum"), F.l1_loss(torch.from_numpy(a), torch.from_numpy(b),
                                                                       reduction="sum"))
    close(S.smooth_l1_loss(jnp.asarray(a), jnp.asarray(b), beta=0.5),
          F.smooth_l1_loss(torch.from_numpy(a), torch.from_numpy(b), beta=0.5))
    target01 = (b > 0).astype(np.float32)
    close(S.binary_cross_entropy(jnp.asarray(probs), jnp.asarray(target01)),
          F.binary_cross_entropy(torch.from_numpy(probs), torch.from_numpy(target01)))
    close(S.binary_cross_entropy_with_logits(jnp.asarray(a), jnp.asarray(target01), pos_weight=jnp.asarray(2.0)),
          F.binary_cross_entropy_with_logits(torch.from_numpy(a), torch.from_numpy(target01),
                                             pos_weight=torch.tensor(2.0)))


def test_norms_and_attention():
    t = torch.from_numpy(X4)
    close(S.group_norm(jnp.asarray(X4), 3), F.group_norm(t, 3))
    close(S.instance_norm(jnp.asarray(X4)), F.instance_norm(t), 1e-4)
    close(S.layer_norm(jnp.asarray(X4), (9, 11)), F.layer_norm(t, (9, 11)), 1e-4)
    q, k, v = (RNG.standard_normal((2, 2, 5, 4)).astype(np.float32) for _ in range(3))
    mask = RNG.random((5, 5)) > 0.3
    mask[:, 0] = True
    for kw in ({"is_causal": True}, {"attn_mask": mask}):
        j = {k_: jnp.asarray(v_) if isinstance(v_, np.ndarray) else v_ for k_, v_ in kw.items()}
        tk = {k_: torch.from_numpy(v_) if isinstance(v_, np.ndarray) else v_ for k_, v_ in kw.items()}
        close(S.scaled_dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), **j),
              F.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), **tk))


def test_shape_ops():
    x = RNG.standard_normal((4, 6, 5)).astype(np.float32)
    t = torch.from_numpy(x)
    for got, want in zip(S.split(jnp.asarray(x), 4, 1), t.split(4, 1)):
        close(got, want)
    for got, want in zip(S.split(jnp.asarray(x), [1, 5], 1), t.split([1, 5], 1)):
        close(got, want)
    for got, want in zip(S.chunk(jnp.asarray(x), 4, 1), t.chunk(4, 1)):
        close(got, want)
    close(S.flatten(jnp.asarray(x), 1), t.flatten(1))
    close(S.squeeze(jnp.asarray(x[:, :1]), 1), t[:, :1].squeeze(1))
    assert S.squeeze(jnp.asarray(x), 1).shape == t.squeeze(1).shape
    close(S.expand(jnp.asarray(x[:1]), 3, -1, -1), t[:1].expand(3, -1, -1))
    close(S.torch_max(jnp.asarray(x), 1)[1], t.max(1)[1])
    close(S.torch_var(jnp.asarray(x), 1), t.var(1))


def test_multinomial_without_replacement_draws_distinct_indices():
    probs = jnp.asarray([[0.1, 0.2, 0.3, 0.4]] * 3)
    draws = S.multinomial(jax.random.key(0), probs, 4)
    assert draws.shape == (3, 4) and all(len(set(np.asarray(row).tolist())) == 4 for row in draws)
    assert S.multinomial(jax.random.key(0), probs, 5, replacement=True).shape == (3, 5)


def test_instance_norm_and_padding_layers():
    t = torch.from_numpy(X4)
    close(L.InstanceNorm2d(3)(jnp.asarray(X4)), torch.nn.InstanceNorm2d(3)(t), 1e-4)
    close(L.ReflectionPad2d((1, 2, 0, 1))(jnp.asarray(X4)), torch.nn.ReflectionPad2d((1, 2, 0, 1))(t))
    close(L.ZeroPad2d(2)(jnp.asarray(X4)), torch.nn.ZeroPad2d(2)(t))


def test_activation_and_pixel_shuffle_classes():
    """The classes that stand for `act_layer=nn.Hardtanh` and friends, with torch's constructor arguments."""
    from retarget.support import activations as A
    t = torch.from_numpy(X4)
    close(A.SELU()(jnp.asarray(X4)), torch.nn.SELU()(t))
    close(A.Hardtanh(-0.5, max_val=0.7)(jnp.asarray(X4)), torch.nn.Hardtanh(-0.5, max_val=0.7)(t))
    close(A.Hardtanh()(jnp.asarray(X4)), torch.nn.Hardtanh()(t))
    x = RNG.standard_normal((2, 8, 3, 5)).astype(np.float32)
    close(L.PixelShuffle(2)(jnp.asarray(x)), torch.nn.PixelShuffle(2)(torch.from_numpy(x)))
    close(L.PixelUnshuffle(2)(jnp.asarray(X4[:, :, :8, :10])), torch.nn.PixelUnshuffle(2)(t[:, :, :8, :10]))


def test_flat_draws_are_jaxs_own_values():
    """The layers' initialisers draw flat and reshape (XLA compiles that several times faster): under
    JAX's default partitionable threefry the values are exactly `jax.random.uniform(key, shape)`'s."""
    with jax.threefry_partitionable(True):
        key = jax.random.key(3)
        np.testing.assert_array_equal(L._flat_uniform(key, (8, 3, 5, 5), jnp.float32, -0.2, 0.2),
                                      jax.random.uniform(key, (8, 3, 5, 5), jnp.float32, -0.2, 0.2))


def test_an_empty_sequential_is_the_identity():
    """`nn.Sequential()` with no layers passes its input through (timm's GhostNet uses one as a shortcut)."""
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(L.NamedSequential()(x), x)
    assert len(L.NamedSequential()) == 0
