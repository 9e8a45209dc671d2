"""Function and tensor-method rules, numerically: `f(x, y)` written with torch, converted, run on the
same inputs; results equal to float32 precision (booleans and integers exactly), same dtypes
(int64 results are int32: JAX runs 32-bit unless x64 is enabled). Differentiable rules also give
torch's gradients with respect to both inputs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import Case, Pair, gradients, import_source, make_inputs, run_flax, run_torch

EXPRESSIONS = [
    "torch.greater(x, y)", "torch.greater_equal(x, y)", "torch.less(x, y)", "torch.less_equal(x, y)",
    "torch.logical_and(x > 0, y > 0)", "torch.logical_or(x > 0, y > 0)", "torch.logical_xor(x > 0, y > 0)",
    "torch.logical_not(x > 0)", "torch.empty_like(x).shape", "torch.expm1(x)", "torch.log2(x.abs() + 1)",
    "torch.log10(x.abs() + 1)", "torch.atan(x)", "torch.asin(x.clamp(-1, 1))", "torch.acos(x.clamp(-1, 1))",
    "torch.sinh(x)", "torch.cosh(x)", "torch.concatenate([x, y], axis=1)", "torch.broadcast_to(x[:1], (4, 6))",
    "torch.nan_to_num(x / (x > 0), nan=1.0, posinf=7.0, neginf=-7.0)", "torch.zeros(2, dtype=torch.get_default_dtype())",
    "F.logsigmoid(x)", "F.glu(x, dim=-1)", "F.glu(x.T, dim=0)", "x.log2()", "(x.abs() + 1).log10()", "x.expm1()",
    "x.abs().log1p()", "(x / (x > 0)).isfinite()", "x.clamp_min(0.1)", "x.clamp_max(0.1)", "x[0].outer(y[1])",
    "x[:1].broadcast_to((3, 6))", "x.narrow(1, 2, 3)", "x.argsort(dim=1)", "x.argsort(dim=0, descending=True)",
    "x.is_floating_point()", "torch.zeros(2, dtype=torch.int8)",
    "F.rms_norm(x, (6,), eps=1e-6)", "F.rms_norm(x, [6], weight=y[0])", "torch.scalar_tensor(3)",
    "torch.scalar_tensor(2, dtype=torch.int32)", "torch.linalg.norm(x, dim=-1, keepdim=True)", "torch.linalg.norm(x)",
    "x.reshape(2, 2, 6).norm(p=2, dim=(1, 2), keepdim=True)", "x.norm(p=1, dim=1)", "x.norm(dim=(0, 1))", "x.norm()",
    "torch.norm(x.reshape(2, 2, 6), 3, dim=(0, 2))", "torch.norm(x, p='fro', dim=1)",
    "torch.linalg.vector_norm(x, dim=(0, 1))", "torch.linalg.vector_norm(x, ord=1, dim=1, keepdim=True)",
    "x.lerp(y, 0.3)", "x.addcmul(x, y, value=0.5)", "x.addcdiv(x, y.abs() + 1, value=2)", "torch.addcdiv(x, y, x.abs() + 1)",
    "torch.clone(x) + 1", "torch.zeros(size=(4, 6)) + x", "torch.ones(size=[2, 3], dtype=torch.int32)", "torch.is_complex(x)", "torch.div(torch.arange(7), 2, rounding_mode='floor')", "torch.div(-torch.arange(7), 2, rounding_mode='trunc')",
    "torch.div(x, 0.3, rounding_mode='floor')", "x.div(0.3, rounding_mode='trunc')", "torch.divide(x, y, rounding_mode=None)",
    "x.scatter(1, torch.argsort(y, dim=1)[:, :3], y)", "torch.scatter(x, 0, torch.argsort(y, dim=0)[:3, :4], y)",
    "x.scatter(1, torch.argsort(y, dim=1)[:, :3], y, reduce='multiply')",  # torch has no gradient with reduce
    "torch.scatter(x, 0, torch.argsort(y, dim=0) % 2, 1.5, reduce='add')",
    "x.new_zeros(2, 3)", "x.new_ones((2, 3), dtype=torch.int32)", "x.new_full((2,), 7)",
    "x.new_full([3], 2, dtype=torch.int32)", "torch.erfinv(x.clamp(-0.9, 0.9))", "x.clamp(-0.9, 0.9).erfinv()",
    "x.erf()", "torch.unique((x * 2).round())", "(x * 2).round().unique()", "x.new_empty(2, 5).shape", "x.new_empty((2,), dtype=torch.bool) | True",
    "x.new_tensor([1, 2])", "x.new_tensor([1, 2], dtype=torch.int32)", "x.new_zeros(3, dtype=torch.float16)",
    "(x > 0).nonzero()", "torch.nonzero(x > 0.5)", "torch.greater(x.sum(dim=1), 0).nonzero()",
    "(x > 0).nonzero(as_tuple=True)[1]", "torch.nonzero(y > 0, as_tuple=True)[0]",
]


# Differentiable rules: values, and d sum(out * probe) / d(x, y). A tuple result (max/min/sort with a
# dim) is compared leaf by leaf, integer leaves (indices) exactly.
GRADIENTS = [
    "x[:2, :4].reshape(2, 2, 2).baddbmm(x.reshape(2, 2, 6), y.reshape(2, 6, 2), beta=0.5, alpha=2.0)",
    "x.index_add(0, torch.tensor([0, 2, 0]), y[:3])", "torch.index_add(x, 1, torch.tensor([1, 5]), y[:, :2], alpha=3)",
    "F.selu(x)", "nn.SELU()(x)", "F.hardtanh(x)", "F.hardtanh(x, min_val=-0.5, max_val=0.8)", "F.hardtanh(x, -0.3)",
    "nn.Hardtanh()(x)", "nn.Hardtanh(-0.5, 0.7)(x)", "nn.Hardtanh(max_val=0.2)(x)",
    "F.pixel_shuffle(x.reshape(1, 8, 3, 1), 2)", "F.pixel_shuffle(x.reshape(2, 1, 4, 3, 1), 2)",
    "F.pixel_unshuffle(x.reshape(1, 1, 4, 6), 2)", "F.pixel_unshuffle(y.reshape(2, 1, 1, 2, 6), 2)",
    "nn.PixelShuffle(2)(x.reshape(2, 4, 3, 1))", "nn.PixelUnshuffle(2)(x.reshape(1, 1, 4, 6))",
    # max/min: a tensor second argument compares elementwise, an int (literal or computed) reduces
    "torch.max(x, y)", "torch.min(x, y)", "x.max(y)", "x.min(y * 2)", "torch.max(x, other=y)", "x.min(other=y)",
    "torch.max(x, y.abs())", "torch.max(x)", "x.min()", "torch.max(x, 1)", "torch.max(x, dim=0, keepdim=True)",
    "torch.min(x, -1)", "x.max(1)", "x.min(dim=0)", "torch.max(x, x.dim() - 1)", "x.min(len(y.shape) - 2)",
    "torch.max(x, 1).values", "x.min(0).indices", "torch.max(x, 1)[0]", "torch.min(x, 1, True)[1]",
    "[v * i for v, i in [torch.max(x, 1)]][0]",
    # the other (values, indices) results; mode on rounded values (ties), with the gradient of x
    "torch.topk(x, 2)", "x.topk(3, dim=0)", "torch.topk(x, 2, largest=False).values", "x.topk(2, 1, False, True).indices",
    "torch.sort(x)", "x.sort(dim=0, descending=True)", "torch.sort(x, 1, True).values", "x.sort(stable=True)[1]",
    "torch.median(x)", "x.median()", "torch.median(x, 1)", "x.median(dim=0, keepdim=True).values",
    "torch.median(x[:, :5], -1).indices", "torch.kthvalue(x, 2)", "x.kthvalue(3, dim=0)", "x.kthvalue(1, 1, True).values",
    "torch.mode((x - x.detach() + torch.round(x.detach())), 1)",
    "(x - x.detach() + torch.round(x.detach())).mode(0)",
    "torch.mode((x - x.detach() + torch.round(x.detach())), dim=0, keepdim=True).values",
    "(x - x.detach() + torch.round(x.detach())).mode().indices",
    "F.layer_norm(x.reshape(2, 3, 4), (3, 4))", "F.layer_norm(x, [6], y[0], y[1])",
    "F.layer_norm(x.reshape(2, 3, 4), [3, 4], weight=y.reshape(2, 3, 4)[0], bias=y.reshape(2, 3, 4)[1], eps=1e-3)",
    "torch.view_as_real(torch.view_as_complex(x.reshape(4, 3, 2)) * torch.view_as_complex(y.reshape(4, 3, 2)))",
    "torch.view_as_real(torch.polar(x.abs(), y) * torch.complex(y, x)).flatten(1)",
    # scatter: a tensor or a number, written where the index says (unique indices; scatter_add sums repeats)
    "x.scatter(1, torch.argsort(y, dim=1)[:, :3], y[:, :3])", "torch.scatter(x, 0, torch.argsort(y, dim=0)[:3, :4], y[:3, :4])",
    "x.scatter(0, torch.argsort(y, dim=0)[:2], 2.5)", "x.scatter(-1, torch.argsort(y, dim=1)[:, :2], value=-1.0)",
    "x.scatter_add(0, torch.argsort(y, dim=0) % 2, y)", "torch.scatter_add(x, 1, torch.argsort(y, dim=1)[:3] // 2, y[:3])",
    "z = y + 0; z.scatter_(1, torch.argsort(x, dim=1)[:, :2], x[:, :2]); z",
    "z = x * 1; z.scatter_add_(0, torch.argsort(y, dim=0) % 3, y); z",
    "z = x * 1; z.triu_(1); z", "z = x * 1; z.tril_(-1); z", "z = x * 1; z.triu_(); z.tril_(diagonal=2); z",
]


def _body(expr: str) -> str:
    """`a; b; c` is the body `a`, `b`, `return c` (for in-place statements); anything else is returned."""
    *statements, value = expr.split("; ")
    return "".join(f"    {s}\n" for s in statements) + f"    return {value}\n"


def _convert(expressions: list[str], name: str, prologue: str = ""):
    source = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n" + "".join(
        f"def f{i}(x, y):\n{prologue}{_body(expr)}\n\n" for i, expr in enumerate(expressions))
    result = retarget.convert(source, path=f"{name}.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    return import_source(source, f"torch_{name}"), import_source(result.code, f"flax_{name}")


@pytest.fixture(scope="module")
def converted():
    return _convert(EXPRESSIONS, "ops")


@pytest.fixture(scope="module")
def converted_grads():
    # x and y known to be tensors, as in model code: methods that lists share (`.max`, `.sort`) convert
    return _convert(GRADIENTS, "grad_ops", "    x = torch.as_tensor(x)\n    y = torch.as_tensor(y)\n")


@pytest.mark.parametrize("index", range(len(EXPRESSIONS)), ids=EXPRESSIONS)
def test_rule_matches_torch(converted, index):
    torch_side, flax_side = converted
    rng = np.random.default_rng(index)
    x, y = (rng.standard_normal((4, 6)).astype(np.float32) for _ in range(2))
    expected = getattr(torch_side, f"f{index}")(torch.tensor(x), torch.tensor(y))
    got = getattr(flax_side, f"f{index}")(jnp.asarray(x), jnp.asarray(y))
    if isinstance(expected, torch.Tensor):
        want = expected.numpy().dtype
        assert np.asarray(got).dtype == (np.int32 if want == np.int64 else want)  # JAX runs 32-bit
        np.testing.assert_allclose(np.asarray(got), expected.numpy(), rtol=2e-6, atol=1e-6)
    else:
        assert tuple(got) == tuple(expected) if isinstance(expected, torch.Size) else got == expected


def _leaves(value) -> list:
    return [a for v in value for a in _leaves(v)] if isinstance(value, (tuple, list)) else [value]


def _assert_same(got, expected: torch.Tensor, tol: float = 1e-5):
    want = expected.detach().numpy()
    assert np.asarray(got).dtype == (np.int32 if want.dtype == np.int64 else want.dtype)
    np.testing.assert_allclose(np.asarray(got), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("index", range(len(GRADIENTS)), ids=GRADIENTS)
def test_rule_values_and_gradients_match_torch(converted_grads, index):
    torch_f, flax_f = (getattr(side, f"f{index}") for side in converted_grads)
    rng = np.random.default_rng(100 + index)
    x, y = (rng.standard_normal((4, 6)).astype(np.float32) for _ in range(2))
    tx, ty = (torch.tensor(a, requires_grad=True) for a in (x, y))
    expected = _leaves(torch_f(tx, ty))
    got = _leaves(flax_f(jnp.asarray(x), jnp.asarray(y)))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        _assert_same(g, e)
    floats = [i for i, e in enumerate(expected) if e.is_floating_point()]
    if not floats:
        return  # indices only: nothing to differentiate
    probes = {i: rng.standard_normal(tuple(expected[i].shape)).astype(np.float32) for i in floats}
    sum((expected[i] * torch.from_numpy(probes[i])).sum() for i in floats).backward()

    def loss(a, b):
        out = _leaves(flax_f(a, b))
        return sum(jnp.sum(out[i] * probes[i]) for i in floats)

    grads = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(y))
    for g, t in zip(grads, (tx, ty)):
        np.testing.assert_allclose(np.asarray(g), np.zeros_like(x) if t.grad is None else t.grad.numpy(),
                                   rtol=1e-5, atol=1e-5)


# Llama's rotary embeddings (meta-llama/llama, model.py), as written there.
ROPE = '''\
from typing import Tuple

import torch


def precompute_freqs_cis(dim: int, end: int, theta: float = 10000.0):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
    t = torch.arange(end, device=freqs.device)  # type: ignore
    freqs = torch.outer(t, freqs).float()  # type: ignore
    freqs_cis = torch.polar(torch.ones_like(freqs), freqs)  # complex64
    return freqs_cis


def reshape_for_broadcast(freqs_cis: torch.Tensor, x: torch.Tensor):
    ndim = x.ndim
    assert 0 <= 1 < ndim
    assert freqs_cis.shape == (x.shape[1], x.shape[-1])
    shape = [d if i == 1 or i == ndim - 1 else 1 for i, d in enumerate(x.shape)]
    return freqs_cis.view(*shape)


def apply_rotary_emb(
    xq: torch.Tensor,
    xk: torch.Tensor,
    freqs_cis: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    freqs_cis = reshape_for_broadcast(freqs_cis, xq_)
    xq_out = torch.view_as_real(xq_ * freqs_cis).flatten(3)
    xk_out = torch.view_as_real(xk_ * freqs_cis).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)
'''


def test_llama_rotary_embedding_matches_torch():
    """torch.polar, view_as_complex, complex products, view_as_real(...).flatten(3): values and gradients."""
    result = retarget.convert(ROPE, path="rope.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    t, f = import_source(ROPE, "torch_rope"), import_source(result.code, "flax_rope")
    rng = np.random.default_rng(0)
    xq, xk = rng.standard_normal((2, 5, 3, 8)).astype(np.float32), rng.standard_normal((2, 5, 2, 8)).astype(np.float32)
    probe_q, probe_k = rng.standard_normal(xq.shape), rng.standard_normal(xk.shape)
    freqs = t.precompute_freqs_cis(8, 10)[:5]
    np.testing.assert_allclose(np.asarray(f.precompute_freqs_cis(8, 10)[:5]), freqs.numpy(), rtol=1e-5, atol=1e-5)
    tq, tk = torch.tensor(xq, requires_grad=True), torch.tensor(xk, requires_grad=True)
    out_q, out_k = t.apply_rotary_emb(tq, tk, freqs)
    ((out_q * torch.from_numpy(probe_q)).sum() + (out_k * torch.from_numpy(probe_k)).sum()).backward()

    def loss(q, k):
        a, b = f.apply_rotary_emb(q, k, f.precompute_freqs_cis(8, 10)[:5])
        return jnp.sum(a * probe_q) + jnp.sum(b * probe_k), (a, b)

    for fn in (loss, jax.jit(loss)):
        (_, (a, b)), grads = jax.value_and_grad(fn, argnums=(0, 1), has_aux=True)(jnp.asarray(xq), jnp.asarray(xk))
        for got, want in zip((a, b, *grads), (out_q, out_k, tq.grad, tk.grad)):
            assert np.asarray(got).dtype == np.float32
            np.testing.assert_allclose(np.asarray(got), want.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_autocast_blocks_run_in_full_precision():
    source = "import torch\n\n\ndef f(x, w):\n    with torch.autocast('cuda', dtype=torch.bfloat16):\n        y = x @ w\n    return y\n"
    result = retarget.convert(source)
    assert result.clean and "autocast" not in result.code and "    y = x @ w\n" in result.code


# Layers with weights: built on both sides, torch's (randomized) state dict ported, outputs and parameter
# gradients compared. Inputs: (shape, "float" | "float+OFFSET" | "int:N").
LAYERS = [
    ("nn.LayerNorm([6])", [((3, 6), "float")]),
    ("nn.LayerNorm((5, 6))", [((2, 5, 6), "float")]),
    ("nn.LayerNorm([4, 5, 6], eps=1e-3)", [((2, 4, 5, 6), "float")]),
    ("nn.LayerNorm((5, 6), elementwise_affine=False)", [((2, 5, 6), "float")]),
    ("nn.LayerNorm([5, 6], bias=False)", [((3, 5, 6), "float")]),
    ("nn.LayerNorm(64)", [((4, 64), "float+10")]),  # two-pass variance as torch (fast: 4e-5 off)
]


@pytest.fixture(scope="module")
def converted_layers():
    source = "import torch\nimport torch.nn as nn\n\n\n" + "".join(
        f"class L{i}(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.layer = {expr}\n\n"
        f"    def forward(self, x):\n        return self.layer(x)\n\n\n" for i, (expr, _) in enumerate(LAYERS))
    result = retarget.convert(source, path="layers.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    return import_source(source, "torch_layer_ops"), import_source(result.code, "flax_layer_ops"), result


@pytest.mark.parametrize("index", range(len(LAYERS)), ids=[expr for expr, _ in LAYERS])
def test_layer_rule_matches_torch(converted_layers, index):
    torch_side, flax_side, conversion = converted_layers
    torch.manual_seed(index)
    torch_model = getattr(torch_side, f"L{index}")()
    with torch.no_grad():
        for p in torch_model.parameters():
            p.add_(torch.randn_like(p))  # non-trivial weights (LayerNorm starts at ones/zeros)
    flax_model = getattr(flax_side, f"L{index}")(rngs=nnx.Rngs(0))
    retarget.port_weights(torch_model.state_dict(), flax_model)
    inputs = make_inputs(Case("", "", inputs=LAYERS[index][1]), seed=index)
    np.testing.assert_allclose(np.asarray(run_flax(flax_model, inputs)),
                               run_torch(torch_model, inputs).detach().numpy(), rtol=1e-5, atol=1e-5)
    if not list(torch_model.parameters()):
        return
    torch_grads, flax_grads = gradients(Pair(torch_model, flax_model, conversion), inputs)
    assert sorted(flax_grads) == sorted(torch_grads)
    for key, value in torch_grads.items():
        np.testing.assert_allclose(flax_grads[key], value, rtol=1e-4, atol=1e-5, err_msg=key)


EMBEDDING = """\
import torch
import torch.nn as nn
import torch.nn.functional as F


