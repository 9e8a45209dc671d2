"""Copy a PyTorch state dict into a converted Flax NNX model, driven by the rules.

The mapping comes from the model's structure, never from key names: walking
the NNX module tree, each layer whose class a rule targets (nnx.Linear,
Conv2d, LSTM, ...) says which torch entry fills each of its variables and how
(transpose, permutation); modules of the user's own classes keep attribute
names, so their torch keys are the same dotted paths. Every variable must be
filled and every torch entry used exactly once (tied weights: the same
variable reached through two paths consumes both keys, which must agree), or
one `WeightsError` lists every problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..rules import RuleSet, default_rules
from ..support.checkpoint import _children, _layer_entries, _pattern, layout_of, torch_entries
from .transforms import Transform, parse_transform


class WeightsError(Exception):
    """The checkpoint does not fit the model: lists missing, unexpected and mismatched keys."""

    def __init__(self, missing=(), unexpected=(), mismatched=(), unmapped=(), conflicting=()):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        self.unmapped, self.conflicting = list(unmapped), list(conflicting)
        parts = []
        for title, items in (("missing from the checkpoint", self.missing),
                             ("unexpected in the checkpoint", self.unexpected),
                             ("shape mismatch", self.mismatched),
                             ("model variables no rule maps", self.unmapped),
                             ("tied weights that differ", self.conflicting)):
            if items:
                parts.append(f"{title} ({len(items)}): " + ", ".join(map(str, items)))
        super().__init__("state dict does not fit the model; " + "; ".join(parts))


@dataclass(frozen=True)
class Entry:
    """One torch key feeding one Flax variable."""
    source: str
    target: str
    variable: nnx.Variable
    transform: Transform


def plan(model: nnx.Module, rules: RuleSet | None = None) -> tuple[list[Entry], list[str]]:
    """Every (torch key, Flax variable, transform) the model needs, and variables no rule maps.
    The walk is the one converted scripts carry (support/checkpoint.py), over the rules' layout."""
    found, unmapped = torch_entries(model, (rules or default_rules()).torch_layout())
    return [Entry(source, target, variable, parse_transform(transform))
            for source, target, variable, transform in found], unmapped


def torch_key_order(factory: Callable[[], nnx.Module], rules: RuleSet | None = None) -> list[str]:
    """The model's torch keys in the order torch's `state_dict()` lists them. The model is built
    abstractly; its walk happens inside the build, while attributes are still in assignment
    order (a merged NNX graph lists them sorted)."""
    layout, order = (rules or default_rules()).torch_layout(), []

    def build() -> nnx.Module:
        model = factory()
        order.extend(_state_dict_order(model, layout, ""))
        return model

    nnx.eval_shape(build)
    return order


def _state_dict_order(module: nnx.Module, layout, prefix: str) -> list[str]:
    """torch's order: a module's own parameters, then its buffers, then each child in turn; inside a
    converted layer, the rule's parameter order (layer index first for stacked layers, as LSTM)."""
    params = layout_of(type(module), layout)
    if params is not None:
        keys = [e[0] for e in _layer_entries(module, params, layout, prefix, "", "")[0]]
        return sorted(keys, key=lambda key: _param_rank(params, key[len(prefix):]))
    own = [(name, v) for name, v in _children(module) if isinstance(v, nnx.Variable)]
    keys = [prefix + name for name, v in own if isinstance(v, nnx.Param)]
    keys += [prefix + name for name, v in own if not isinstance(v, nnx.Param)]
    for name, child in _children(module):
        if not isinstance(child, nnx.Variable):
            keys += _state_dict_order(child, layout, f"{prefix}{name}.")
    return keys


def _param_rank(params, key: str) -> tuple:
    for index, (_, source, _) in enumerate(params):
        found = _pattern(source).fullmatch(key)
        if found:
            return tuple(int(v) for v in found.groupdict().values()) + (index,)
    return (float("inf"),)  # a nested module's key: keeps its place among the others (stable sort)


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor or array-like as numpy, without importing torch (bf16 stays bf16)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            import ml_dtypes
            return value.view(dtype=_torch_uint16(value)).numpy().view(ml_dtypes.bfloat16)
        return value.numpy()
    return np.asarray(value)


def _torch_uint16(tensor: Any) -> Any:
    import torch  # only reached with a torch tensor in hand
    return torch.uint16


def check_fit(entries: list[Entry], shapes: Mapping[str, tuple[int, ...]], unmapped: list[str]) -> None:
    """Raise one WeightsError listing every missing, unexpected, shape-mismatched or unmapped key."""
    missing, mismatched = [], []
    for e in entries:
        if e.source not in shapes:
            missing.append(e.source)
            continue
        expected = tuple(e.variable.shape)
        if e.transform.target_shape(tuple(shapes[e.source])) != expected:
            mismatched.append(f"{e.source} {tuple(shapes[e.source])} -> {e.target} {expected}")
    used = {e.source for e in entries}
    unexpected = sorted(k for k in shapes if k not in used)
    if missing or mismatched or unexpected or unmapped:
        raise WeightsError(missing, unexpected, mismatched, unmapped)


def _converted_values(entries: list[Entry], arrays: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Converted values by variable id; tied weights (one variable, several keys) must agree."""
    values, conflicting = {}, []
    for e in entries:
        value = e.transform.apply(arrays[e.source])
        previous = values.setdefault(id(e.variable), value)
        if previous is not value and not np.array_equal(previous, value):
            conflicting.append(e.source)
    if conflicting:
        raise WeightsError(conflicting=conflicting)
    return values


def port_weights(state_dict: Mapping[str, Any], model: nnx.Module, *, rules: RuleSet | None = None) -> nnx.Module:
    """Copy `state_dict` (torch tensors or numpy arrays) into `model` in place and return it.

    Values are cast to the dtype of the model's variable (the converted model
    declares its dtypes; e.g. int64 counters become int32 when JAX runs 32-bit).
    """
    entries, unmapped = plan(model, rules)
    arrays = {key: to_numpy(value) for key, value in state_dict.items()}
    check_fit(entries, {k: a.shape for k, a in arrays.items()}, unmapped)
    values = _converted_values(entries, arrays)
    for e in entries:
        # Copy on the host first: JAX may read a host buffer after returning (even with copy=True), and
        # torch may update that tensor in place meanwhile (training the torch model right after porting).
        private = np.array(values[id(e.variable)], dtype=e.variable.dtype, copy=True)
        e.variable[...] = jnp.asarray(private)
    return model
