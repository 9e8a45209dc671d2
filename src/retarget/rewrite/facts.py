"""Whole-file facts the rewrites need before they start.

- which classes are modules (subclass nn.Module, a torch layer, or another
  module class of the file);
- the type of each layer attribute a module builds in `__init__`
  (`self.fc = nn.Linear(...)`, entries of `nn.ModuleDict(dict(wte=...))`), so
  `self.fc.weight` can become `self.fc.kernel.T`;
- which functions build layers and so need an `rngs` argument, and which
  parameters receive layer classes (`block`, `norm_layer`) so that calls
  through them get `rngs` too. Both are fixed points over the call graph.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import libcst as cst

from ..rules import TENSOR_METHOD_NAMES, RuleSet
from .names import dotted

T = TypeVar("T")


@dataclass
class ClassFacts:
    name: str
    layer_base: str | None = None
    attr_types: dict[str, str] = field(default_factory=dict)
    param_attrs: set[str] = field(default_factory=set)
    buffer_attrs: set[str] = field(default_factory=set)  # `self.register_buffer("name", ...)` in any method
    reads_training: bool = False
    keeps_rngs: bool = False
    assigned: set[str] = field(default_factory=set)  # `self.x = <not None>` anywhere in the class
    built: dict[str, set[str]] = field(default_factory=dict)  # `self.x = f(...)` only: attr -> callees


@dataclass
class FunctionFacts:
    key: str
    node: cst.FunctionDef
    owner: str | None
    params: list[str]
    calls: list[cst.Call] = field(default_factory=list)
    class_values: set[str] = field(default_factory=set)
    tensor_names: set[str] = field(default_factory=set)
    python_names: set[str] = field(default_factory=set)  # bound to sets, lists, dicts, strings: not tensors
    mapping_names: set[str] = field(default_factory=set)  # bound to dicts (`nn.Sequential(layers)` is named)
    dicts: dict[str, list[tuple[str, cst.BaseExpression]]] = field(default_factory=dict)  # `dd = dict(...)`
    module_names: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)  # parameters it fills in place (`tensor.uniform_(a, b)`)
    parameter_loops: set[str] = field(default_factory=set)  # `for p in m.parameters()` variables: candidates
    parameter_views: set[str] = field(default_factory=set)  # ... of them filled in place: torch-layout views
    module_params: set[str] = field(default_factory=set)  # parameters layers pass themselves as (`f(self, x)`)

    def markers(self, names: set[str]) -> set[str]:
        """`names` of parameters as call sites can pass them: by keyword or position (`#0`)."""
        params = self.params[1:] if self.owner else self.params
        return set(names) | {f"#{i}" for i, p in enumerate(params) if p in names}


def _per_node(compute: Callable[[cst.CSTNode], T]) -> Callable[[cst.CSTNode], T]:
    """Memoise a function of one (immutable) node: the analysis' fixed points ask again and again."""
    cache: dict[int, tuple[cst.CSTNode, T]] = {}

    @functools.wraps(compute)
    def cached(node: cst.CSTNode) -> T:
        found = cache.get(id(node))
        if found is None or found[0] is not node:
            if len(cache) > 8192:
                cache.clear()
            found = cache[id(node)] = (node, compute(node))
        return found[1]
    return cached


@_per_node
def _returns(func: cst.FunctionDef) -> list[cst.Return]:
    """The `return <value>` statements of a function (not of functions nested in it; memoised)."""
    found: list[cst.Return] = []

    class _Visitor(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is func

        def visit_Return(self, node: cst.Return) -> None:
            if node.value is not None:
                found.append(node)
    func.visit(_Visitor())
    return found


LIBRARIES = frozenset({"jax", "jnp", "nnx", "np", "numpy", "optax", "math", "random", "flax", "torch"})


def _without_data(node: cst.BaseExpression) -> cst.BaseExpression:
    """`w.data` is `w` (the tensor without autograd tracking)."""
    return node.value if isinstance(node, cst.Attribute) and node.attr.value == "data" else node


def _bound_names(target: cst.BaseExpression) -> set[str]:
    """The plain names an assignment target binds: `x`, `a, (b, *c)`; none for `self.x` or `x[i]`."""
    if isinstance(target, cst.Name):
        return {target.value}
    if isinstance(target, (cst.Tuple, cst.List)):
        return {n for e in target.elements for n in _bound_names(e.value)}
    return _bound_names(target.value) if isinstance(target, cst.StarredElement) else set()


# a dict, list or set display holds tensors; it is not one (`d[k] = v` stays a Python item write)
CONTAINER_DISPLAYS = (cst.Dict, cst.List, cst.Set, cst.DictComp, cst.ListComp, cst.SetComp)
PYTHON_BUILDERS = {"list", "tuple", "dict", "set", "len", "int", "float", "bool", "str", "range", "sorted"}
SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device"}


def python_value(node: cst.BaseExpression) -> bool:
    """A value that is a Python object whatever tensors it is computed from: a container display,
    `list(x.shape)`, `[(0, 0)] * x.ndim`, `x.shape`."""
    if isinstance(node, CONTAINER_DISPLAYS):
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name):
        return node.func.value in PYTHON_BUILDERS
    if isinstance(node, cst.BinaryOperation):
        return isinstance(node.left, CONTAINER_DISPLAYS) or isinstance(node.right, CONTAINER_DISPLAYS)
    return isinstance(node, cst.Attribute) and node.attr.value in SHAPE_ATTRIBUTES


class External:
    """What other files of the package say about names this file imports (none for a lone file).

    `modules` maps a local dotted name (`ConvBlock`, `blocks.ConvBlock`) of an imported module class
    to its torch layer base (or None); `rngs_functions` are imported functions that build layers;
    `torch_names` maps names a star import binds to torch's (`nn` -> `torch.nn`); `torch_aliases`
    maps names imported from a file of the package that are torch APIs there (re-exports such as
    `from .utils import load_state_dict_from_url`); `class_args` maps this file's own functions to the
    parameters other files pass layer classes to (`#0` for the first positional one, or a keyword:
    timm's `build_model_with_cfg(VisionTransformer, ...)` makes its `model_cls` a layer class)."""

    def __init__(self, modules: dict[str, str | None] | None = None, rngs_functions: set[str] | None = None,
                 torch_names: dict[str, str] | None = None, torch_aliases: dict[str, str] | None = None):
        self.modules = modules or {}
        self.rngs_functions = rngs_functions or set()
        self.torch_names = torch_names or {}
        self.torch_aliases = torch_aliases or {}
        self.class_args: dict[str, set[str]] = {}
        self.class_functions: set[str] = set()  # imported functions that return layer classes
        self.dynamic = False  # some file of the package builds layers its analysis cannot follow
        self.written_args: dict[str, set[str]] = {}  # imported functions -> arguments they fill in place
        self.package = ""  # the file's package (`transformers.models.llama`), in a converted tree
        self.root = ""  # the tree's root package: relative imports above it become absolute


