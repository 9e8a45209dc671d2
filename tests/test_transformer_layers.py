"""nn.Transformer, nn.TransformerEncoder/Decoder and their layers: convert small torch programs, port the
torch weights, and compare with torch (eval mode eagerly and under nnx.jit, train mode without dropout,
parameter gradients).

In eval mode under `no_grad` torch takes its fast path (`torch._transformer_encoder_layer_fwd`; in
nn.TransformerEncoder with a key padding mask, nested tensors). The math is the same, but the nested
path returns zeros at padded positions, where the converted model (like torch's own slow path) returns
the layer's value: with the fast path on, padded positions are left out of the comparison; with it off,
everything is compared.
"""
import ast

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import Pair, gradients, import_source
from retarget.support.transformer import _get_activation_fn, generate_square_subsequent_mask
from retarget.weights.port import torch_key_order

SOURCE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


def pick_activation(name):
    if name == "F.gelu":
        return F.gelu
    if name == "nn.GELU":
        return nn.GELU()
    return name


class EncoderClassifier(nn.Module):
    """Classifier on nn.TransformerEncoder: logits from a masked mean, and the encoded sequence."""

    def __init__(self, batch_first=True, norm_first=False, activation="gelu", dropout=0.1, nested=True):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(30, 16)
        layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=dropout,
                                           activation=pick_activation(activation), layer_norm_eps=1e-6,
                                           batch_first=batch_first, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=nested)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens, padding_mask):
        x = self.embed(tokens if self.batch_first else tokens.t())
        x = self.encoder(x, src_key_padding_mask=padding_mask)
        h = x if self.batch_first else x.transpose(0, 1)
        keep = (~padding_mask).unsqueeze(-1).float()
        return self.head((h * keep).sum(1) / keep.sum(1)), h


class CausalLM(nn.Module):
    """nn.TransformerEncoder as a causal language model, sequence first, F.relu given as a callable; a float
    mask with the is_causal hint, or a bool mask without."""

    def __init__(self, bool_mask=False):
        super().__init__()
        self.bool_mask = bool_mask
        self.embed = nn.Embedding(30, 16)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, 0.1, F.relu), num_layers=2)
        self.out = nn.Linear(16, 30)

    def forward(self, tokens):
        x = self.embed(tokens)
        size = x.size(0)
        if self.bool_mask:
            mask = torch.triu(torch.ones(size, size, dtype=torch.bool), diagonal=1)
            return self.out(self.encoder(x, mask=mask))
        mask = nn.Transformer.generate_square_subsequent_mask(size)
        return self.out(self.encoder(x, mask=mask, is_causal=True))


class MemoryDecoder(nn.Module):
    """nn.TransformerDecoder over a memory: causal target mask, memory padding mask."""

    def __init__(self, norm_first=True):
        super().__init__()
        layer = nn.TransformerDecoderLayer(d_model=16, nhead=2, dim_feedforward=32, activation="gelu",
                                           batch_first=True, norm_first=norm_first)
        self.decoder = nn.TransformerDecoder(layer, num_layers=2, norm=nn.LayerNorm(16))

    def forward(self, tgt, memory, memory_padding_mask):
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1))
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_key_padding_mask=memory_padding_mask,
                            tgt_is_causal=True)


class Seq2Seq(nn.Module):
    """nn.Transformer between two embeddings, the target mask from the instance's static method."""

    def __init__(self, batch_first=False, norm_first=False, dropout=0.1, custom_encoder=False):
        super().__init__()
        self.batch_first = batch_first
        self.src_embed = nn.Embedding(30, 16)
        self.tgt_embed = nn.Embedding(30, 16)
        encoder = None
        if custom_encoder:
            layer = nn.TransformerEncoderLayer(16, 2, 24, activation=nn.GELU(), batch_first=batch_first)
            encoder = nn.TransformerEncoder(layer, 1)
        self.transformer = nn.Transformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=1,
                                          dim_feedforward=32, dropout=dropout, custom_encoder=encoder,
                                          batch_first=batch_first, norm_first=norm_first)
        self.generator = nn.Linear(16, 30)

    def forward(self, src, tgt, src_padding_mask):
        if not self.batch_first:
            src, tgt = src.t(), tgt.t()
        tgt_mask = self.transformer.generate_square_subsequent_mask(tgt.size(0 if not self.batch_first else 1))
        out = self.transformer(self.src_embed(src), self.tgt_embed(tgt), tgt_mask=tgt_mask,
                               src_key_padding_mask=src_padding_mask, memory_key_padding_mask=src_padding_mask)
        return self.generator(out)


