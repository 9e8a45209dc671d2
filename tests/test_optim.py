"""Optimizer and scheduler rules against torch: the converted code, run on the same parameters
and gradients, gives the same parameters after N steps (1e-6) and the same learning rates."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import imports_torch, import_source

STEPS = 6

OPTIMIZERS = [
    "torch.optim.SGD(model.parameters(), lr=0.1)",
    "torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)",
    "torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)",
    "torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)",
    "torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.01)",
    "torch.optim.Adam(model.parameters())",
    "torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95), eps=1e-6)",
    "torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.1)",
    "torch.optim.AdamW(model.parameters(), lr=0.01)",
    "torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)",
    "torch.optim.RMSprop(model.parameters(), lr=0.01)",
    "torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, momentum=0.5, weight_decay=0.01, centered=True)",
    "torch.optim.Adagrad(model.parameters(), lr=0.1)",
    "torch.optim.Adagrad(model.parameters(), lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)",
    "torch.optim.Adamax(model.parameters(), lr=0.01)",
]

SCHEDULERS = [
    "torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)",
    "torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 5, 5], gamma=0.1)",
    "torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)",
    "torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.001)",
    "torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=4)",
    "torch.optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=3)",
    "torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.95 ** step)",
    "torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=12)",
    "torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=12, anneal_strategy='linear', three_phase=True)",
    ("torch.optim.lr_scheduler.SequentialLR(opt, [torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, "
     "total_iters=3), torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)], milestones=[3])"),
]


def _convert(body: str, name: str):
    source = f"import torch\n\n\ndef make(model, opt=None):\n    return {body}\n"
    result = retarget.convert(source)
    assert result.clean, result.diagnostics
    return result.code, import_source(result.code, name)


def _models():
    torch.manual_seed(0)
    tmodel = torch.nn.Linear(5, 3)
    fmodel = nnx.Linear(5, 3, rngs=nnx.Rngs(0))
    # Host copies first: JAX may read a host buffer after returning, and torch updates these in place.
    fmodel.kernel[...] = jnp.asarray(tmodel.weight.detach().numpy().T.copy())
    fmodel.bias[...] = jnp.asarray(tmodel.bias.detach().numpy().copy())
    return tmodel, fmodel


def _grads(step: int):
    rng = np.random.default_rng(step)
    return rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)


def _step_both(topt, tmodel, fopt, fmodel, step):
    gw, gb = _grads(step)
    tmodel.weight.grad, tmodel.bias.grad = torch.tensor(gw.copy()), torch.tensor(gb.copy())
    topt.step()
    values = {"kernel": jnp.array(gw.T, copy=True), "bias": jnp.array(gb, copy=True)}
    grads = jax.tree.map_with_path(lambda path, _: values[path[0].key], nnx.state(fmodel, nnx.Param))
    fopt.update(fmodel, grads)


def _assert_same(tmodel, fmodel):
    np.testing.assert_allclose(np.asarray(fmodel.kernel[...]), tmodel.weight.detach().numpy().T, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fmodel.bias[...]), tmodel.bias.detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("expr", OPTIMIZERS)
def test_optimizer_steps_match_torch(expr):
    code, module = _convert(expr, f"opt_{OPTIMIZERS.index(expr)}")
    assert "nnx.Optimizer(model" in code and not imports_torch(code)
    tmodel, fmodel = _models()
    topt = eval(expr, {"torch": torch, "model": tmodel})  # the torch side of the test, not generated code
    fopt = module.make(fmodel)
    for step in range(STEPS):
        _step_both(topt, tmodel, fopt, fmodel, step)
    _assert_same(tmodel, fmodel)


def test_plain_optimizers_use_optax_builtins():
    code, _ = _convert("torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95))", "opt_builtin")
    assert "optax.adam(learning_rate=0.01, b1=0.8, b2=0.95)" in code
    code, _ = _convert("torch.optim.AdamW(model.parameters())", "opt_adamw")
    assert "optax.adamw(learning_rate=0.001, weight_decay=0.01)" in code


@pytest.mark.parametrize("expr", SCHEDULERS)
def test_scheduler_learning_rates_and_steps_match_torch(expr):
    body = f"({expr})"
    source_opt = "torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)"
    _, make_opt = _convert(source_opt + " if opt is None else " + body, f"sched_{SCHEDULERS.index(expr)}")
    tmodel, fmodel = _models()
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    tsched = eval(expr, {"torch": torch, "opt": topt})  # the torch side of the test
    fopt = make_opt.make(fmodel)
    fsched = make_opt.make(fmodel, fopt)
    for step in range(10):
        assert fsched.get_last_lr()[0] == pytest.approx(tsched.get_last_lr()[0], rel=1e-6, abs=1e-12), step
        _step_both(topt, tmodel, fopt, fmodel, step)
        tsched.step()
        fsched.step()
    _assert_same(tmodel, fmodel)


PARAM_GROUPS = """import torch