@dataclass
class Facts:
    classes: dict[str, ClassFacts]
    functions: dict[str, FunctionFacts]
    rngs_functions: set[str]
    seeded: set[str] = field(default_factory=set)
    external: External = field(default_factory=External)
    top_module_names: set[str] = field(default_factory=set)  # module-level names holding models
    top_python_names: set[str] = field(default_factory=set)  # module-level sets, lists, dicts (`_registry = set()`)
    class_functions: set[str] = field(default_factory=set)  # functions returning layer classes (`get_norm_act_layer`)
    factory_attrs: set[str] = field(default_factory=set)  # `block: Callable[..., nn.Module]` fields
    dynamic: bool = False  # builds layers the analysis cannot follow (the package, when converting one)
    passed_builders: set[str] = field(default_factory=set)  # functions taking `rngs` passed as values
    scopes: set[str] = field(default_factory=set)  # functions that may build layers the analysis cannot see

    def is_module_class(self, name: str | None) -> bool:
        return name in self.classes or name in self.external.modules


def _is_stub(node: cst.FunctionDef) -> bool:
    """A body of only `pass`, `...` or a docstring (`@overload` / `@torch.jit._overload_method`)."""
    body = node.body.body if isinstance(node.body, cst.IndentedBlock) else [node.body]
    return all(isinstance(stmt, cst.SimpleStatementLine) and all(
        isinstance(s, cst.Pass) or (isinstance(s, cst.Expr) and isinstance(s.value, (cst.Ellipsis, cst.SimpleString)))
        for s in stmt.body) for stmt in body)


def param_names(node: cst.FunctionDef) -> list[str]:
    p = node.params
    return [a.name.value for a in (*p.posonly_params, *p.params, *p.kwonly_params)]


