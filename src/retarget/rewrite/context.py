"""Per-file conversion state shared by the structural passes and the rule rewrites."""
from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import CodeRange

from ..diagnostics import Diagnostic, Escape
from ..rules import Rule, RuleSet
from .facts import Analysis, ClassFacts, Facts, FunctionFacts
from .names import dotted


@dataclass
class Context:
    path: str
    rules: RuleSet
    qualnames: dict[cst.CSTNode, str]
    positions: dict[cst.CSTNode, CodeRange]
    analysis: Analysis
    facts: Facts
    diagnostics: list[Diagnostic] = field(default_factory=list)
    support: set[str] = field(default_factory=set)
    classes: list[ClassFacts | None] = field(default_factory=list)
    functions: list[FunctionFacts] = field(default_factory=list)
    narrowed: list[dict[str, str]] = field(default_factory=list)
    frames: list[list[Diagnostic]] = field(default_factory=list)
    isinstance_refs: set = field(default_factory=set)

    # -- where we are -------------------------------------------------------
    @property
    def module_class(self) -> ClassFacts | None:
        return self.classes[-1] if self.classes else None

    @property
    def function(self) -> FunctionFacts | None:
        return self.functions[-1] if self.functions else None

    def has_rngs(self) -> bool:
        func = self.function
        return func is not None and ("rngs" in func.params or func.key in self.facts.rngs_functions)

    def rngs_expr(self) -> cst.BaseExpression:
        """`rngs` where the enclosing function receives it, a fresh `nnx.Rngs(0)` elsewhere."""
        return cst.Name("rngs") if self.has_rngs() else cst.parse_expression("nnx.Rngs(0)")

    # -- what things are ----------------------------------------------------
    def layer_type(self, node: cst.BaseExpression) -> str | None:
        """The torch layer (rule name) an expression holds, when the file says so."""
        name = dotted(node)
        if name is None:
            return None
        for scope in reversed(self.narrowed):
            if name in scope:
                return scope[name]
        cls = self.module_class
        if cls is None:
            return None
        if name == "self":
            return cls.layer_base
        if name.startswith("self."):
            kind = cls.attr_types.get(name[5:])
            return kind if kind and self.rules.get("module", kind) else None
        return None

    def layer_rule(self, node: cst.BaseExpression) -> Rule | None:
        kind = self.layer_type(node)
        return self.rules.get("module", kind) if kind else None

    # -- reporting ----------------------------------------------------------
    def report(self, node: cst.CSTNode, escape: Escape) -> Diagnostic:
        pos = self.positions.get(node)
        line, col = (pos.start.line, pos.start.column + 1) if pos else (0, 0)
        diag = Diagnostic(line, col, escape.code, escape.message, self.path)
        self.diagnostics.append(diag)
        return diag

    def escape(self, node: cst.CSTNode, escape: Escape) -> None:
        """Report `escape` and queue its marker comment for the enclosing statement."""
        diag = self.report(node, escape)
        if self.frames:
            self.frames[-1].append(diag)
