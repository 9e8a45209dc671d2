"""Which torch APIs and tensor methods a source tree uses, and which of them the rules cover.

`retarget coverage DIR` ranks the uncovered names by how often they occur, so rules get written
where real code needs them. The scan uses Python's `ast` with the file's imports (`import torch.nn
as nn`, `from torch.nn import functional as F`, `from torch import Tensor`), which is fast enough
for a whole corpus; a reference is the outermost dotted name rooted in torch (`nn.init.zeros_` is
`torch.nn.init.zeros_`), as the converter's rules are keyed. Method references are calls
`x.name(...)` on non-torch objects where `name` is a public `torch.Tensor` method (`x.view(...)`),
and reads of tensor properties (`x.shape`, `x.device`); `self.name` is the class's own member, not
a tensor method.
"""
from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .rules import RuleSet, default_rules

NATIVE = {"shape", "dtype", "ndim", "T", "size", "item"}  # same meaning on JAX arrays, no rule needed
# Names too generic to count as tensor methods when the receiver is unknown (dicts, lists, strings)
PROPERTIES = {"shape", "dtype", "device", "requires_grad", "grad", "is_cuda", "T", "mT", "H", "ndim", "is_leaf"}
AMBIGUOUS = {"get", "items", "keys", "values", "append", "extend", "copy", "update", "index", "count",
             "split", "format", "join", "pop", "insert", "remove", "sort", "data", "name", "real", "imag"}


@cache
def tensor_method_names() -> frozenset[str]:
    path = Path(__file__).parent / "rules" / "tensor_method_names.txt"
    return frozenset(line.strip() for line in path.read_text().splitlines()
                     if line.strip() and not line.startswith("#"))


@dataclass
class Usage:
    """Reference counts: torch APIs by qualified name, tensor methods by name."""
    apis: Counter = field(default_factory=Counter)
    methods: Counter = field(default_factory=Counter)

    def __iadd__(self, other: "Usage") -> "Usage":
        self.apis += other.apis
        self.methods += other.methods
        return self


def _torch_bindings(tree: ast.AST) -> dict[str, str]:
    bindings = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch":
                    bindings[alias.asname or "torch"] = alias.name if alias.asname else "torch"
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "torch":
            for alias in node.names:
                bindings[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bindings


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _imported_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _is_tensor_method(func: ast.Attribute, imported: set[str]) -> bool:
    """`x.view(...)`, not `self.view(...)` (the class's own) or `np.mean(...)` (a module function)."""
    name = func.attr
    if isinstance(func.value, ast.Name) and (func.value.id in ("self", "super", "cls") or func.value.id in imported):
        return False
    return name in tensor_method_names() and name not in AMBIGUOUS and name not in PROPERTIES and not (
        name.startswith("_") and not name.endswith("_"))


class _Scanner(ast.NodeVisitor):
    def __init__(self, bindings: dict[str, str], imported: set[str]):
        self.bindings, self.imported, self.usage = bindings, imported, Usage()

    def _torch_name(self, node: ast.AST) -> str | None:
        name = _dotted(node)
        if not name:
            return None
        head, _, rest = name.partition(".")
        return f"{self.bindings[head]}.{rest}".rstrip(".") if head in self.bindings else None

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and self._torch_name(func) is None and _is_tensor_method(func, self.imported):
            self.usage.methods[func.attr] += 1
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        qual = self._torch_name(node)
        if qual:
            self.usage.apis[qual] += 1
            return  # the outermost chain only
        if node.attr in PROPERTIES and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            self.usage.methods[node.attr] += 1
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.bindings and self.bindings[node.id] != "torch":
            self.usage.apis[self.bindings[node.id]] += 1

    def visit_Import(self, node: ast.AST) -> None:
        return

    visit_ImportFrom = visit_Import


def scan_source(text: str) -> Usage:
    """Torch references in one file (empty for files that do not parse)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return Usage()
    bindings = _torch_bindings(tree)
    if not bindings:
        return Usage()
    scanner = _Scanner(bindings, _imported_names(tree))
    scanner.visit(tree)
    return scanner.usage


def covered_names(rules: RuleSet | None = None) -> tuple[set[str], set[str]]:
    """(torch APIs, method names) the rules handle."""
    rules = rules or default_rules()
    apis = {name for kind in ("function", "module", "attribute") for name in rules.by_kind[kind]}
    methods = set(rules.by_kind["method"]) | set(rules.by_kind["property"]) | NATIVE
    return apis, methods


def _is_module_path(name: str) -> bool:
    """`torch.nn` alone (a module object passed around) is not an API use."""
    return name in ("torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.utils.data")


def uncovered(usage: Usage, rules: RuleSet | None = None) -> tuple[Counter, Counter]:
    apis, methods = covered_names(rules)
    return (Counter({k: n for k, n in usage.apis.items() if k not in apis and not _is_module_path(k)}),
            Counter({k: n for k, n in usage.methods.items() if k not in methods}))


def covered_share(usage: Usage, rules: RuleSet | None = None) -> float:
    """Share of all references (APIs and methods) that a rule covers."""
    missing_apis, missing_methods = uncovered(usage, rules)
    total = sum(n for k, n in usage.apis.items() if not _is_module_path(k)) + sum(usage.methods.values())
    return 1.0 - (sum(missing_apis.values()) + sum(missing_methods.values())) / max(total, 1)
