"""Name resolution: which expressions refer to torch, whatever the import form.

Uses Python's scoping rules (`scopes.py`), so `import torch.nn as nn`,
`from torch.nn import functional as F, Linear`, `import torch as th`,
function-local imports and shadowing by local names all resolve in one place.
Only the outermost expression of a dotted chain is recorded (`nn.init.zeros_`,
not `nn.init`), which is what rules are keyed by. In a package, a name bound
only by `from .parts import *` (LibCST sees no binding for it) is torch's when
the package says so (`star_names`: `nn` -> `torch.nn`).
"""
from __future__ import annotations

import libcst as cst

from .scopes import BUILTINS, OTHER, Binder, bind

# Modules whose names rules are keyed by: torch, einops' torch layers (einops' functions run on
# JAX arrays as written, its `einops.layers.torch` classes are torch modules), and the runtime that
# Hugging Face transformers' modeling files import (rules/transformers.toml; its config classes and
# tokenizers are not torch code and stay transformers')
TRANSFORMERS_RUNTIME = tuple(f"transformers.{m}" for m in (
    "activations", "cache_utils", "generation", "integrations", "masking_utils", "modeling_flash_attention_utils",
    "modeling_layers",
    "modeling_outputs", "modeling_rope_utils", "modeling_utils", "processing_utils", "pytorch_utils", "utils"))
ROOTS = ("torch", "einops.layers.torch", *TRANSFORMERS_RUNTIME)
# Modules that re-export another's names under theirs: rules know the names by the right-hand side
# (transformers' `initialization` is torch.nn.init's functions, skipping weights a checkpoint filled)
CANONICAL = {"transformers.initialization": "torch.nn.init", "transformers.utils.generic": "transformers.utils"}


def canonical(name: str) -> str:
    """`transformers.initialization.zeros_` -> `torch.nn.init.zeros_`; other names as they are."""
    for module, target in CANONICAL.items():
        if name == module or name.startswith(module + "."):
            return target + name[len(module):]
    return name


def is_torch_name(name: str | None) -> bool:
    """`torch.nn.Linear`, `einops.layers.torch.Rearrange`: a name under one of the ROOTS."""
    name = canonical(name or "")
    return bool(name) and any(name == root or name.startswith(root + ".") for root in ROOTS)


class TorchNames(cst.CSTVisitor):
    """Collect `node -> qualified torch name` for every torch reference."""

    def __init__(self, binder: Binder, star_names: dict[str, str] | None = None,
                 aliases: dict[str, str] | None = None) -> None:
        super().__init__()
        self.binder = binder
        self.qualnames: dict[cst.CSTNode, str] = {}
        self.star_names = star_names or {}
        self.aliases = aliases or {}  # names imported from the package that are torch's there

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if dotted(node) is None:  # `torch.tril(x).view`: only plain dotted chains name an API
            return True
        name = self._qualified(node)
        if name is None:
            return True
        self.qualnames[node] = name
        return False

    def visit_Name(self, node: cst.Name) -> None:
        name = self._qualified(node)
        if name is not None:
            self.qualnames[node] = name

    def _qualified(self, node: cst.Name | cst.Attribute) -> str | None:
        head = node
        while isinstance(head, cst.Attribute):
            head = head.value
        scope = self.binder.reads.get(head)
        if scope is None:  # a keyword, an attribute name, a target: never a reference
            return None
        bindings = scope.lookup(head.value)
        name = dotted(node)
        if bindings is None:
            return self._star_name(name) if head.value not in BUILTINS else None
        rest = name[len(head.value):]
        found = sorted(canonical(t + rest) for t in bindings if t is not OTHER and is_torch_name(t + rest))
        if found:
            return found[0]
        return self.aliases.get(name) if self.aliases and any(t is not OTHER for t in bindings) else None

    def _star_name(self, name: str) -> str | None:
        """Torch's name for a reference nothing in the file binds, whose first name a star import
        brought."""
        head, _, rest = name.partition(".")
        if head not in self.star_names:
            return None
        return f"{self.star_names[head]}.{rest}" if rest else self.star_names[head]


def torch_names(module: cst.Module, star_names: dict[str, str] | None = None,
                aliases: dict[str, str] | None = None) -> dict[cst.CSTNode, str]:
    """The `node -> torch qualified name` map of a parsed module (`star_names`: torch's names that
    star imports of other files of its package bind; `aliases`: names it imports from its package
    that are torch's there)."""
    names = TorchNames(bind(module), star_names, aliases)
    module.visit(names)
    return names.qualnames


def dotted(node: cst.BaseExpression) -> str | None:
    """`self.layer.conv` -> 'self.layer.conv'; None for anything that is not a plain dotted name."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None
