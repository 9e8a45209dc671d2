"""Structural rewrites: module classes, `rngs` threading, training flag, constant guards.

`nn.Module` subclasses keep their names and constructor arguments and gain a
keyword-only `rngs: nnx.Rngs`; `forward` becomes `__call__`; functions that
build layers receive `rngs` and pass it on; `self.training` reads the flag
that `model.train()` / `model.eval()` set.
"""
from __future__ import annotations

import re

import libcst as cst

from ..diagnostics import MARKER, Diagnostic, Escape
from .context import Context
from .facts import FunctionFacts, applied_function, loop_variable, mentions, param_names, parameter_walk, super_call
from .names import dotted
from .support import SCOPED
from .template import Template, parenthesize

TRAINING = "(not self.deterministic)"
FLAG = "self.deterministic = False  # set by model.train() / model.eval()"


def anonymous(node: cst.FunctionDef) -> FunctionFacts:
    p = node.params
    return FunctionFacts(node.name.value, node, None,
                         [a.name.value for a in (*p.posonly_params, *p.params, *p.kwonly_params)])


def add_rngs_param(func: cst.FunctionDef, optional: bool = False) -> cst.FunctionDef:
    """A keyword-only `rngs`; optional (`= None`) for a constructor that builds nothing random, so
    `NewGELU()` works as in torch and `NewGELU(rngs=rngs)` as any converted layer."""
    annotation = cst.Annotation(cst.parse_expression("nnx.Rngs | None" if optional else "nnx.Rngs"))
    param = cst.Param(cst.Name("rngs"), annotation, default=cst.Name("None") if optional else None)
    params = func.params
    if isinstance(params.star_arg, cst.MaybeSentinel):
        params = params.with_changes(star_arg=cst.ParamStar(), kwonly_params=[param])
    else:
        params = params.with_changes(kwonly_params=[*params.kwonly_params, param])
    return func.with_changes(params=params)


def _is_super_init(stmt: cst.BaseStatement) -> cst.Call | None:
    if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1
            and isinstance(stmt.body[0], cst.Expr) and isinstance(stmt.body[0].value, cst.Call)):
        return None
    call = stmt.body[0].value
    func = call.func
    if (isinstance(func, cst.Attribute) and func.attr.value == "__init__" and isinstance(func.value, cst.Call)
            and dotted(func.value.func) == "super"):
        return call
    return None


def _convert_init_body(ctx: Context, updated: cst.FunctionDef) -> cst.FunctionDef:
    cls = ctx.module_class
    body: list[cst.BaseStatement] = []
    for stmt in updated.body.body:
        call = _is_super_init(stmt)
        if call is None:
            body.append(stmt)
        elif _base_takes_rngs(ctx, cls) and not _passes_rngs(call):
            rngs = keyword_arg("rngs", cst.Name("rngs"))
            body.append(stmt.with_deep_changes(call, args=[*call.args, rngs]))
        elif call.args:
            body.append(stmt)
    if cls.reads_training:
        flag = cst.parse_statement(FLAG)
        body.insert(0, flag)
    if not body:
        body.append(cst.SimpleStatementLine([cst.Pass()]))
    return updated.with_changes(body=updated.body.with_changes(body=body))


def _passes_rngs(call: cst.Call) -> bool:
    return any(a.keyword and a.keyword.value == "rngs" for a in call.args)


def _base_takes_rngs(ctx: Context, cls) -> bool:
    """Whether `super().__init__(...)` must pass `rngs` (a module class of the package, a layer with params)."""
    if _has_module_base(ctx, cls.name):
        return True
    return bool(cls.layer_base) and ctx.rules.get("module", cls.layer_base).needs_rngs


def _has_module_base(ctx: Context, name: str) -> bool:
    """A base that is a module class of the package, or a library's (`PreTrainedModel` of transformers)."""
    node = ctx.analysis.collector.classes[name]
    return any(ctx.facts.is_module_class(dotted(b.value)) or ctx.analysis.library_base(b.value) for b in node.bases)


def convert_function(ctx: Context, func: FunctionFacts, updated: cst.FunctionDef) -> cst.FunctionDef:
    """forward -> __call__, `rngs` for layer builders, `super().__init__()` handling."""
    in_module = func.owner is not None and ctx.facts.is_module_class(func.owner)
    if in_module and func.node.name.value == "forward":
        updated = updated.with_changes(name=cst.Name("__call__"))
    if in_module and func.node.name.value == "__init__":
        updated = _convert_init_body(ctx, updated)
    if func.key in ctx.facts.rngs_functions and "rngs" not in func.params:
        optional = (in_module and func.node.name.value == "__init__" and not _reads_rngs(updated.body)
                    and not (ctx.module_class and ctx.module_class.keeps_rngs))
        updated = add_rngs_param(updated, optional)
    if ctx.facts.dynamic and func.owner is None and func.key in ctx.facts.scopes and "rngs" not in param_names(
            updated):
        updated = add_rngs_param(updated, optional=True)  # `create_model(name, rngs=...)`: lends it on
    if ctx.facts.dynamic and ((in_module and func.node.name.value == "__init__")
                              or func.key in ctx.facts.passed_builders or func.key in ctx.facts.scopes):
        updated = _default_rngs(ctx, updated)
    return updated


