"""torch.nn.Transformer and its encoder/decoder stacks and layers as Flax NNX modules.

Attribute names are torch's (`self_attn`, `linear1`, `norm1`, `layers`, `encoder`, ...), so a
torch state dict maps through the rules key for key. Masks follow torch: a bool mask is True where
attention is not allowed, a float mask is added to the scores; `is_causal` is torch's hint that the
mask is the causal one. Initialisation is torch's: linear layers uniform in +-1/sqrt(fan_in), the
stacks deep copies of the given layer (so their layers start equal, as in torch; each copy gets its
own dropout keys), nn.Transformer then redraws every matrix with Xavier-uniform.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from .attention import MultiheadAttention
from .functional import gelu, relu
from .layers import _torch_linear, default_rngs


def generate_square_subsequent_mask(sz, device=None, dtype=None):
    """torch.nn.Transformer.generate_square_subsequent_mask: -inf above the diagonal, 0 elsewhere."""
    return jnp.triu(jnp.full((sz, sz), -jnp.inf, dtype=dtype or jnp.float32), k=1)


def _get_activation_fn(activation):
    """torch's legacy strings ("relu", "gelu"); any callable (a function, an activation module) as it is."""
    if not isinstance(activation, str):
        return activation
    if activation not in ("relu", "gelu"):
        raise RuntimeError(f"activation should be relu/gelu, not {activation}")
    return relu if activation == "relu" else gelu


def _assignment_order(clone, original):
    """Give a clone the original's attribute order (a cloned NNX graph lists attributes sorted): the walk
    that lists torch keys in torch's `state_dict` order follows it."""
    attrs = vars(clone)
    ordered = {name: attrs[name] for name in vars(original) if name in attrs} | attrs
    attrs.clear()
    attrs.update(ordered)
    for name, value in ordered.items():
        if isinstance(value, nnx.Module):
            _assignment_order(value, vars(original)[name])


def _get_clones(module, n, rngs):
    """torch's `_get_clones` (deep copies, equal weights); each copy draws fresh keys for its RNG streams,
    so dropout masks differ from layer to layer as they do in torch."""
    clones = []
    for _ in range(n):
        clone = nnx.clone(module)
        _assignment_order(clone, module)
        for _, node in nnx.iter_graph(clone):
            if isinstance(node, nnx.RngStream):
                node.key[...] = rngs.dropout()
                node.count[...] = jnp.zeros_like(node.count[...])
        clones.append(clone)
    return nnx.List(clones)


class TransformerEncoderLayer(nnx.Module):
    """torch.nn.TransformerEncoderLayer: self-attention and feed-forward blocks, post- or pre-norm."""

    @default_rngs
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None, *, rngs: nnx.Rngs):
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            rngs=rngs)
        self.linear1 = _torch_linear(d_model, dim_feedforward, bias, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.linear2 = _torch_linear(dim_feedforward, d_model, bias, rngs)
        self.norm_first = norm_first
        self.norm1 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, use_bias=bias, use_fast_variance=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, use_bias=bias, use_fast_variance=False, rngs=rngs)
        self.dropout1 = nnx.Dropout(dropout, rngs=rngs)
        self.dropout2 = nnx.Dropout(dropout, rngs=rngs)
        self.activation = _get_activation_fn(activation)

    def __call__(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
        return self.norm2(x + self._ff_block(x))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerDecoderLayer(nnx.Module):
    """torch.nn.TransformerDecoderLayer: self-attention, attention over the memory, feed-forward."""

    @default_rngs
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None, *, rngs: nnx.Rngs):
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            rngs=rngs)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, rngs=rngs)
        self.linear1 = _torch_linear(d_model, dim_feedforward, bias, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.linear2 = _torch_linear(dim_feedforward, d_model, bias, rngs)
        self.norm_first = norm_first
        self.norm1 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, use_bias=bias, use_fast_variance=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, use_bias=bias, use_fast_variance=False, rngs=rngs)
        self.norm3 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, use_bias=bias, use_fast_variance=False, rngs=rngs)
        self.dropout1 = nnx.Dropout(dropout, rngs=rngs)
        self.dropout2 = nnx.Dropout(dropout, rngs=rngs)
        self.dropout3 = nnx.Dropout(dropout, rngs=rngs)
        self.activation = _get_activation_fn(activation)

    def __call__(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                 memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
        x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
        return self.norm3(x + self._ff_block(x))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal,
                           need_weights=False)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal=False):
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                is_causal=is_causal, need_weights=False)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout3(x)