class PlainLayers(nn.Module):
    """The layers on their own, positional arguments, bias=False, float additive masks."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(16, 2, 32, 0.0, "relu", 1e-5, False, True, False)
        self.dec = nn.TransformerDecoderLayer(16, 2, 32, dropout=0.0, activation=F.gelu, bias=False)

    def forward(self, src, tgt, src_mask, memory_mask):
        memory = self.enc(src, src_mask=src_mask)
        return self.dec(tgt, memory, memory_mask=memory_mask)
'''

RNG = np.random.default_rng(0)
S, T, N = 7, 5, 3


def tokens(*shape):
    return RNG.integers(0, 30, shape).astype(np.int64)


def padding(n, length, lengths):
    return np.arange(length)[None, :] >= np.asarray(lengths)[:, None]


PAD = padding(N, S, [7, 4, 5])  # True where padded; no row fully padded
CASES = {
    "encoder-batch_first-post_norm-gelu": ("EncoderClassifier", {}, [tokens(N, S), PAD]),
    "encoder-seq_first-pre_norm-F.gelu": ("EncoderClassifier", dict(batch_first=False, norm_first=True,
                                                                    activation="F.gelu"), [tokens(N, S), PAD]),
    "encoder-nn.GELU-relu_string": ("EncoderClassifier", dict(activation="nn.GELU", nested=False),
                                    [tokens(N, S), PAD]),
    "encoder-relu_string": ("EncoderClassifier", dict(activation="relu"), [tokens(N, S), PAD]),
    "causal-float_mask": ("CausalLM", {}, [tokens(S, N)]),
    "causal-bool_mask": ("CausalLM", dict(bool_mask=True), [tokens(S, N)]),
    "decoder-pre_norm": ("MemoryDecoder", {}, [RNG.standard_normal((N, T, 16)).astype(np.float32),
                                               RNG.standard_normal((N, S, 16)).astype(np.float32), PAD]),
    "decoder-post_norm": ("MemoryDecoder", dict(norm_first=False),
                          [RNG.standard_normal((N, T, 16)).astype(np.float32),
                           RNG.standard_normal((N, S, 16)).astype(np.float32), PAD]),
    "transformer-seq_first": ("Seq2Seq", {}, [tokens(N, S), tokens(N, T), PAD]),
    "transformer-batch_first-pre_norm": ("Seq2Seq", dict(batch_first=True, norm_first=True),
                                         [tokens(N, S), tokens(N, T), PAD]),
    "transformer-custom_encoder": ("Seq2Seq", dict(custom_encoder=True), [tokens(N, S), tokens(N, T), PAD]),
    "layers-batched-3d_float_masks": ("PlainLayers", {}, [
        RNG.standard_normal((S, N, 16)).astype(np.float32), RNG.standard_normal((T, N, 16)).astype(np.float32),
        RNG.standard_normal((N * 2, S, S)).astype(np.float32), RNG.standard_normal((N * 2, T, S)).astype(np.float32)]),
    "layers-unbatched-2d_float_masks": ("PlainLayers", {}, [
        RNG.standard_normal((S, 16)).astype(np.float32), RNG.standard_normal((T, 16)).astype(np.float32),
        RNG.standard_normal((S, S)).astype(np.float32), RNG.standard_normal((T, S)).astype(np.float32)]),
}


@pytest.fixture(scope="module")
def modules():
    conversion = retarget.convert(SOURCE, path="transformers.py")
    return (import_source(SOURCE, "transformer_layers_torch"),
            import_source(conversion.code, "transformer_layers_flax"), conversion)


def build(modules, name, kwargs):
    torch_mod, flax_mod, conversion = modules
    torch.manual_seed(0)
    torch_model = getattr(torch_mod, name)(**kwargs)
    flax_model = getattr(flax_mod, name)(**kwargs, rngs=nnx.Rngs(0))
    retarget.port_weights(torch_model.state_dict(), flax_model)
    return Pair(torch_model, flax_model, conversion)


def as_list(out):
    return [np.asarray(o.detach() if isinstance(o, torch.Tensor) else o) for o in
            (out if isinstance(out, tuple) else (out,))]


def run_torch(model, inputs, fastpath=True):
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(fastpath)
    try:
        with torch.no_grad():
            return as_list(model(*[torch.from_numpy(a) for a in inputs]))
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def run_flax(model, inputs, jit=False):
    arrays = [jnp.asarray(a) for a in inputs]
    return as_list(nnx.jit(lambda m, *xs: m(*xs))(model, *arrays) if jit else model(*arrays))


def assert_outputs_match(actual, expected, name, padded_rows_differ=False):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        if padded_rows_differ and name == "EncoderClassifier" and a.ndim == 3:
            a, e = a[~PAD], e[~PAD]  # (batch, seq, feature) sequence output: the non-padded positions
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


def test_conversion_is_clean_standalone_and_stable(modules):
    conversion = modules[2]
    assert conversion.diagnostics == []
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(conversion.code))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert imported <= {"jax", "flax", "math", "functools"}, imported
    assert retarget.convert(conversion.code).code == conversion.code


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_eval_outputs_match_torch(modules, case, jit):
    name, kwargs, inputs = CASES[case]
    pair = build(modules, name, kwargs)
    pair.torch_model.eval()
    pair.flax_model.eval()
    actual = run_flax(pair.flax_model, inputs, jit)
    assert_outputs_match(actual, run_torch(pair.torch_model, inputs, fastpath=False), name)
    assert_outputs_match(actual, run_torch(pair.torch_model, inputs), name, padded_rows_differ=True)


def test_torch_fast_path_zeroes_padded_positions(modules):
    """Why the comparison above leaves padded positions out with torch's fast path on: torch returns
    the final norm of zeros there (its nested-tensor path), so the check is not vacuous."""
    name, kwargs, inputs = CASES["encoder-batch_first-post_norm-gelu"]
    pair = build(modules, name, kwargs)
    pair.torch_model.eval()
    fast, slow = run_torch(pair.torch_model, inputs)[1], run_torch(pair.torch_model, inputs, fastpath=False)[1]
    assert not np.allclose(fast[PAD], slow[PAD], atol=1e-3)
    norm = pair.torch_model.encoder.norm
    np.testing.assert_allclose(fast[PAD], np.broadcast_to(norm.bias.detach().numpy(), fast[PAD].shape), atol=1e-6)


@pytest.mark.parametrize("case", ["encoder-batch_first-post_norm-gelu", "transformer-seq_first"])
def test_train_mode_without_dropout_matches_torch(modules, case):
    name, kwargs, inputs = CASES[case]
    pair = build(modules, name, {**kwargs, "dropout": 0.0})
    pair.torch_model.train()
    pair.flax_model.train()
    assert_outputs_match(run_flax(pair.flax_model, inputs), run_torch(pair.torch_model, inputs), name)


def test_dropout_follows_train_and_eval(modules):
    name, kwargs, inputs = CASES["transformer-seq_first"]
    model = build(modules, name, kwargs).flax_model
    model.train()
    first, second = run_flax(model, inputs)[0], run_flax(model, inputs)[0]
    assert not np.allclose(first, second)
    model.eval()
    np.testing.assert_array_equal(run_flax(model, inputs)[0], run_flax(model, inputs)[0])


@pytest.mark.parametrize("case", ["encoder-batch_first-post_norm-gelu", "transformer-batch_first-pre_norm",
                                  "decoder-post_norm", "layers-unbatched-2d_float_masks"])
def test_parameter_gradients_match_torch(modules, case):
    name, kwargs, inputs = CASES[case]
    pair = build(modules, name, kwargs)
    pair.torch_model.eval()
    pair.flax_model.eval()
    torch_grads, flax_grads = gradients(pair, inputs)
    assert set(flax_grads) == set(torch_grads) and len(torch_grads) > 10
    for key, grad in torch_grads.items():
        np.testing.assert_allclose(flax_grads[key], grad, rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name, kwargs", [("Seq2Seq", {}), ("EncoderClassifier", {}), ("PlainLayers", {}),
                                          ("MemoryDecoder", {})])
def test_torch_keys_and_order(modules, name, kwargs):
    """The rules map every torch key (port_weights is strict) in torch's state_dict order (`--to torch`)."""
    torch.manual_seed(0)
    expected = list(getattr(modules[0], name)(**kwargs).state_dict())
    assert torch_key_order(lambda: getattr(modules[1], name)(**kwargs, rngs=nnx.Rngs(0))) == expected