class Tokens(nn.Module):
    def __init__(self, padding_idx):
        super().__init__()
        self.padding_idx = padding_idx
        self.emb = nn.Embedding(7, 4, padding_idx=padding_idx)
        self.proj = nn.Linear(4, 7)

    def forward(self, ids):
        looked_up = F.embedding(ids, self.proj.weight, padding_idx=self.padding_idx)
        return self.proj(self.emb(ids) * looked_up)
"""


@pytest.mark.parametrize("padding_idx", [0, 3, -1])
def test_embedding_padding_row_starts_at_zero_and_gets_no_gradient(padding_idx):
    """nn.Embedding / F.embedding with padding_idx: torch zeroes the row at init and its backward skips it."""
    result = retarget.convert(EMBEDDING, path="tokens.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    torch_side, flax_side = import_source(EMBEDDING, "torch_tokens"), import_source(result.code, "flax_tokens")
    flax_model = flax_side.Tokens(padding_idx, rngs=nnx.Rngs(0))
    assert not np.asarray(flax_model.emb.embedding[...][padding_idx]).any()
    assert np.asarray(flax_model.emb.embedding[...]).any(axis=1).sum() == 6
    torch.manual_seed(0)
    torch_model = torch_side.Tokens(padding_idx)
    with torch.no_grad():
        torch_model.emb.weight.add_(torch.randn_like(torch_model.emb.weight))  # the padding row too: not zero
    retarget.port_weights(torch_model.state_dict(), flax_model)
    ids = np.array([[0, 3, 6, 2, 3], [6, 6, 1, 0, 5]])
    np.testing.assert_allclose(np.asarray(run_flax(flax_model, [ids])), run_torch(torch_model, [ids]).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    torch_grads, flax_grads = gradients(Pair(torch_model, flax_model, result), [ids])
    assert sorted(flax_grads) == sorted(torch_grads) == ["emb.weight", "proj.bias", "proj.weight"]
    for key, value in torch_grads.items():
        np.testing.assert_allclose(flax_grads[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
    assert not torch_grads["emb.weight"][padding_idx].any() and not flax_grads["emb.weight"][padding_idx].any()
    assert flax_grads["emb.weight"].any(axis=1).sum() == 5  # the other rows looked up: 0, 1, 2, 3, 5, 6 less padding


CASTS = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 4)
        self.bn = nn.BatchNorm1d(4)
        self.register_buffer("scale", torch.full((4,), 0.5))

    def forward(self, x):
        return self.bn(self.fc(x)) * self.scale


def double_model():
    model = Net()
    model.double()
    return model


def half_model():
    return Net().half()


def cast_model(dtype):
    model = Net().to("cpu")
    model = model.to(dtype=dtype)
    return model.float() if dtype is None else model


def float64_model():
    model = Net().to("cpu").eval()
    return model.to(torch.float64)
"""