class TransformerEncoder(nnx.Module):
    """torch.nn.TransformerEncoder: `num_layers` copies of `encoder_layer`, then `norm`. `enable_nested_tensor`
    and `mask_check` choose torch's fast path only; the result is the same (padded positions aside: torch's
    nested-tensor path returns zeros there, before `norm`)."""

    @default_rngs
    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True, *,
                 rngs: nnx.Rngs):
        self.layers = _get_clones(encoder_layer, num_layers, rngs)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor, self.mask_check = enable_nested_tensor, mask_check

    def __call__(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for mod in self.layers:
            output = mod(output, src_mask=mask, is_causal=is_causal is True,
                         src_key_padding_mask=src_key_padding_mask)
        if self.norm is not None:
            output = self.norm(output)
        return output


class TransformerDecoder(nnx.Module):
    """torch.nn.TransformerDecoder: `num_layers` copies of `decoder_layer`, then `norm`. Unlike torch, whose deep
    copy of a TransformerDecoderLayer replaces a module activation (nn.GELU()) with F.relu, the copies keep it."""

    @default_rngs
    def __init__(self, decoder_layer, num_layers, norm=None, *, rngs: nnx.Rngs):
        self.layers = _get_clones(decoder_layer, num_layers, rngs)
        self.num_layers = num_layers
        self.norm = norm

    def __call__(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                 memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        output = tgt
        for mod in self.layers:
            output = mod(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                         tgt_key_padding_mask=tgt_key_padding_mask,
                         memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal is True,
                         memory_is_causal=memory_is_causal)
        if self.norm is not None:
            output = self.norm(output)
        return output


class Transformer(nnx.Module):
    """torch.nn.Transformer: an encoder and a decoder stack (or the custom ones given), every matrix
    initialised Xavier-uniform as torch's `_reset_parameters` does."""

    @default_rngs
    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1, activation="relu", custom_encoder=None, custom_decoder=None, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None, *, rngs: nnx.Rngs):
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                      norm_first, bias)
        if custom_encoder is None:
            custom_encoder = TransformerEncoder(
                TransformerEncoderLayer(*layer_args, rngs=rngs), num_encoder_layers,
                nnx.LayerNorm(d_model, epsilon=layer_norm_eps, use_bias=bias, use_fast_variance=False, rngs=rngs), rngs=rngs)
        self.encoder = custom_encoder
        if custom_decoder is None:
            custom_decoder = TransformerDecoder(
                TransformerDecoderLayer(*layer_args, rngs=rngs), num_decoder_layers,
                nnx.LayerNorm(d_model, epsilon=layer_norm_eps, use_bias=bias, use_fast_variance=False, rngs=rngs), rngs=rngs)
        self.decoder = custom_decoder
        self._reset_parameters(rngs)
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first

    def _reset_parameters(self, rngs):
        for _, node in nnx.iter_graph(self):
            if isinstance(node, nnx.Param) and len(node.shape) > 1:
                node[...] = jax.nn.initializers.xavier_uniform()(rngs.params(), node.shape, node.dtype)

    def __call__(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                 tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                 memory_is_causal=False):
        batch_axis = 0 if self.batch_first else 1
        if src.ndim == 3 and src.shape[batch_axis] != tgt.shape[batch_axis]:
            raise RuntimeError("the batch number of src and tgt must be equal")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError("the feature number of src and tgt must be equal to d_model")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz, device=None, dtype=None):
        return generate_square_subsequent_mask(sz, device, dtype)