def test_stack_layers_start_as_copies_with_their_own_dropout_keys(modules):
    """torch deep-copies the layer into each slot of the stack: equal initial weights; dropout keys differ."""
    encoder = getattr(modules[1], "EncoderClassifier")(rngs=nnx.Rngs(0)).encoder
    first, second = encoder.layers[0], encoder.layers[1]
    np.testing.assert_array_equal(first.linear1.kernel[...], second.linear1.kernel[...])
    np.testing.assert_array_equal(first.self_attn.in_proj_kernel[...], second.self_attn.in_proj_kernel[...])
    keys = [jax.random.key_data(d.rngs.key[...]) for layer in (first, second)
            for d in (layer.dropout, layer.dropout1, layer.self_attn.dropout)]
    assert len({tuple(np.asarray(k).ravel()) for k in keys}) == len(keys)


def test_initialisation_follows_torch(modules):
    """nn.Transformer redraws every matrix Xavier-uniform (so its layers differ); stacks keep torch's
    nn.Linear bounds (+-1/sqrt(fan_in)) and MultiheadAttention's zero biases; LayerNorm is ones/zeros."""
    transformer = getattr(modules[1], "Seq2Seq")(rngs=nnx.Rngs(0)).transformer
    layers = transformer.encoder.layers
    assert not np.allclose(layers[0].linear1.kernel[...], layers[1].linear1.kernel[...])
    for kernel in (layers[0].linear1.kernel[...], layers[0].self_attn.out_proj.kernel[...]):
        bound = np.sqrt(6.0 / sum(kernel.shape))
        assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.8 * bound
    layer = getattr(modules[1], "EncoderClassifier")(rngs=nnx.Rngs(0)).encoder.layers[0]
    for linear, fan_in in ((layer.linear1, 16), (layer.linear2, 32), (layer.self_attn.out_proj, 16)):
        assert 0.8 / np.sqrt(fan_in) < np.abs(linear.kernel[...]).max() <= 1 / np.sqrt(fan_in)
    np.testing.assert_array_equal(layer.self_attn.out_proj.bias[...], 0.0)
    np.testing.assert_array_equal(layer.self_attn.in_proj_bias[...], 0.0)
    assert 0 < np.abs(layer.linear1.bias[...]).max() <= 1 / 4
    np.testing.assert_array_equal(layer.norm1.scale[...], 1.0)


