"""PyTorch-semantics layers as Flax NNX modules.

Where Flax has a layer with the same meaning (Linear, Embed, LayerNorm,
Dropout) the rules use it directly. These classes cover the rest: layers
whose input is channels-first (a converted NCHW model still takes NCHW), and
layers whose state update differs from Flax's (BatchNorm's momentum and
unbiased running variance). Kernels keep torch's layout for convolutions
(`lax.conv_general_dilated`'s own default, OIHW) and Flax's (in, out) layout
for matrix products. Variable names follow Flax (`kernel`, `scale`, `mean`,
`var`); the rules say how each maps to the torch checkpoint.
"""
import functools
import inspect
import math
import threading
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from .functional import (MissingKey, _normalize, _ntuple, adaptive_pool_nd, alpha_dropout, avg_pool_nd, bilinear, conv_nd,
                         conv_transpose_nd, embedding_bag, flatten, group_norm, instance_norm, interpolate,
                         max_pool_nd, pad, pixel_shuffle, pixel_unshuffle, prelu, rrelu, unflatten)


class Buffer(nnx.Variable):
    """A persistent, non-trainable tensor (torch `register_buffer`)."""


_BUILDING = threading.local()  # the `rngs` of the layers whose constructors are running, innermost last


def default_rngs(init):
    """A layer constructor (or layer initialiser) whose `rngs` defaults to that of the layer being built
    around it.

    Code that picks layer classes at run time (a registry, a kwargs dict, a callable argument, as timm
    builds its blocks) calls them where no `rngs` is in reach; torch layers all draw from one global
    generator. Built inside another such constructor, the layer draws from its builder's `rngs`;
    built on its own, it needs `rngs=` as any Flax layer does. timm's `named_apply(init_weights, model)`
    calls an initialiser the same way.
    """
    required = inspect.signature(init).parameters["rngs"].default is inspect.Parameter.empty

    @functools.wraps(init)
    def build(*args, rngs=None, **kwargs):
        stack = _BUILDING.__dict__.setdefault("stack", [])
        if rngs is None and stack:
            rngs = stack[-1]
        if rngs is None and required:
            name = init.__qualname__.removesuffix(".__init__")
            if init.__name__ != "__init__":  # a function drawing at run time (dropout): fails only if it draws
                return init(*args, rngs=NoRngs(name), **kwargs)
            raise TypeError(f"{name}(...) needs rngs=nnx.Rngs(seed): it is called outside any layer "
                            f"constructor that could lend it one")
        stack.append(rngs)
        try:
            return init(*args, rngs=rngs, **kwargs)
        finally:
            stack.pop()
    return build


class NoRngs:
    """What a function that draws random numbers gets when called without `rngs` outside any layer
    constructor (transformers' attention functions, called through a registry): its keys are
    `MissingKey`s, so dropout that is off (eval, p=0) runs and one that is on says what to pass."""

    def __init__(self, name):
        self.name = name

    def __call__(self):
        return MissingKey(self.name)

    def __getattr__(self, stream):  # `rngs.params()`: building layers needs real ones
        raise TypeError(f"{self.name}(...) needs rngs=nnx.Rngs(seed): it is called outside any layer "
                        f"constructor that could lend it one")


def building_rngs():
    """The `rngs` of the innermost layer constructor running (see `default_rngs`)."""
    stack = _BUILDING.__dict__.get("stack") or [None]
    if stack[-1] is None:
        raise TypeError("no layer is being built here to draw from: pass rngs=nnx.Rngs(seed)")
    return stack[-1]


def _uniform(rngs, shape, bound):
    return _flat_uniform(rngs.params(), shape, jnp.float32, -bound, bound)


def _flat_uniform(key, shape, dtype, low, high):
    """`jax.random.uniform(key, shape, ...)`, the same values, drawn flat and reshaped: XLA on CPU
    compiles a flat draw several times faster than a 4-d one, once per distinct size."""
    return jax.random.uniform(key, (math.prod(shape),), dtype, low, high).reshape(shape)


def cast_parameters(module, dtype):
    """torch's `dtype=` on a layer: its parameters are created in that dtype (device= means nothing here)."""
    if dtype is not None:
        for value in vars(module).values():
            if isinstance(value, nnx.Param):
                value.set_value(value[...].astype(dtype))
    return module


