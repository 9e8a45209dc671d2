"""Helper names a function's own local names shadow.

torchvision's `shifted_window_attention(..., dropout: float = 0.0, ...)` calls `F.dropout`: the converted
call to the `dropout` helper inside it would call the float. Such a call names the helper by an alias
(`torch_dropout`), bound next to the helpers; the caller's own arguments keep their names.
"""
from __future__ import annotations

import functools

import libcst as cst

from .facts import _assignments, _bound_names

PREFIX = "torch_"


@functools.lru_cache(maxsize=256)
def local_names(func: cst.FunctionDef) -> frozenset[str]:
    """Parameters and the names simple assignments bind in a function."""
    p = func.params
    names = {a.name.value for a in (*p.posonly_params, *p.params, *p.kwonly_params)}
    names |= {a.name.value for a in (p.star_arg, p.star_kwarg) if isinstance(a, cst.Param)}
    for stmt in _assignments(func):
        for target in stmt.targets:
            names |= _bound_names(target.target)
    return frozenset(names)


def _kept(values) -> set[int]:
    """ids of the caller's argument nodes substituted into a result (they keep the caller's names)."""
    kept = set()
    for value in values:
        for node in value if isinstance(value, (list, tuple)) else [value]:
            kept.add(id(node))
            kept.add(id(getattr(node, "value", None)))
    return kept


class _Rename(cst.CSTTransformer):
    def __init__(self, names: set[str], kept: set[int]):
        self.names, self.kept = names, kept

    def on_visit(self, node: cst.CSTNode) -> bool:
        return id(node) not in self.kept

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        if id(original) in self.kept or original.value not in self.names:
            return updated
        return updated.with_changes(value=PREFIX + original.value)


def unshadow(result: cst.CSTNode, helpers: set[str], func: cst.FunctionDef | None, site_values,
             aliases: set[str], own: frozenset[str] = frozenset()) -> cst.CSTNode:
    """`result` with the helpers a local name of `func`, or a function or class of the file's own (`own`:
    timm's `layers/grid.py` defines `meshgrid`), shadows named by their aliases (recorded)."""
    clash = helpers & (local_names(func) | own if func is not None else own)
    if not clash or not isinstance(result, cst.CSTNode):
        return result
    aliases |= clash
    return result.visit(_Rename(clash, _kept(site_values)))


def own_definitions(module: cst.Module, begin: str) -> frozenset[str]:
    """Names of the module's top-level functions and classes, outside a block of copied helpers
    (which starts at the line `begin`: a re-conversion's own copies are not the user's)."""
    names, in_block = set(), False
    for stmt in module.body:
        in_block = isinstance(stmt, (cst.ClassDef, cst.FunctionDef)) and (
            in_block or any(line.comment and line.comment.value == begin for line in stmt.leading_lines))
        if isinstance(stmt, (cst.ClassDef, cst.FunctionDef)) and not in_block:
            names.add(stmt.name.value)
    return frozenset(names)


def alias_statements(aliases: set[str]) -> list[cst.BaseStatement]:
    lines = [cst.parse_statement(f"{PREFIX}{name} = {name}  # the helper, for code where `{name}` is another name\n")
             for name in sorted(aliases)]
    return [lines[0].with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()]), *lines[1:]] if lines else []
