"""Apply one rule to one call: bind the torch arguments, then render a template or run a plugin."""
from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from ..diagnostics import Escape
from ..plugins import CONSUMES, REGISTRY
from ..rules import Rule, Signature


@dataclass
class Site:
    """Everything a template or plugin sees of the call being rewritten."""
    rule: Rule
    original: cst.Call
    updated: cst.Call
    bound: dict[str, object]
    receiver: cst.BaseExpression | None = None
    statement: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def arg(self, name: str):
        return self.bound.get(name)


def bind(sig: Signature, args: tuple[cst.Arg, ...]) -> dict[str, object] | Escape:
    """Match call arguments to a torch signature, like Python would."""
    bound: dict[str, object] = {}
    positional = [n for n in sig.names if n not in sig.kwonly]
    star: list[cst.Arg] = []
    keywords: list[cst.Arg] = []
    for i, arg in enumerate(args):
        if sig.varkw and (arg.star == "**" or (arg.keyword is not None and arg.keyword.value not in sig.names)):
            keywords.append(arg)
        elif arg.star == "**":
            return Escape("RT102", "`**kwargs` in a call to a torch API: pass the arguments explicitly")
        elif arg.keyword is not None and arg.keyword.value == sig.varargs:  # `torch.zeros(size=(2, 3))`
            star.append(cst.Arg(arg.value, star="*"))
        elif arg.keyword is not None:
            name = arg.keyword.value
            if name not in sig.names:
                return Escape("RT102", f"unknown argument `{name}`")
            bound[name] = arg.value
        elif arg.star == "*" or (i >= len(positional) and sig.varargs):
            if not sig.varargs:
                return Escape("RT102", "`*args` in a call whose torch signature has no *args")
            star.append(arg)
        elif i < len(positional) and not star:
            bound[positional[i]] = arg.value
        else:
            return Escape("RT102", "more positional arguments than the torch signature takes")
    if sig.varargs:
        bound[sig.varargs] = star
    if sig.varkw:
        bound[sig.varkw] = keywords
    return bound


_DEFAULTS: dict[int, dict[str, cst.BaseExpression]] = {}


def _defaults(sig: Signature) -> dict[str, cst.BaseExpression]:
    """Parsed torch defaults of a signature (parsed once per signature: rules live for the process)."""
    if id(sig) not in _DEFAULTS:
        _DEFAULTS[id(sig)] = {name: cst.parse_expression(text) for name, text in sig.defaults.items()}
    return _DEFAULTS[id(sig)]


def _is_default(rule: Rule, name: str, value: object) -> bool:
    default = rule.sig.defaults.get(name)
    if default is None or not isinstance(value, cst.BaseExpression):
        return False
    return cst.Module([]).code_for_node(value).replace(" ", "") == default.replace(" ", "")


def unexpressible(rule: Rule, bound: dict[str, object]) -> Escape | None:
    """An argument the caller gave that no template uses, is not droppable and is not the default."""
    used = set().union(*(t.placeholders for t in rule.templates)) if rule.templates else set(bound)
    used |= CONSUMES.get(rule.plugin, frozenset())
    for name, value in bound.items():
        if name in used or name in rule.drop or (isinstance(value, list) and not value):
            continue
        if not _is_default(rule, name, value):
            return Escape("RT102", f"`{rule.name.rsplit('.', 1)[-1]}` argument `{name}` has no JAX equivalent here")
    return None


def apply_rule(site: Site, rngs: cst.BaseExpression) -> cst.CSTNode | Escape:
    """The replacement for `site.updated` under its rule, or why there is none."""
    rule = site.rule
    problem = unexpressible(rule, site.bound)
    if problem:
        return problem
    if rule.plugin:
        return REGISTRY[rule.plugin](site, rngs)
    return render(site, site.bound, rngs)


def render(site: Site, bound: dict[str, object], rngs: cst.BaseExpression) -> cst.CSTNode | Escape:
    """The first template of the site's rule that fits `bound` (the caller's arguments)."""
    rule = site.rule
    values = {k: v for k, v in bound.items() if not _is_default(rule, k, v)}
    values["rngs"] = rngs
    if site.receiver is not None:
        values["self"] = site.receiver
    defaults = _defaults(rule.sig)
    for template in rule.templates:
        applies = not template.needs or template.needs & set(values)
        if "prng" in template.placeholders and "prng" not in values and applies:
            key = site.extra["ctx"].key_expr()  # only a template drawing from `rngs` needs one (not `generator=g`)
            if key is None:
                return Escape("RT108", f"`{rule.name}` needs a PRNG key and no `rngs` reaches this code; "
                                       "pass a jax.random key in by hand")
            values["prng"] = key
        out = template.render(values, defaults)
        if out is not None:
            return out
    missing = sorted(set().union(*(t.placeholders for t in rule.templates)) - set(values))
    return Escape("RT102", f"no target form of `{rule.name}` fits this call (missing {', '.join(missing)})")
