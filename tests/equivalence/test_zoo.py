"""Every zoo model: convert, port weights, and compare with PyTorch.

Eval mode (eagerly and under nnx.jit), parameter gradients, and for
BatchNorm models one train-mode step: outputs and running statistics.
"""
import ast

import numpy as np
import pytest
import torch

import retarget

from harness import build_pair, flatten_outputs, gradients, make_inputs, run_flax, run_torch
from retarget.weights.port import plan
from zoo_cases import CASES, EXPECTED_DIAGNOSTICS

TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def pair_and_case(request):
    case = request.param
    return build_pair(case), case


def test_conversion_reports_only_known_escapes(pair_and_case):
    pair, case = pair_and_case
    found = [(d.code, d.line) for d in pair.conversion.diagnostics]
    assert found == EXPECTED_DIAGNOSTICS.get(case.file, [])


def test_output_needs_neither_torch_nor_retarget_and_is_stable(pair_and_case):
    pair, case = pair_and_case
    code = pair.conversion.code
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(code))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert imported <= {"jax", "flax", "math", "functools", "typing", "dataclasses", "collections", "inspect",
                        "threading"}, imported  # the last two: `default_rngs`, for layers chosen at run time
    assert retarget.convert(code).code == code  # converting the output again changes nothing


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_eval_outputs_match(pair_and_case, jit):
    pair, case = pair_and_case
    pair.torch_model.eval()
    pair.flax_model.eval()
    inputs = make_inputs(case)
    with torch.no_grad():
        expected = flatten_outputs(run_torch(pair.torch_model, inputs))
    actual = flatten_outputs(run_flax(pair.flax_model, inputs, jit=jit))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(a, e, **TOL)


def test_parameter_gradients_match(pair_and_case):
    pair, case = pair_and_case
    pair.torch_model.eval()
    pair.flax_model.eval()
    torch_grads, flax_grads = gradients(pair, make_inputs(case))
    assert set(flax_grads) == set(torch_grads)
    for name, grad in torch_grads.items():
        scale = max(1.0, float(np.abs(grad).max()))
        np.testing.assert_allclose(flax_grads[name], grad, rtol=1e-3, atol=1e-4 * scale, err_msg=name)


TRAIN_CASES = [c for c in CASES if c.train_kwargs is not None]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_train_step_updates_batch_statistics_like_torch(case, jit):
    pair = build_pair(case, {**case.kwargs, **case.train_kwargs})
    pair.torch_model.train()
    pair.flax_model.train()
    inputs = make_inputs(case, seed=3)
    expected = flatten_outputs(run_torch(pair.torch_model, inputs))
    actual = flatten_outputs(run_flax(pair.flax_model, inputs, jit=jit))
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, **TOL)
    buffers = dict(pair.torch_model.named_buffers())
    checked = 0
    for entry in plan(pair.flax_model)[0]:
        if entry.source in buffers:
            np.testing.assert_allclose(np.asarray(entry.variable[...]), buffers[entry.source].numpy(),
                                       rtol=1e-5, atol=1e-6, err_msg=entry.source)
            checked += 1
    assert checked >= 3