@pytest.fixture(scope="module")
def converted_casts():
    result = retarget.convert(CASTS, path="casts.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    return import_source(CASTS, "torch_casts"), import_source(result.code, "flax_casts")


def _dtypes(flax_model) -> set:
    return {str(v.dtype) for v in jax.tree.leaves(nnx.state(flax_model, nnx.Not(nnx.RngState)))}


@pytest.mark.parametrize("factory", ["double_model", "float64_model"])
def test_model_cast_to_float64_matches_torch(converted_casts, factory):
    """`model.double()` / `model.to(torch.float64)`: float64 parameters and buffers, torch's float64 outputs."""
    torch_side, flax_side = converted_casts
    torch.manual_seed(0)
    torch_model = getattr(torch_side, factory)().eval()
    x = np.random.default_rng(0).standard_normal((3, 5))
    with jax.enable_x64(True):
        flax_model = getattr(flax_side, factory)(rngs=nnx.Rngs(0))
        assert _dtypes(flax_model) == {"float64", "int32"}  # num_batches_tracked stays an integer
        retarget.port_weights(torch_model.state_dict(), flax_model)
        flax_model.eval()
        got = flax_model(jnp.asarray(x))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), torch_model(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)


def test_model_cast_to_float64_without_x64_is_an_error(converted_casts):
    with pytest.raises(ValueError, match="jax_enable_x64"):
        converted_casts[1].double_model(rngs=nnx.Rngs(0))


