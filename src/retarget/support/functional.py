"""PyTorch-semantics functions written in plain JAX.

Generated code calls these where no `jax`/`jnp` function has the same meaning
(channels-first pooling, torch's padding order, `interpolate`, ...). The
converter copies each function that a converted file uses, with the helpers it
calls, into that file, so converted code never imports retarget.
"""
import math

import jax
import jax.numpy as jnp


def _ntuple(value, n):
    """Expand an int to an n-tuple, as torch layer arguments do."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


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


def _interp_coords(in_size, out_size, scale, align_corners, mode):
    """Source coordinates of each output position along one axis."""
    i = jnp.arange(out_size, dtype=jnp.float32)
    if mode == "nearest":
        ratio = (1.0 / scale) if scale else in_size / out_size
        return jnp.minimum(jnp.floor(i * ratio), in_size - 1).astype(jnp.int32)
    if align_corners:
        return i * ((in_size - 1) / (out_size - 1)) if out_size > 1 else i * 0.0
    ratio = (1.0 / scale) if scale else in_size / out_size
    return jnp.maximum((i + 0.5) * ratio - 0.5, 0.0)


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """torch.nn.functional.interpolate for nearest and (bi/tri)linear modes."""
    n = x.ndim - 2
    scales = _ntuple(scale_factor, n) if scale_factor is not None else (None,) * n
    sizes = _ntuple(size, n) if size is not None else tuple(
        int(math.floor(x.shape[2 + i] * scales[i])) for i in range(n))
    for i in range(n):
        axis, in_size = 2 + i, x.shape[2 + i]
        coords = _interp_coords(in_size, sizes[i], scales[i], align_corners, mode)
        if mode == "nearest":
            x = jnp.take(x, coords, axis=axis)
            continue
        lo = jnp.floor(coords).astype(jnp.int32)
        hi = jnp.minimum(lo + 1, in_size - 1)
        w = (coords - lo).reshape((-1,) + (1,) * (x.ndim - axis - 1))
        x = jnp.take(x, lo, axis=axis) * (1 - w) + jnp.take(x, hi, axis=axis) * w
    return x


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


def torch_max(x, dim=None, keepdim=False):
    """torch.max / Tensor.max: (values, indices) with a dim, the maximum without."""
    if dim is None:
        return jnp.max(x)
    return jnp.max(x, axis=dim, keepdims=keepdim), jnp.argmax(x, axis=dim, keepdims=keepdim)


def torch_min(x, dim=None, keepdim=False):
    """torch.min / Tensor.min: (values, indices) with a dim, the minimum without."""
    if dim is None:
        return jnp.min(x)
    return jnp.min(x, axis=dim, keepdims=keepdim), jnp.argmin(x, axis=dim, keepdims=keepdim)


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


def dropout(x, p=0.5, training=True, key=None):
    """torch.nn.functional.dropout with an explicit PRNG key."""
    if not training or p == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), 0.0)


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
    """torch.nn.functional.pixel_shuffle: (N, C*r*r, H, W) -> (N, C, H*r, W*r)."""
    n, c, h, w = x.shape
    r = upscale_factor
    x = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // (r * r), h * r, w * r)