class _Collector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.classes: dict[str, cst.ClassDef] = {}
        self.functions: dict[str, FunctionFacts] = {}
        self._class: list[str] = []
        self._func: list[FunctionFacts] = []
        self.training_readers: set[str] = set()
        self.module_calls: list[cst.Call] = []
        self.annotated_attrs: list[tuple[str, cst.BaseExpression]] = []
        self.module_assigns: list[cst.Assign] = []
        self.passed: set[str] = set()  # names used as values (`named_apply(init_weights, self)`)

    def _value(self, node: cst.BaseExpression | None) -> None:
        if isinstance(node, cst.Name) and not any(node.value in f.params for f in self._func):
            self.passed.add(node.value)  # a parameter of the same name (`drop_path=0.`) is not the function

    def visit_Assign(self, node: cst.Assign) -> None:
        self._value(node.value)
        if not self._func and not self._class:
            self.module_assigns.append(node)

    def visit_BooleanOperation(self, node: cst.BooleanOperation) -> None:
        self._value(node.left)  # `init_fn = init_fn or _init_weight_goog`
        self._value(node.right)

    def visit_IfExp(self, node: cst.IfExp) -> None:
        self._value(node.body)
        self._value(node.orelse)

    def visit_Element(self, node: cst.Element) -> None:
        self._value(node.value)

    def visit_DictElement(self, node: cst.DictElement) -> None:
        self._value(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if self._class and node.attr.value == "training" and dotted(node.value) == "self":
            self.training_readers.add(self._class[-1])

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if self._class and not self._func and isinstance(node.target, cst.Name):
            self.annotated_attrs.append((node.target.value, node.annotation.annotation))

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.classes.setdefault(node.name.value, node)
        self._class.append(node.name.value)

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self._class.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        owner = self._class[-1] if self._class and not self._func else None
        key = f"{owner}.{node.name.value}" if owner else node.name.value
        facts = FunctionFacts(key, node, owner, param_names(node))
        if key not in self.functions or _is_stub(self.functions[key].node):  # an overload stub gives way
            self.functions[key] = facts
        self._func.append(facts)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._func.pop()

    def visit_For(self, node: cst.For) -> None:
        variable = loop_variable(node) if self._func else None
        if variable:
            self._func[-1].parameter_loops.add(variable)

    def visit_Call(self, node: cst.Call) -> None:
        for arg in node.args:
            self._value(arg.value)
        if self._func:
            self._func[-1].calls.append(node)
        else:
            self.module_calls.append(node)


class Analysis:
    """Compute `Facts` for one parsed module."""

    def __init__(self, module: cst.Module, qualnames: dict, rules: RuleSet, external: External | None = None,
                 collector: _Collector | None = None):
        """`collector`: what an earlier analysis of the same tree collected (the package analysis runs
        each file's analysis again as other files' facts grow; what a run adds only grows too)."""
        self.qualnames, self.rules = qualnames, rules
        self.external = external or External()
        self.collector = collector or _Collector()
        if collector is None:
            module.visit(self.collector)
        self._subclass_index: dict[str, list[str]] = {}  # the classes do not change during the analysis

    def run(self) -> Facts:
        classes = self._module_classes()
        facts = Facts(classes, self.collector.functions, set(), external=self.external)
        for cls in classes.values():
            self._attribute_types(cls, facts)
            cls.assigned, cls.built = self._assigned_attrs(cls, facts)
            cls.buffer_attrs = self._buffer_attrs(cls, facts)
        for cls in classes.values():
            self._inherit(cls, classes, set())
        facts.factory_attrs = {n for n, ann in self.collector.annotated_attrs if self._builds_module(ann)}
        self._annotated_class_values(facts)
        self._external_class_args(facts)
        self._class_valued_params(facts)
        builds = self.model_call_test(facts)
        self._module_arguments(facts)
        for func in facts.functions.values():
            func.tensor_names = self._tensor_names(func)
            func.python_names = _python_objects(func)
            func.mapping_names = _python_objects(func, is_mapping)
            func.dicts = _dict_literals(func)
            func.module_names = _module_names(_assignments(func.node), builds)
        facts.top_module_names = _module_names(self.collector.module_assigns, builds)
        facts.top_python_names = _containers(self.collector.module_assigns)
        self._written_params(facts)
        facts.seeded = self._seeded(facts)
        facts.rngs_functions = self._rngs_functions(facts) - facts.seeded
        facts.passed_builders = {f for f in facts.rngs_functions if "." not in f and (
            f in self.collector.passed or facts.functions[f].node.decorators)}  # `@register_model`
        facts.scopes = {f.key for f in facts.functions.values() if self._builds_unseen(f, facts)}
        facts.dynamic = self.external.dynamic or bool(facts.passed_builders or facts.scopes)
        return facts

    def _module_arguments(self, facts: Facts) -> None:
        """Parameters of the file's functions that layers pass themselves as: `f(self, q, k)`, also through
        a name bound to an expression naming `f` (`attn = REGISTRY.get_interface(impl, f)`). A layer whose
        function reads `module.training` carries the training flag."""
        for func in facts.functions.values():
            cls = facts.classes.get(func.owner or "")
            for call in func.calls if cls is not None else ():
                positions = [i for i, a in enumerate(call.args) if not a.keyword and not a.star
                             and dotted(a.value) == "self"]
                for target in self._callee_functions(call, func, facts) if positions else ():
                    names = {target.params[i] for i in positions if i < len(target.params)}
                    target.module_params |= names
                    cls.reads_training |= mentions(target.node.body, lambda n: isinstance(n, cst.Attribute)
                                                   and n.attr.value == "training" and dotted(n.value) in names)

    def _callee_functions(self, call: cst.Call, func: FunctionFacts, facts: Facts) -> list[FunctionFacts]:
        """The file's module-level functions a call may reach: by name, or through a local bound to them."""
        name = dotted(call.func) or ""
        values = [s.value for s in _assignments(func.node) if len(s.targets) == 1
                  and dotted(s.targets[0].target) == name]
        found = {name}
        for value in values:
            mentions(value, lambda n: isinstance(n, cst.Name) and found.add(n.value))
        return [facts.functions[n] for n in sorted(found) if n in facts.functions and facts.functions[n].owner is None]

    def _written_params(self, facts: Facts) -> None:
        """Parameters functions fill in place: with in-place tensor methods, `nn.init.*_`, or by passing
        them on to a function (of the file, or of the package: `external.written_args`) that does."""
        changed = True
        while changed:
            changed = False
            for func in facts.functions.values():
                found = {n for c in func.calls for n in self._writes(c, func, facts)} & set(func.params)
                changed |= not found <= func.written
                func.written |= found
        for func in facts.functions.values():  # `for p in m.parameters(): nn.init.uniform_(p, -s, s)`
            func.parameter_views = func.parameter_loops & {n for c in func.calls for n in self._writes(c, func, facts)}

    def _writes(self, call: cst.Call, func: FunctionFacts, facts: Facts):
        """Names this call fills in place."""
        if isinstance(call.func, cst.Attribute) and call.func.attr.value.endswith("_"):
            if call.func.attr.value in TENSOR_METHOD_NAMES:
                yield dotted(_without_data(call.func.value))
        qual = self.qualnames.get(call.func) or ""
        if qual.startswith("torch.nn.init.") and qual.endswith("_") and call.args:
            yield dotted(_without_data(call.args[0].value))
        markers = self.written_markers(call, func, facts)
        for i, arg in enumerate(call.args):
            if not arg.star and (arg.keyword.value if arg.keyword else f"#{i}") in markers:
                yield dotted(_without_data(arg.value))

    def written_markers(self, call: cst.Call, func: FunctionFacts, facts: Facts) -> set[str]:
        """The argument positions and keywords of `call` its callee fills in place."""
        callee = self._callee(call, func, facts)
        if callee is not None:
            return callee.markers(callee.written)
        return self.external.written_args.get(dotted(call.func) or "", set())

    def _package_call(self, node: cst.BaseExpression) -> bool:
        """A call of the code's own (not torch's, JAX's or NumPy's): its result may be a layer class."""
        name = dotted(node.func) if isinstance(node, cst.Call) else None
        return bool(name) and node.func not in self.qualnames and name.split(".")[0] not in LIBRARIES

    def _builds_unseen(self, func: FunctionFacts, facts: Facts) -> bool:
        """Whether `func` may build a layer the analysis cannot follow, so gives it no `rngs`: in a
        constructor or layer builder, a call of a parameter, a local, a subscript or a call's result
        (`se_layer(dim)` with `se_layer=None`, `_registry[name](dim)`, `getattr(nn, kind)(...)`); in any
        other function, a call of an entry of a module-level container, of `getattr(...)` or of a local
        bound to a call's result (timm's `create_fn = model_entrypoint(name)`)."""
        builder = func.node.name.value == "__init__" or func.key in facts.rngs_functions
        bindings = list(_local_bindings(func.node))
        local = {*func.params, *(n for n, _ in bindings)} - {"self", "cls", *facts.functions, *func.module_names}
        made = set() if func.key in facts.seeded else (  # a function making its own `rngs` needs no lender
            {n for n, v in bindings if self._package_call(v) and dotted(v.func) not in facts.classes}
            - {"self", "cls", "rngs", *facts.functions})  # `model = Net()` holds a model, not a class
        for call in func.calls:
            if any(a.keyword and a.keyword.value == "rngs" for a in call.args) or self.needs_rngs(
                    call, func, facts, facts.rngs_functions):
                continue
            target = call.func
            if builder and (isinstance(target, (cst.Subscript, cst.Call))
                            or (isinstance(target, cst.Name) and target.value in local)):
                return True
            if (isinstance(target, cst.Subscript) and dotted(target.value) in facts.top_python_names) or (
                    isinstance(target, cst.Call) and dotted(target.func) == "getattr") or (
                    isinstance(target, cst.Name) and target.value in made):
                return True
        return False

    def _seeded(self, facts: Facts) -> set[str]:
        """Functions (and `<module>`) that make their own `rngs`: they call `torch.manual_seed`, or
        assign `rngs = nnx.Rngs(...)` (code converted before)."""
        seeds = lambda calls: any(self.qualnames.get(c.func) == "torch.manual_seed" for c in calls)
        found = {f.key for f in facts.functions.values() if seeds(f.calls) or _makes_rngs(_assignments(f.node))}
        at_top = seeds(self.collector.module_calls) or _makes_rngs(self.collector.module_assigns)
        return found | ({"<module>"} if at_top else set())

    def module_call_test(self, facts: Facts):
        """A test for calls that build a module: a module class of the file or a torch layer."""
        def is_module_call(call: cst.Call) -> bool:
            rule = self.rules.get("module", self.layer_rule_name(call.func) or "")
            return facts.is_module_class(dotted(call.func)) or bool(rule and rule.flax)
        return is_module_call

    def model_call_test(self, facts: Facts):
        """A test for calls whose result is a module (all module calls but `nn.Parameter`)."""
        is_module_call = self.module_call_test(facts)
        return lambda call: is_module_call(call) and self.layer_rule_name(call.func) != "torch.nn.Parameter"

    def library_base(self, node: cst.BaseExpression) -> bool:
        """A library's module base class (`PreTrainedModel` of transformers: a rule with `base = true`)."""
        rule = self.rules.get("attribute", self.qualnames.get(node) or "")
        return bool(rule and rule.base)

    def layer_rule_name(self, node: cst.BaseExpression) -> str | None:
        name = self.qualnames.get(node)
        return name if name and self.rules.get("module", name) else None

    def _module_classes(self) -> dict[str, ClassFacts]:
        found: dict[str, ClassFacts] = {}
        changed = True
        while changed:
            changed = False
            for name, node in self.collector.classes.items():
                if name in found:
                    continue
                for base in node.bases:
                    qual = self.qualnames.get(base.value)
                    local = dotted(base.value)
                    imported = local in self.external.modules
                    if qual == "torch.nn.Module" or self.library_base(base.value) or self.layer_rule_name(base.value) \
                            or local in found or imported:
                        layer = self.layer_rule_name(base.value) or (
                            found[local].layer_base if local in found else self.external.modules.get(local))
                        found[name] = ClassFacts(name, layer)
                        changed = True
                        break
        for name, cls in found.items():
            cls.reads_training = name in self.collector.training_readers
        return found

    def value_type(self, node: cst.BaseExpression, facts: Facts) -> str | None:
        """The layer type a constructor call builds: a torch rule name or a module class of the file."""
        if isinstance(node, cst.IfExp):
            return self.value_type(node.body, facts) or self.value_type(node.orelse, facts)
        if not isinstance(node, cst.Call):
            return None
        rule = self.layer_rule_name(node.func)
        if rule:
            return rule
        name = dotted(node.func)
        return name if facts.is_module_class(name) else None

    def _attribute_types(self, cls: ClassFacts, facts: Facts) -> None:
        init = facts.functions.get(f"{cls.name}.__init__")
        if init is None:
            return
        for stmt in _assignments(init.node):
            target = dotted(stmt.targets[0].target) if len(stmt.targets) == 1 else None
            if not target or not target.startswith("self."):
                continue
            attr = target[len("self."):]
            kind = self.value_type(stmt.value, facts)
            if kind in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
                cls.param_attrs.add(attr)
            elif kind:
                cls.attr_types[attr] = kind
            for key, value in _dict_entries(stmt.value):
                entry = self.value_type(value, facts)
                if entry:
                    cls.attr_types[f"{attr}.{key}"] = entry

    def _inherit(self, cls: ClassFacts, classes: dict[str, ClassFacts], seen: set[str]) -> None:
        """Attributes a base class of the file sets in its `__init__` (Swin V2's attention subclass
        writes the `self.qkv` its base built): the subclass's own assignments win."""
        seen.add(cls.name)
        for base in self.collector.classes[cls.name].bases:
            parent = classes.get(dotted(base.value) or "")
            if parent is None or parent.name in seen:
                continue
            self._inherit(parent, classes, seen)
            cls.attr_types = {**parent.attr_types, **cls.attr_types}
            cls.param_attrs |= parent.param_attrs - set(cls.attr_types)
            cls.buffer_attrs |= parent.buffer_attrs

    def _buffer_attrs(self, cls: ClassFacts, facts: Facts) -> set[str]:
        found = set()
        for func in facts.functions.values():
            for call in func.calls if func.owner == cls.name else ():
                if (dotted(call.func) == "self.register_buffer" and call.args
                        and isinstance(call.args[0].value, cst.SimpleString)):
                    found.add(call.args[0].value.evaluated_value)
        return found

    def _assigned_attrs(self, cls: ClassFacts, facts: Facts) -> tuple[set[str], set[str]]:
        """Attributes some method of the class sets to a value other than None; those it only ever sets
        to the result of a call (`self.act = layers.act(inplace=True)`: an instance, whatever `act` is)."""
        found, other, callees = set(), set(), {}
        for func in facts.functions.values():
            if func.owner != cls.name:
                continue
            for stmt in _assignments(func.node):
                target = dotted(stmt.targets[0].target) if len(stmt.targets) == 1 else None
                if target and target.startswith("self.") and not _is_none(stmt.value):
                    found.add(target[5:])
                    names = _callees(stmt.value)
                    other.update(() if names else [target[5:]])
                    callees.setdefault(target[5:], set()).update(names or ())
        return found, {attr: names for attr, names in callees.items() if attr not in other}

    def _tensor_names(self, func: FunctionFacts) -> set[str]:
        """Names bound to tensors (item assignment into them needs `.at[]`): forward inputs, parameters
        annotated `torch.Tensor`, torch results, layer outputs (`self.proj(x)`), and anything computed from those."""
        names = set(func.params[1:]) if func.node.name.value == "forward" else set()
        names |= self._annotated_tensors(func.node) | self._method_receivers(func)
        containers = _annotated_containers(func.node)  # `x: List[Tensor]`: `x[i] = ...` stores into the list
        for stmt in _assignments(func.node):
            target = stmt.targets[0].target if len(stmt.targets) == 1 else None
            bound = _bound_names(target) if target is not None else set()
            if isinstance(target, cst.Subscript):
                bound -= containers
            if python_value(stmt.value):  # `masks = {"full": create_causal_mask(...)}`, `shape = list(x.shape)`
                names -= bound
                continue
            if bound and mentions(stmt.value, lambda n: n in self.qualnames or _reads(n, names) or _layer_call(n)):
                names |= bound  # `q, k, v = qkv[0], qkv[1], qkv[2]`: each is a tensor
                if not isinstance(target, cst.Subscript):
                    containers -= bound  # re-bound to a tensor (`x = torch.stack(x)`)
        return names - containers

    def _method_receivers(self, func: FunctionFacts) -> set[str]:
        """Parameters used as only tensors are: a Tensor method only tensors have called on them
        (`cos.unsqueeze(1)`, not `.to` or `.float`, which other objects share); any Tensor method whose
        result a torch function takes (`torch.matmul(q, key.transpose(-1, -2))`); and, once one is known, the
        other operand of arithmetic with it (`q.float() * cos`). Tensors everywhere in the function."""
        found: set[str] = set()

        def receiver(node: cst.CSTNode, unambiguous: bool) -> str | None:
            if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and isinstance(
                    node.func.value, cst.Name) and node.func.value.value in func.params:
                rule = self.rules.get("method", node.func.attr.value)
                if rule is not None and rule.receiver == "tensor" and not (unambiguous and rule.ambiguous):
                    return node.func.value.value
            return None

        def seed(node: cst.CSTNode) -> bool:
            found.update(filter(None, [receiver(node, True)]))
            if isinstance(node, cst.Call) and (self.qualnames.get(node.func) or "").startswith("torch."):
                found.update(filter(None, (receiver(arg.value, False) for arg in node.args)))
            return False
        mentions(func.node.body, seed)
        return self._arithmetic_operands(func, found)

    def _arithmetic_operands(self, func: FunctionFacts, found: set[str]) -> set[str]:
        """`found` grown by the parameters standing (bare, or as a method's receiver) beside a tensor in
        arithmetic, until nothing more is learnt."""
        operations = []
        mentions(func.node.body, lambda n: isinstance(n, cst.BinaryOperation) and operations.append(n) and False)

        def param(side: cst.BaseExpression) -> str | None:
            while isinstance(side, cst.Call) and isinstance(side.func, cst.Attribute):
                side = side.func.value
            return side.value if isinstance(side, cst.Name) and side.value in func.params else None

        def tensor(side: cst.BaseExpression) -> bool:
            return mentions(side, lambda n: (isinstance(n, cst.Name) and n.value in found)
                            or (self.qualnames.get(n) or "").startswith("torch."))
        size = -1
        while size != len(found):
            size = len(found)
            for op in operations:
                for side, other in ((op.left, op.right), (op.right, op.left)):
                    if param(side) and tensor(other):
                        found.add(param(side))
        return found

    def _annotated_tensors(self, node: cst.FunctionDef) -> set[str]:
        """Parameters annotated as tensors (`xq: torch.Tensor`, `mask: Optional[torch.Tensor]`)."""
        p = node.params
        return {a.name.value for a in (*p.posonly_params, *p.params, *p.kwonly_params) if a.annotation and mentions(
            a.annotation.annotation, lambda n: self.qualnames.get(n) == "torch.Tensor")}

    def _is_class_value(self, node: cst.BaseExpression, func: FunctionFacts, facts: Facts) -> bool:
        """A layer class: `nn.LayerNorm`, a module class of the file, `partial(nn.LayerNorm, eps=1e-6)`,
        `norm_layer or nn.LayerNorm`, or a name already known to hold one."""
        if isinstance(node, cst.BooleanOperation):
            return any(self._is_class_value(side, func, facts) for side in (node.left, node.right))
        if isinstance(node, cst.Call) and dotted(node.func) in PARTIAL and node.args:
            return self._is_class_value(node.args[0].value, func, facts)
        if isinstance(node, cst.IfExp):  # `partial(nn.Conv2d, kernel_size=1) if use_conv else nn.Linear`
            return any(self._is_class_value(side, func, facts) for side in (node.body, node.orelse))
        if isinstance(node, cst.Call) and (dotted(node.func) in facts.class_functions
                                           or dotted(node.func) in self.external.class_functions):
            return True  # `norm_act_layer = get_norm_act_layer(norm_layer, act_layer)`
        if isinstance(node, (cst.List, cst.Tuple)) and node.elements:  # `blocks = [BasicConv2d, Inception]`
            return all(self._is_class_value(e.value, func, facts) for e in node.elements)
        if isinstance(node, cst.Subscript):  # `conv_block = blocks[0]`
            return self._is_class_value(node.value, func, facts)
        name = dotted(node) or ""
        if name.startswith("self.") and name[5:] in facts.factory_attrs:
            return True  # `norm_layer = self._norm_layer` after `self._norm_layer = nn.BatchNorm2d`
        return bool(self.layer_rule_name(node)) or facts.is_module_class(name) or name in func.class_values

    def _builds_module(self, annotation: cst.BaseExpression) -> bool:
        """`Callable[..., nn.Module]`, `Optional[Callable[..., nn.Module]]`, `type[nn.Module]`."""
        return mentions(annotation, lambda n: self.qualnames.get(n) == "torch.nn.Module") and mentions(
            annotation, lambda n: isinstance(n, cst.Name) and n.value in ("Callable", "type", "Type"))

    def class_args(self, facts: Facts) -> list[tuple[str, str]]:
        """(called name, `#i` or keyword) for each layer class this file passes to a function it calls."""
        found = []
        for func in facts.functions.values():
            for call in func.calls:
                name = dotted(call.func)
                if not name or name.startswith("self.") or name in facts.functions or facts.is_module_class(name):
                    continue
                for i, arg in enumerate(call.args):
                    if not arg.star and self._is_class_value(arg.value, func, facts):
                        found.append((name, arg.keyword.value if arg.keyword else f"#{i}"))
        return found

    def _external_class_args(self, facts: Facts) -> None:
        """Parameters of this file's functions that other files pass layer classes to."""
        for key, markers in self.external.class_args.items():
            func = facts.functions.get(key)
            for marker in markers if func is not None and func.owner is None else ():
                index = int(marker[1:]) if marker.startswith("#") else None
                if index is None and marker in func.params:
                    func.class_values.add(marker)
                elif index is not None and index < len(func.params):
                    func.class_values.add(func.params[index])

    def _annotated_class_values(self, facts: Facts) -> None:
        """Parameters annotated as layer factories hold layer classes (`block: Callable[..., nn.Module]`)."""
        for func in facts.functions.values():
            params = func.node.params
            for param in (*params.posonly_params, *params.params, *params.kwonly_params):
                if param.annotation is not None and self._builds_module(param.annotation.annotation):
                    func.class_values.add(param.name.value)

    def _class_valued_params(self, facts: Facts) -> None:
        changed = True
        while changed:
            changed = False
            for func in facts.functions.values():
                for name, value in _local_bindings(func.node):
                    if name not in func.class_values and self._is_class_value(value, func, facts):
                        func.class_values.add(name)
                        changed = True
                for call in func.calls:
                    changed |= self._mark_callee_params(call, func, facts)
                changed |= self._class_valued_attrs(func, facts)
                if func.owner is None and func.key not in facts.class_functions and any(
                        self._is_class_value(ret.value, func, facts) for ret in _returns(func.node)):
                    facts.class_functions.add(func.key)
                    changed = True

    def _class_valued_attrs(self, func: FunctionFacts, facts: Facts) -> bool:
        """Attributes a method sets to a layer class (`self._norm_layer = nn.BatchNorm2d`): factories."""
        found = {dotted(t.target)[5:] for a in _assignments(func.node) if func.owner for t in a.targets
                 if (dotted(t.target) or "").count(".") == 1 and dotted(t.target).startswith("self.")
                 and self._is_class_value(a.value, func, facts)}
        new = found - facts.factory_attrs
        facts.factory_attrs |= new
        return bool(new)

    def _callee(self, call: cst.Call, caller: FunctionFacts, facts: Facts) -> FunctionFacts | None:
        name = dotted(call.func)
        if name and name.startswith("self.") and caller is not None and caller.owner:
            return facts.functions.get(f"{caller.owner}.{name[5:]}") or self._inherited(caller.owner, name[5:], facts)
        if facts.is_module_class(name):
            return facts.functions.get(f"{name}.__init__")
        return facts.functions.get(name) if name else None

    def _inherited(self, owner: str, method: str, facts: Facts, depth: int = 0) -> FunctionFacts | None:
        """The method `owner` inherits: a base's in this file, or (its key only) a base's from another file
        of the package whose method builds layers (`VisionTransformer.init_weights`)."""
        node = self.collector.classes.get(owner)
        for base in (dotted(b.value) for b in node.bases) if node is not None and depth < 8 else ():
            if base is None:
                continue
            found = facts.functions.get(f"{base}.{method}") or self._inherited(base, method, facts, depth + 1)
            if found is None and f"{base}.{method}" in self.external.rngs_functions:
                found = FunctionFacts(f"{base}.{method}", node, base, [])
            if found is not None:
                return found
        return None

    def _subclasses(self, owner: str) -> list[str]:
        """Classes of this file deriving from `owner`, directly or not (timm's rotary embeddings define the
        `_init_cached_embed` hook their base calls); worked out once per class."""
        if owner in self._subclass_index:
            return self._subclass_index[owner]
        found, changed = [], True
        while changed:
            changed = False
            for name, node in self.collector.classes.items():
                if name not in found and any(dotted(b.value) in (owner, *found) for b in node.bases):
                    found.append(name)
                    changed = True
        self._subclass_index[owner] = found
        return found

    def _mark_callee_params(self, call: cst.Call, caller: FunctionFacts, facts: Facts) -> bool:
        callee = self._callee(call, caller, facts)
        if callee is None:
            return False
        params = callee.params[1:] if callee.owner else callee.params
        changed = False
        for i, arg in enumerate(call.args):
            if arg.star or not self._is_class_value(arg.value, caller, facts):
                continue
            target = arg.keyword.value if arg.keyword else (params[i] if i < len(params) else None)
            if target and target not in callee.class_values:
                callee.class_values.add(target)
                changed = True
        return changed

    def needs_rngs(self, call: cst.Call, func: FunctionFacts, facts: Facts, known: set[str]) -> bool:
        """Whether this call builds layers and so must receive `rngs`."""
        rule = self.layer_rule_name(call.func)
        if rule:
            return self.rules.get("module", rule).needs_rngs
        name = dotted(call.func)
        if facts.is_module_class(name) or name in func.class_values or name in self.external.rngs_functions:
            return True
        if name == "cls" and func.owner and facts.is_module_class(func.owner):
            return True  # `cls(...)` in a classmethod of a module class (`Model.from_args(...)`)
        if isinstance(call.func, cst.Subscript) and self._is_class_value(call.func, func, facts):
            return True  # `blocks[1](...)` with `blocks = [BasicConv2d, Inception]`
        if isinstance(call.func, cst.Attribute) and call.func.attr.value in facts.factory_attrs and not (
                self._built_attr(call.func, func, facts)):
            return True  # `cnf.block(...)` where a class declares `block: Callable[..., nn.Module]`
        applied = applied_function(call)  # `self.apply(partial(self._init_weights, needs_reset=False))`
        if applied is not None:
            key = f"{func.owner}.{applied[5:]}" if applied.startswith("self.") and func.owner else applied
            return key in known or key in self.external.rngs_functions
        callee = self._callee(call, func, facts)
        if callee is None and super_call(call) and func.owner:  # `super().init_weights(...)` (timm's DeiT)
            callee = self._inherited(func.owner, call.func.attr.value, facts)
        name = dotted(call.func) or ""
        if callee is None and name.startswith("self.") and name.count(".") == 1 and func.owner:
            return any(f"{sub}.{name[5:]}" in known for sub in self._subclasses(func.owner))  # a hook subclasses define
        return callee is not None and (callee.key in known or callee.key in self.external.rngs_functions)

    def _built_attr(self, node: cst.Attribute, func: FunctionFacts, facts: Facts) -> bool:
        """`self.act` where the class sets `self.act` only to results of calls (a layer, not a factory)."""
        cls = facts.classes.get(func.owner) if func.owner and dotted(node.value) == "self" else None
        callees = cls.built.get(node.attr.value) if cls is not None else None
        factories = facts.class_functions | self.external.class_functions | set(PARTIAL)
        return callees is not None and not callees & factories

    def _rngs_functions(self, facts: Facts) -> set[str]:
        """Functions taking `rngs`: those building layers, then those drawing random numbers. A module's
        method that only draws takes it where every caller has it to pass (`_init_weights` applied from
        `__init__`); one called at run time (`get_embed` augmenting coordinates, called from `forward`
        and from other modules' forward) or by no one draws from the module's own `self.rngs`."""
        builders = self._rngs_fixpoint(facts, {f"{c}.__init__" for c in facts.classes
                                                if f"{c}.__init__" in facts.functions}, None)
        callers, own = _method_callers(facts, self.collector.module_calls), set()
        while True:
            known = self._rngs_fixpoint(facts, set(builders), own)
            more = {k for k in known - builders if _draws_own(facts.functions[k], facts, callers, known)}
            if not more:
                return known
            own |= more

    def _rngs_fixpoint(self, facts: Facts, known: set[str], own: set[str] | None) -> set[str]:
        """`own` None: the layer builders; else the functions drawing random numbers too, but for the
        methods in `own` (they draw from `self.rngs`)."""
        changed = True
        while changed:
            changed = False
            for func in facts.functions.values():
                if func.key in known or func.node.name.value == "forward" or (own is not None and func.key in own):
                    continue
                if any(self.needs_rngs(c, func, facts, known) or (
                        own is not None and func.owner is None and self._draws_random(c)) for c in func.calls):
                    known.add(func.key)
                    changed = True
        return known

    def _draws_random(self, call: cst.Call) -> bool:
        """A torch call needing a PRNG key (`nn.init.normal_`, `w.data.normal_(0, .02)`): a function
        making it receives `rngs` (a method draws from `self.rngs` instead)."""
        if any(a.keyword and a.keyword.value == "generator" for a in call.args):
            return False  # draws from its own generator
        qual = self.qualnames.get(call.func)
        rule = self.rules.get("function", qual) if qual else None
        if rule is None and isinstance(call.func, cst.Attribute) and call.func.attr.value.endswith("_"):
            rule = self.rules.get("method", call.func.attr.value)
        return bool(rule and any("prng" in t.placeholders for t in rule.templates))


def _draws_own(func: FunctionFacts, facts: Facts, callers: dict[str, set[str]], known: set[str]) -> bool:
    """A module's method (on `self`) with no caller, or one that has no `rngs` to pass: it draws from `self.rngs`."""
    if func.owner is None or not facts.is_module_class(func.owner) or func.params[:1] != ["self"] or any(
            dotted(d.decorator) in ("staticmethod", "classmethod") for d in func.node.decorators):
        return False
    found = callers.get(func.node.name.value, set())
    return not found or any(not key.endswith("__init__") and key not in known for key in found)


def _method_callers(facts: Facts, module_calls: list[cst.Call]) -> dict[str, set[str]]:
    """Method name -> the keys of the functions calling a method of that name (`x.get_embed()`,
    `self.apply(self.f)`); calls at module level count as `<module>`'s."""
    found: dict[str, set[str]] = {}
    for key, calls in [*((f.key, f.calls) for f in facts.functions.values()), ("<module>", module_calls)]:
        for call in calls:
            name = applied_function(call) or dotted(call.func) or (
                f"super.{call.func.attr.value}" if super_call(call) else "")
            if "." in name:
                found.setdefault(name.rsplit(".", 1)[1], set()).add(key)
    return found


def loop_variable(node: cst.For) -> str | None:
    """The variable `for p in m.parameters()` / `for name, p in m.named_parameters()` binds to each parameter."""
    if not parameter_walk(node.iter):
        return None
    target = node.target.elements[-1].value if isinstance(node.target, cst.Tuple) else node.target
    return target.value if isinstance(target, cst.Name) else None


def parameter_walk(node: cst.BaseExpression) -> str | None:
    """`m.parameters()` / `m.named_parameters()` (any receiver, no arguments): the method's name."""
    if (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and not node.args
            and node.func.attr.value in ("parameters", "named_parameters")):
        return node.func.attr.value
    return None


def _makes_rngs(assigns: list[cst.Assign]) -> bool:
    """`rngs = nnx.Rngs(seed)` among the assignments."""
    return any(dotted(t.target) == "rngs" and isinstance(a.value, cst.Call) and dotted(a.value.func) == "nnx.Rngs"
               for a in assigns for t in a.targets)


PARTIAL = ("partial", "functools.partial")
_CONTAINERS = {"List", "Tuple", "Dict", "Sequence", "Mapping", "Iterable", "list", "tuple", "dict"}


def _annotated_containers(node: cst.FunctionDef) -> set[str]:
    """Parameters annotated as Python containers (timm's HRNet `forward(self, x: List[torch.Tensor])`):
    `x[i] = ...` on them is a list's item assignment."""
    p = node.params
    found = set()
    for a in (*p.posonly_params, *p.params, *p.kwonly_params):
        outer = a.annotation.annotation if a.annotation else None
        if isinstance(outer, cst.Subscript) and dotted(outer.value) in ("Optional", "typing.Optional"):
            outer = outer.slice[0].slice.value
        name = dotted(outer.value if isinstance(outer, cst.Subscript) else outer) if outer is not None else None
        if name and name.split(".")[-1] in _CONTAINERS:
            found.add(a.name.value)
    return found


def applied_function(call: cst.BaseExpression) -> str | None:
    """The function `module.apply(fn)` (or `module.apply(partial(fn, ...))`) calls on every module."""
    if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute) and call.func.attr.value == "apply"
            and len(call.args) == 1 and dotted(call.func.value)):
        return None
    fn = call.args[0].value
    if isinstance(fn, cst.Call) and dotted(fn.func) in PARTIAL and fn.args:
        fn = fn.args[0].value
    return dotted(fn)