@pytest.mark.parametrize("factory, args, dtype", [("half_model", (), "float16"),
                                                  ("cast_model", ("bfloat16",), "bfloat16"),
                                                  ("cast_model", ("float16",), "float16"),
                                                  ("cast_model", (None,), "float32")])
def test_model_cast_to_half_precision(converted_casts, factory, args, dtype):
    """`.half()`, `.to(dtype=...)`, `.float()`: floating parameters and buffers cast, integers kept; outputs
    close to torch's in that precision."""
    torch_side, flax_side = converted_casts
    torch.manual_seed(0)
    torch_model = getattr(torch_side, factory)(*(getattr(torch, a) if a else a for a in args)).eval()
    flax_model = getattr(flax_side, factory)(*(getattr(jnp, a) if a else a for a in args), rngs=nnx.Rngs(0))
    assert _dtypes(flax_model) == {dtype, "int32"}
    retarget.port_weights(torch_model.state_dict(), flax_model)
    flax_model.eval()
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(dtype if dtype != "bfloat16" else np.float32)
    expected = torch_model(torch.from_numpy(x).to(getattr(torch, dtype))).detach().float().numpy()
    got = flax_model(jnp.asarray(x, dtype=getattr(jnp, dtype)))
    assert str(got.dtype) == dtype
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), expected, rtol=2e-2, atol=2e-2)


