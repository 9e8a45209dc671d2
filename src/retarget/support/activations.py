"""Layers as classes with torch constructor signatures, for code that passes layer classes around
(`act_layer=nn.GELU`, `norm_layer=nn.LayerNorm`).

Called directly, `nn.ReLU()` converts to `jax.nn.relu`; these classes serve the class-as-value case.
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from .functional import embedding, hardshrink, softmin, softplus, softshrink, tanhshrink, torch_threshold
from .layers import FrozenParam, default_rngs, torch_bias_init, torch_kernel_init


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


class SELU(_Activation):
    def __call__(self, x):
        return jax.nn.selu(x)


class Hardtanh(_Activation):
    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False, *, rngs=None):
        self.min_val, self.max_val = min_val, max_val

    def __call__(self, x):
        return jnp.clip(x, self.min_val, self.max_val)


class Softmax(_Activation):
    def __call__(self, x):
        return jax.nn.softmax(x, axis=self.kwargs.get("dim", self.args[0] if self.args else -1))


class CELU(_Activation):
    def __call__(self, x):
        return jax.nn.celu(x, *self.args, **self.kwargs)


class GLU(_Activation):
    def __call__(self, x):
        return jax.nn.glu(x, axis=self.kwargs.get("dim", self.args[0] if self.args else -1))


class LogSigmoid(_Activation):
    def __call__(self, x):
        return jax.nn.log_sigmoid(x)


class Softsign(_Activation):
    def __call__(self, x):
        return jax.nn.soft_sign(x)


class Tanhshrink(_Activation):
    def __call__(self, x):
        return tanhshrink(x)


class Softplus(_Activation):
    def __call__(self, x):
        return softplus(x, *self.args, **self.kwargs)


class Softmin(_Activation):
    def __call__(self, x):
        return softmin(x, *self.args, **self.kwargs)


class Hardshrink(_Activation):
    def __call__(self, x):
        return hardshrink(x, *self.args, **self.kwargs)


class Softshrink(_Activation):
    def __call__(self, x):
        return softshrink(x, *self.args, **self.kwargs)


class Threshold(_Activation):
    def __call__(self, x):
        return torch_threshold(x, *self.args, **self.kwargs)


class TorchLinear(nnx.Linear):
    """nnx.Linear with torch's constructor signature and initialisation, for layer classes passed as values
    (`mlp_layer=nn.Linear`)."""

    @default_rngs
    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *, rngs: nnx.Rngs):
        super().__init__(in_features, out_features, use_bias=bias, kernel_init=torch_kernel_init,
                         bias_init=torch_bias_init(in_features), rngs=rngs)


class TorchLayerNorm(nnx.LayerNorm):
    """nnx.LayerNorm with torch's constructor signature and defaults (`norm_layer=nn.LayerNorm`). A list or
    tuple `normalized_shape` normalizes over that many trailing dims, with weight and bias of that shape."""

    @default_rngs
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None,
                 *, rngs: nnx.Rngs):
        shape = tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
        axes = tuple(range(-len(shape), 0))
        super().__init__(math.prod(shape), epsilon=eps, use_scale=elementwise_affine,
                         use_bias=bias and elementwise_affine, reduction_axes=axes, feature_axes=axes, rngs=rngs)
        if len(shape) > 1 and elementwise_affine:  # flax would keep (prod(shape),); torch's weights have `shape`
            self.scale = nnx.Param(jnp.ones(shape))
            if bias:
                self.bias = nnx.Param(jnp.zeros(shape))


class TorchEmbedding(nnx.Embed):
    """nnx.Embed with torch's constructor signature (`embed_layer=nn.Embedding`, subclasses calling
    `super().__init__(n, d, _freeze=True)`). As in torch, the `padding_idx` row starts at zero (unless
    `_weight` gives the table) and lookups of it pass it no gradient; `_freeze=True` makes the table a
    `FrozenParam` (not trained)."""

    @default_rngs
    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, *, rngs: nnx.Rngs):
        if max_norm is not None or scale_grad_by_freq:
            raise NotImplementedError("nn.Embedding with max_norm or scale_grad_by_freq is not converted")
        super().__init__(num_embeddings, embedding_dim, embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
        self.padding_idx = None if padding_idx is None else padding_idx % num_embeddings
        if _weight is not None:
            self.embedding[...] = jnp.asarray(_weight, self.embedding.dtype)
        elif self.padding_idx is not None:
            self.embedding[...] = self.embedding[...].at[self.padding_idx].set(0.0)
        if _freeze:
            self.embedding = FrozenParam(self.embedding.get_value())

    def __call__(self, inputs):
        return embedding(inputs, self.embedding[...], self.padding_idx)


class TorchDropout(nnx.Dropout):
    """nnx.Dropout with torch's constructor signature (`drop_layer=nn.Dropout`)."""

    @default_rngs
    def __init__(self, p=0.5, inplace=False, *, rngs: nnx.Rngs | None = None):
        super().__init__(p, rngs=rngs)