def super_call(call: cst.Call) -> bool:
    """`super().method(...)`."""
    return isinstance(call.func, cst.Attribute) and isinstance(call.func.value, cst.Call) and dotted(
        call.func.value.func) == "super"


def _callees(node: cst.BaseExpression) -> set[str] | None:
    """What a call, or a choice between calls (`nn.Identity() if linear_out else layers.act(inplace=True)`),
    calls; None for any other expression."""
    if isinstance(node, cst.IfExp):
        body, orelse = _callees(node.body), _callees(node.orelse)
        return None if body is None or orelse is None else body | orelse
    return {dotted(node.func) or "?"} if isinstance(node, cst.Call) else None


@_per_node
def _assignments(func: cst.FunctionDef) -> list[cst.Assign]:
    """Assignments in a function body (memoised: the fixed points ask repeatedly)."""
    found: list[cst.Assign] = []

    class _Visitor(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            found.append(node)

        def visit_AnnAssign(self, node: cst.AnnAssign) -> None:  # `layers: OrderedDict[...] = OrderedDict()`
            if node.value is not None:
                found.append(cst.Assign([cst.AssignTarget(node.target)], node.value))

    func.body.visit(_Visitor())
    return found


def _local_bindings(func: cst.FunctionDef):
    """(name, value) for parameter defaults and simple assignments in a function."""
    for param in (*func.params.params, *func.params.kwonly_params):
        if param.default is not None:
            yield param.name.value, param.default
    for stmt in _assignments(func):
        if len(stmt.targets) == 1 and isinstance(stmt.targets[0].target, cst.Name):
            yield stmt.targets[0].target.value, stmt.value


def _dict_entries(node: cst.BaseExpression):
    """Entries of `X(dict(a=..))` / `X({'a': ..})` constructions (ModuleDict and friends)."""
    if not isinstance(node, cst.Call) or not node.args:
        return
    inner = node.args[0].value
    if isinstance(inner, cst.Call) and dotted(inner.func) == "dict":
        for arg in inner.args:
            if arg.keyword:
                yield arg.keyword.value, arg.value
    elif isinstance(inner, cst.Dict):
        for el in inner.elements:
            if isinstance(el, cst.DictElement) and isinstance(el.key, cst.SimpleString):
                yield el.key.evaluated_value, el.value


# Module methods that return the module itself (`model = Net().to(device).eval()`).
MODULE_RETURNING = frozenset({"to", "double", "float", "half", "bfloat16", "cuda", "cpu", "train", "eval",
                              "requires_grad_"})


def holds_module(node: cst.BaseExpression, builds_module, names: set[str]) -> bool:
    """`Net()`, `nn.Linear(...)`, a name known to hold a model, or one of those `.to(device)`, `.eval()`, ..."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in MODULE_RETURNING:
        return holds_module(node.func.value, builds_module, names)
    return (isinstance(node, cst.Call) and builds_module(node)) or (isinstance(node, cst.Name) and node.value in names)


def _module_names(assignments: list[cst.Assign], builds_module) -> set[str]:
    """Names assigned a model (`model = Net()`, `model = model.to(device)`), to a fixed point."""
    names: set[str] = set()
    changed = True
    while changed:
        changed = False
        for stmt in assignments:
            target = stmt.targets[0].target if len(stmt.targets) == 1 else None
            if (isinstance(target, cst.Name) and target.value not in names
                    and holds_module(stmt.value, builds_module, names)):
                names.add(target.value)
                changed = True
    return names


def mentions(node: cst.CSTNode, predicate) -> bool:
    """Whether any node inside `node` satisfies `predicate`."""
    found = []

    class _Visitor(cst.CSTVisitor):
        def on_visit(self, n: cst.CSTNode) -> bool:
            if predicate(n):
                found.append(n)
            return not found

    node.visit(_Visitor())
    return bool(found)


PYTHON_CONTAINERS = (cst.List, cst.Dict, cst.Set, cst.ListComp, cst.DictComp, cst.SetComp, cst.SimpleString,
                     cst.FormattedString, cst.ConcatenatedString)


def is_python_object(node: cst.BaseExpression) -> bool:
    """A literal or constructor of a plain Python container or string: `set()`, `{}`, `[...]`, `"a"`."""
    if isinstance(node, PYTHON_CONTAINERS):
        return True
    return isinstance(node, cst.Call) and dotted(node.func) in (
        "set", "list", "dict", "str", "collections.OrderedDict", "OrderedDict", "defaultdict", "deque",
        "collections.defaultdict", "collections.deque", "frozenset")


def _python_objects(func: FunctionFacts, test=None) -> set[str]:
    """Local names and `self.` attributes every assignment in the function binds to a Python container
    (or to what `test` accepts)."""
    return _containers(_assignments(func.node), test)


def _containers(assignments: list[cst.Assign], test=None) -> set[str]:
    found, other = set(), set()
    for stmt in assignments:
        target = dotted(stmt.targets[0].target) if len(stmt.targets) == 1 else None
        if target:
            (found if (test or is_python_object)(stmt.value) else other).add(target)
    return found - other


def is_mapping(node: cst.BaseExpression) -> bool:
    """`{}`, `{k: v}`, a dict comprehension, `dict()`, `OrderedDict()`."""
    return isinstance(node, (cst.Dict, cst.DictComp)) or (isinstance(node, cst.Call) and dotted(node.func) in (
        "dict", "OrderedDict", "collections.OrderedDict"))


def _dict_literals(func: FunctionFacts) -> dict[str, list[tuple[str, cst.BaseExpression]]]:
    """Names the function binds once, to a dict of literal string keys (timm's factory kwargs,
    `dd = dict(device=device, dtype=dtype)`), with their entries: `f(**dd)` passes those keywords."""
    found, seen = {}, set()
    for stmt in _assignments(func.node):
        target = stmt.targets[0].target if len(stmt.targets) == 1 else None
        if not isinstance(target, cst.Name):
            continue
        entries = list(_dict_entries(cst.Call(cst.Name("_"), [cst.Arg(stmt.value)])))
        if target.value in seen or not _literal_keys(stmt.value):
            found.pop(target.value, None)
        else:
            found[target.value] = entries
        seen.add(target.value)
    return found


def _literal_keys(node: cst.BaseExpression) -> bool:
    """`{'a': x, 'b': y}` or `dict(a=x, b=y)`: every key a literal string, nothing spread in."""
    if isinstance(node, cst.Dict):
        return all(isinstance(e, cst.DictElement) and isinstance(e.key, cst.SimpleString) for e in node.elements)
    return (isinstance(node, cst.Call) and dotted(node.func) == "dict"
            and all(a.keyword is not None and not a.star for a in node.args))


def _is_none(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "None"


def _reads(node: cst.CSTNode, names: set[str]) -> bool:
    return isinstance(node, cst.Name) and node.value in names


def _layer_call(node: cst.CSTNode) -> bool:
    """`self.proj(x)`: calling a submodule yields a tensor."""
    return isinstance(node, cst.Call) and (dotted(node.func) or "").startswith("self.") and (
        dotted(node.func) or "").count(".") == 1
