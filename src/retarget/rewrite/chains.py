"""Chained in-place tensor methods, one statement each.

`tensor.mul_(std).add_(mean)` (timm's `trunc_normal_tf_`) changes `tensor` twice: an in-place method
returns its receiver, so the chain is `tensor.mul_(std)` then `tensor.add_(mean)`. Written as two
statements, each becomes an assignment to the variable it writes, as a lone in-place call does.
"""
from __future__ import annotations

import re

import libcst as cst

from ..rules import TENSOR_METHOD_NAMES
from .names import dotted

_CHAIN = re.compile(r"_\([^\n]*\)(\s*#[^\n]*)*\s*\.\s*\w+_\(")  # cheap test: most files have no chain at all


def _inplace(node: cst.BaseExpression) -> bool:
    return (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
            and node.func.attr.value.endswith("_") and node.func.attr.value in TENSOR_METHOD_NAMES)


def _links(call: cst.Call) -> list[tuple[cst.Call, cst.Call]] | None:
    """`x.a_(1).b_(2)` -> [`x.a_(1)`, `x.b_(2)`], each with the chain's own link (its comments); None
    unless every link is in place on a plain name."""
    links = []
    while _inplace(call) and _inplace(call.func.value):
        links.append(call)
        call = call.func.value
    if not links or not _inplace(call) or dotted(call.func.value) is None:
        return None
    receiver = call.func.value
    return [(_plain(call), call)] + [(_plain(link.with_changes(func=link.func.with_changes(value=receiver))), link)
                                     for link in reversed(links)]


def _plain(link: cst.Call) -> cst.Call:
    """One link as a statement of its own: no parentheses of the whole chain, no line breaks around the
    dot (they were inside those parentheses)."""
    return link.with_changes(lpar=[], rpar=[], func=link.func.with_changes(dot=cst.Dot()))


def _comments(link: cst.Call) -> list[cst.EmptyLine]:
    """Comments written around a link's dot (`(x.add_(1)  # why\n .div_(2))`), kept above its statement."""
    found = []
    for space in (link.func.dot.whitespace_before, link.func.dot.whitespace_after):
        if isinstance(space, cst.ParenthesizedWhitespace):
            found += [line for line in space.empty_lines if line.comment]
            if space.first_line.comment:
                found.append(cst.EmptyLine(comment=space.first_line.comment))
    return [line.with_changes(indent=True, whitespace=cst.SimpleWhitespace("")) for line in found]


class _Split(cst.CSTTransformer):
    def leave_SimpleStatementLine(self, original, updated):
        if len(updated.body) != 1 or not isinstance(updated.body[0], cst.Expr):
            return updated
        links = _links(updated.body[0].value)
        if links is None:
            return updated
        lines = [cst.SimpleStatementLine([cst.Expr(link)], leading_lines=_comments(written) if i else [])
                 for i, (link, written) in enumerate(links)]
        lines[0] = lines[0].with_changes(leading_lines=updated.leading_lines)
        lines[-1] = lines[-1].with_changes(trailing_whitespace=updated.trailing_whitespace)
        return cst.FlattenSentinel(lines)


def split_inplace_chains(module: cst.Module, source: str) -> cst.Module:
    """`module` with each chain of in-place methods on a name as one statement per method."""
    return module.visit(_Split()) if _CHAIN.search(source) else module