# torch's default weight of nn.Linear: kaiming_uniform(a=sqrt(5)), i.e. uniform in +-1/sqrt(fan_in)
torch_kernel_init = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def torch_bias_init(fan_in):
    """torch's default bias of nn.Linear (fan_in = in_features): uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return _flat_uniform(key, shape, dtype, -bound, bound)
    return init


def _torch_linear(in_features, out_features, bias, rngs, bias_init=None):
    """nnx.Linear initialised as torch's nn.Linear: weight and bias uniform in +-1/sqrt(in_features)."""
    return nnx.Linear(in_features, out_features, use_bias=bias, kernel_init=torch_kernel_init,
                      bias_init=bias_init or torch_bias_init(in_features), rngs=rngs)


class _ConvNd(nnx.Module):
    ndim = 2

    @default_rngs
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *, rngs: nnx.Rngs):
        n = self.ndim
        self.kernel_size = _ntuple(kernel_size, n)
        self.stride, self.dilation, self.groups = _ntuple(stride, n), _ntuple(dilation, n), groups
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, n)
        self.padding_mode = padding_mode
        self.in_channels, self.out_channels = in_channels, out_channels
        bound = 1.0 / math.sqrt(in_channels // groups * math.prod(self.kernel_size))
        self.kernel = nnx.Param(_uniform(rngs, (out_channels, in_channels // groups) + self.kernel_size, bound))
        self.bias = nnx.Param(_uniform(rngs, (out_channels,), bound)) if bias else None
        cast_parameters(self, dtype)

    def reset_parameters(self, rngs=None):
        """torch's initialisation again (subclasses call `super().reset_parameters()`), drawn from `rngs`
        or, without one, from the layer being built."""
        rngs = rngs or building_rngs()
        bound = 1.0 / math.sqrt(math.prod(self.kernel.shape[1:]))
        self.kernel[...] = _uniform(rngs, self.kernel.shape, bound).astype(self.kernel.dtype)
        if self.bias is not None:
            self.bias[...] = _uniform(rngs, self.bias.shape, bound).astype(self.bias.dtype)

    def _explicit_padding(self):
        """(low, high) per spatial dim; 'same' splits the total like torch (extra on the high side)."""
        if self.padding == "valid":
            return [(0, 0)] * self.ndim
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            return [(t // 2, t - t // 2) for t in totals]
        return [(p, p) for p in self.padding]

    def __call__(self, x):
        padding = self.padding
        if self.padding_mode != "zeros":
            pairs = self._explicit_padding()
            x = pad(x, [v for pair in pairs[::-1] for v in pair], mode=self.padding_mode)
            padding = 0
        return conv_nd(x, self.kernel[...], None if self.bias is None else self.bias[...],
                       self.stride, padding, self.dilation, self.groups)


class Conv1d(_ConvNd):
    ndim = 1


class Conv2d(_ConvNd):
    ndim = 2


class Conv3d(_ConvNd):
    ndim = 3


class _ConvTransposeNd(nnx.Module):
    ndim = 2

    @default_rngs
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, *, rngs: nnx.Rngs):
        n = self.ndim
        self.kernel_size = _ntuple(kernel_size, n)
        self.stride, self.padding, self.dilation = _ntuple(stride, n), _ntuple(padding, n), _ntuple(dilation, n)
        self.output_padding, self.groups = _ntuple(output_padding, n), groups
        bound = 1.0 / math.sqrt(out_channels // groups * math.prod(self.kernel_size))
        self.kernel = nnx.Param(_uniform(rngs, (in_channels, out_channels // groups) + self.kernel_size, bound))
        self.bias = nnx.Param(_uniform(rngs, (out_channels,), bound)) if bias else None
        cast_parameters(self, dtype)

    def __call__(self, x):
        return conv_transpose_nd(x, self.kernel[...], None if self.bias is None else self.bias[...],
                                 self.stride, self.padding, self.output_padding, self.groups, self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    ndim = 1


class ConvTranspose2d(_ConvTransposeNd):
    ndim = 2


class ConvTranspose3d(_ConvTransposeNd):
    ndim = 3


class _BatchNorm(nnx.Module):
    """Batch norm over axis 1 with torch's running-statistics update.

    Running variance uses the unbiased batch variance and `momentum` weights
    the new value (Flax's BatchNorm does neither), so the statistics after
    each training step equal PyTorch's.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, rngs: nnx.Rngs | None = None):
        self.eps, self.momentum, self.track_running_stats = eps, momentum, track_running_stats
        self.scale = nnx.Param(jnp.ones((num_features,), dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype)) if affine else None
        if track_running_stats:
            self.mean = nnx.BatchStat(jnp.zeros((num_features,)))
            self.var = nnx.BatchStat(jnp.ones((num_features,)))
            self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        else:  # torch's buffers are None then (subclasses test `self.running_mean is None`)
            self.mean = self.var = self.num_batches_tracked = None
        self.use_running_average = False

    def _batch_statistics(self, x, axes):
        mean, var = x.mean(axis=axes), jnp.var(x, axis=axes)
        if self.track_running_stats and not self.use_running_average:
            count = x.size // x.shape[1]
            self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
            factor = 1.0 / self.num_batches_tracked[...] if self.momentum is None else self.momentum
            unbiased = var * count / max(count - 1, 1)
            self.mean[...] = (1 - factor) * self.mean[...] + factor * jax.lax.stop_gradient(mean)
            self.var[...] = (1 - factor) * self.var[...] + factor * jax.lax.stop_gradient(unbiased)
        return mean, var

    def __call__(self, x):
        axes = (0,) + tuple(range(2, x.ndim))
        if self.use_running_average and self.track_running_stats:
            mean, var = self.mean[...], self.var[...]
        else:
            mean, var = self._batch_statistics(x, axes)
        weight, bias = (None, None) if self.scale is None else (self.scale[...], self.bias[...])
        return _normalize(x, mean, var, weight, bias, self.eps)


class BatchNorm1d(_BatchNorm):
    pass


class BatchNorm2d(_BatchNorm):
    pass


class BatchNorm3d(_BatchNorm):
    pass


class SyncBatchNorm(_BatchNorm):
    """torch.nn.SyncBatchNorm on one process: batch norm over axis 1 of any rank."""


class GroupNorm(nnx.Module):
    """Group norm over axis 1 (channels-first input)."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *,
                 rngs: nnx.Rngs | None = None):
        self.num_groups, self.eps = num_groups, eps
        self.scale = nnx.Param(jnp.ones((num_channels,), dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_channels,), dtype)) if affine else None

    def __call__(self, x):
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        return group_norm(x, self.num_groups, scale, bias, self.eps)


class RMSNorm(nnx.Module):
    """torch.nn.RMSNorm over the trailing `normalized_shape` dims (eps None: the dtype's epsilon)."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, *, rngs: nnx.Rngs | None = None):
        self.normalized_shape = tuple(_ntuple(normalized_shape, 1))
        self.eps = eps
        self.scale = nnx.Param(jnp.ones(self.normalized_shape)) if elementwise_affine else None

    def __call__(self, x):
        return rms_norm(x, self.normalized_shape, None if self.scale is None else self.scale[...], self.eps)


class Bilinear(nnx.Module):
    """torch.nn.Bilinear: y = x1^T A x2 + b, the kernel in torch's (out, in1, in2) layout."""

    @default_rngs
    def __init__(self, in1_features, in2_features, out_features, bias=True, *, rngs: nnx.Rngs):
        bound = 1.0 / math.sqrt(in1_features)
        self.kernel = nnx.Param(_uniform(rngs, (out_features, in1_features, in2_features), bound))
        self.bias = nnx.Param(_uniform(rngs, (out_features,), bound)) if bias else None

    def __call__(self, x1, x2):
        return bilinear(x1, x2, self.kernel[...], None if self.bias is None else self.bias[...])


class PReLU(nnx.Module):
    """torch.nn.PReLU: a learned negative slope, one per channel or one for all."""

    def __init__(self, num_parameters=1, init=0.25, *, rngs: nnx.Rngs | None = None):
        self.negative_slope = nnx.Param(jnp.full((num_parameters,), init, jnp.float32))

    def __call__(self, x):
        return prelu(x, self.negative_slope[...])


class RReLU(nnx.Module):
    """torch.nn.RReLU: random negative slopes in [lower, upper] in training (keys from `rngs`), their mean in eval."""

    @default_rngs
    def __init__(self, lower=1.0 / 8, upper=1.0 / 3, inplace=False, *, rngs: nnx.Rngs | None = None):
        self.lower, self.upper, self.rngs = lower, upper, rngs
        self.deterministic = False

    def __call__(self, x):
        training = not self.deterministic
        return rrelu(x, self.lower, self.upper, training, self.rngs() if training else None)


class AlphaDropout(nnx.Module):
    """torch.nn.AlphaDropout (FeatureAlphaDropout: whole channels), keys from `rngs` in training."""
    feature = False

    @default_rngs
    def __init__(self, p=0.5, inplace=False, *, rngs: nnx.Rngs | None = None):
        self.p, self.rngs = p, rngs
        self.deterministic = False

    def __call__(self, x):
        training = not self.deterministic
        return alpha_dropout(x, self.p, training, self.rngs() if training else None, self.feature)


class FeatureAlphaDropout(AlphaDropout):
    feature = True


class EmbeddingBag(nnx.Module):
    """torch.nn.EmbeddingBag: the table as `embedding` (as nnx.Embed), bags reduced by `embedding_bag`."""

    @default_rngs
    def __init__(self, num_embeddings, embedding_dim, mode="mean", include_last_offset=False, padding_idx=None,
                 *, rngs: nnx.Rngs):
        table = jax.random.normal(rngs.params(), (num_embeddings, embedding_dim))
        self.embedding = nnx.Param(table if padding_idx is None else table.at[padding_idx].set(0.0))
        self.mode, self.include_last_offset, self.padding_idx = mode, include_last_offset, padding_idx

    def __call__(self, input, offsets=None, per_sample_weights=None):
        return embedding_bag(input, self.embedding[...], offsets, self.mode, per_sample_weights,
                             self.include_last_offset, self.padding_idx)


class TiedLinear(nnx.Module):
    """A Linear layer whose weight is an Embed table (torch weight tying)."""

    def __init__(self, embed, bias=None):
        self.embed, self.bias = embed, bias

    def __call__(self, x):
        y = self.embed.attend(x)
        return y if self.bias is None else y + self.bias[...]


class Identity(nnx.Module):
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, x, *args, **kwargs):
        return x


class Flatten(nnx.Module):
    def __init__(self, start_dim=1, end_dim=-1, *, rngs=None):
        self.start_dim, self.end_dim = start_dim, end_dim

    def __call__(self, x):
        return flatten(x, self.start_dim, self.end_dim)


class Unflatten(nnx.Module):
    def __init__(self, dim, unflattened_size, *, rngs=None):
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def __call__(self, x):
        return unflatten(x, self.dim, self.unflattened_size)


class _PoolNd(nnx.Module):
    ndim = 2

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 count_include_pad=True, *, rngs=None):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode, self.count_include_pad = dilation, ceil_mode, count_include_pad


class _MaxPoolNd(_PoolNd):
    def __call__(self, x):
        return max_pool_nd(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                           n=self.ndim)


class _AvgPoolNd(_PoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *,
                 rngs=None):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, count_include_pad)

    def __call__(self, x):
        return avg_pool_nd(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                           self.count_include_pad, n=self.ndim)


class MaxPool1d(_MaxPoolNd):
    ndim = 1


class MaxPool2d(_MaxPoolNd):
    ndim = 2


class MaxPool3d(_MaxPoolNd):
    ndim = 3


class AvgPool1d(_AvgPoolNd):
    ndim = 1


class AvgPool2d(_AvgPoolNd):
    ndim = 2


class AvgPool3d(_AvgPoolNd):
    ndim = 3


class _AdaptivePoolNd(nnx.Module):
    ndim = 2
    reduce = staticmethod(jnp.mean)

    def __init__(self, output_size, *, rngs=None):
        self.output_size = output_size

    def __call__(self, x):
        return adaptive_pool_nd(x, self.output_size, self.reduce, n=self.ndim)


class AdaptiveAvgPool1d(_AdaptivePoolNd):
    ndim = 1


class AdaptiveAvgPool2d(_AdaptivePoolNd):
    ndim = 2


class AdaptiveAvgPool3d(_AdaptivePoolNd):
    ndim = 3


class AdaptiveMaxPool1d(_AdaptivePoolNd):
    ndim = 1
    reduce = staticmethod(jnp.max)


class AdaptiveMaxPool2d(_AdaptivePoolNd):
    ndim = 2
    reduce = staticmethod(jnp.max)


class AdaptiveMaxPool3d(_AdaptivePoolNd):
    ndim = 3
    reduce = staticmethod(jnp.max)


class Upsample(nnx.Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None, *, rngs=None):
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def __call__(self, x):
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)


class PixelShuffle(nnx.Module):
    def __init__(self, upscale_factor, *, rngs=None):
        self.upscale_factor = upscale_factor

    def __call__(self, x):
        return pixel_shuffle(x, self.upscale_factor)


class PixelUnshuffle(nnx.Module):
    def __init__(self, downscale_factor, *, rngs=None):
        self.downscale_factor = downscale_factor

    def __call__(self, x):
        return pixel_unshuffle(x, self.downscale_factor)


class _InstanceNorm(nnx.Module):
    """Instance norm (channels-first) without running statistics, torch's default."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 device=None, dtype=None, *, rngs: nnx.Rngs | None = None):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((num_features,), dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype)) if affine else None

    def __call__(self, x):
        return instance_norm(x, None if self.scale is None else self.scale[...],
                             None if self.bias is None else self.bias[...], self.eps)


class InstanceNorm1d(_InstanceNorm):
    pass


class InstanceNorm2d(_InstanceNorm):
    pass


class InstanceNorm3d(_InstanceNorm):
    pass


class _PadNd(nnx.Module):
    ndim, mode = 2, "constant"

    def __init__(self, padding, value=0.0, *, rngs=None):
        self.padding, self.value = _ntuple(padding, 2 * self.ndim), value

    def __call__(self, x):
        return pad(x, self.padding, mode=self.mode, value=self.value)


class ZeroPad2d(_PadNd):
    pass


class ZeroPad1d(_PadNd):
    ndim = 1


class ZeroPad3d(_PadNd):
    ndim = 3


class ReflectionPad1d(_PadNd):
    ndim, mode = 1, "reflect"


class ReflectionPad2d(_PadNd):
    mode = "reflect"


class ReflectionPad3d(_PadNd):
    ndim, mode = 3, "reflect"


class ReplicationPad1d(_PadNd):
    ndim, mode = 1, "replicate"


class ReplicationPad2d(_PadNd):
    mode = "replicate"


class Sequential(nnx.Sequential):
    """nn.Sequential of positional layers: nnx.Sequential that, as torch's, iterates over its layers,
    has a length and is indexed and sliced (`enumerate(backbone)`, `features[:4]`)."""

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*list(self.layers)[index])
        return self.layers[index]


def named_children(module):
    """Module.named_children: direct submodules in the order they were assigned (nnx.iter_children
    sorts them by name; torchvision's IntermediateLayerGetter stops at the last layer it needs)."""
    if isinstance(module, nnx.Sequential):  # torch names a Sequential's children "0", "1", ...
        return [(str(i), layer) for i, layer in enumerate(module.layers) if _is_layer(layer)]
    order = getattr(module, "_key_order", None) or getattr(module, "_layer_order", None) or list(vars(module))
    children = [(name, getattr(module, name, None)) for name in order if not str(name).startswith("_")]
    return [(str(name), child) for name, child in children if _is_layer(child)]


def _is_layer(value):
    """A child layer: a Flax module, or a JAX function standing for a torch layer without parameters
    (`nn.ReLU()` converts to `jax.nn.relu`; ResNet's `relu` is a child torch's getters run in turn)."""
    if isinstance(value, partial):
        value = value.func
    return isinstance(value, nnx.Module) or (callable(value) and not isinstance(value, type) and (
        getattr(value, "__module__", None) or "").startswith(("jax.", "jax._src")))


def named_modules(module, prefix="", seen=None):
    """Module.named_modules: the module itself (as `prefix`), then its submodules depth first, each once."""
    seen = set() if seen is None else seen
    if id(module) in seen:
        return []
    seen.add(id(module))
    found = [(prefix, module)]
    for name, child in named_children(module):
        found += named_modules(child, f"{prefix}.{name}" if prefix else name, seen)
    return found


class ModuleDict(nnx.Dict):
    """nn.ModuleDict: iterates in insertion order, as torch does (the order is recorded: a merged
    NNX graph, e.g. inside nnx.jit, lists attributes sorted, and "layer10" < "layer2")."""

    def __setattr__(self, name, value):
        order = getattr(self, "_key_order", ())
        if not name.startswith("_") and name not in order and callable(value):
            super().__setattr__("_key_order", order + (name,))  # other attributes are not entries, as in torch
        super().__setattr__(name, value)

    def __delattr__(self, name):
        super().__delattr__(name)
        super().__setattr__("_key_order", tuple(k for k in self._key_order if k != name))

    def __iter__(self):
        return iter(getattr(self, "_key_order", ()))


class ReplicationPad3d(_PadNd):
    ndim, mode = 3, "replicate"


class CircularPad1d(_PadNd):
    ndim, mode = 1, "circular"


class CircularPad2d(_PadNd):
    mode = "circular"


class CircularPad3d(_PadNd):
    ndim, mode = 3, "circular"


def torch_add_module(container, name, module):
    """`container.add_module(name, module)`: a child by name; on a list of layers (`nn.ModuleList`),
    appended, as its next index names it (`add_module(str(i), stage)`)."""
    if isinstance(container, nnx.List):
        if str(name) != str(len(container)):
            raise ValueError(f"add_module({name!r}) on a list of {len(container)} layers: only the next index appends")
        container.append(module)
    else:
        setattr(container, name, module)


class NamedSequential(nnx.Module):
    """nn.Sequential whose children keep torch's names (so checkpoint keys match): built from an
    OrderedDict, from positional layers ("0", "1", ...), or grown by add_module / attribute
    assignment in a subclass. Children run in the order they were added (recorded, since
    Flax may rebuild the module with its attributes in another order)."""

    def __init__(self, *layers, rngs: nnx.Rngs | None = None):  # `rngs`: a subclass's builders pass it
        super().__setattr__("_layer_order", ())  # empty: the identity, as torch's `nn.Sequential()`
        named = layers[0] if len(layers) == 1 and isinstance(layers[0], dict) else dict(
            (str(i), layer) for i, layer in enumerate(layers))
        for name, layer in named.items():
            setattr(self, name, layer)

    def __setattr__(self, name, value):
        order = getattr(self, "_layer_order", ())
        if not name.startswith("_") and callable(value) and name not in order:
            super().__setattr__("_layer_order", order + (name,))
        super().__setattr__(name, value)

    def __call__(self, x):
        for name in self._layer_order:
            x = getattr(self, name)(x)
        return x

    def __iter__(self):  # `for mod in self:` in a subclass's forward (torchvision's ASPPPooling)
        return iter([getattr(self, name) for name in self._layer_order])

    def __len__(self):
        return len(self._layer_order)

    def __getitem__(self, index):
        layers = [getattr(self, name) for name in self._layer_order]
        return NamedSequential(*layers[index]) if isinstance(index, slice) else layers[index]


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """torch.nn.functional.rms_norm over the trailing `normalized_shape` dims; `eps=None` is the
    dtype's machine epsilon, as in torch."""
    shape = tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    eps = jnp.finfo(x.dtype).eps if eps is None else eps
    y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + eps)
    return y if weight is None else y * weight


def train_mode(module, mode=True):
    """Module.train(mode) / .eval() used as a value: the mode switched in place, the module returned (as torch)."""
    if mode:
        module.train()
    else:
        module.eval()
    return module


def tensor_to(x, target):
    """Tensor.to(target) where only the running program knows what `target` is: a dtype casts, a tensor
    casts to its dtype, a device (or a device string) leaves `x` as it is."""
    if target is None or isinstance(target, str):
        return x
    if hasattr(target, "shape") and hasattr(target, "dtype"):
        return x.astype(target.dtype)
    try:
        return x.astype(jnp.dtype(target))
    except TypeError:  # a device
        return x


class FrozenParam(Buffer):
    """A parameter `requires_grad_(False)` froze: in the state and checkpoints, not trained."""


def requires_grad_(module, requires_grad=True):
    """torch's `module.requires_grad_(flag)`: with False its parameters become `FrozenParam`s, which
    `nnx.grad` and `nnx.Optimizer` (both over `nnx.Param`) leave alone; True makes them parameters again."""
    source, target = (FrozenParam, nnx.Param) if requires_grad else (nnx.Param, FrozenParam)
    for _, layer in nnx.iter_modules(module):
        for name, value in list(vars(layer).items()):
            if type(value) is source:
                setattr(layer, name, target(value.get_value()))
    return module


def cast_module(module, dtype):
    """Module.to(dtype) / .double() / .half() / ...: the floating parameters and buffers cast in place; the
    module is returned, as torch does. float64 needs 64-bit JAX (without it JAX would keep float32)."""
    if dtype is None:  # `model.to(dtype=None)`
        return module
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("casting a model to float64 needs 64-bit JAX: call "
                         "jax.config.update('jax_enable_x64', True) at start-up (JAX would keep float32)")
    cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
    nnx.update(module, jax.tree.map(cast, nnx.state(module, nnx.Not(nnx.RngState))))
    return module
