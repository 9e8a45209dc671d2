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
import math

import jax
import jax.numpy as jnp
from flax import nnx

from .functional import (_ntuple, adaptive_pool_nd, avg_pool_nd, conv_nd, conv_transpose_nd,
                         flatten, group_norm, instance_norm, interpolate, max_pool_nd, pad, unflatten)


class Buffer(nnx.Variable):
    """A persistent, non-trainable tensor (torch `register_buffer`)."""


def _uniform(rngs, shape, bound):
    return jax.random.uniform(rngs.params(), shape, minval=-bound, maxval=bound)


class _ConvNd(nnx.Module):
    ndim = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, rngs: nnx.Rngs):
        n = self.ndim
        self.kernel_size = _ntuple(kernel_size, n)
        self.stride, self.dilation, self.groups = _ntuple(stride, n), _ntuple(dilation, n), groups
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, n)
        self.padding_mode = padding_mode
        self.in_channels, self.out_channels = in_channels, out_channels
        bound = 1.0 / math.sqrt(in_channels // groups * math.prod(self.kernel_size))
        self.kernel = nnx.Param(_uniform(rngs, (out_channels, in_channels // groups) + self.kernel_size, bound))
        self.bias = nnx.Param(_uniform(rngs, (out_channels,), bound)) if bias else None

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

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, *, rngs: nnx.Rngs):
        n = self.ndim
        self.kernel_size = _ntuple(kernel_size, n)
        self.stride, self.padding, self.dilation = _ntuple(stride, n), _ntuple(padding, n), _ntuple(dilation, n)
        self.output_padding, self.groups = _ntuple(output_padding, n), groups
        bound = 1.0 / math.sqrt(out_channels // groups * math.prod(self.kernel_size))
        self.kernel = nnx.Param(_uniform(rngs, (in_channels, out_channels // groups) + self.kernel_size, bound))
        self.bias = nnx.Param(_uniform(rngs, (out_channels,), bound)) if bias else None

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
                 *, rngs: nnx.Rngs | None = None):
        self.eps, self.momentum, self.track_running_stats = eps, momentum, track_running_stats
        self.scale = nnx.Param(jnp.ones((num_features,))) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,))) if affine else None
        if track_running_stats:
            self.mean = nnx.BatchStat(jnp.zeros((num_features,)))
            self.var = nnx.BatchStat(jnp.ones((num_features,)))
            self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
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
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + self.eps)
        if self.scale is not None:
            y = y * self.scale[...].reshape(shape) + self.bias[...].reshape(shape)
        return y


class BatchNorm1d(_BatchNorm):
    pass


class BatchNorm2d(_BatchNorm):
    pass


class BatchNorm3d(_BatchNorm):
    pass


class GroupNorm(nnx.Module):
    """Group norm over axis 1 (channels-first input)."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, rngs: nnx.Rngs | None = None):
        self.num_groups, self.eps = num_groups, eps
        self.scale = nnx.Param(jnp.ones((num_channels,))) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_channels,))) if affine else None

    def __call__(self, x):
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        return group_norm(x, self.num_groups, scale, bias, self.eps)


class MultiheadAttention(nnx.Module):
    """torch.nn.MultiheadAttention: packed q/k/v projection, torch's mask conventions."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False, *, rngs: nnx.Rngs):
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        bound = math.sqrt(6.0 / (4 * embed_dim))
        self.in_proj_kernel = nnx.Param(_uniform(rngs, (embed_dim, 3 * embed_dim), bound))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * embed_dim,))) if bias else None
        self.out_proj = nnx.Linear(embed_dim, embed_dim, use_bias=bias, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def _project(self, x, index):
        e = self.embed_dim
        y = x @ self.in_proj_kernel[:, index * e:(index + 1) * e]
        if self.in_proj_bias is not None:
            y = y + self.in_proj_bias[index * e:(index + 1) * e]
        b, t, _ = y.shape
        return y.reshape(b, t, self.num_heads, -1).transpose(0, 2, 1, 3)

    def _masked_scores(self, scores, attn_mask, key_padding_mask):
        for mask, shape in ((attn_mask, None), (key_padding_mask, (scores.shape[0], 1, 1, -1))):
            if mask is None:
                continue
            if mask.ndim == 3:
                mask = mask.reshape(scores.shape)
            elif shape is not None:
                mask = mask.reshape(shape)
            scores = jnp.where(mask, -jnp.inf, scores) if mask.dtype == jnp.bool_ else scores + mask
        return scores

    def __call__(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                 average_attn_weights=True, is_causal=False):
        if not self.batch_first:
            query, key, value = (jnp.swapaxes(t, 0, 1) for t in (query, key, value))
        q, k, v = self._project(query, 0), self._project(key, 1), self._project(value, 2)
        scores = q @ jnp.swapaxes(k, -2, -1) / math.sqrt(q.shape[-1])
        weights = jax.nn.softmax(self._masked_scores(scores, attn_mask, key_padding_mask), axis=-1)
        out = (self.dropout(weights) @ v).transpose(0, 2, 1, 3).reshape(query.shape[:2] + (-1,))
        out = self.out_proj(out)
        if not self.batch_first:
            out = jnp.swapaxes(out, 0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(axis=1) if average_attn_weights else weights


class _RNNCellBase(nnx.Module):
    gates = 1

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, rngs: nnx.Rngs):
        self.hidden_size, self.nonlinearity = hidden_size, nonlinearity
        bound = 1.0 / math.sqrt(hidden_size)
        width = self.gates * hidden_size
        self.kernel_ih = nnx.Param(_uniform(rngs, (input_size, width), bound))
        self.kernel_hh = nnx.Param(_uniform(rngs, (hidden_size, width), bound))
        self.bias_ih = nnx.Param(_uniform(rngs, (width,), bound)) if bias else None
        self.bias_hh = nnx.Param(_uniform(rngs, (width,), bound)) if bias else None

    def _projections(self, x, h):
        xi, hh = x @ self.kernel_ih[...], h @ self.kernel_hh[...]
        if self.bias_ih is not None:
            xi, hh = xi + self.bias_ih[...], hh + self.bias_hh[...]
        return xi, hh

    def initial_state(self, batch_shape, dtype):
        return jnp.zeros(batch_shape + (self.hidden_size,), dtype)


class RNNCell(_RNNCellBase):
    def step(self, x, h):
        xi, hh = self._projections(x, h)
        return (jnp.tanh if self.nonlinearity == "tanh" else jax.nn.relu)(xi + hh)

    def __call__(self, input, hx=None):
        return self.step(input, self.initial_state(input.shape[:-1], input.dtype) if hx is None else hx)


class GRUCell(_RNNCellBase):
    gates = 3

    def step(self, x, h):
        xi, hh = self._projections(x, h)
        (xr, xz, xn), (hr, hz, hn) = jnp.split(xi, 3, axis=-1), jnp.split(hh, 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return (1 - z) * n + z * h

    def __call__(self, input, hx=None):
        return self.step(input, self.initial_state(input.shape[:-1], input.dtype) if hx is None else hx)


class LSTMCell(_RNNCellBase):
    gates = 4

    def step(self, x, state):
        h, c = state
        xi, hh = self._projections(x, h)
        i, f, g, o = jnp.split(xi + hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    def initial_state(self, batch_shape, dtype):
        zeros = jnp.zeros(batch_shape + (self.hidden_size,), dtype)
        return zeros, zeros

    def __call__(self, input, hx=None):
        return self.step(input, self.initial_state(input.shape[:-1], input.dtype) if hx is None else hx)


class _RNNBase(nnx.Module):
    """Multi-layer, optionally bidirectional recurrent layer with torch's I/O layout."""
    cell_type = RNNCell

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, nonlinearity="tanh", *, rngs: nnx.Rngs):
        self.num_layers, self.batch_first, self.bidirectional = num_layers, batch_first, bidirectional
        dirs = 2 if bidirectional else 1

        def cells():
            return nnx.List([self.cell_type(input_size if i == 0 else hidden_size * dirs, hidden_size, bias,
                                            nonlinearity, rngs=rngs) for i in range(num_layers)])
        self.forward_cells = cells()
        self.backward_cells = cells() if bidirectional else nnx.List([])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def _run(self, cell, x, state, reverse):
        def step(carry, xt):
            carry = cell.step(xt, carry)
            return carry, carry[0] if isinstance(carry, tuple) else carry

        final, ys = jax.lax.scan(step, state, jnp.swapaxes(jnp.flip(x, axis=1) if reverse else x, 0, 1))
        ys = jnp.swapaxes(ys, 0, 1)
        return (jnp.flip(ys, axis=1) if reverse else ys), final

    def _initial(self, hx, index, cell, x):
        if hx is None:
            return cell.initial_state(x.shape[:1], x.dtype)
        if isinstance(hx, tuple):
            return hx[0][index], hx[1][index]
        return hx[index]

    def __call__(self, input, hx=None):
        x = input if self.batch_first else jnp.swapaxes(input, 0, 1)
        finals = []
        for layer in range(self.num_layers):
            if layer > 0:
                x = self.dropout(x)
            cells = [self.forward_cells[layer]] + ([self.backward_cells[layer]] if self.bidirectional else [])
            outs = []
            for d, cell in enumerate(cells):
                y, final = self._run(cell, x, self._initial(hx, layer * len(cells) + d, cell, x), d == 1)
                outs.append(y)
                finals.append(final)
            x = jnp.concatenate(outs, axis=-1)
        out = x if self.batch_first else jnp.swapaxes(x, 0, 1)
        if isinstance(finals[0], tuple):
            return out, (jnp.stack([f[0] for f in finals]), jnp.stack([f[1] for f in finals]))
        return out, jnp.stack(finals)


class RNN(_RNNBase):
    cell_type = RNNCell


class GRU(_RNNBase):
    cell_type = GRUCell


class LSTM(_RNNBase):
    cell_type = LSTMCell


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


class _Activation(nnx.Module):
    """An activation as a class, for code that passes layer classes around (`act_layer=nn.ReLU`)."""

    def __init__(self, *args, inplace=False, rngs=None, **kwargs):
        self.args, self.kwargs = args, kwargs


class ReLU(_Activation):
    def __call__(self, x):
        return jax.nn.relu(x)


class ReLU6(_Activation):
    def __call__(self, x):
        return jax.nn.relu6(x)


class LeakyReLU(_Activation):
    def __call__(self, x):
        return jax.nn.leaky_relu(x, *self.args, **self.kwargs)


class ELU(_Activation):
    def __call__(self, x):
        return jax.nn.elu(x, *self.args, **self.kwargs)


class GELU(_Activation):
    def __call__(self, x):
        return jax.nn.gelu(x, approximate=self.kwargs.get("approximate", "none") == "tanh")


class SiLU(_Activation):
    def __call__(self, x):
        return jax.nn.silu(x)


class Mish(_Activation):
    def __call__(self, x):
        return jax.nn.mish(x)


class Sigmoid(_Activation):
    def __call__(self, x):
        return jax.nn.sigmoid(x)


class Tanh(_Activation):
    def __call__(self, x):
        return jnp.tanh(x)


class Hardswish(_Activation):
    def __call__(self, x):
        return jax.nn.hard_swish(x)


class Hardsigmoid(_Activation):
    def __call__(self, x):
        return jax.nn.hard_sigmoid(x)


class Softmax(_Activation):
    def __call__(self, x):
        return jax.nn.softmax(x, axis=self.kwargs.get("dim", self.args[0] if self.args else -1))


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


class AdaptiveMaxPool1d(_AdaptivePoolNd):
    ndim = 1
    reduce = staticmethod(jnp.max)


class AdaptiveMaxPool2d(_AdaptivePoolNd):
    ndim = 2
    reduce = staticmethod(jnp.max)


class Upsample(nnx.Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None, *, rngs=None):
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def __call__(self, x):
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)


class _InstanceNorm(nnx.Module):
    """Instance norm (channels-first) without running statistics, torch's default."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 *, rngs: nnx.Rngs | None = None):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((num_features,))) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,))) if affine else None

    def __call__(self, x):
        return instance_norm(x, None if self.scale is None else self.scale[...],
                             None if self.bias is None else self.bias[...], self.eps)


class InstanceNorm1d(_InstanceNorm):
    pass


class InstanceNorm2d(_InstanceNorm):
    pass


class _PadNd(nnx.Module):
    ndim, mode = 2, "constant"

    def __init__(self, padding, value=0.0, *, rngs=None):
        self.padding, self.value = _ntuple(padding, 2 * self.ndim), value

    def __call__(self, x):
        return pad(x, self.padding, mode=self.mode, value=self.value)


class ZeroPad2d(_PadNd):
    pass


class ReflectionPad1d(_PadNd):
    ndim, mode = 1, "reflect"


class ReflectionPad2d(_PadNd):
    mode = "reflect"


class ReplicationPad2d(_PadNd):
    mode = "replicate"
