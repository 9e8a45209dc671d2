"""Import fixing: drop torch imports nothing uses any more, add the JAX/Flax ones the code now uses.

Imports are added only for names the converted code actually references and
does not bind itself, so a file that ends up needing no `jax` gets none.
"""
from __future__ import annotations

import libcst as cst

from ..package_imports import relative_target
from .names import dotted, is_torch_name
from .support import END

KNOWN_IMPORTS = {
    "jax": "import jax",
    "jnp": "import jax.numpy as jnp",
    "nnx": "from flax import nnx",
    "functools": "import functools",
    "inspect": "import inspect",
    "math": "import math",
    "threading": "import threading",
    "partial": "from functools import partial",
    "typing": "import typing",
    "os": "import os",
    "warnings": "import warnings",
    "Counter": "from collections import Counter",
    "NamedTuple": "from typing import NamedTuple",
    "np": "import numpy as np",
    "optax": "import optax",
    "re": "import re",
    "pickle": "import pickle",
    "struct": "import struct",
    "zipfile": "import zipfile",
    "dataclass": "from dataclasses import dataclass",
    "dataclasses": "import dataclasses",
    "_logging": "import logging as _logging",
    "Path": "from pathlib import Path",
    "ml_dtypes": "import ml_dtypes",
    "urllib": "import urllib.request",
    "einops": "import einops",
}
ORDER = ["_logging", "dataclasses", "functools", "inspect", "math", "os", "pickle", "re", "struct", "threading", "urllib", "warnings", "zipfile", "Counter", "dataclass", "partial", "Path", "typing", "NamedTuple",
         "einops", "ml_dtypes", "np", "jax", "jnp", "nnx", "optax"]


