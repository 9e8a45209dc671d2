"""Name resolution: which expressions refer to torch, whatever the import form.

Uses LibCST's scope analysis (QualifiedNameProvider), so `import torch.nn as
nn`, `from torch.nn import functional as F, Linear`, `import torch as th`,
function-local imports and shadowing by local names all resolve in one place.
Only the outermost expression of a dotted chain is recorded (`nn.init.zeros_`,
not `nn.init`), which is what rules are keyed by.
"""
from __future__ import annotations

import libcst as cst
from libcst.metadata import QualifiedNameProvider, QualifiedNameSource

ROOTS = ("torch",)


def _torch_name(names) -> str | None:
    found = sorted(q.name for q in names if q.name.split(".")[0] in ROOTS)
    return found[0] if found else None


class TorchNames(cst.CSTVisitor):
    """Collect `node -> qualified torch name` for every torch reference. `aliases` are local names
    bound by imports from the file's own package that are torch APIs there (re-exports)."""
    METADATA_DEPENDENCIES = (QualifiedNameProvider,)

    def __init__(self, aliases: dict[str, str] | None = None) -> None:
        super().__init__()
        self.qualnames: dict[cst.CSTNode, str] = {}
        self.aliases = aliases or {}

    def _name(self, node: cst.BaseExpression) -> str | None:
        names = self.get_metadata(QualifiedNameProvider, node, set())
        found = _torch_name(names)
        if found is None and self.aliases and any(q.source is QualifiedNameSource.IMPORT for q in names):
            return self.aliases.get(dotted(node) or "")
        return found

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if dotted(node) is None:  # `torch.tril(x).view`: only plain dotted chains name an API
            return True
        name = self._name(node)
        if name is None:
            return True
        self.qualnames[node] = name
        return False

    def visit_Name(self, node: cst.Name) -> None:
        name = self._name(node)
        if name is not None:
            self.qualnames[node] = name


def dotted(node: cst.BaseExpression) -> str | None:
    """`self.layer.conv` -> 'self.layer.conv'; None for anything that is not a plain dotted name."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None
