"""Run a PyTorch model and its converted Flax NNX twin on the same weights and inputs.

Used by the equivalence tests and by `examples/run_example.py`: convert the
source, import both modules, build both models, port the weights (with
non-trivial BatchNorm statistics), and compare outputs, gradients and
running statistics.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import retarget
from retarget.weights.port import plan

ZOO = Path(__file__).parent / "zoo"


@dataclass
class Case:
    file: str
    factory: str
    kwargs: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)  # (shape, "float"|"int:N"|"bool")
    train_kwargs: dict | None = None  # kwargs that disable dropout, for the train-mode test

    @property
    def id(self) -> str:
        return f"{self.file[:-3]}:{self.factory}"


def import_source(code: str, name: str):
    """Import `code` as a real module (so tracebacks and inspect work)."""
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for shape, kind in case.inputs:
        if kind == "float":
            out.append(rng.standard_normal(shape).astype(np.float32))
        elif kind.startswith("float+"):  # far from zero: a variance as E[x^2] - E[x]^2 loses its digits
            out.append((rng.standard_normal(shape) + float(kind[6:])).astype(np.float32))
        elif kind.startswith("int:"):
            out.append(rng.integers(0, int(kind[4:]), shape).astype(np.int64))
        elif kind == "bool":
            out.append(rng.random(shape) < 0.2)
    return out


def randomize_statistics(model: torch.nn.Module) -> None:
    """Give BatchNorm layers non-trivial running statistics (fresh ones hide mapping bugs)."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(7)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)


@dataclass
class Pair:
    torch_model: torch.nn.Module
    flax_model: nnx.Module
    conversion: retarget.Conversion


def build_pair(case: Case, kwargs: dict | None = None) -> Pair:
    source = (ZOO / case.file).read_text()
    conversion = retarget.convert(source, path=case.file)
    torch_mod = import_source(source, f"zoo_torch_{case.file[:-3]}")
    flax_mod = import_source(conversion.code, f"zoo_flax_{case.file[:-3]}")
    kwargs = case.kwargs if kwargs is None else kwargs
    torch.manual_seed(0)
    torch_model = getattr(torch_mod, case.factory)(**kwargs)
    with torch.no_grad():
        randomize_statistics(torch_model)
    flax_model = getattr(flax_mod, case.factory)(**kwargs, rngs=nnx.Rngs(0))
    retarget.port_weights(torch_model.state_dict(), flax_model)
    return Pair(torch_model, flax_model, conversion)


def flatten_outputs(value) -> list[np.ndarray]:
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in flatten_outputs(v)]
    if isinstance(value, dict):
        return [a for k in sorted(value) for a in flatten_outputs(value[k])]
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [value.detach().numpy()]
    return [np.asarray(value)]


def run_torch(model, inputs):
    return model(*[torch.from_numpy(np.asarray(a)) for a in inputs])


def run_flax(model, inputs, jit: bool = False):
    arrays = [jnp.asarray(a) for a in inputs]
    if jit:
        return nnx.jit(lambda m, *xs: m(*xs))(model, *arrays)
    return model(*arrays)


def gradients(pair: Pair, inputs) -> tuple[dict, dict]:
    """d(sum(output * weights))/d(params) on both sides, keyed by torch parameter name."""
    pair.torch_model.zero_grad()
    outs = flatten_outputs(run_torch(pair.torch_model, inputs))
    probes = [np.random.default_rng(i).standard_normal(o.shape).astype(np.float32) for i, o in enumerate(outs)]
    t_out = [o for o in _tensor_leaves(run_torch(pair.torch_model, inputs))]
    sum(((o * torch.from_numpy(p)).sum() for o, p in zip(t_out, probes))).backward()
    torch_grads = {k: p.grad.numpy() for k, p in pair.torch_model.named_parameters() if p.grad is not None}

    def loss(model):
        leaves = [jnp.asarray(o) for o in _jax_leaves(run_flax(model, inputs))]
        return sum(jnp.sum(o * p) for o, p in zip(leaves, probes))

    grads = nnx.grad(loss)(pair.flax_model)
    flat = {".".join(map(str, path)): value for path, value in nnx.to_flat_state(grads)}
    flax_grads, groups = {}, {}
    for entry in plan(pair.flax_model)[0]:  # tied weights: one variable, several torch names
        groups.setdefault(id(entry.variable), []).append(entry)
    for entries in groups.values():
        found = next((flat[e.target] for e in entries if e.target in flat), None)
        for entry in entries:
            if found is not None and entry.source in torch_grads:
                flax_grads[entry.source] = entry.transform.invert(np.asarray(found[...]))
    return torch_grads, flax_grads


def _tensor_leaves(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _tensor_leaves(v)]
    return [] if value is None else [value]


def _jax_leaves(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _jax_leaves(v)]
    return [] if value is None else [value]


def imports_torch(code: str) -> bool:
    """Whether `code` imports torch (`import torch`, `import torch.nn as nn`, `from torch import ...`)."""
    import re
    return re.search(r"^\s*(import|from) torch\b", code, re.M) is not None
