"""Copy the support helpers a converted file uses into that file.

The helpers are real, tested Python in `retarget/support/`. Each top-level
definition is indexed with the other definitions it refers to, so asking for
`Conv2d` also brings `_ConvNd`, `conv_nd`, `pad` and `_ntuple`, in source order.
Constants are definitions too; `TORCH_LAYOUT` is generated from the rules.
"""
from __future__ import annotations

import functools

import libcst as cst

from ..helper_index import BUILDING, SCOPED, HelperIndex, helper_index
from .names import dotted

MODULE = "_torch_compat"  # a converted package's helper module: `from ._torch_compat import Conv2d, pad`
BEGIN = "# --- PyTorch-semantics helpers, copied in by retarget (plain JAX/Flax) ---"
END = "# --- end of retarget helpers ---"


class _Names(cst.CSTVisitor):
    """Names a definition uses; the `name` of `x.name` and of `f(name=...)` is none (`jax.nn.gelu` does
    not need the helper `gelu`)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        node.value.visit(self)
        return False


def _defined_name(stmt: cst.CSTNode) -> str | None:
    """The name a top-level function, class or constant (`NAME = ...`) defines."""
    if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
        return stmt.name.value
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        small = stmt.body[0]
        targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else (
            [small.target] if isinstance(small, cst.AnnAssign) else [])
        if len(targets) == 1 and isinstance(targets[0], cst.Name):
            return targets[0].value
    return None


def _torch_layout() -> cst.BaseStatement:
    """`TORCH_LAYOUT = {...}` from the rules, one layer class per line."""
    from ..rules import default_rules
    lines = [f"    {key!r}: {value!r}," for key, value in sorted(default_rules().torch_layout().items())]
    return cst.parse_statement("TORCH_LAYOUT = {  # from retarget's rules: layer -> [(flax path, torch key, "
                               "transform)]\n" + "\n".join(lines) + "\n}\n")


GENERATED = {"TORCH_LAYOUT": _torch_layout}


class _DropDefaultRngs(cst.CSTTransformer):
    """Helper layers without their `@default_rngs`, and without the methods that draw from the layer
    being built (`reset_parameters` for subclasses that call it): output that builds every layer with
    an explicit `rngs` has no use for them."""

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef):
        if original.name.value != BUILDING and _mentions_name(original.body, BUILDING):
            return cst.RemoveFromParent()
        kept = [d for d in updated.decorators if dotted(d.decorator) != SCOPED]
        return updated.with_changes(decorators=kept) if len(kept) != len(updated.decorators) else updated


def _mentions_name(node: cst.CSTNode, name: str) -> bool:
    visitor = _Names()
    node.visit(visitor)
    return name in visitor.names


class SupportLibrary:
    """The helpers as LibCST statements, parsed one definition at a time when an output first needs
    it; names, order and dependencies come from the `ast` index (`helper_index`)."""

    def __init__(self, index: HelperIndex | None = None):
        self.index = index or helper_index()
        self.definitions = self.index.definitions
        self.order = list(self.definitions)
        self._parsed: dict[tuple[str, bool], cst.CSTNode] = {}

    def node(self, name: str, scoped: bool = False) -> cst.CSTNode:
        """One definition's statement: as written (`scoped`) or in its static form."""
        scoped = scoped and self.index.scoped(name)
        if (name, scoped) not in self._parsed:
            module = cst.parse_module(self.index.text(name))
            stmt = module.body[0]
            stmt = stmt.with_changes(leading_lines=[*module.header, *stmt.leading_lines])
            self._parsed[name, scoped] = stmt if scoped else stmt.visit(_DropDefaultRngs())
        return self._parsed[name, scoped]

    def closure(self, names: set[str]) -> list[str]:
        """`names` plus everything they need, in source order."""
        needed, stack = set(), list(names)
        scoped = SCOPED in names
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(self.index.deps(name, scoped))
        return [n for n in self.order if n in needed]

    @functools.cache
    def usage(self, names: frozenset[str]) -> tuple[set[str], set[str]]:
        """Names the rendered helpers read and bind (cached: import fixing asks per file)."""
        from .imports import names_used
        return names_used(cst.Module(body=self.render(set(names))))

    def render(self, names: set[str]) -> list[cst.BaseStatement]:
        """Statements defining `names` (and dependencies), the first one headed by a marker comment."""
        scoped = SCOPED in names
        nodes = [GENERATED[n]() if n in GENERATED else self.node(n, scoped) for n in self.closure(names)]
        if nodes:
            nodes[0] = nodes[0].with_changes(leading_lines=[
                cst.EmptyLine(), cst.EmptyLine(), cst.EmptyLine(comment=cst.Comment(BEGIN))])
        return nodes


@functools.cache
def _library() -> SupportLibrary:
    return SupportLibrary()


class _Lazy:
    def __getattr__(self, item: str):
        return getattr(_library(), item)


SUPPORT = _Lazy()


def helper_import(module: str, names) -> list[cst.BaseStatement]:
    """`from .._torch_compat import Conv2d, pad` (in the helpers' source order); none for no names."""
    ordered = [n for n in _library().order if n in names]
    if not ordered:
        return []
    return [cst.parse_statement(f"from {module} import {', '.join(ordered)}\n")]


def is_helper_import(node: cst.CSTNode) -> bool:
    """An import from a converted package's helper module (written by an earlier conversion)."""
    return isinstance(node, cst.ImportFrom) and node.module is not None and (
        node.module.value if isinstance(node.module, cst.Name) else node.module.attr.value) == MODULE


def drop_helper_import(module: cst.Module) -> tuple[cst.Module, set[str]]:
    """The module without its imports from the helper module, and the names they imported: an earlier
    conversion's, which this one writes again for the helpers still used."""
    body, names = [], set()
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and is_helper_import(stmt.body[0]):
            names |= {a.name.value for a in stmt.body[0].names if isinstance(a.name, cst.Name)}
            continue
        body.append(stmt)
    return (module.with_changes(body=body) if names else module), names


def helper_module(names) -> str:
    """The source of a package's helper module: the helpers `names` need, with their imports."""
    from .imports import fix_imports
    library = _library()
    nodes = library.render(set(names))
    if nodes:
        nodes[0] = nodes[0].with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
    header = cst.parse_module(f'"""PyTorch-semantics helpers the converted files of this package import (plain JAX/Flax,\n'
                              f'written by retarget: {len(library.closure(set(names)))} definitions, only those in use)."""\n')
    return fix_imports(header, nodes, library.usage(frozenset(names)), marked=False).code