class _Usage(cst.CSTVisitor):
    """Names read anywhere outside import statements, and names bound at module level."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.bound: set[str] = set()
        self._depth = 0  # inside functions and classes: imports there bind nothing at module level

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names if not self._depth else ():
            self.bound.add((dotted(alias.asname.name) if alias.asname else dotted(alias.name)).split(".")[0])
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if not isinstance(node.names, cst.ImportStar) and not self._depth:
            for alias in node.names:
                self.bound.add(dotted(alias.asname.name) if alias.asname else dotted(alias.name))
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.used.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)  # `jax.nn.relu` reads `jax`, not a name `nn`
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.bound.add(node.name.value)
        self._depth += 1

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self._depth -= 1

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.bound.add(node.name.value)
        self._depth += 1

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._depth -= 1


def _is_torch(module_name: str | None) -> bool:
    return is_torch_name(module_name)


class _DropUnusedTorch(cst.CSTTransformer):
    """Drop torch imports whose names are not read in their scope (module, or the function of a local import)."""

    def __init__(self, used: set[str], torch_aliases: set[str] = frozenset()):
        self.module_used = used
        self.torch_aliases = torch_aliases  # names this file imports from its package that are torch APIs
        self._functions: list[cst.FunctionDef] = []
        self._function_used: dict[int, set[str]] = {}

    @property
    def used(self) -> set[str]:
        if not self._functions:
            return self.module_used
        func = self._functions[-1]
        if id(func) not in self._function_used:  # computed only for functions that import torch
            usage = _Usage()
            func.body.visit(usage)
            self._function_used[id(func)] = usage.used
        return self._function_used[id(func)]

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._functions.append(node)

    def leave_FunctionDef(self, original, updated):
        self._functions.pop()
        return updated

    def _keep(self, alias: cst.ImportAlias, full: str) -> bool:
        bound = dotted(alias.asname.name) if alias.asname else full.split(".")[0]
        return bound in self.used

    def leave_Import(self, original: cst.Import, updated: cst.Import):
        keep = [a for a in updated.names if not _is_torch(dotted(a.name)) or self._keep(a, dotted(a.name))]
        return _with_names(updated, keep)

    def leave_ImportFrom(self, original: cst.ImportFrom, updated: cst.ImportFrom):
        module = dotted(updated.module) if updated.module else None
        if isinstance(updated.names, cst.ImportStar):
            return updated
        if not _is_torch(module):
            return _with_names(updated, [a for a in updated.names if self._keep_alias(a, module)])
        return _with_names(updated, [a for a in updated.names if self._keep(a, dotted(a.name))])

    def _keep_alias(self, alias: cst.ImportAlias, module: str | None) -> bool:
        """A name imported from a module that is not torch's stays, unless it is torch's after all (a
        package's re-export, `from transformers import initialization`) and nothing reads it."""
        bound = dotted(alias.asname.name) if alias.asname else dotted(alias.name)
        torch_module = module is not None and is_torch_name(f"{module}.{dotted(alias.name)}")
        return not (bound in self.torch_aliases or torch_module) or bound in self.used


class _HasNestedImport(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found = False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return not self.found

    def visit_Import(self, node: cst.Import) -> None:
        self.found = True

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self.found = True

    def visit_SimpleStatementLine(self, node) -> bool:
        return not self.found

    def visit_Expr(self, node) -> bool:  # expressions hold no imports: skip them
        return False

    def visit_Assign(self, node) -> bool:
        return False


def _drop_unused_torch(module: cst.Module, used: set[str], torch_aliases: set[str]) -> cst.Module:
    """Top-level imports by a direct pass over the module body; nested ones (rare) by a full traversal."""
    nested = _HasNestedImport()
    for stmt in module.body:
        if isinstance(stmt, cst.BaseCompoundStatement):
            stmt.visit(nested)
    if nested.found:
        return module.visit(_DropUnusedTorch(used, torch_aliases))
    dropper, body = _DropUnusedTorch(used, torch_aliases), []
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            kept = [_drop_from(dropper, small) for small in stmt.body]
            kept = [small for small in kept if not isinstance(small, cst.RemovalSentinel)]
            if not kept:
                continue
            stmt = stmt.with_changes(body=kept)
        body.append(stmt)
    return module.with_changes(body=body)


def _drop_from(dropper: "_DropUnusedTorch", small: cst.BaseSmallStatement):
    if isinstance(small, cst.Import):
        return dropper.leave_Import(small, small)
    if isinstance(small, cst.ImportFrom):
        return dropper.leave_ImportFrom(small, small)
    return small


def _with_names(node, names: list[cst.ImportAlias]):
    if not names:
        return cst.RemoveFromParent()
    names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return node.with_changes(names=names)


def _insert_at(module: cst.Module) -> int:
    """Index after the docstring, `__future__` imports and the leading import block."""
    index = 0
    for i, stmt in enumerate(module.body):
        if isinstance(stmt, cst.SimpleStatementLine) and all(
                isinstance(s, (cst.Import, cst.ImportFrom)) or (i == 0 and isinstance(s, cst.Expr)
                                                                and isinstance(s.value, cst.SimpleString))
                for s in stmt.body):
            index = i + 1
        else:
            break
    return index


def names_used(node: cst.CSTNode) -> tuple[set[str], set[str]]:
    """(names read, names bound at the top) in `node`."""
    usage = _Usage()
    node.visit(usage)
    return usage.used, usage.bound


def fix_imports(module: cst.Module, helpers: list[cst.BaseStatement],
                helper_usage: tuple[set[str], set[str]] = (set(), set()),
                torch_aliases: set[str] = frozenset(), marked: bool = True) -> cst.Module:
    """Remove dead torch imports (and dead imports of torch names re-exported by the package); add
    needed JAX imports, then the support helpers."""
    usage = _Usage()
    module.visit(usage)
    usage.used |= helper_usage[0]
    usage.bound |= helper_usage[1]
    module = _drop_unused_torch(module, usage.used - helper_usage[1], torch_aliases)  # a helper now defines the name
    needed = [n for n in ORDER if n in usage.used and n not in usage.bound]
    new = [cst.parse_statement(KNOWN_IMPORTS[n]) for n in needed]
    at = _insert_at(module)
    body = [*module.body[:at], *new, *helpers, *module.body[at:]]
    if marked and helpers and at + len(new) + len(helpers) < len(body):
        follower = body[at + len(new) + len(helpers)]
        body[at + len(new) + len(helpers)] = follower.with_changes(
            leading_lines=[cst.EmptyLine(), cst.EmptyLine(), cst.EmptyLine(comment=cst.Comment(END)),
                           *follower.leading_lines])
    if body and all(line.comment is None for line in body[0].leading_lines):
        body[0] = body[0].with_changes(leading_lines=[])  # the blank line of a dropped import group
    return module.with_changes(body=body)


def absolute_beyond_root(module: cst.Module, package: str, root: str) -> cst.Module:
    """`from ...configuration_utils import X` in a converted subtree (`transformers/models/llama`)
    reaches above the output's root: it becomes `from transformers.configuration_utils import X`, the
    installed library's module, so the output package imports as the original did."""
    if not root:
        return module
    body = [stmt.with_changes(body=[_absolute_import(small, package, root) for small in stmt.body])
            if isinstance(stmt, cst.SimpleStatementLine) else stmt for stmt in module.body]
    return module.with_changes(body=body)


def _absolute_import(small: cst.BaseSmallStatement, package: str, root: str) -> cst.BaseSmallStatement:
    if not isinstance(small, cst.ImportFrom) or not small.relative:
        return small
    target = relative_target(package.split("."), len(small.relative), dotted(small.module) if small.module else "")
    tree = root.split(".")
    if target[:len(tree)] == tree:
        return small  # inside the tree: stays relative
    return small.with_changes(relative=[], module=cst.parse_expression(".".join(target)))
