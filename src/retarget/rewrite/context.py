"""Per-file conversion state shared by the structural passes and the rule rewrites."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import libcst as cst
from libcst.metadata import CodeRange

from ..diagnostics import Diagnostic, Escape
from ..rules import Rule, RuleSet
from .facts import Analysis, ClassFacts, Facts, FunctionFacts
from .names import dotted
from .training import TrainingPlan


@dataclass
class Context:
    path: str
    rules: RuleSet
    qualnames: dict[cst.CSTNode, str]
    positions: Callable[[], Mapping[cst.CSTNode, CodeRange]]  # resolved on the first report only
    analysis: Analysis
    facts: Facts
    diagnostics: list[Diagnostic] = field(default_factory=list)
    support: set[str] = field(default_factory=set)
    classes: list[ClassFacts | None] = field(default_factory=list)
    functions: list[FunctionFacts] = field(default_factory=list)
    narrowed: list[dict[str, tuple[str, ...]]] = field(default_factory=list)
    frames: list[list[Diagnostic]] = field(default_factory=list)
    isinstance_refs: set = field(default_factory=set)
    annotation_refs: set = field(default_factory=set)
    stores: set = field(default_factory=set)  # attributes in store position (assigned, deleted, loop targets)
    lone_targets: set = field(default_factory=set)  # targets of one-target `=` statements
    writes_param_groups: bool = False
    training: TrainingPlan = field(default_factory=TrainingPlan)
    pending_steps: dict = field(default_factory=dict)
    aliases: set[str] = field(default_factory=set)  # helpers a local name shadows somewhere: `torch_<name>`
    own_definitions: frozenset[str] = frozenset()  # the file's top-level functions and classes (not copied helpers)

    # -- where we are -------------------------------------------------------
    @property
    def module_class(self) -> ClassFacts | None:
        return self.classes[-1] if self.classes else None

    @property
    def function(self) -> FunctionFacts | None:
        return self.functions[-1] if self.functions else None

    def has_rngs(self) -> bool:
        func = self.function
        if func is None:
            return "<module>" in self.facts.seeded
        return "rngs" in func.params or func.key in self.facts.rngs_functions or func.key in self.facts.seeded

    def rngs_expr(self) -> cst.BaseExpression:
        """`rngs` where the enclosing function receives it; in a module's method (`forward` calling
        `stochastic_depth(x, p, training, rngs=...)`) the module's own `self.rngs`; a fresh
        `nnx.Rngs(0)` elsewhere."""
        if self.has_rngs():
            return cst.Name("rngs")
        func, cls = self.function, self.module_class
        if cls is not None and func is not None and func.owner == cls.name and "self" in func.params[:1]:
            return cst.parse_expression("self.rngs")  # the class keeps it if the output uses it
        return cst.parse_expression("nnx.Rngs(0)")

    def key_expr(self, stream: str = "") -> cst.BaseExpression | None:
        """A fresh PRNG key here: from `rngs`, from the module's `self.rngs`, or None (no source)."""
        call = f".{stream}()" if stream else "()"
        if self.has_rngs():
            return cst.parse_expression(f"rngs{call}")
        func, cls = self.function, self.module_class
        if cls is not None and func is not None and func.owner == cls.name and "self" in func.params[:1]:
            cls.keeps_rngs = True
            return cst.parse_expression(f"self.rngs{call}")
        return None

    # -- what things are ----------------------------------------------------
    def layer_types(self, node: cst.BaseExpression) -> tuple[str, ...]:
        """The torch layers (rule names) an expression may hold, when the file says so."""
        name = dotted(node)
        if name is None:
            return ()
        for scope in reversed(self.narrowed):
            if name in scope:
                return scope[name]
        cls = self.module_class
        if cls is None:
            return ()
        if name == "self":
            return (cls.layer_base,) if cls.layer_base else ()
        if name.startswith("self."):
            kind = cls.attr_types.get(name[5:]) or self._nested_type(cls, name[5:].split("."))
            return (kind,) if kind and self.rules.get("module", kind) else ()
        return ()

    def _nested_type(self, cls, path: list[str]) -> str | None:
        """`self.embeddings.patch_embeddings.projection`: the type through the file's own layers."""
        for attr in path[:-1]:
            cls = self.facts.classes.get(cls.attr_types.get(attr, ""))
            if cls is None:
                return None
        return cls.attr_types.get(path[-1])

    def layer_rules(self, node: cst.BaseExpression) -> list[Rule]:
        return [self.rules.get("module", kind) for kind in self.layer_types(node)]

    def layer_rule(self, node: cst.BaseExpression) -> Rule | None:
        """The layer rule of `node` when exactly one is possible."""
        rules = self.layer_rules(node)
        return rules[0] if len(rules) == 1 else None

    # -- reporting ----------------------------------------------------------
    def report(self, node: cst.CSTNode, escape: Escape) -> Diagnostic:
        pos = self.positions().get(node)
        line, col = (pos.start.line, pos.start.column + 1) if pos else (0, 0)
        diag = Diagnostic(line, col, escape.code, escape.message, self.path)
        self.diagnostics.append(diag)
        return diag

    def escape(self, node: cst.CSTNode, escape: Escape) -> None:
        """Report `escape` and queue its marker comment for the enclosing statement."""
        diag = self.report(node, escape)
        if self.frames:
            self.frames[-1].append(diag)