def make(model):
    return torch.optim.{opt}


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def get_lr(optimizer):
    return optimizer.param_groups[0]["lr"]
"""


@pytest.mark.parametrize("opt", ["SGD(model.parameters(), lr=0.1, momentum=0.9)",
                                 "Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95))"])
def test_param_groups_learning_rate_writes_and_reads(opt):
    """A manual schedule through `param_groups`: each step uses the rate just written, as in torch."""
    source = PARAM_GROUPS.format(opt=opt)
    result = retarget.convert(source)
    assert result.clean, result.diagnostics
    assert "param_groups(optimizer)" in result.code and "inject_hyperparams" in result.code
    tmod, fmod = import_source(source, f"pg_torch_{len(opt)}"), import_source(result.code, f"pg_flax_{len(opt)}")
    tmodel, fmodel = _models()
    topt, fopt = tmod.make(tmodel), fmod.make(fmodel)
    for step in range(STEPS):
        for module, optimizer in ((tmod, topt), (fmod, fopt)):
            module.set_lr(optimizer, 0.1 * 0.5 ** step)
        assert fmod.get_lr(fopt) == pytest.approx(tmod.get_lr(topt), rel=1e-7)
        _step_both(topt, tmodel, fopt, fmodel, step)
    _assert_same(tmodel, fmodel)
    if "betas" in opt:
        assert fmod.param_groups(fopt)[0]["betas"] == pytest.approx(topt.param_groups[0]["betas"])


GROUPS = """import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)
        self.ln = nn.LayerNorm(3)

    def forward(self, x):
        return self.ln(self.fc(x))

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        param_dict = {pn: p for pn, p in self.named_parameters()}
        param_dict = {pn: p for pn, p in param_dict.items() if p.requires_grad}
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0, "lr": learning_rate / 2},
        ]
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)
"""

PAIRS = [("fc.weight", ("fc", "kernel"), True), ("fc.bias", ("fc", "bias"), False),
         ("ln.weight", ("ln", "scale"), False), ("ln.bias", ("ln", "bias"), False)]


def test_parameter_groups_as_in_nanogpt():
    """nanoGPT's configure_optimizers: decay for matrices, none (and half the rate) for vectors."""
    result = retarget.convert(GROUPS)
    assert result.clean, result.diagnostics
    assert "torch_param_groups(self, optim_groups, optax.adamw" in result.code
    tmod, fmod = import_source(GROUPS, "groups_torch"), import_source(result.code, "groups_flax")
    torch.manual_seed(0)
    tmodel, fmodel = tmod.Net(), fmod.Net(rngs=nnx.Rngs(0))
    retarget.port_weights({k: v.detach().clone() for k, v in tmodel.state_dict().items()}, fmodel)
    topt = tmodel.configure_optimizers(0.1, 0.01, (0.9, 0.95))
    fopt = fmodel.configure_optimizers(0.1, 0.01, (0.9, 0.95))
    params = dict(tmodel.named_parameters())
    for step in range(STEPS):
        rng = np.random.default_rng(step)
        grads = {name: rng.normal(size=tuple(params[name].shape)).astype(np.float32) for name, _, _ in PAIRS}
        for name, tensor in params.items():
            tensor.grad = torch.tensor(grads[name])
        topt.step()
        flat = {path: jnp.asarray(grads[name].T.copy() if transposed else grads[name])
                for name, path, transposed in PAIRS}
        fopt.update(fmodel, jax.tree.map_with_path(
            lambda path, _: flat[tuple(getattr(k, "key", getattr(k, "name", None)) for k in path)[:2]],
            nnx.state(fmodel, nnx.Param)))
    for name, (layer, var), transposed in PAIRS:
        expected = params[name].detach().numpy()
        got = np.asarray(getattr(getattr(fmodel, layer), var)[...])
        np.testing.assert_allclose(got.T if transposed else got, expected, rtol=1e-6, atol=1e-6)