TENSOR_TO = """\
import torch
import torch.nn as nn


class Norm(nn.Module):
    def forward(self, x, other, device):
        input_dtype = x.dtype
        y = x.to(torch.float32) * 2
        return y.to(input_dtype), y.to(other), y.to(x.device), y.to("cpu"), y.to(device), y.to(dtype=input_dtype)
"""


def test_tensor_to_a_dtype_name_a_tensor_or_a_device():
    """`.to(input_dtype)` (RMSNorm in every Llama) casts back, `.to(other)` casts to other's dtype, a
    device does nothing; an argument the converter cannot classify is told apart at run time."""
    result = retarget.convert(TENSOR_TO, path="to.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    assert ".astype(input_dtype)" in result.code and "tensor_to(y, other)" in result.code
    torch_model = import_source(TENSOR_TO, "torch_tensor_to").Norm()
    flax_model = import_source(result.code, "flax_tensor_to").Norm(rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float16)
    expected = torch_model(torch.from_numpy(x), torch.zeros(1, dtype=torch.bfloat16), torch.device("cpu"))
    got = flax_model(jnp.asarray(x), jnp.zeros(1, jnp.bfloat16), jax.devices()[0])
    assert [str(g.dtype) for g in got] == [str(e.dtype).removeprefix("torch.") for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g, np.float32), e.float().numpy(), rtol=1e-3)


