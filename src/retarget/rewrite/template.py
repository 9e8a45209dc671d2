"""Target templates: `jnp.mean({input}, axis={dim}, keepdims={keepdim})`.

A placeholder `{name}` is a torch argument (or `self`, the method receiver,
or `rngs`). As the value of a keyword argument it is optional: the keyword is
left out when the caller did not pass it, so the target's own default
applies. `{name!}` always emits the keyword, with the torch default, for
targets whose default differs from torch's. Anywhere else a placeholder is
required; when the caller left it out, the torch default is used if it is not
`None`, otherwise this template does not apply and the next variant is tried.
`{*name}` splices a torch `*args` parameter into a call, `{**name}` the keywords a `**kwargs`
parameter collected. A variant can require the caller's form of an argument:
`when = { normalized_shape = "sequence" }` applies only to a list or tuple written in the call,
`when = { p = "number" }` only to a numeric literal.
"""
from __future__ import annotations

import ast
import functools
import re
from typing import Sequence

import libcst as cst

PLACEHOLDER = re.compile(r"\{(\*{0,2})([A-Za-z_][A-Za-z_0-9]*)(!?)\}")
PREFIX, FORCED = "__rt_", "__rtF_"


class TemplateError(Exception):
    pass


class _Missing(Exception):
    """A required placeholder has no value: the template does not apply."""


def _is_atomic(node: cst.BaseExpression) -> bool:
    if getattr(node, "lpar", None):
        return True
    return isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float,
                             cst.SimpleString, cst.List, cst.Dict, cst.ListComp, cst.FormattedString))


def parenthesize(node: cst.BaseExpression) -> cst.BaseExpression:
    """Wrap a substituted expression in parentheses unless it binds tighter than anything."""
    if _is_atomic(node):
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _number(node) -> bool:
    """A numeric literal, signed or not (`2`, `1.5`, `-1`)."""
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)):
        node = node.expression
    return isinstance(node, (cst.Integer, cst.Float))


FORMS = {"sequence": lambda node: isinstance(node, (cst.List, cst.Tuple)), "number": _number}


class Template:
    """One parsed target template."""

    def __init__(self, text: str, needs: Sequence[str] = (), when: dict[str, str] | None = None):
        self.text, self.needs, self.when = text, frozenset(needs), dict(when or {})
        unknown = set(self.when.values()) - set(FORMS)
        if unknown:
            raise TemplateError(f"template {text!r}: unknown argument form(s) {sorted(unknown)} "
                                f"(known: {sorted(FORMS)})")
        self.placeholders = {m[2] for m in PLACEHOLDER.finditer(text)}
        self.source = PLACEHOLDER.sub(lambda m: m[1] + (FORCED if m[3] else PREFIX) + m[2], text)
        try:  # Python's own parser checks it now; LibCST parses it when a conversion first uses it
            ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            raise TemplateError(f"template {text!r} does not parse: {exc.msg}") from None

    @functools.cached_property
    def expr(self) -> cst.BaseExpression:
        return cst.parse_expression(self.source)

    def render(self, values: dict[str, object], defaults: dict[str, cst.BaseExpression]) -> cst.BaseExpression | None:
        """Substitute bound arguments; None when a required placeholder is missing."""
        if self.needs and not self.needs & set(values):
            return None
        if not all(FORMS[form](values.get(name)) for name, form in self.when.items()):
            return None
        try:
            return _without_bare_partial(self.expr.visit(_Substitute(values, defaults)))
        except _Missing:
            return None


def _without_bare_partial(node: cst.BaseExpression) -> cst.BaseExpression:
    """`partial(cross_entropy)` (every optional keyword left out) is `cross_entropy` itself."""
    if (isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "partial"
            and len(node.args) == 1 and not node.args[0].keyword and not node.args[0].star):
        return node.args[0].value
    return node


def _none_default(default) -> bool:
    return isinstance(default, cst.Name) and default.value == "None"


def _multiline(comma) -> bool:
    return isinstance(comma, cst.Comma) and isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace)


def _placeholder(node: cst.BaseExpression) -> tuple[str, bool] | None:
    if isinstance(node, cst.Name):
        if node.value.startswith(FORCED):
            return node.value[len(FORCED):], True
        if node.value.startswith(PREFIX):
            return node.value[len(PREFIX):], False
    return None


class _Substitute(cst.CSTTransformer):
    def __init__(self, values: dict[str, object], defaults: dict[str, cst.BaseExpression]):
        self.values, self.defaults = values, defaults
        self.defaulted: set[int] = set()

    def _value(self, name: str, forced: bool, optional: bool):
        if name in self.values:
            return self.values[name]
        default = self.defaults.get(name)
        if optional and not forced:
            return None
        if default is None or (isinstance(default, cst.Name) and default.value == "None" and not forced):
            raise _Missing(name)
        return default

    def visit_StarredElement(self, node: cst.StarredElement) -> bool:
        return _placeholder(node.value) is None

    def leave_Tuple(self, original: cst.Tuple, updated: cst.Tuple) -> cst.BaseExpression:
        """`({*size},)` is the shape: one torch argument passes through, several become a tuple."""
        if len(original.elements) != 1 or not isinstance(original.elements[0], cst.StarredElement):
            return updated
        found = _placeholder(original.elements[0].value)
        if found is None:
            return updated
        args = self.values.get(found[0], [])
        if len(args) == 1 and not args[0].star:
            return args[0].value
        elements = [cst.StarredElement(a.value) if a.star else cst.Element(a.value) for a in args]
        return cst.Tuple(elements) if len(elements) != 1 else cst.Tuple(elements).with_changes(
            elements=[elements[0].with_changes(comma=cst.Comma())])

    def visit_Arg(self, node: cst.Arg) -> bool:
        return _placeholder(node.value) is None

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        args = list(updated.args)
        while args and not args[-1].keyword and id(args[-1].value) in self.defaulted:
            args.pop()  # trailing positional defaults add nothing
        if args and not _multiline(args[-1].comma):
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return updated.with_changes(args=args)

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg):
        found = _placeholder(original.value)
        if found is None:
            return updated
        name, forced = found
        if original.star in ("*", "**"):
            spliced: Sequence[cst.Arg] = self.values.get(name, [])  # type: ignore[assignment]
            return cst.FlattenSentinel(list(spliced))
        if original.keyword is None and name not in self.values and _none_default(self.defaults.get(name)):
            value = cst.Name("None")  # a trailing unset positional: dropped in leave_Call
            self.defaulted.add(id(value))
            return updated.with_changes(value=value)
        value = self._value(name, forced, optional=original.keyword is not None)
        if value is None:
            return cst.RemoveFromParent()
        if name not in self.values and original.keyword is None:
            value = value.deep_clone()
            self.defaulted.add(id(value))
        return updated.with_changes(value=value)

    def leave_SubscriptElement(self, original, updated):
        """`x.shape[(-1)]` -> `x.shape[-1]`: an index needs no parentheses."""
        index = updated.slice
        if isinstance(index, cst.Index) and getattr(index.value, "lpar", None):
            return updated.with_changes(slice=index.with_changes(value=index.value.with_changes(lpar=[], rpar=[])))
        return updated

    def leave_Name(self, original: cst.Name, updated: cst.Name):
        found = _placeholder(original)
        if found is None:
            return updated
        name, forced = found
        if name not in self.values and not forced:
            raise _Missing(name)  # outside a call's arguments, a placeholder needs the caller's value
        return parenthesize(self._value(name, forced, optional=False))
