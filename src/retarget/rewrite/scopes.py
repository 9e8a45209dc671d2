"""Python's scoping rules, just enough to say what an import binds where: one pass over a module.

For every name that a module reads (not keyword names, not attribute names, not assignment
targets), the scope it is read in; for every scope, what binds each name there (an import, with
its dotted target, or anything else). A name read in a function is that function's when the
function binds it anywhere (Python decides at compile time), else the enclosing functions' and
then the module's (class bodies are not enclosing scopes for what they contain); `global` and
`nonlocal` redirect. Decorators, defaults, annotations, base classes and a comprehension's first
iterable are read in the enclosing scope. All bindings of a name in its scope count (`try: import
torch` / `except: torch = None` is both), as LibCST's scope analysis has it: this replaces its
QualifiedNameProvider, which costs more than the rest of a conversion.
"""
from __future__ import annotations

import builtins

import libcst as cst

BUILTINS = frozenset(dir(builtins))
OTHER = None  # a binding that is not an import


class Scope:
    def __init__(self, parent: "Scope | None", is_class: bool = False):
        self.parent, self.is_class = parent, is_class
        self.bindings: dict[str, list[str | None]] = {}  # name -> import targets (OTHER for non-imports)
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()

    def bind(self, name: str, target: str | None = OTHER) -> None:
        self.bindings.setdefault(name, []).append(target)

    def module(self) -> "Scope":
        return self if self.parent is None else self.parent.module()

    def lookup(self, name: str) -> list[str | None] | None:
        """What `name` read here refers to: its bindings, or None (a builtin or not bound at all)."""
        if name in self.globals:
            return self.module().bindings.get(name)
        scope, first = (self.parent, False) if name in self.nonlocals else (self, True)
        while scope is not None:
            if (first or not scope.is_class) and name in scope.bindings:
                return scope.bindings[name]
            scope, first = scope.parent, False
        return None


def _import_target(alias: cst.ImportAlias, module: str | None) -> tuple[str, str]:
    """(bound name, dotted target) of one alias (`module` None for `import`, "" for a relative
    `from`, whose targets start with a dot: never torch's)."""
    full = _dotted(alias.name)
    target = full if module is None else f"{module}.{full}" if module else f".{full}"
    if alias.asname is not None:
        return _dotted(alias.asname.name), target
    return (full.split(".")[0], full.split(".")[0]) if module is None else (full, target)


def _dotted(node: cst.BaseExpression) -> str:
    return node.value if isinstance(node, cst.Name) else f"{_dotted(node.value)}.{node.attr.value}"


class Binder(cst.CSTVisitor):
    """One pass: scopes with their bindings, and the scope each read name is read in."""

    def __init__(self) -> None:
        super().__init__()
        self.scope = Scope(None)
        self.reads: dict[cst.Name, Scope] = {}
        self._skip: set[int] = set()  # names that are not reads: keywords, attributes, targets

    # ----------------------------------------------------------------------------- reads
    def visit_Name(self, node: cst.Name) -> None:
        if id(node) not in self._skip:
            self.reads[node] = self.scope

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._skip.add(id(node.attr))

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self._skip.add(id(node.keyword))

    # ----------------------------------------------------------------------------- bindings
    def _bind_target(self, target: cst.BaseExpression, scope: Scope | None = None) -> None:
        if isinstance(target, cst.Name):
            (scope or self.scope).bind(target.value)
            self._skip.add(id(target))
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._bind_target(element.value, scope)
        elif isinstance(target, cst.StarredElement):
            self._bind_target(target.value, scope)

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._bind_target(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._bind_target(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._bind_target(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._bind_target(node.target)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self._bind_target(node.asname.name)

    def visit_ExceptHandler(self, node: cst.ExceptHandler) -> None:
        if node.name is not None:
            self._bind_target(node.name.name)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        scope = self.scope
        while getattr(scope, "comprehension", False):
            scope = scope.parent
        self._bind_target(node.target, scope)

    def visit_MatchAs(self, node: cst.MatchAs) -> None:
        if node.name is not None:
            self._bind_target(node.name)

    def visit_MatchStar(self, node: cst.MatchStar) -> None:
        if node.name is not None:
            self._bind_target(node.name)

    def visit_Global(self, node: cst.Global) -> bool:
        self.scope.globals |= {item.name.value for item in node.names}
        return False

    def visit_Nonlocal(self, node: cst.Nonlocal) -> bool:
        self.scope.nonlocals |= {item.name.value for item in node.names}
        return False

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            self.scope.bind(*_import_target(alias, None))
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if isinstance(node.names, cst.ImportStar):
            return False
        module = "" if node.relative else _dotted(node.module)
        for alias in node.names:
            self.scope.bind(*_import_target(alias, module))
        return False

    # ----------------------------------------------------------------------------- scopes
    def _enter(self, is_class: bool = False, comprehension: bool = False) -> None:
        self.scope = Scope(self.scope, is_class)
        self.scope.comprehension = comprehension

    def _leave(self, *_) -> None:
        self.scope = self.scope.parent

    def _outer(self, nodes) -> None:
        """Visit parts of a definition that are evaluated in the enclosing scope."""
        for node in nodes:
            if node is not None:
                node.visit(self)

    def _parameters(self, params: cst.Parameters) -> list[cst.Param]:
        every = [*params.posonly_params, *params.params, *params.kwonly_params]
        for star in (params.star_arg, params.star_kwarg):
            if isinstance(star, cst.Param):
                every.append(star)
        return every

    def _function(self, params: cst.Parameters, outer: list, body: cst.CSTNode) -> None:
        every = self._parameters(params)
        self._outer([*outer, *(p.default for p in every), *(p.annotation for p in every)])
        self._enter()
        for param in every:
            self._bind_target(param.name)
        body.visit(self)
        self._leave()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._bind_target(node.name)
        self._function(node.params, [*node.decorators, node.returns], node.body)
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        self._function(node.params, [], node.body)
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self._bind_target(node.name)
        self._outer([*node.decorators, *node.bases, *node.keywords])
        self._enter(is_class=True)
        node.body.visit(self)
        self._leave()
        return False

    def _comprehension(self, node, parts: list) -> bool:
        node.for_in.iter.visit(self)
        self._enter(comprehension=True)
        self._for_in(node.for_in, first=True)
        for part in parts:
            part.visit(self)
        self._leave()
        return False

    def _for_in(self, for_in: cst.CompFor, first: bool) -> None:
        if not first:
            for_in.iter.visit(self)
        self._bind_target(for_in.target)
        for_in.target.visit(self)
        for condition in for_in.ifs:
            condition.visit(self)
        if for_in.inner_for_in is not None:
            self._for_in(for_in.inner_for_in, first=False)

    def visit_ListComp(self, node: cst.ListComp) -> bool:
        return self._comprehension(node, [node.elt])

    def visit_SetComp(self, node: cst.SetComp) -> bool:
        return self._comprehension(node, [node.elt])

    def visit_GeneratorExp(self, node: cst.GeneratorExp) -> bool:
        return self._comprehension(node, [node.elt])

    def visit_DictComp(self, node: cst.DictComp) -> bool:
        return self._comprehension(node, [node.key, node.value])


def bind(module: cst.Module) -> Binder:
    """Scopes and reads of a module."""
    binder = Binder()
    module.visit(binder)
    return binder
