"""torch.nn.MultiheadAttention as a Flax NNX module: packed q/k/v projection, torch's masks."""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import _uniform


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