@pytest.mark.parametrize("dtype", [None, "float16"])
def test_generate_square_subsequent_mask(dtype):
    torch_dtype = getattr(torch, dtype) if dtype else None
    expected = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch_dtype).numpy()
    actual = np.asarray(generate_square_subsequent_mask(5, dtype=jnp.dtype(dtype) if dtype else None))
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)


def test_activation_strings_are_torchs():
    assert _get_activation_fn(jax.nn.silu) is jax.nn.silu
    x = jnp.linspace(-3, 3, 13)
    np.testing.assert_allclose(_get_activation_fn("gelu")(x), torch.nn.functional.gelu(torch.from_numpy(
        np.asarray(x))).numpy(), atol=1e-6)
    with pytest.raises(RuntimeError, match="relu/gelu"):
        _get_activation_fn("tanh")


def test_torch_decoder_stack_replaces_a_module_activation_by_relu():
    """A known difference, kept on purpose: torch's TransformerDecoderLayer.__setstate__ (run by the deep
    copy in nn.TransformerDecoder and nn.Transformer) sets `activation = F.relu` when the activation is a
    module (nn.GELU()), unlike TransformerEncoderLayer's (fixed in torch PR 81832). The converted decoder
    keeps the activation it is given. If torch fixes it, this test fails and the note can go."""
    layer = torch.nn.TransformerDecoderLayer(16, 2, 32, activation=torch.nn.GELU())
    decoder = torch.nn.TransformerDecoder(layer, num_layers=1)
    encoder = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(16, 2, 32, activation=torch.nn.GELU()),
                                          num_layers=1, enable_nested_tensor=False)
    assert decoder.layers[0].activation is torch.nn.functional.relu
    assert isinstance(encoder.layers[0].activation, torch.nn.GELU)