BUFFERS = """\
import torch
import torch.nn as nn
import torch.nn.functional as F


class Rotary(nn.Module):
    def __init__(self):
        super().__init__()
        self.inv_freq = nn.Buffer(torch.arange(4.0), persistent=False)
        self.scale = nn.Buffer(torch.ones(4))

    def forward(self, x):
        y = x * self.inv_freq * self.scale
        return (F.softmax(y, dim=-1, dtype=torch.float32), torch.log_softmax(y, -1, dtype=torch.float32),
                y.softmax(-1, dtype=torch.float32), y.log_softmax(-1))
"""


def test_non_persistent_buffer_and_softmax_dtype():
    """`nn.Buffer(t, persistent=False)` is not in the state dict (ports without it); `softmax(..., dtype=)`
    computes in that dtype, as torch does (attention in float32 over half-precision scores)."""
    result = retarget.convert(BUFFERS, path="buffers.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    torch_model = import_source(BUFFERS, "torch_buffers").Rotary()
    flax_model = import_source(result.code, "flax_buffers").Rotary(rngs=nnx.Rngs(0))
    assert set(torch_model.state_dict()) == {"scale"}
    with torch.no_grad():
        torch_model.scale.mul_(2.0)
    retarget.port_weights(torch_model.state_dict(), flax_model)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float16)
    expected = torch_model(torch.from_numpy(x))
    got = flax_model(jnp.asarray(x))
    assert [str(g.dtype) for g in got] == [str(e.dtype).removeprefix("torch.") for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g, np.float32), e.float().numpy(), rtol=2e-3, atol=2e-3)


