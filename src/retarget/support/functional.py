"""PyTorch-semantics functions written in plain JAX.

Generated code calls these where no `jax`/`jnp` function has the same meaning
(channels-first pooling, torch's padding order, `interpolate`, ...). The
converter copies each function that a converted file uses, with the helpers it
calls, into that file, so converted code never imports retarget.
"""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


def _ntuple(value, n):
    """Expand an int to an n-tuple, as torch layer arguments do."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def meshgrid(*tensors, indexing="ij"):
    """torch.meshgrid: tensors as arguments or as one list; torch's default indexing is 'ij'."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tensors[0]
    return tuple(jnp.meshgrid(*tensors, indexing=indexing))


def div(input, other, rounding_mode=None):
    """torch.div: true division, or its quotient rounded toward -inf ('floor') or toward zero ('trunc'),
    integers staying integers when rounded, as in torch."""
    if rounding_mode is None:
        return jnp.true_divide(input, other)
    if rounding_mode == "floor":
        return jnp.floor_divide(input, other)
    dtype = jnp.result_type(input, other)
    quotient = jnp.trunc(jnp.true_divide(input, other))
    return quotient.astype(dtype) if jnp.issubdtype(dtype, jnp.integer) else quotient


def conv_nd(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv{1,2,3}d: channels-first input, OI... kernel."""
    weight = jnp.asarray(weight)  # a Flax variable passed straight in (`F.conv2d(x, self.weight)`)
    n = weight.ndim - 2
    if isinstance(padding, str):
        pad = padding.upper()
    else:
        pad = [(p, p) for p in _ntuple(padding, n)]
    y = jax.lax.conv_general_dilated(
        x, weight, window_strides=_ntuple(stride, n), padding=pad,
        rhs_dilation=_ntuple(dilation, n), feature_group_count=groups)
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * n)
    return y


def conv_transpose_nd(x, weight, bias=None, stride=1, padding=0,
                      output_padding=0, groups=1, dilation=1):
    """torch.nn.functional.conv_transpose{1,2,3}d with torch's (in, out/groups, ...) kernel."""
    weight = jnp.asarray(weight)
    n = weight.ndim - 2
    c_in, c_out_g = weight.shape[:2]
    kernel = weight.reshape((groups, c_in // groups, c_out_g) + weight.shape[2:])
    kernel = jnp.swapaxes(kernel, 1, 2).reshape((groups * c_out_g, c_in // groups) + weight.shape[2:])
    kernel = jnp.flip(kernel, axis=tuple(range(2, n + 2)))
    dil, pad, out_pad = _ntuple(dilation, n), _ntuple(padding, n), _ntuple(output_padding, n)
    pads = [(d * (k - 1) - p, d * (k - 1) - p + o)
            for d, k, p, o in zip(dil, weight.shape[2:], pad, out_pad)]
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1,) * n, padding=pads, lhs_dilation=_ntuple(stride, n),
        rhs_dilation=dil, feature_group_count=groups)
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * n)
    return y


def im2col(x, kernel_size, dilation=1, padding=0, stride=1):
    """torch.nn.functional.unfold: (N, C, *spatial) -> (N, C * prod(kernel_size), L) sliding blocks."""
    n = x.ndim - 2
    patches = jax.lax.conv_general_dilated_patches(
        x, _ntuple(kernel_size, n), _ntuple(stride, n), [(p, p) for p in _ntuple(padding, n)],
        rhs_dilation=_ntuple(dilation, n))
    return patches.reshape(patches.shape[:2] + (-1,))


def col2im(x, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """torch.nn.functional.fold: sums the blocks of `im2col` back into place (its transpose)."""
    size = _ntuple(output_size, 2)
    channels = x.shape[1] // math.prod(_ntuple(kernel_size, len(size)))
    image = jax.ShapeDtypeStruct((x.shape[0], channels) + size, x.dtype)
    unfold = lambda y: im2col(y, kernel_size, dilation, padding, stride)  # noqa: E731
    return jax.linear_transpose(unfold, image)(x)[0]


def _pool_padding(size, kernel, stride, pad, ceil_mode):
    """Low/high padding of one spatial dim, with torch's ceil_mode rule."""
    out = (size + 2 * pad - kernel) / stride + 1
    out = math.ceil(out) if ceil_mode else math.floor(out)
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return (pad, max((out - 1) * stride + kernel - size - pad, pad))


def max_pool_nd(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, n=2):
    """torch.nn.functional.max_pool{1,2,3}d on channels-first input."""
    k, p = _ntuple(kernel_size, n), _ntuple(padding, n)
    s = _ntuple(stride if stride is not None else kernel_size, n)
    pads = [_pool_padding(x.shape[2 + i], (k[i] - 1) * _ntuple(dilation, n)[i] + 1, s[i], p[i], ceil_mode)
            for i in range(n)]
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 1) + k, (1, 1) + s, [(0, 0), (0, 0)] + pads,
        window_dilation=(1, 1) + _ntuple(dilation, n))


def avg_pool_nd(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None, n=2):
    """torch.nn.functional.avg_pool{1,2,3}d on channels-first input."""
    k, p = _ntuple(kernel_size, n), _ntuple(padding, n)
    s = _ntuple(stride if stride is not None else kernel_size, n)
    pads = [(0, 0), (0, 0)] + [_pool_padding(x.shape[2 + i], k[i], s[i], p[i], ceil_mode) for i in range(n)]
    window, strides = (1, 1) + k, (1, 1) + s
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    if divisor_override:
        return total / divisor_override
    if count_include_pad:
        # torch counts explicit padding but never the extra ceil_mode overhang
        ones = jnp.ones(tuple(x.shape[2 + i] + 2 * p[i] for i in range(n)), x.dtype)
        overhang = [(0, 0), (0, 0)] + [(0, hi - pi) for (_, hi), pi in zip(pads[2:], p)]
        counts = jax.lax.reduce_window(ones[None, None], 0.0, jax.lax.add, window, strides, overhang)
    else:
        counts = jax.lax.reduce_window(jnp.ones((1, 1) + x.shape[2:], x.dtype), 0.0, jax.lax.add,
                                       window, strides, pads)
    return total / counts


def _adaptive_bounds(size, out):
    """Start/end indices of each adaptive-pooling window (torch's formula)."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_pool_nd(x, output_size, reduce=jnp.mean, n=2):
    """torch adaptive_{avg,max}_pool{1,2,3}d on channels-first input."""
    out = [x.shape[2 + i] if o is None else o for i, o in enumerate(_ntuple(output_size, n))]
    for i in range(n):
        axis = 2 + i
        pieces = [reduce(jax.lax.slice_in_dim(x, a, b, axis=axis), axis=axis, keepdims=True)
                  for a, b in _adaptive_bounds(x.shape[axis], out[i])]
        x = jnp.concatenate(pieces, axis=axis)
    return x


def lp_pool_nd(x, norm_type, kernel_size, stride=None, ceil_mode=False, n=2):
    """torch.nn.functional.lp_pool{1,2,3}d: the p-norm of each window (torch's formula, via avg pooling)."""
    out = avg_pool_nd(x ** norm_type, kernel_size, stride, 0, ceil_mode, n=n)
    size = math.prod(_ntuple(kernel_size, n))
    return (jnp.sign(out) * jax.nn.relu(jnp.abs(out)) * size) ** (1.0 / norm_type)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """torch.nn.functional.local_response_norm: across channels (axis 1), zero-padded windows of `size`."""
    squares = jnp.pad(jnp.square(x), [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
    window = (1, size) + (1,) * (x.ndim - 2)
    div = jax.lax.reduce_window(squares, 0.0, jax.lax.add, window, (1,) * x.ndim, "VALID") / size
    return x / (div * alpha + k) ** beta


def channel_shuffle(x, groups):
    """torch.nn.functional.channel_shuffle: (N, g * c, ...) -> channels interleaved across the g groups."""
    shape = x.shape
    x = x.reshape((shape[0], groups, shape[1] // groups) + shape[2:])
    return jnp.swapaxes(x, 1, 2).reshape(shape)


def _interp_coords(in_size, out_size, scale, align_corners, mode):
    """Source coordinates of each output position along one axis (torch's, per mode)."""
    i = jnp.arange(out_size, dtype=jnp.float32)
    ratio = (1.0 / scale) if scale else in_size / out_size
    if mode == "nearest":
        return jnp.minimum(jnp.floor(i * ratio), in_size - 1).astype(jnp.int32)
    if mode == "nearest-exact":
        return jnp.minimum(jnp.floor((i + 0.5) * ratio), in_size - 1).astype(jnp.int32)
    if align_corners:
        return i * ((in_size - 1) / (out_size - 1)) if out_size > 1 else i * 0.0
    real = (i + 0.5) * ratio - 0.5
    return real if mode == "bicubic" else jnp.maximum(real, 0.0)  # torch clamps at 0 except for cubic


def _cubic_weights(t, a=-0.75):
    """torch's cubic convolution coefficients (A = -0.75) for taps at -1, 0, 1, 2 from the floor."""
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return far(t + 1), near(t), near(1 - t), far(2 - t)


def _interp_axis(x, coords, axis, in_size, mode):
    """`x` resampled along `axis` at `coords` (indices for nearest modes, fractional otherwise)."""
    if mode in ("nearest", "nearest-exact"):
        return jnp.take(x, coords, axis=axis)
    lo = jnp.floor(coords).astype(jnp.int32)
    t = (coords - lo).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    if mode == "bicubic":  # four taps, indices clamped to the border as torch does
        taps = [jnp.take(x, jnp.clip(lo + k, 0, in_size - 1), axis=axis) for k in (-1, 0, 1, 2)]
        return sum(w * tap for w, tap in zip(_cubic_weights(t), taps))
    hi = jnp.minimum(lo + 1, in_size - 1)
    return jnp.take(x, lo, axis=axis) * (1 - t) + jnp.take(x, hi, axis=axis) * t


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """torch.nn.functional.interpolate: nearest, nearest-exact, (bi/tri)linear and bicubic modes."""
    if mode not in ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic"):
        raise NotImplementedError(f"interpolate mode {mode!r} is not supported by this helper")
    n = x.ndim - 2
    scales = _ntuple(scale_factor, n) if scale_factor is not None else (None,) * n
    sizes = _ntuple(size, n) if size is not None else tuple(
        int(math.floor(x.shape[2 + i] * scales[i])) for i in range(n))
    for i in range(n):
        coords = _interp_coords(x.shape[2 + i], sizes[i], scales[i], align_corners, mode)
        x = _interp_axis(x, coords, 2 + i, x.shape[2 + i], mode)
    return x


def _base_coords(n, align_corners):
    """Normalized coordinates of n pixels in [-1, 1] (their corners, or their centres)."""
    coords = jnp.linspace(-1.0, 1.0, n) if n > 1 else jnp.zeros((n,))
    return coords if align_corners else coords * (n - 1) / n


def affine_grid(theta, size, align_corners=None):
    """torch.nn.functional.affine_grid: (N, *spatial, ndim) sampling points, (x, y[, z]) order."""
    mesh = jnp.meshgrid(*(_base_coords(n, align_corners) for n in size[2:]), indexing="ij")
    base = jnp.stack([*mesh[::-1], jnp.ones_like(mesh[0])], axis=-1)
    return jnp.einsum("...k,njk->n...j", base, theta)


def _reflect(x, twice_low, twice_high):
    """torch's reflect_coordinates: fold x back into [low, high]."""
    if twice_low == twice_high:
        return jnp.zeros_like(x)
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    x = jnp.abs(x - low)
    extra, flips = jnp.fmod(x, span), jnp.floor(x / span)
    return jnp.where(flips % 2 == 0, extra + low, span - extra + low)


def _source_coords(coord, size, padding_mode, align_corners):
    x = (coord + 1) / 2 * (size - 1) if align_corners else ((coord + 1) * size - 1) / 2
    if padding_mode == "reflection":
        x = _reflect(x, 0, 2 * (size - 1)) if align_corners else _reflect(x, -1, 2 * size - 1)
    return x if padding_mode == "zeros" else jnp.clip(x, 0, size - 1)


def _pixels(x, iy, ix):
    """x[n, :, iy, ix] for each sampling point, channels last; 0 outside the image."""
    h, w = x.shape[2:]
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    batch = jnp.arange(x.shape[0]).reshape((-1,) + (1,) * (iy.ndim - 1))
    return jnp.where(inside[..., None], x[batch, :, jnp.clip(iy, 0, h - 1), jnp.clip(ix, 0, w - 1)], 0.0)


def grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """torch.nn.functional.grid_sample for 4-D input: bilinear or nearest, zeros/border/reflection padding."""
    if mode not in ("bilinear", "nearest"):
        raise NotImplementedError(f"grid_sample mode {mode!r}: only 'bilinear' and 'nearest' are converted")
    ix = _source_coords(grid[..., 0], x.shape[3], padding_mode, align_corners)
    iy = _source_coords(grid[..., 1], x.shape[2], padding_mode, align_corners)
    if mode == "nearest":
        return jnp.moveaxis(_pixels(x, jnp.round(iy).astype(jnp.int32), jnp.round(ix).astype(jnp.int32)), -1, 1)
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    wx, wy = (ix - x0)[..., None], (iy - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    top = (1 - wx) * _pixels(x, y0, x0) + wx * _pixels(x, y0, x0 + 1)
    bottom = (1 - wx) * _pixels(x, y0 + 1, x0) + wx * _pixels(x, y0 + 1, x0 + 1)
    return jnp.moveaxis((1 - wy) * top + wy * bottom, -1, 1)


def pad(x, pad, mode="constant", value=0.0):
    """torch.nn.functional.pad: `pad` lists (before, after) pairs from the last dim backwards."""
    pairs = [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)][::-1]
    widths = [(0, 0)] * (x.ndim - len(pairs)) + pairs
    cropped = tuple(slice(-lo if lo < 0 else None, hi if hi < 0 else None) for lo, hi in widths)
    x = x[cropped]
    widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    if mode == "constant":
        return jnp.pad(x, widths, constant_values=value)
    return jnp.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode])


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """torch.nn.functional.scaled_dot_product_attention (inference: dropout_p must be 0)."""
    if dropout_p:
        raise NotImplementedError("attention dropout needs an explicit RNG key in JAX")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = jnp.matmul(query, jnp.swapaxes(key, -2, -1)) * scale
    if is_causal:
        causal = jnp.tril(jnp.ones((query.shape[-2], key.shape[-2]), dtype=bool))
        scores = jnp.where(causal, scores, -jnp.inf)
    if attn_mask is not None:
        if attn_mask.dtype == jnp.bool_:
            scores = jnp.where(attn_mask, scores, -jnp.inf)
        else:
            scores = scores + attn_mask
    return jnp.matmul(jax.nn.softmax(scores, axis=-1), value)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """torch.nn.functional.layer_norm over the trailing `normalized_shape` dims."""
    axes = tuple(range(x.ndim - len(_ntuple(normalized_shape, 1)), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = jnp.square(x - mean).mean(axis=axes, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """torch.nn.functional.group_norm on channels-first input."""
    n, c = x.shape[:2]
    grouped = x.reshape((n, num_groups, -1))
    mean = grouped.mean(axis=-1, keepdims=True)
    var = jnp.square(grouped - mean).mean(axis=-1, keepdims=True)
    y = ((grouped - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm. In eval mode, the running statistics; in training (or without
    them), the batch's, and running statistics given as NNX variables (a BatchNorm's `mean`/`var`) are
    updated in place as torch updates its buffers (`momentum`, unbiased variance)."""
    if training or running_mean is None:
        axes = (0,) + tuple(range(2, x.ndim))
        mean, var = x.mean(axis=axes), jnp.var(x, axis=axes)
        if training and running_mean is not None:
            count = x.size // x.shape[1]
            _update_statistic(running_mean, mean, momentum)
            _update_statistic(running_var, var * count / max(count - 1, 1), momentum)
    else:
        mean, var = running_mean[...], running_var[...]
    return _normalize(x, mean, var, None if weight is None else weight[...], None if bias is None else bias[...], eps)


def _normalize(x, mean, var, weight, bias, eps):
    """`x * alpha + beta` over axis 1, alpha and beta per channel as torch's CPU kernel computes them
    (`invstd * weight`, `bias - mean * alpha`): the same roundings as torch, not only the same function."""
    alpha = 1.0 / jnp.sqrt(var + eps)
    if weight is not None:
        alpha = alpha * weight
    beta = -mean * alpha if bias is None else bias - mean * alpha
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * alpha.reshape(shape) + beta.reshape(shape)


def calculate_fan_in_and_fan_out(tensor):
    """torch.nn.init._calculate_fan_in_and_fan_out: the fans of a weight in torch's layout (out, in, *kernel)."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _update_statistic(running, batch, momentum):
    if not hasattr(running, "set_value"):
        raise TypeError("batch_norm(training=True) updates the running statistics in place: pass them as NNX "
                        "variables (nnx.BatchStat), as a converted BatchNorm's `mean` and `var` are")
    running.set_value((1 - momentum) * running[...] + momentum * jax.lax.stop_gradient(batch))


def _reduce_loss(loss, reduction, weight_sum=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / weight_sum if weight_sum is not None else loss.mean()


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """torch.nn.functional.cross_entropy with class indices along dim 1 (or the last dim of 2-D input)."""
    logp = jax.nn.log_softmax(logits, axis=1)
    n_classes = logits.shape[1]
    logp = jnp.moveaxis(logp, 1, -1)
    valid = target != ignore_index
    safe_target = jnp.where(valid, target, 0)
    w = jnp.ones((n_classes,), logp.dtype) if weight is None else weight
    nll = -jnp.take_along_axis(logp, safe_target[..., None], axis=-1)[..., 0] * w[safe_target]
    smooth = -(logp * w).sum(axis=-1) / n_classes
    loss = (1 - label_smoothing) * nll + label_smoothing * smooth
    loss = jnp.where(valid, loss, 0.0)
    denom = jnp.where(valid, w[safe_target], 0.0).sum()
    return _reduce_loss(loss, reduction, denom if reduction == "mean" else None)


def normalize(x, p=2.0, dim=1, eps=1e-12):
    """torch.nn.functional.normalize."""
    norm = jnp.linalg.norm(x, ord=p, axis=dim, keepdims=True)
    return x / jnp.maximum(norm, eps)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """torch.nn.functional.cosine_similarity: each input divided by its norm (at least eps)."""
    x1, x2 = jnp.broadcast_arrays(x1, x2)
    n1 = jnp.maximum(jnp.linalg.norm(x1, axis=dim, keepdims=True), eps)
    n2 = jnp.maximum(jnp.linalg.norm(x2, axis=dim, keepdims=True), eps)
    return jnp.sum((x1 / n1) * (x2 / n2), axis=dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """torch.nn.functional.pairwise_distance: the p-norm of x1 - x2 + eps over the last dim."""
    return jnp.linalg.norm(x1 - x2 + eps, ord=p, axis=-1, keepdims=keepdim)


def pdist(x, p=2.0):
    """torch.nn.functional.pdist: distances between all pairs of rows i < j, in row-major order."""
    i, j = jnp.triu_indices(x.shape[0], 1)
    return jnp.linalg.norm(x[i] - x[j], ord=p, axis=-1)


def bilinear(x1, x2, weight, bias=None):
    """torch.nn.functional.bilinear: x1^T A_o x2 for each output o, weight (out, in1, in2)."""
    y = jnp.einsum("...i,oij,...j->...o", x1, jnp.asarray(weight), x2)
    return y if bias is None else y + bias


def flatten(x, start_dim=0, end_dim=-1):
    """torch.flatten / Tensor.flatten."""
    start, end = start_dim % max(x.ndim, 1), end_dim % max(x.ndim, 1)
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


def unflatten(x, dim, sizes):
    """torch.unflatten / Tensor.unflatten."""
    dim = dim % x.ndim
    return x.reshape(x.shape[:dim] + tuple(sizes) + x.shape[dim + 1:])


def split(x, split_size_or_sections, dim=0):
    """torch.split: chunks of a given size, or explicit section sizes."""
    size = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        bounds = list(range(split_size_or_sections, size, split_size_or_sections))
    else:
        bounds = [sum(split_size_or_sections[:i + 1]) for i in range(len(split_size_or_sections) - 1)]
    return tuple(jnp.split(x, bounds, axis=dim))


def chunk(x, chunks, dim=0):
    """torch.chunk: at most `chunks` pieces of ceil(size / chunks) each."""
    return split(x, -(-x.shape[dim] // chunks), dim)


def unbind(x, dim=0):
    """torch.unbind."""
    return tuple(jnp.moveaxis(x, dim, 0))


def squeeze(x, dim=None):
    """torch.squeeze: a dim that is not of size 1 is left alone (jnp raises)."""
    if dim is None:
        return jnp.squeeze(x)
    dims = tuple(d for d in _ntuple(dim, 1) if x.shape[d] == 1)
    return jnp.squeeze(x, dims) if dims else x


def expand(x, *sizes):
    """Tensor.expand: -1 keeps a dim, new leading dims broadcast."""
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    return jnp.broadcast_to(x, shape)


def torch_repeat(x, *sizes):
    """Tensor.repeat (tiles, like numpy.tile)."""
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    return jnp.tile(x, sizes)


class ValuesIndices(NamedTuple):
    """What torch's max/min/sort/topk/median/mode/kthvalue return with a dim: `.values`, `.indices`."""
    values: jax.Array
    indices: jax.Array


def _is_dim(value):
    """A dimension (a Python or NumPy int), not a tensor: `torch.max(x, d)` reduces, `torch.max(x, t)` compares."""
    return isinstance(value, (int, jnp.integer))


def torch_max(x, dim=None, keepdim=False):
    """torch.max / Tensor.max: the maximum; with a dim, (values, indices); with a tensor, the elementwise maximum."""
    if dim is None:
        return jnp.max(x)
    if not _is_dim(dim):
        return jnp.maximum(x, dim)
    return ValuesIndices(jnp.max(x, axis=dim, keepdims=keepdim), jnp.argmax(x, axis=dim, keepdims=keepdim))


def torch_min(x, dim=None, keepdim=False):
    """torch.min / Tensor.min: the minimum; with a dim, (values, indices); with a tensor, the elementwise minimum."""
    if dim is None:
        return jnp.min(x)
    if not _is_dim(dim):
        return jnp.minimum(x, dim)
    return ValuesIndices(jnp.min(x, axis=dim, keepdims=keepdim), jnp.argmin(x, axis=dim, keepdims=keepdim))


def topk(x, k, dim=-1, largest=True):
    """torch.topk: the k largest (or smallest) values along `dim`, sorted, and their indices."""
    dim = -1 if dim is None else dim
    moved = jnp.moveaxis(x, dim, -1)
    values, indices = jax.lax.top_k(moved if largest else -moved, k)
    values = values if largest else -values
    return ValuesIndices(jnp.moveaxis(values, -1, dim), jnp.moveaxis(indices, -1, dim))


def torch_sort(x, dim=-1, descending=False):
    """torch.sort / Tensor.sort: the values sorted along `dim` (stably) and the indices they came from."""
    indices = jnp.argsort(x, axis=dim, stable=True, descending=descending)
    return ValuesIndices(jnp.take_along_axis(x, indices, axis=dim), indices)


def _reduced(values, indices, dim, keepdim):
    """A (values, indices) pair with its size-1 `dim`, or without it."""
    if keepdim:
        return ValuesIndices(values, indices)
    return ValuesIndices(jnp.take(values, 0, axis=dim), jnp.take(indices, 0, axis=dim))


def kthvalue(x, k, dim=-1, keepdim=False):
    """torch.kthvalue: the k-th smallest value (k from 1) along `dim`, and its index."""
    index = jnp.expand_dims(jnp.take(jnp.argsort(x, axis=dim, stable=True), k - 1, axis=dim), dim)
    return _reduced(jnp.take_along_axis(x, index, axis=dim), index, dim, keepdim)


def torch_median(x, dim=None, keepdim=False):
    """torch.median: the lower of the two middle values (never their mean); with a dim, (values, indices)."""
    if dim is None:
        return jnp.sort(x.ravel())[(x.size - 1) // 2]
    return kthvalue(x, (x.shape[dim] + 1) // 2, dim, keepdim)


def torch_mode(x, dim=-1, keepdim=False):
    """torch.mode: the most frequent value along `dim` (the smallest of equally frequent ones) and its last index."""
    moved = jnp.moveaxis(x, dim, -1)
    counts = (moved[..., :, None] == moved[..., None, :]).sum(-1)
    best = jnp.take_along_axis(moved, jnp.lexsort((moved, -counts), axis=-1)[..., :1], axis=-1)
    index = moved.shape[-1] - 1 - jnp.argmax(jnp.flip(moved == best, -1), axis=-1, keepdims=True)
    values = jnp.take_along_axis(moved, index, axis=-1)
    return _reduced(jnp.moveaxis(values, -1, dim), jnp.moveaxis(index, -1, dim), dim, keepdim)


def torch_var(x, dim=None, unbiased=True, keepdim=False, correction=None):
    """torch.var / Tensor.var: unbiased by default, unlike jnp.var."""
    ddof = correction if correction is not None else int(bool(unbiased))
    return jnp.var(x, axis=dim, ddof=ddof, keepdims=keepdim)


def torch_std(x, dim=None, unbiased=True, keepdim=False, correction=None):
    """torch.std / Tensor.std: unbiased by default, unlike jnp.std."""
    ddof = correction if correction is not None else int(bool(unbiased))
    return jnp.std(x, axis=dim, ddof=ddof, keepdims=keepdim)


def kaiming_gain(nonlinearity="leaky_relu", param=0):
    """torch.nn.init.calculate_gain for the nonlinearities kaiming init is used with."""
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + (param or 0.01 if param is None else param) ** 2))
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "selu":
        return 3.0 / 4
    return 1.0


def relu(input, inplace=False):
    """torch.nn.functional.relu with torch's signature, for `F.relu` passed as a value."""
    return jax.nn.relu(input)


def gelu(input, approximate="none"):
    """torch.nn.functional.gelu with torch's signature and default (exact; jax.nn.gelu defaults to tanh)."""
    return jax.nn.gelu(input, approximate=approximate == "tanh")


def torch_relu6(input, inplace=False):
    """torch.nn.functional.relu6 with torch's signature, for `F.relu6` passed as a value."""
    return jax.nn.relu6(input)


def torch_silu(input, inplace=False):
    """torch.nn.functional.silu with torch's signature, for `F.silu` passed as a value."""
    return jax.nn.silu(input)


def torch_mish(input, inplace=False):
    """torch.nn.functional.mish with torch's signature, for `F.mish` passed as a value."""
    return jax.nn.mish(input)


def torch_hardswish(input, inplace=False):
    """torch.nn.functional.hardswish with torch's signature, for `F.hardswish` passed as a value."""
    return jax.nn.hard_swish(input)


def torch_hardsigmoid(input, inplace=False):
    """torch.nn.functional.hardsigmoid with torch's signature, for `F.hardsigmoid` passed as a value."""
    return jax.nn.hard_sigmoid(input)


def torch_leaky_relu(input, negative_slope=0.01, inplace=False):
    """torch.nn.functional.leaky_relu with torch's signature, for `F.leaky_relu` passed as a value."""
    return jax.nn.leaky_relu(input, negative_slope=negative_slope)


def torch_elu(input, alpha=1.0, inplace=False):
    """torch.nn.functional.elu with torch's signature, for `F.elu` passed as a value."""
    return jax.nn.elu(input, alpha=alpha)


def torch_celu(input, alpha=1.0, inplace=False):
    """torch.nn.functional.celu with torch's signature, for `F.celu` passed as a value."""
    return jax.nn.celu(input, alpha=alpha)


def torch_selu(input, inplace=False):
    """torch.nn.functional.selu with torch's signature, for `F.selu` passed as a value."""
    return jax.nn.selu(input)


def embedding_bag(input, weight, offsets=None, mode="mean", per_sample_weights=None, include_last_offset=False,
                  padding_idx=None):
    """torch.nn.functional.embedding_bag: the sum, mean or maximum of each bag of embeddings (the rows of
    a 2-D input, or a 1-D input cut at `offsets`); `padding_idx` entries count in no bag."""
    weight = jnp.asarray(weight)
    if input.ndim == 2:
        offsets = jnp.arange(0, input.size, input.shape[1])
        per_sample_weights = None if per_sample_weights is None else per_sample_weights.reshape(-1)
        input = input.reshape(-1)
    elif include_last_offset:
        offsets = offsets[:-1]
    bag = jnp.cumsum(jnp.zeros(input.shape, jnp.int32).at[offsets[1:]].add(1))
    keep = jnp.ones(input.shape, bool) if padding_idx is None else input != padding_idx
    scale = keep if per_sample_weights is None else keep * per_sample_weights
    rows = jnp.take(weight, input, axis=0) * scale[:, None]
    count = jax.ops.segment_sum(keep.astype(weight.dtype), bag, offsets.shape[0])[:, None]
    if mode == "max":
        top = jax.ops.segment_max(jnp.where(keep[:, None], rows, -jnp.inf), bag, offsets.shape[0])
        return jnp.where(count > 0, top, 0.0)
    total = jax.ops.segment_sum(rows, bag, offsets.shape[0])
    return total if mode == "sum" else total / jnp.maximum(count, 1)


def index_add(x, dim, index, source, alpha=1):
    """torch.index_add: `source`'s slices along `dim` added into `x` at `index` (repeated indices add up)."""
    moved = jnp.moveaxis(x, dim, 0).at[index].add(jnp.moveaxis(source * alpha, dim, 0))
    return jnp.moveaxis(moved, 0, dim)


class MissingKey:
    """The key of a function called without `rngs` (see `NoRngs`): drawing from it fails with what to do."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"MissingKey({self.name}(...) needs rngs=nnx.Rngs(seed) to draw random numbers)"

    def error(self):
        return TypeError(f"{self.name}(...) draws random numbers here (dropout in training): "
                         "call it with rngs=nnx.Rngs(seed)")


def dropout(x, p=0.5, training=True, key=None):
    """torch.nn.functional.dropout with an explicit PRNG key."""
    if not training or p == 0.0:
        return x
    if isinstance(key, MissingKey):
        raise key.error()
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), 0.0)


def feature_dropout(x, p=0.5, training=True, key=None):
    """torch.nn.functional.dropout{1,2,3}d: whole channels (axis 1) zeroed, with an explicit PRNG key."""
    if not training or p == 0.0:
        return x
    if isinstance(key, MissingKey):
        raise key.error()
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape[:2] + (1,) * (x.ndim - 2))
    return jnp.where(keep, x / (1.0 - p), 0.0)


def alpha_dropout(x, p=0.5, training=False, key=None, feature=False):
    """torch.nn.functional.alpha_dropout / feature_alpha_dropout (whole channels): dropped values
    become SELU's negative saturation, then an affine map keeps the mean and variance."""
    if not training or p == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape[:2] + (1,) * (x.ndim - 2) if feature else x.shape)
    alpha = 1.7580993408473766
    a = 1.0 / math.sqrt((alpha * alpha * p + 1) * (1 - p))
    return jnp.where(keep, x * a, -alpha * a) + alpha * a * p


def gumbel_softmax(logits, tau=1.0, hard=False, dim=-1, key=None):
    """torch.nn.functional.gumbel_softmax: softmax((logits + Gumbel noise) / tau); `hard` gives one-hot
    samples whose gradient is the soft sample's (straight-through)."""
    soft = jax.nn.softmax((logits + jax.random.gumbel(key, logits.shape, logits.dtype)) / tau, axis=dim)
    if not hard:
        return soft
    one_hot = jnp.moveaxis(jax.nn.one_hot(jnp.argmax(soft, axis=dim), soft.shape[dim], dtype=soft.dtype), -1, dim)
    return one_hot - jax.lax.stop_gradient(soft) + soft


def softplus(x, beta=1.0, threshold=20.0):
    """torch.nn.functional.softplus with beta and threshold (linear where beta * x > threshold)."""
    return jnp.where(x * beta > threshold, x, jax.nn.softplus(x * beta) / beta)


def softmin(x, dim=None):
    """torch.nn.functional.softmin: softmax of -x."""
    return jax.nn.softmax(-x, axis=-1 if dim is None else dim)


def tanhshrink(x):
    """torch.nn.functional.tanhshrink."""
    return x - jnp.tanh(x)


def hardshrink(x, lambd=0.5):
    """torch.nn.functional.hardshrink: x where |x| > lambd, else 0."""
    return jnp.where(jnp.abs(x) > lambd, x, 0.0)


def softshrink(x, lambd=0.5):
    """torch.nn.functional.softshrink: x shrunk towards 0 by lambd."""
    return jnp.where(x > lambd, x - lambd, jnp.where(x < -lambd, x + lambd, 0.0))


def torch_threshold(x, threshold, value):
    """torch.nn.functional.threshold: x where x > threshold, else value."""
    return jnp.where(x > threshold, x, value)


def prelu(x, weight):
    """torch.nn.functional.prelu: one slope per channel (axis 1), or one for all."""
    weight = jnp.asarray(weight)
    if weight.size == 1:
        weight = weight.reshape(())
    elif x.ndim >= 2:
        weight = weight.reshape((-1,) + (1,) * (x.ndim - 2))
    return jnp.where(x >= 0, x, weight * x)


def rrelu(x, lower=1.0 / 8, upper=1.0 / 3, training=False, key=None):
    """torch.nn.functional.rrelu: a random slope in [lower, upper] per element in training, their mean in eval."""
    if not training:
        return jnp.where(x >= 0, x, x * ((lower + upper) / 2))
    return jnp.where(x >= 0, x, x * jax.random.uniform(key, x.shape, x.dtype, lower, upper))


def mse_loss(input, target, reduction="mean"):
    """torch.nn.functional.mse_loss."""
    return _reduce_loss(jnp.square(input - target), reduction)


def l1_loss(input, target, reduction="mean"):
    """torch.nn.functional.l1_loss."""
    return _reduce_loss(jnp.abs(input - target), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """torch.nn.functional.smooth_l1_loss."""
    diff = jnp.abs(input - target)
    return _reduce_loss(jnp.where(diff < beta, 0.5 * diff ** 2 / beta, diff - 0.5 * beta), reduction)


def nll_loss(log_probs, target, weight=None, ignore_index=-100, reduction="mean"):
    """torch.nn.functional.nll_loss with class indices along dim 1."""
    logp = jnp.moveaxis(log_probs, 1, -1)
    valid = target != ignore_index
    safe = jnp.where(valid, target, 0)
    w = jnp.ones((logp.shape[-1],), logp.dtype) if weight is None else weight
    loss = jnp.where(valid, -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0] * w[safe], 0.0)
    return _reduce_loss(loss, reduction, jnp.where(valid, w[safe], 0.0).sum() if reduction == "mean" else None)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """torch.nn.functional.binary_cross_entropy (log clamped at -100 like torch)."""
    loss = -(target * jnp.maximum(jnp.log(input), -100.0) + (1 - target) * jnp.maximum(jnp.log1p(-input), -100.0))
    return _reduce_loss(loss if weight is None else loss * weight, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """torch.nn.functional.binary_cross_entropy_with_logits."""
    log_weight = 1.0 if pos_weight is None else 1 + (pos_weight - 1) * target
    loss = (1 - target) * input + log_weight * jax.nn.softplus(-input)
    return _reduce_loss(loss if weight is None else loss * weight, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """torch.nn.functional.huber_loss."""
    diff = jnp.abs(input - target)
    loss = jnp.where(diff < delta, 0.5 * diff ** 2, delta * (diff - 0.5 * delta))
    return _reduce_loss(loss if weight is None else loss * weight, reduction)


def kl_div(input, target, reduction="mean", log_target=False):
    """torch.nn.functional.kl_div: `input` holds log-probabilities; 'batchmean' divides by the batch size."""
    if log_target:
        loss = jnp.exp(target) * (target - input)
    else:
        loss = jax.scipy.special.xlogy(target, target) - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0]
    return _reduce_loss(loss, reduction)


def soft_margin_loss(input, target, reduction="mean"):
    """torch.nn.functional.soft_margin_loss: log(1 + exp(-y x))."""
    return _reduce_loss(jax.nn.softplus(-target * input), reduction)


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """torch.nn.functional.margin_ranking_loss."""
    return _reduce_loss(jax.nn.relu(-target * (input1 - input2) + margin), reduction)


def hinge_embedding_loss(input, target, margin=1.0, reduction="mean"):
    """torch.nn.functional.hinge_embedding_loss: x where y = 1, max(0, margin - x) where y = -1."""
    loss = jnp.where(target != 1, jax.nn.relu(margin - input), 0.0) + jnp.where(target != -1, input, 0.0)
    return _reduce_loss(loss, reduction)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """torch.nn.functional.cosine_embedding_loss (torch's epsilon 1e-12 on the squared norms)."""
    dim = input1.ndim - 1
    norms = ((input1 * input1).sum(dim) + 1e-12) * ((input2 * input2).sum(dim) + 1e-12)
    cos = (input1 * input2).sum(dim) / jnp.sqrt(norms)
    loss = jnp.where(target == 1, 1 - cos, 0.0) + jnp.where(target == -1, jax.nn.relu(cos - margin), 0.0)
    return _reduce_loss(loss, reduction)


def multilabel_soft_margin_loss(input, target, weight=None, reduction="mean"):
    """torch.nn.functional.multilabel_soft_margin_loss: mean over classes of the binary logistic loss."""
    loss = -(target * jax.nn.log_sigmoid(input) + (1 - target) * jax.nn.log_sigmoid(-input))
    loss = loss if weight is None else loss * weight
    return _reduce_loss(loss.mean(axis=-1), reduction)


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean"):
    """torch.nn.functional.poisson_nll_loss (`full` adds Stirling's term where target > 1)."""
    loss = jnp.exp(input) - target * input if log_input else input - target * jnp.log(input + eps)
    if full:
        safe = jnp.where(target > 1, target, 2.0)
        stirling = safe * jnp.log(safe) - safe + 0.5 * jnp.log(2 * math.pi * safe)
        loss = loss + jnp.where(target > 1, stirling, 0.0)
    return _reduce_loss(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """torch.nn.functional.gaussian_nll_loss (var clamped at eps without changing its gradient, as torch)."""
    var = jnp.asarray(var, input.dtype)
    if var.ndim and var.shape != input.shape and var.shape == input.shape[:-1]:
        var = var[..., None]
    var = var + jax.lax.stop_gradient(jnp.maximum(var, eps) - var)
    loss = 0.5 * (jnp.log(var) + (input - target) ** 2 / var)
    return _reduce_loss(loss + 0.5 * math.log(2 * math.pi) if full else loss, reduction)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, reduction="mean"):
    """torch.nn.functional.triplet_margin_loss."""
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = jnp.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce_loss(jax.nn.relu(margin + d_pos - d_neg), reduction)


def triplet_margin_with_distance_loss(anchor, positive, negative, distance_function=None, margin=1.0, swap=False,
                                      reduction="mean"):
    """torch.nn.functional.triplet_margin_with_distance_loss (pairwise_distance when no function is given)."""
    distance = distance_function or pairwise_distance
    d_pos, d_neg = distance(anchor, positive), distance(anchor, negative)
    if swap:
        d_neg = jnp.minimum(d_neg, distance(positive, negative))
    return _reduce_loss(jax.nn.relu(margin + d_pos - d_neg), reduction)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """torch.nn.functional.multi_margin_loss: hinge on every other class's score, averaged over classes."""
    picked = jnp.take_along_axis(input, target[..., None], axis=-1)
    loss = jax.nn.relu(margin - picked + input) ** p
    if weight is not None:
        loss = loss * weight[target][..., None]
    loss = jnp.where(jnp.arange(input.shape[-1]) == target[..., None], 0.0, loss)
    return _reduce_loss(loss.sum(axis=-1) / input.shape[-1], reduction)


def multilabel_margin_loss(input, target, reduction="mean"):
    """torch.nn.functional.multilabel_margin_loss: `target` lists each sample's classes, ended by -1;
    hinge between every listed class and every unlisted one, averaged over classes."""
    listed = jnp.cumprod(target >= 0, axis=-1).astype(bool)
    classes = jnp.arange(input.shape[-1])
    is_target = jnp.any(listed[..., None] & (target[..., None] == classes), axis=-2)
    picked = jnp.take_along_axis(input, jnp.maximum(target, 0), axis=-1)
    hinge = jax.nn.relu(1 - picked[..., :, None] + input[..., None, :])
    loss = jnp.sum(jnp.where(listed[..., :, None] & ~is_target[..., None, :], hinge, 0.0), axis=(-2, -1))
    return _reduce_loss(loss / input.shape[-1], reduction)


def instance_norm(x, weight=None, bias=None, eps=1e-5):
    """torch.nn.functional.instance_norm without running statistics (group norm, one group per channel)."""
    return group_norm(x, x.shape[1], weight, bias, eps)


def multinomial(key, probs, num_samples, replacement=False):
    """torch.multinomial: with replacement by categorical draws, without by the Gumbel top-k trick."""
    logits = jnp.log(probs)
    if replacement:
        return jax.random.categorical(key, logits, shape=(num_samples,) + probs.shape[:-1]).T
    gumbel = jax.random.gumbel(key, probs.shape)
    return jax.lax.top_k(logits + gumbel, num_samples)[1]


def pixel_shuffle(x, upscale_factor):
    """torch.nn.functional.pixel_shuffle: (*, C*r*r, H, W) -> (*, C, H*r, W*r)."""
    *lead, c, h, w = x.shape
    r, n = upscale_factor, len(lead)
    x = x.reshape(*lead, c // (r * r), r, r, h, w)
    x = x.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(x, downscale_factor):
    """torch.nn.functional.pixel_unshuffle: (*, C, H*r, W*r) -> (*, C*r*r, H, W)."""
    *lead, c, h, w = x.shape
    r, n = downscale_factor, len(lead)
    x = x.reshape(*lead, c, h // r, r, w // r, r)
    x = x.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return x.reshape(*lead, c * r * r, h // r, w // r)


def view_as_complex(x):
    """torch.view_as_complex: a (..., 2) real array as complex numbers (real part, imaginary part)."""
    return jax.lax.complex(x[..., 0], x[..., 1])


def view_as_real(x):
    """torch.view_as_real: complex numbers as a (..., 2) real array."""
    return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)


def scatter(x, dim, index, src, reduce=None):
    """torch.scatter / Tensor.scatter: `x` with `src` (a tensor or a number) written where `index` says
    along `dim`; reduce="add" / "multiply" combine with what is there instead."""
    where = jnp.meshgrid(*(jnp.arange(n) for n in index.shape), indexing="ij")
    where[dim % x.ndim] = index
    if jnp.ndim(src):
        src = src[tuple(slice(0, n) for n in index.shape)]
    at = x.at[tuple(where)]
    return {None: at.set, "add": at.add, "multiply": at.multiply}[reduce](src)


def embedding(ids, weight, padding_idx=None):
    """torch.nn.functional.embedding: rows of `weight`; lookups of the padding row pass it no gradient."""
    out = jnp.take(weight, ids, axis=0)
    if padding_idx is None:
        return out
    padding = ids == padding_idx % weight.shape[0]
    return jnp.where(padding[..., None], jax.lax.stop_gradient(out), out)


def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """torch.unique_consecutive of the flattened input: each run of equal values once (eagerly: the
    size depends on the values)."""
    if return_inverse or return_counts or dim is not None:
        raise NotImplementedError("unique_consecutive with return_inverse, return_counts or dim is not converted")
    flat = jnp.ravel(input)
    return flat[jnp.concatenate([jnp.ones(min(flat.size, 1), bool), flat[1:] != flat[:-1]])]


def torch_tensor_new(*args):
    """`torch.Tensor(...)`: float32 data from a sequence or array, or with integer sizes an
    uninitialised array of that shape (zeros here)."""
    if len(args) == 1 and not isinstance(args[0], int):
        return jnp.asarray(args[0], jnp.float32)
    return jnp.zeros(args, jnp.float32)