def _default_rngs(ctx: Context, init: cst.FunctionDef) -> cst.FunctionDef:
    """`@default_rngs` on a constructor taking `rngs`, where the code builds layers the analysis cannot
    follow (run-time registries, kwargs dicts): those get their builder's `rngs`; also on a function
    taking `rngs` that is passed as a value (`named_apply(init_weights, self)`) or registered
    (`@register_model`), called without it, and on a function calling what it cannot see
    (`create_model`): it lends its `rngs` to what it builds. Innermost, so a registry keeps it."""
    if "rngs" not in param_names(init) or any(dotted(d.decorator) == SCOPED for d in init.decorators):
        return init
    ctx.support.add(SCOPED)
    return init.with_changes(decorators=[*init.decorators, cst.Decorator(cst.Name(SCOPED))])


def _reads_rngs(body: cst.BaseSuite) -> bool:
    return mentions(body, lambda n: isinstance(n, cst.Name) and n.value == "rngs")


def data_placeholder(ctx: Context, original: cst.Assign | cst.AnnAssign, updated):
    """`self.downsample = None` (or `self.proj: Optional[nn.Module] = None`) where the class later sets a
    layer there: NNX would take the None for a static attribute and refuse the layer, so the placeholder
    is marked as data."""
    cls, value = ctx.module_class, original.value
    if isinstance(original, cst.AnnAssign):
        target = dotted(original.target)
    else:
        target = dotted(original.targets[0].target) if len(original.targets) == 1 else None
    if (cls is None or not target or not target.startswith("self.") or target[5:] not in cls.assigned
            or type(updated) is not type(original) or not (isinstance(value, cst.Name) and value.value == "None")):
        return updated
    return updated.with_changes(value=cst.parse_expression("nnx.data(None)"))


def constructor_for(ctx: Context, cls, updated: cst.ClassDef) -> cst.ClassDef:
    """A module class without `__init__` deriving from `nn.Module` only: it is built like every
    converted layer (`Cls(rngs=rngs)`, or `Cls()` as in torch), so it gets an `__init__` taking an
    optional `rngs`."""
    if cls is None or any(isinstance(s, cst.FunctionDef) and s.name.value == "__init__" for s in updated.body.body):
        return updated
    if cls.layer_base or _has_module_base(ctx, cls.name):
        init = _forwarding_init(ctx, cls, updated)
        if init is None:
            return updated
    else:
        body = f"    {FLAG}\n" if cls.reads_training else "    pass\n"  # the flag `self.training` reads
        init = cst.parse_statement("def __init__(self, *, rngs: nnx.Rngs | None = None):\n" + body)
    return _with_init(updated, init)


def _forwarding_init(ctx: Context, cls, updated: cst.ClassDef) -> cst.FunctionDef | None:
    """A subclass without `__init__` whose methods read `self.training` or draw from `self.rngs`, where
    no base of the file sets the flag or keeps `rngs`: an `__init__` passing everything to the base's."""
    bases = _base_facts(ctx, cls)
    keep = (cls.keeps_rngs or mentions(updated, _is_self_rngs)) and not any(b.keeps_rngs for b in bases)
    flag = cls.reads_training and not any(b.reads_training for b in bases)
    if not (keep or flag):
        return None
    cls.keeps_rngs = cls.keeps_rngs or keep
    lines = ["def __init__(self, *args, rngs: nnx.Rngs, **kwargs):", "    super().__init__(*args, rngs=rngs, **kwargs)",
             "    self.rngs = rngs"] if keep else ["def __init__(self, *args, **kwargs):",
                                                  "    super().__init__(*args, **kwargs)"]
    return cst.parse_statement("\n".join([*lines, *([f"    {FLAG}"] if flag else [])]) + "\n")


def _base_facts(ctx: Context, cls) -> list:
    """The module classes of the file `cls` derives from, nearest first, transitively."""
    found, todo = [], [cls.name]
    while todo:
        node = ctx.analysis.collector.classes.get(todo.pop(0))
        for base in node.bases if node is not None else ():
            facts = ctx.facts.classes.get(dotted(base.value) or "")
            if facts is not None and facts not in found:
                found.append(facts)
                todo.append(facts.name)
    return found


def _with_init(updated: cst.ClassDef, init: cst.BaseStatement) -> cst.ClassDef:
    body = list(updated.body.body)
    at = next((i for i, s in enumerate(body) if not _is_docstring(s)), len(body))
    return updated.with_changes(body=updated.body.with_changes(body=[*body[:at], init, *body[at:]]))


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    return (isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Expr)
            and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def thread_rngs(ctx: Context, original: cst.Call, updated: cst.Call) -> cst.Call:
    """Pass `rngs` to calls that build layers of this file (classes, builders, class-valued params)."""
    name = dotted(original.func)
    if name == "self.forward":
        return updated.with_changes(func=cst.Name("self"))
    method_of_super = super_call(original) and original.func.attr.value != "__init__"  # `super().init_weights()`
    if _passes_rngs(updated) or (name is None and not isinstance(original.func, cst.Subscript) and not method_of_super):
        return updated
    if ctx.qualnames.get(original.func) or applied_function(original) is not None:
        return updated  # `m.apply(fn)` becomes a loop calling `fn(module, rngs=...)` (apply_as_loop)
    caller = ctx.function or FunctionFacts("<module>", None, None, [])
    if not ctx.analysis.needs_rngs(original, caller, ctx.facts, ctx.facts.rngs_functions):
        return updated
    args = [*updated.args]
    if args:
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return updated.with_changes(args=[*args, keyword_arg("rngs", ctx.rngs_expr())])