GENERATORS = """\
import torch


def sample(n, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.Generator()
    h.manual_seed(seed + 1)
    a = torch.randn(2, 3, generator=g)
    b = torch.randperm(n, generator=h)
    c = torch.rand(4, generator=torch.Generator().manual_seed(seed))
    d = torch.randint(0, 10, (3,), generator=g)
    e = torch.empty(5).uniform_(-2.0, 2.0, generator=g)
    f = torch.multinomial(torch.ones(6), 3, generator=h)
    return a, b, c, d, e, f
"""


def test_generators_become_seeded_key_sources():
    """torch.Generator / manual_seed / generator=: JAX's streams (not torch's numbers), deterministic per seed,
    with torch's shapes, dtypes and ranges."""
    result = retarget.convert(GENERATORS, path="generators.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    torch_side, flax_side = import_source(GENERATORS, "torch_generators"), import_source(result.code, "flax_generators")
    expected = torch_side.sample(8, 0)
    first, again, other = flax_side.sample(8, 0), flax_side.sample(8, 0), flax_side.sample(8, 1)
    for got, same, different, want in zip(first, again, other, expected):
        assert got.shape == tuple(want.shape) and str(got.dtype) == str(want.dtype).replace("torch.", "").replace(
            "int64", "int32")
        np.testing.assert_array_equal(np.asarray(got), np.asarray(same))
        assert not np.array_equal(np.asarray(got), np.asarray(different))
    assert sorted(np.asarray(first[1]).tolist()) == list(range(8))
    assert np.asarray(first[3]).min() >= 0 and np.asarray(first[3]).max() < 10
    assert np.all(np.abs(np.asarray(first[4])) <= 2.0) and len(set(np.asarray(first[5]).tolist())) == 3


PICK = """\
import torch
import torch.nn as nn


class Pick(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x, t):
        values, indices = torch.max(x, self.dim)
        return values, indices, torch.min(x, t), x.max(self.dim, keepdim=True).values, x.sort(self.dim)[1]
"""


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_min_dim_or_tensor_told_apart_under_jit(dim):
    """A dim held in an attribute is a static int under `nnx.jit`; a tensor argument compares elementwise."""
    result = retarget.convert(PICK, path="pick.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    torch_side, flax_side = import_source(PICK, "torch_pick"), import_source(result.code, "flax_pick")
    rng = np.random.default_rng(dim + 1)
    x, t = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 6)).astype(np.float32)
    expected = torch_side.Pick(dim)(torch.from_numpy(x), torch.from_numpy(t))
    got = nnx.jit(lambda m, a, b: m(a, b))(flax_side.Pick(dim, rngs=nnx.Rngs(0)), jnp.asarray(x), jnp.asarray(t))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        _assert_same(g, e)
