"""torch.nn.MultiheadAttention as a Flax NNX module: packed q/k/v projection, torch's masks."""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import _torch_linear, _uniform, default_rngs


class MultiheadAttention(nnx.Module):
    """torch.nn.MultiheadAttention: packed q/k/v projection, torch's mask conventions, batched or unbatched
    inputs, torch's initialisation. `is_causal` is torch's hint that `attn_mask` is the causal mask; given
    without a mask (torch raises there) it applies the causal mask."""

    @default_rngs
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False, *, rngs: nnx.Rngs):
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        bound = math.sqrt(6.0 / (4 * embed_dim))
        self.in_proj_kernel = nnx.Param(_uniform(rngs, (embed_dim, 3 * embed_dim), bound))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * embed_dim,))) if bias else None
        self.out_proj = _torch_linear(embed_dim, embed_dim, bias, rngs, bias_init=nnx.initializers.zeros)
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

    def _batch_major(self, x, batched):
        if not batched:
            return x[None]
        return x if self.batch_first else jnp.swapaxes(x, 0, 1)

    def _caller_layout(self, x, batched):
        if not batched:
            return x[0]
        return x if self.batch_first else jnp.swapaxes(x, 0, 1)

    def __call__(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                 average_attn_weights=True, is_causal=False):
        batched = query.ndim == 3
        query, key, value = (self._batch_major(t, batched) for t in (query, key, value))
        if key_padding_mask is not None and not batched:
            key_padding_mask = key_padding_mask[None]
        if is_causal and attn_mask is None:
            attn_mask = jnp.triu(jnp.ones((query.shape[1], key.shape[1]), dtype=bool), 1)
        q, k, v = self._project(query, 0), self._project(key, 1), self._project(value, 2)
        scores = q @ jnp.swapaxes(k, -2, -1) / math.sqrt(q.shape[-1])
        weights = self.dropout(jax.nn.softmax(self._masked_scores(scores, attn_mask, key_padding_mask), axis=-1))
        out = (weights @ v).transpose(0, 2, 1, 3).reshape(query.shape[:2] + (-1,))
        out = self._caller_layout(self.out_proj(out), batched)
        if not need_weights:
            return out, None
        weights = weights.mean(axis=1) if average_attn_weights else weights
        return out, weights if batched else weights[0]
