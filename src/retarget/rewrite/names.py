"""Name resolution: which expressions refer to torch, whatever the import form.

Uses LibCST's scope analysis (QualifiedNameProvider), so `import torch.nn as
nn`, `from torch.nn import functional as F, Linear`, `import torch as th`,
function-local imports and shadowing by local names all resolve in one place.
Only the outermost expression of a dotted chain is recorded (`nn.init.zeros_`,
not `nn.init`), which is what rules are keyed by. In a package, a name bound
only by `from .parts import *` (LibCST sees no binding for it) is torch's when
the package says so (`star_names`: `nn` -> `torch.nn`).
"""
from __future__ import annotations

import libcst as cst
from libcst.metadata import QualifiedNameProvider, QualifiedNameSource

# Modules whose names rules are keyed by: torch, and einops' torch layers (einops' functions run on
# JAX arrays as written, its `einops.layers.torch` classes are torch modules)
ROOTS = ("torch", "einops.layers.torch")


def is_torch_name(name: str | None) -> bool:
    """`torch.nn.Linear`, `einops.layers.torch.Rearrange`: a name under one of the ROOTS."""
    return bool(name) and any(name == root or name.startswith(root + ".") for root in ROOTS)


def _torch_name(names) -> str | None:
    found = sorted(q.name for q in names if is_torch_name(q.name))
    return found[0] if found else None


class TorchNames(cst.CSTVisitor):
    """Collect `node -> qualified torch name` for every torch reference."""
    METADATA_DEPENDENCIES = (QualifiedNameProvider,)

    def __init__(self, star_names: dict[str, str] | None = None, aliases: dict[str, str] | None = None) -> None:
        super().__init__()
        self.qualnames: dict[cst.CSTNode, str] = {}
        self.star_names = star_names or {}
        self.aliases = aliases or {}  # names imported from the package that are torch's there
        self._not_references: set[int] = set()  # keyword names and attribute names: never bound

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self._not_references.add(id(node.keyword))

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self._not_references.add(id(node.attr))
        if dotted(node) is None:  # `torch.tril(x).view`: only plain dotted chains name an API
            return True
        name = self._qualified(node)
        if name is None:
            return True
        self.qualnames[node] = name
        return False

    def visit_Name(self, node: cst.Name) -> None:
        name = self._qualified(node) if id(node) not in self._not_references else None
        if name is not None:
            self.qualnames[node] = name

    def _qualified(self, node: cst.Name | cst.Attribute) -> str | None:
        names = self.get_metadata(QualifiedNameProvider, node, set())
        if not names:
            return self._star_name(node)
        found = _torch_name(names)
        if found is None and self.aliases and any(q.source is QualifiedNameSource.IMPORT for q in names):
            return self.aliases.get(dotted(node) or "")
        return found

    def _star_name(self, node: cst.Name | cst.Attribute) -> str | None:
        """Torch's name for a reference LibCST cannot bind, whose first name a star import brought."""
        name = dotted(node) or ""
        head, _, rest = name.partition(".")
        if head not in self.star_names:
            return None
        first = node
        while isinstance(first, cst.Attribute):
            first = first.value
        if self.get_metadata(QualifiedNameProvider, first, set()):  # bound here (shadowed): not the import
            return None
        return f"{self.star_names[head]}.{rest}" if rest else self.star_names[head]


def dotted(node: cst.BaseExpression) -> str | None:
    """`self.layer.conv` -> 'self.layer.conv'; None for anything that is not a plain dotted name."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None