def keyword_arg(name: str, value: cst.BaseExpression) -> cst.Arg:
    """`name=value` formatted like hand-written code."""
    no_space = cst.SimpleWhitespace("")
    return cst.Arg(value, keyword=cst.Name(name), equal=cst.AssignEqual(no_space, no_space))


def rewrite_attribute(ctx: Context, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
    """`self.training` and reads of layer attributes (`self.fc.weight` -> `self.fc.kernel.T`)."""
    if ctx.module_class is not None and dotted(original) == "self.training":
        return _training_flag(ctx, original, updated)
    if original.attr.value == "training" and original not in ctx.stores and _module_param(ctx, original.value):
        return cst.parse_expression(f"(not {original.value.value}.deterministic)")  # a module handed in
    if original.attr.value == "data" and ctx.module_class is not None and (
            ctx.layer_rules(original.value) or _is_param(ctx, dotted(original.value) or "")):
        return updated.value
    rule = ctx.layer_rule(original.value)
    spec = rule.attrs.get(original.attr.value) if rule else None
    if not spec or "read" not in spec:
        view = None if original in ctx.stores else _runtime_view(ctx, original, "torch_param")
        return updated if view is None else view
    return Template(spec["read"]).render({"self": updated.value}, {}) or updated


def _unknown_layer(ctx: Context, node: cst.BaseExpression, nested: bool = False) -> bool:
    """`self.norm1` where `self.norm1 = norm_layer(dim)`: a layer whose class only the run time knows;
    `nested`: also a sublayer reached from a local (`layer.attn.proj` in `for layer in self.blocks`)."""
    cls, name = ctx.module_class, dotted(node)
    if nested and name is not None and "." in name and not name.startswith("self."):
        return not ctx.layer_rules(node)
    if cls is None or name is None or not name.startswith("self.") or name.count(".") != 1:
        return False
    attr = name[5:]
    return attr in cls.assigned and attr not in cls.attr_types and not (
        attr in cls.param_attrs or attr in cls.buffer_attrs)


def _runtime_view(ctx: Context, node: cst.BaseExpression, helper: str, nested: bool = False):
    """`self.norm1.weight` of a layer whose class only the run time knows (timm's Swin reads its dtype):
    the torch view of the converted variable, found through TORCH_LAYOUT as checkpoints are; the value
    (`torch_param(self.norm1, 'weight')`) or the view written through (`TorchParameter(...)[...]`)."""
    if not isinstance(node, cst.Attribute) or node.attr.value not in ctx.rules.renamed_variables() or (
            not _unknown_layer(ctx, node.value, nested)):
        return None
    ctx.support.add(helper)
    view = f"{helper}({dotted(node.value)}, {node.attr.value!r})"
    return cst.parse_expression(view if helper == "torch_param" else view + "[...]")


def runtime_layer_store(ctx: Context, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
    """`self.reparam_conv.weight.data = kernel` (timm's FastViT) where the layer's class is known only at
    run time: written through its torch view, `TorchParameter(self.reparam_conv, 'weight')[...] = kernel`."""
    target = _strip_data(original.targets[0].target) if len(original.targets) == 1 else None
    view = _runtime_view(ctx, target, "TorchParameter")
    return updated if view is None else updated.with_changes(targets=[cst.AssignTarget(view)])


def _module_param(ctx: Context, node: cst.BaseExpression) -> bool:
    """A parameter of the function annotated as a torch module (`module: nn.Module`, as transformers'
    attention functions take their layer), or one the file's layers pass themselves as."""
    if not isinstance(node, cst.Name) or ctx.function is None:
        return False
    if node.value in ctx.function.module_params:  # layers pass themselves as it: `f(self, q, k, v)`
        return True
    params = ctx.function.node.params
    for param in (*params.posonly_params, *params.params, *params.kwonly_params):
        if param.name.value == node.value and param.annotation is not None:
            return ctx.qualnames.get(param.annotation.annotation) == "torch.nn.Module"
    return False


def _training_flag(ctx: Context, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
    """A read of `self.training` is the flag `model.train()` / `model.eval()` set. A write stays
    for its statement (`set_training`); in any other form (`del`, tuple targets) it is reported."""
    if original not in ctx.stores:
        return cst.parse_expression(TRAINING)
    if original not in ctx.lone_targets:
        ctx.escape(original, Escape("RT102", "this write of `self.training` has no NNX form: write "
                                             "`self.deterministic = not mode` (this module's flag)"))
    return updated


def set_training(ctx: Context, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
    """`self.training = mode` sets this module's own flag, not its children's (as in torch):
    `self.deterministic = not mode`."""
    if (ctx.module_class is None or len(original.targets) != 1
            or dotted(original.targets[0].target) != "self.training"):
        return updated
    flag = simplify_not(cst.UnaryOperation(cst.Not(), parenthesize(updated.value)))
    return updated.with_changes(targets=[cst.AssignTarget(cst.parse_expression("self.deterministic"))], value=flag)


def _strip_data(node: cst.BaseExpression) -> cst.BaseExpression:
    """`w.data` is `w` without autograd tracking; JAX has no such distinction."""
    return node.value if isinstance(node, cst.Attribute) and node.attr.value == "data" else node


def inplace_target(ctx: Context, site):
    """Where `x.op_(...)` stores its result: `x`, or the variable of a layer/parameter (`[...]`)."""
    original = _strip_data(site.original.func.value)
    name = dotted(original)
    if name is None and isinstance(original, cst.Subscript) and dotted(original.value):
        return _inplace_on_slice(site, original)
    if name is None:
        return Escape("RT104", f"in-place `{site.rule.name}` on an expression that is not a name")
    variable = _stored_in(ctx, site, original, same_layout=site.rule.name == "copy_")
    if isinstance(variable, Escape):
        return variable
    site.receiver = variable
    site.extra["target"] = variable
    return site


def _stored_in(ctx: Context, site, original: cst.BaseExpression, same_layout: bool):
    """What an in-place method on `original` writes: the name, or a parameter's or layer's variable
    (`self.w[...]`, `self.fc.bias[...]`: an NNX variable keeps its type when written through `[...]`)."""
    name = dotted(original)
    rules = ctx.layer_rules(original.value) if isinstance(original, cst.Attribute) else []
    runtime = None if rules else _runtime_view(ctx, original, "TorchParameter", nested=True)
    if runtime is not None:  # a layer of a class known at run time (BEiT: `layer.attn.proj.weight.data.div_(s)`)
        return runtime
    if rules:
        spec = rules[0].attrs.get(original.attr.value, {})
        if "var" not in spec or len(rules) > 1:
            return Escape("RT107", f"in-place `{site.rule.name}` on `{name}`, which is not one layer variable")
        if same_layout and spec.get("read") == "{self}." + spec["var"] + "[...].T":
            site.extra["transpose"] = True  # `self.v.weight.data.copy_(w)` on a Linear: the kernel is w.T
        elif same_layout and spec.get("read") not in ("{self}." + spec["var"], "{self}." + spec["var"] + "[...]"):
            return Escape("RT107", f"in-place `{site.rule.name}` into `{name}`, whose Flax layout differs; "
                                   "write a converted tensor")
        name = f"{dotted(original.value)}.{spec['var']}"
    written = ctx.function is not None and name in ctx.function.written | ctx.function.parameter_views
    return cst.parse_expression(f"{name}[...]" if rules or written or _is_param(ctx, name) else name)


def _inplace_on_slice(site, original: cst.Subscript):
    """`b[i:j].zero_()` -> `b = b.at[i:j].set(<zero_ of b[i:j]>)` (see `scatter_back`); into a layer's
    parameter (`self.qkv.bias[i:j].data.zero_()`) through its variable, in the layout torch indexes."""
    receiver = site.updated.func.value
    if not isinstance(receiver, cst.Subscript) or original.value is None:
        return Escape("RT104", f"in-place `{site.rule.name}` on an expression that is not a name")
    target = _stored_in(site.extra["ctx"], site, _strip_data(original.value), same_layout=True)
    if isinstance(target, Escape):
        return target
    site.receiver = receiver
    site.extra["target"] = target
    site.extra["at"] = receiver.slice
    return site


def scatter_back(site, result: cst.BaseExpression) -> cst.BaseExpression:
    """The value an in-place method on a slice leaves in the whole array: `x.at[idx].set(result)`; a
    value in torch's layout written into a transposed variable: `result.T`."""
    if site.extra.get("transpose"):
        result = cst.Attribute(parenthesize(result), cst.Name("T"))
    if "at" not in site.extra:
        return result
    at = cst.Subscript(cst.Attribute(site.extra["target"], cst.Name("at")), site.extra["at"])
    return cst.Call(cst.Attribute(at, cst.Name("set")), [cst.Arg(result)])


def written_args(ctx: Context, original: cst.Call, updated: cst.Call) -> cst.Call:
    """`trunc_normal_(m.weight, std=.02)` where the function fills that argument in place: it gets the
    layer's variable seen in torch's layout, `TorchParameter(m, "weight")`, which it writes through."""
    markers = ctx.analysis.written_markers(original, ctx.function, ctx.facts)
    if not markers:
        return updated
    args = []
    for i, (old, new) in enumerate(zip(original.args, updated.args)):
        target = _strip_data(old.value)
        if (old.keyword.value if old.keyword else f"#{i}") in markers and isinstance(target, cst.Attribute) and (
                dotted(target.value) not in (None, "self")):
            ctx.support.add("TorchParameter")
            new = new.with_changes(value=cst.parse_expression(
                f"TorchParameter({dotted(target.value)}, {target.attr.value!r})"))
        args.append(new)
    return updated.with_changes(args=args)


def param_values(ctx: Context, original: cst.Call, updated: cst.Call) -> cst.Call:
    """`rearrange(self.A, 'a b -> b a')`: a function of another library (einops, ...) gets the value of
    a parameter (`self.A[...]`), not the Flax variable, which it would not know."""
    name = dotted(original.func)
    if ctx.facts.is_module_class(name) or name in ctx.facts.external.rngs_functions:
        return updated  # a converted layer or builder of the package takes variables
    args = [arg.with_changes(value=cst.parse_expression(f"{dotted(old.value)}[...]"))
            if _is_variable(ctx, dotted(old.value) or "") and not old.star else arg
            for old, arg in zip(original.args, updated.args)]
    return updated.with_changes(args=args)


def variable_index(ctx: Context, original: cst.Index, updated: cst.Index) -> cst.Index:
    """`self.attention_biases[:, self.attention_bias_idxs]` (timm's EfficientFormer): an index held in
    a buffer is its value (`self.idxs[...]`); JAX does not take an NNX variable as an index."""
    name = dotted(original.value)
    if not name or not _is_variable(ctx, name) or dotted(updated.value) != name:
        return updated
    return updated.with_changes(value=cst.parse_expression(f"{name}[...]"))


def _is_variable(ctx: Context, name: str) -> bool:
    """`self.w` holds a parameter or a persistent buffer (an NNX variable, not an array)."""
    cls = ctx.module_class
    return _is_param(ctx, name) or (cls is not None and name.startswith("self.") and name[5:] in cls.buffer_attrs)


def _is_param(ctx: Context, name: str) -> bool:
    cls = ctx.module_class
    return cls is not None and name.startswith("self.") and name[5:] in cls.param_attrs


def torch_reference(ctx: Context, qual: str, node: cst.CSTNode) -> cst.BaseExpression | Escape:
    """A torch name used as a value: dtypes and constants, or a layer class."""
    rule = ctx.rules.get("attribute", qual)
    if rule:
        ctx.support.update(rule.support)
        return rule.templates[0].render({}, {})
    layer = ctx.rules.get("module", qual)
    if layer and layer.flax and (node in ctx.isinstance_refs or node in ctx.annotation_refs):
        ctx.support.update(layer.support)  # the Flax class itself: torch-signature wrappers subclass it
        return cst.parse_expression(layer.flax)
    if layer and layer.as_class:
        if not layer.as_class.startswith("nnx."):
            ctx.support.add(layer.as_class)
        return cst.parse_expression(layer.as_class)
    if layer:
        return Escape("RT103", f"`{qual}` is used as a class here; its Flax counterpart takes other arguments")
    function = ctx.rules.get("function", qual)
    if function and function.as_value:
        ctx.support.update(function.support)
        ctx.support.add(function.as_value)
        return cst.parse_expression(function.as_value)
    if function:
        return Escape("RT103", f"`{qual}` is used as a value; only calls to it are converted")
    if qual in ctx.rules.namespaces():  # `getattr(nn, rnn_type)(...)`
        return Escape("RT105", f"the module `{qual}` is used as a value (a member picked at run time, as "
                               f"getattr({qual.rsplit('.', 1)[-1]}, name) does): name the converted classes you "
                               "use, e.g. {'LSTM': LSTM, 'GRU': GRU}[name]")
    return Escape("RT101", f"`{qual}` has no rule")


def isinstance_narrowing(ctx: Context, test: cst.BaseExpression) -> dict[str, tuple[str, ...]]:
    """`if isinstance(m, (nn.Conv2d, nn.Linear)):` -> {'m': (Conv2d, Linear)} inside the branch."""
    if not (isinstance(test, cst.Call) and dotted(test.func) == "isinstance" and len(test.args) == 2
            and dotted(test.args[0].value)):
        return {}
    kinds = test.args[1].value
    elements = [e.value for e in kinds.elements] if isinstance(kinds, cst.Tuple) else [kinds]
    names = tuple(ctx.qualnames.get(e) for e in elements)
    if all(n and ctx.rules.get("module", n) for n in names):
        return {dotted(test.args[0].value): names}
    return {}


def _suite_statements(suite: cst.BaseSuite, owner: cst.BaseCompoundStatement) -> list[cst.BaseStatement]:
    """The statements of `owner`'s body, to stand in its place: the comments and blank lines above
    `owner` move onto the first of them, so unwrapping never loses a comment."""
    if isinstance(suite, cst.SimpleStatementSuite):
        statements = [cst.SimpleStatementLine(list(suite.body))]
    else:
        statements = list(suite.body)
    if statements and owner.leading_lines:
        first = statements[0]
        statements[0] = first.with_changes(leading_lines=[*owner.leading_lines, *first.leading_lines])
    return statements


def fold_constant_if(updated: cst.If, elif_branch: bool = False):
    """`if False:` left by a folded guard (`torch.jit.is_scripting()`) keeps only the live branch.
    An `elif` can only become an `else:` (true) or its own `else` part (false)."""
    test = updated.test
    if not isinstance(test, cst.Name) or test.value not in ("True", "False"):
        return updated
    if test.value == "True":
        if elif_branch:
            return cst.Else(body=updated.body, leading_lines=updated.leading_lines)
        return cst.FlattenSentinel(_suite_statements(updated.body, updated))
    if isinstance(updated.orelse, cst.If) or elif_branch:
        return updated.orelse or cst.RemoveFromParent()
    if isinstance(updated.orelse, cst.Else):
        return cst.FlattenSentinel(_suite_statements(updated.orelse.body, updated))
    return cst.RemoveFromParent()


def simplify_not(updated: cst.UnaryOperation) -> cst.BaseExpression:
    if not isinstance(updated.operator, cst.Not):
        return updated
    inner = updated.expression
    if isinstance(inner, cst.UnaryOperation) and isinstance(inner.operator, cst.Not):
        return inner.expression.with_changes(lpar=[], rpar=[]) if isinstance(
            inner.expression, (cst.Name, cst.Attribute, cst.Call)) else inner.expression
    if isinstance(inner, cst.Name) and inner.value in ("True", "False"):
        return cst.Name("False" if inner.value == "True" else "True")
    return updated


def _plugin_of(ctx: Context, node: cst.BaseExpression) -> str | None:
    target = node.func if isinstance(node, cst.Call) else node
    qual = ctx.qualnames.get(target)
    rule = ctx.rules.get("function", qual) if qual else None
    known = rule or (qual and ctx.rules.get("attribute", qual))  # a value rule: the call is kept, the name mapped
    return rule.plugin if rule else (f"unknown:{qual}" if qual and not known else None)


def call_of_value(ctx: Context, qual: str, updated: cst.Call) -> cst.Call | None:
    """A call of a name that a value rule maps (`create_causal_mask(...)` of transformers' runtime ->
    the support helper of that name): the same call of the mapped name."""
    name = _value_name(ctx, qual)
    return None if name is None else updated.with_changes(func=name)


def _value_name(ctx: Context, qual: str) -> cst.BaseExpression | None:
    """What a value rule maps `qual` to (its helpers requested), or None without one."""
    rule = ctx.rules.get("attribute", qual)
    if rule is None:
        return None
    ctx.support.update(rule.support)
    return rule.templates[0].render({}, {})


def drop_noop_decorator(ctx: Context, original: cst.Decorator, updated: cst.Decorator):
    """`@torch.jit.ignore`, `@torch.no_grad()` and friends carry no meaning in JAX; a decorator a value
    rule maps (`@auto_docstring` of transformers) is that rule's name."""
    kind = _plugin_of(ctx, original.decorator)
    if kind in ("noop_decorator", "noop_context"):  # `@torch.no_grad()` on a function is a no-op too
        return cst.RemoveFromParent()
    if kind is not None:
        ctx.escape(original, Escape("RT101", f"decorator `{kind.split(':')[-1]}` has no rule"))
    called = isinstance(original.decorator, cst.Call) and isinstance(updated.decorator, cst.Call)
    qual = ctx.qualnames.get(original.decorator.func if called else original.decorator)
    if qual is None:
        return updated
    value = call_of_value(ctx, qual, updated.decorator) if called else _value_name(ctx, qual)
    return updated if value is None else updated.with_changes(decorator=value)


def unwrap_noop_context(ctx: Context, original: cst.With, updated: cst.With):
    """`with torch.no_grad():` -> the body (JAX computes gradients only when asked)."""
    kinds = [_plugin_of(ctx, item.item) for item in original.items]
    if not kinds or any(k != "noop_context" for k in kinds):
        unknown = [k.split(":", 1)[1] for k in kinds if k and k.startswith("unknown:")]
        if unknown:
            ctx.escape(original, Escape("RT101", f"context manager `{unknown[0]}` has no rule"))
        return updated
    return cst.FlattenSentinel(_suite_statements(updated.body, updated))


MARKER_COMMENT = re.compile(rf"^# {MARKER}\((RT\d+)\): (.*)$")


def report_kept_markers(ctx: Context, node: cst.SimpleStatementLine) -> bool:
    """Re-report the escape-hatch markers above a line (output converted again); whether it has any."""
    found = [MARKER_COMMENT.match(line.comment.value) for line in node.leading_lines if line.comment]
    for match in filter(None, found):
        ctx.report(node, Escape(match[1], match[2]))
    return any(found)


def attach_comments(diagnostics: list[Diagnostic], node):
    """Put one `# RETARGET-TODO(CODE): ...` line above the statement per diagnostic."""
    if not diagnostics or not hasattr(node, "leading_lines"):
        return node
    existing = {line.comment.value for line in node.leading_lines if line.comment}
    comments = [d.comment for d in diagnostics if d.comment not in existing]
    extra = [cst.EmptyLine(comment=cst.Comment(c)) for c in dict.fromkeys(comments)]
    return node.with_changes(leading_lines=[*node.leading_lines, *extra])


def _tied_side(ctx: Context, node: cst.BaseExpression):
    """(layer expression, rule, variable spec) of `X.weight` when X's layer type is known."""
    if not isinstance(node, cst.Attribute) or dotted(node) is None:
        return None
    rule = ctx.layer_rule(node.value)
    spec = rule.attrs.get(node.attr.value) if rule else None
    return (dotted(node.value), rule, spec) if spec and "var" in spec else None


def _layout(spec: dict) -> str:
    """How a variable's read differs from the variable itself (`.T` for Linear kernels)."""
    return spec.get("read", "").replace("{self}." + spec["var"], "").replace("[...]", "")


def tie_weights(ctx: Context, original: cst.Assign, updated: cst.Assign):
    """`self.a.weight = self.b.weight`: share the Flax variable, or make the Linear read the Embed table."""
    if len(original.targets) != 1 or not isinstance(original.value, cst.Attribute):
        return updated
    target, value = original.targets[0].target, original.value
    if not (isinstance(target, cst.Attribute) and target.attr.value == value.attr.value == "weight"):
        return updated
    left, right = _tied_side(ctx, target), _tied_side(ctx, value)
    if left is None or right is None:
        ctx.escape(original, Escape("RT106", "weight tying between layers whose types retarget cannot tell"))
        return updated
    if _layout(left[2]) == _layout(right[2]):
        return cst.parse_statement(f"{left[0]}.{left[2]['var']} = {right[0]}.{right[2]['var']}").body[0]
    kinds = {left[1].name: left[0], right[1].name: right[0]}
    if set(kinds) != {"torch.nn.Linear", "torch.nn.Embedding"}:
        ctx.escape(original, Escape("RT106", f"weight tying between {' and '.join(kinds)} is not supported"))
        return updated
    linear, embed = kinds["torch.nn.Linear"], kinds["torch.nn.Embedding"]
    tied = ctx.rules.get("module", "torch.nn.Linear(tied)")
    ctx.support.update(tied.support)
    call = tied.templates[0].render({"embed": cst.parse_expression(embed),
                                     "bias": cst.parse_expression(f"{linear}.bias")}, {})
    return cst.Assign([cst.AssignTarget(cst.parse_expression(linear))], call)


def _subscript_update(target: cst.Subscript, method: str, value: cst.BaseExpression,
                      store: cst.BaseExpression | None = None, transpose: bool = False) -> cst.Assign:
    """`x[i] op= v` -> `x = x.at[i].method(v)`; into a layer variable seen transposed (`store`, the
    variable): `v.kernel[...] = v.kernel[...].T.at[i].method(v).T`."""
    at = cst.Subscript(cst.Attribute(target.value, cst.Name("at")), target.slice)
    call = cst.Call(cst.Attribute(at, cst.Name(method)), [cst.Arg(value)])
    result = cst.Attribute(call, cst.Name("T")) if transpose else call
    return cst.Assign([cst.AssignTarget(store if store is not None else target.value)], result)


def _layer_variable_update(ctx: Context, original: cst.AugAssign, updated: cst.AugAssign) -> cst.Assign | None:
    """`fc.weight.data op= v` on a layer's weight: `fc.kernel[...] = (fc.kernel[...].T op v).T` (torch's
    layout for `v`), or without the transposes where the variable has torch's layout."""
    side = _tied_side(ctx, _strip_data(original.target))
    operator = _BINARY.get(type(original.operator))
    if side is None or operator is None or _layout(side[2]) not in ("", ".T"):
        return None
    layer, _, spec = side
    layout = _layout(spec)
    variable = f"{layer}.{spec['var']}[...]"
    value = cst.Module([]).code_for_node(parenthesize(updated.value))
    text = f"({variable}{layout} {operator} {value}){layout}" if layout else f"{variable} {operator} {value}"
    return cst.Assign([cst.AssignTarget(cst.parse_expression(variable))], cst.parse_expression(text))


_BINARY = {cst.AddAssign: "+", cst.SubtractAssign: "-", cst.MultiplyAssign: "*", cst.DivideAssign: "/",
           cst.PowerAssign: "**"}


def _layer_variable_target(ctx: Context, original, target):
    """`self.pos_proj.weight.data[i, 2] = -1` (timm's ConViT): (the item in torch's layout, the variable
    to store into, whether the variable holds the transpose); None for anything else."""
    old = original.targets[0].target if isinstance(original, cst.Assign) and len(original.targets) == 1 else (
        original.target if isinstance(original, cst.AugAssign) else None)
    side = _tied_side(ctx, _strip_data(old.value)) if isinstance(old, cst.Subscript) else None
    if side is None or not isinstance(target, cst.Subscript) or _layout(side[2]) not in ("", ".T"):
        return None
    layer, _, spec = side
    variable = cst.parse_expression(f"{layer}.{spec['var']}[...]")
    view = cst.parse_expression(f"{layer}.{spec['var']}[...]{_layout(spec)}")
    return target.with_changes(value=view), variable, _layout(spec) == ".T"


AUG_METHODS = {cst.AddAssign: "add", cst.MultiplyAssign: "multiply", cst.DivideAssign: "divide",
               cst.SubtractAssign: "add", cst.PowerAssign: "power"}


def functional_update(ctx: Context, original, updated):
    """Item assignment into a tensor (`pe[:, 0::2] = ...`) or a layer's weight (`fc.weight.data[i] = v`):
    JAX arrays are immutable, so use `.at[]`."""
    target = updated.targets[0].target if isinstance(updated, cst.Assign) and len(updated.targets) == 1 else (
        updated.target if isinstance(updated, cst.AugAssign) else None)
    func = ctx.function
    if isinstance(original, cst.AugAssign) and not isinstance(original.target, cst.Subscript):
        whole = _layer_variable_update(ctx, original, updated)  # `self.pos_proj.weight.data *= s` (ConViT)
        if whole is not None:
            return whole
    layer_target = _layer_variable_target(ctx, original, target)
    store, transpose = None, False
    if layer_target is not None:
        target, store, transpose = layer_target
    elif not (isinstance(target, cst.Subscript) and isinstance(target.value, cst.Name) and func is not None
              and target.value.value in func.tensor_names):
        return updated
    if isinstance(updated, cst.Assign):
        return _subscript_update(target, "set", updated.value, store, transpose)
    method = AUG_METHODS.get(type(updated.operator))
    if method is None:
        ctx.escape(original, Escape("RT104", "in-place operator on a tensor slice with no JAX `.at[]` form"))
        return updated
    value = updated.value
    if isinstance(updated.operator, cst.SubtractAssign):
        value = cst.UnaryOperation(cst.Minus(), parenthesize(value))
    return _subscript_update(target, method, value, store, transpose)


def keep_rngs(ctx: Context, cls, updated: cst.ClassDef) -> cst.ClassDef:
    """A module whose methods draw random numbers keeps `self.rngs = rngs` (as nnx.Dropout does)."""
    if cls is None or not (cls.keeps_rngs or mentions(updated, _is_self_rngs)):
        return updated
    if not any(isinstance(s, cst.FunctionDef) and s.name.value == "__init__" for s in updated.body.body) and any(
            b.keeps_rngs for b in _base_facts(ctx, cls)):
        return updated  # a base of the file keeps it
    cls.keeps_rngs = True
    body = list(updated.body.body)
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == "__init__":
            if mentions(stmt, _is_self_rngs):
                return updated  # `_forwarding_init`'s
            keep = cst.parse_statement("self.rngs = rngs")
            body[i] = _required_rngs(stmt.with_changes(body=stmt.body.with_changes(body=[keep, *stmt.body.body])))
            return updated.with_changes(body=updated.body.with_changes(body=body))
    ctx.escape(updated, Escape("RT108", f"{cls.name} draws random numbers but has no __init__ to keep `rngs` in"))
    return updated


def _is_self_rngs(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Attribute) and node.attr.value == "rngs" and dotted(node.value) == "self"


def _required_rngs(init: cst.FunctionDef) -> cst.FunctionDef:
    """A constructor whose module keeps `rngs` for later draws cannot take it as optional."""
    params = [p.with_changes(annotation=cst.Annotation(cst.parse_expression("nnx.Rngs")), default=None,
                             equal=cst.MaybeSentinel.DEFAULT)
              if p.name.value == "rngs" and p.default is not None else p for p in init.params.kwonly_params]
    return init.with_changes(params=init.params.with_changes(kwonly_params=params))


def _module_walk(call: cst.BaseExpression, method: str) -> str | None:
    """The receiver of `X.modules()` / `X.apply(fn)` when X is a plain dotted name."""
    if (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute) and call.func.attr.value == method
            and dotted(call.func.value)):
        return dotted(call.func.value)
    return None


def loop_over_modules(original: cst.For, updated: cst.For) -> cst.For:
    """`for m in self.modules():` -> `for _, m in nnx.iter_modules(self):`."""
    receiver = _module_walk(original.iter, "modules")
    if receiver is None or original.iter.args:
        return updated
    target = cst.Tuple([cst.Element(cst.Name("_")), cst.Element(updated.target)], lpar=[], rpar=[])
    return updated.with_changes(target=target, iter=cst.parse_expression(f"nnx.iter_modules({receiver})"))


def parameter_views(ctx: Context, original: cst.For, updated: cst.For) -> cst.For:
    """`for p in m.parameters(): nn.init.uniform_(p, -s, s)`: the loop fills each parameter, so it walks
    torch-layout views of the variables (`torch_parameters(m)`), in torch's order and with its names."""
    if ctx.function is None or loop_variable(original) not in ctx.function.parameter_views:
        return updated
    helper = f"torch_{parameter_walk(original.iter)}"
    ctx.support.add(helper)
    return updated.with_changes(iter=cst.Call(cst.Name(helper), [cst.Arg(original.iter.func.value)]))


def apply_as_loop(ctx: Context, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
    """`self.apply(fn)` as a statement -> `for _, m in nnx.iter_modules(self): fn(m)` (`fn(m, rngs=rngs)`
    when `fn` draws random numbers, as `weights_init(m)` with `m.weight.data.normal_(0, 0.02)`)."""
    if len(original.body) != 1 or not isinstance(original.body[0], cst.Expr) or not updated.body:
        return updated if updated.body else cst.RemoveFromParent()
    call = original.body[0].value
    receiver = _module_walk(call, "apply")
    converted = updated.body[0].value if isinstance(updated.body[0], cst.Expr) else None
    if receiver is None or len(call.args) != 1 or not isinstance(converted, cst.ListComp):
        return updated
    fn = cst.Module([]).code_for_node(converted.elt.func)
    rngs, name = "", applied_function(call) or ""
    if name.startswith("self.") and ctx.function is not None and ctx.function.owner:  # `self.apply(self._init_weights)`
        name = f"{ctx.function.owner}.{name[5:]}"
    if name in ctx.facts.rngs_functions:
        rngs = ", rngs=" + cst.Module([]).code_for_node(ctx.rngs_expr())
    loop = cst.parse_statement(f"for _, module in nnx.iter_modules({receiver}):\n    {fn}(module{rngs})\n")
    return loop.with_changes(leading_lines=updated.leading_lines)


def feature_test(ctx: Context, node: cst.Comparison | cst.Call) -> cst.Name | None:
    """`'silu' in dir(torch.nn.functional)`, `hasattr(F, 'scaled_dot_product_attention')` (timm's checks
    for what the installed torch offers): whether the converted code has it, a constant."""
    module, name, negated = _feature_parts(node)
    qual = ctx.qualnames.get(module) if module is not None else None
    if qual is None or not isinstance(name, cst.SimpleString):
        return None
    full = f"{qual}.{name.evaluated_value}"
    has = bool(ctx.rules.get("function", full) or ctx.rules.get("module", full))
    return cst.Name(str(has != negated))


def _feature_parts(node) -> tuple:
    """(module, name, negated) of `name [not] in dir(module)` or `hasattr(module, name)`."""
    if isinstance(node, cst.Call) and dotted(node.func) == "hasattr" and len(node.args) == 2:
        return node.args[0].value, node.args[1].value, False
    if not isinstance(node, cst.Comparison) or len(node.comparisons) != 1:
        return None, None, False
    target = node.comparisons[0]
    call = target.comparator
    if (not isinstance(target.operator, (cst.In, cst.NotIn)) or not isinstance(call, cst.Call)
            or dotted(call.func) != "dir" or len(call.args) != 1):
        return None, None, False
    return call.args[0].value, node.left, isinstance(target.operator, cst.NotIn)
