"""Function and tensor-method rules, numerically: `f(x, y)` written with torch, converted, run on the
same inputs; results equal to float32 precision (booleans and integers exactly), same dtypes
(int64 results are int32: JAX runs 32-bit unless x64 is enabled)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import retarget
from harness import import_source

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
]


@pytest.fixture(scope="module")
def converted():
    source = "import torch\nimport torch.nn.functional as F\n\n\n" + "".join(
        f"def f{i}(x, y):\n    return {expr}\n\n\n" for i, expr in enumerate(EXPRESSIONS))
    result = retarget.convert(source, path="ops.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    return import_source(source, "torch_ops"), import_source(result.code, "flax_ops")


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


def test_autocast_blocks_run_in_full_precision():
    source = "import torch\n\n\ndef f(x, w):\n    with torch.autocast('cuda', dtype=torch.bfloat16):\n        y = x @ w\n    return y\n"
    result = retarget.convert(source)
    assert result.clean and "autocast" not in result.code and "    y = x @ w\n" in result.code
