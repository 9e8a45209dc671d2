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

import functools
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..rules import ParamRule, Rule, RuleSet, default_rules
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


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    for name, value in vars(obj).items():
        if name.startswith("_") or isinstance(value, (nnx.RngState, nnx.RngStream, nnx.Rngs)):
            continue
        if isinstance(value, (nnx.Variable, nnx.Module)):
            yield name, value


def rule_for(cls: type, rules: RuleSet) -> Rule | None:
    """The layer rule whose Flax target is `cls` or one of its bases."""
    for klass in cls.__mro__:
        if klass.__module__.startswith("flax."):
            rule = rules.layer_for_flax(f"nnx.{klass.__name__}")
        else:
            rule = rules.layer_for_flax(klass.__name__)
            rule = rule if rule and rule.support else None
        if rule:
            return rule
    return None


@functools.cache
def _pattern(target: str) -> re.Pattern:
    return re.compile(re.escape(target).replace(r"\{i\}", r"(?P<i>\d+)"))


def _match(rule: Rule, path: str) -> tuple[str, ParamRule] | None:
    for param in rule.params:
        found = _pattern(param.target).fullmatch(path)
        if found:
            return param.source.format(**found.groupdict()), param
    return None


class _Planner:
    def __init__(self, rules: RuleSet):
        self.rules, self.entries, self.unmapped = rules, [], []

    def walk(self, obj: Any, src: str, dst: str) -> None:
        rule = rule_for(type(obj), self.rules)
        if rule is not None:
            return self.walk_layer(obj, rule, src, dst, "")
        for name, value in _children(obj):
            if isinstance(value, nnx.Variable):
                self.entries.append(Entry(src + name, dst + name, value, parse_transform("identity")))
            else:
                self.walk(value, f"{src}{name}.", f"{dst}{name}.")

    def walk_layer(self, obj: Any, rule: Rule, src: str, dst: str, rel: str) -> None:
        for name, value in _children(obj):
            path = rel + name
            matched = _match(rule, path)
            if isinstance(value, nnx.Variable):
                if matched is None:
                    self.unmapped.append(f"{dst}{path} ({rule.name})")
                else:
                    self.entries.append(Entry(src + matched[0], dst + path, value,
                                              parse_transform(matched[1].transform)))
            elif matched is not None:
                self.walk(value, f"{src}{matched[0]}.", f"{dst}{path}.")
            elif any(p.target.startswith(path + ".") or _pattern(p.target.rsplit(".", 1)[0]).match(path)
                     for p in rule.params if "." in p.target):
                self.walk_layer(value, rule, src, dst, path + ".")
            else:
                self.walk(value, f"{src}{path}.", f"{dst}{path}.")


def plan(model: nnx.Module, rules: RuleSet | None = None) -> tuple[list[Entry], list[str]]:
    """Every (torch key, Flax variable, transform) the model needs, and variables no rule maps."""
    planner = _Planner(rules or default_rules())
    planner.walk(model, "", "")
    return planner.entries, planner.unmapped


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
        # jnp.array copies: a zero-copy view would alias the torch tensor, which torch may update in place
        e.variable[...] = jnp.array(values[id(e.variable)], dtype=e.variable.dtype, copy=True)
    return model
