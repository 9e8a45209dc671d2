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


class _RenameGlobals(cst.CSTTransformer):
    """Module-level `names` renamed where they are read or defined at the top, not where a function's
    own parameter or local of that name hides them, nor methods or attributes of that name."""

    def __init__(self, names: set[str]):
        self.names, self.hidden, self.depth = names, [], 0

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.hidden.append(local_names(node) & self.names)
        self.depth += 1

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        self.hidden.pop()
        self.depth -= 1
        return self._defined(original, updated)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.depth += 1

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self.depth -= 1
        return self._defined(original, updated)

    def _defined(self, original, updated):
        if self.depth == 0 and original.name.value in self.names:
            return updated.with_changes(name=cst.Name(PREFIX + original.name.value))
        return updated

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        return False  # `x.flatten` keeps its attribute: only the value is renamed (below)

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        return updated.with_changes(value=original.value.visit(self))

    def visit_Param(self, node: cst.Param) -> bool:
        return False

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:  # `f(pad=...)`: the keyword stays
        return updated.with_changes(keyword=original.keyword) if original.keyword is not None else updated

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        if original.value in self.names and not any(original.value in h for h in self.hidden):
            return updated.with_changes(value=PREFIX + original.value)
        return updated


def rename_helpers(statements: list[cst.BaseStatement], names: set[str]) -> list[cst.BaseStatement]:
    """Copied-in helpers whose names the file's own definitions take (`def pad(x)` beside `F.pad`): the
    helpers are defined, and call one another, under their aliases (`torch_pad`), as the converted
    call sites name them."""
    if not names:
        return statements
    renamer = _RenameGlobals(names)
    return [stmt.visit(renamer) for stmt in statements]


def alias_statements(aliases: set[str]) -> list[cst.BaseStatement]:
    lines = [cst.parse_statement(f"{PREFIX}{name} = {name}  # the helper, for code where `{name}` is another name\n")
             for name in sorted(aliases)]
    return [lines[0].with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()]), *lines[1:]] if lines else []
