"""Plugins for torch idioms a template cannot express."""
from __future__ import annotations

import libcst as cst

from ..diagnostics import Escape
from ..rewrite.calls import Site, _defaults, render
from ..rewrite.facts import is_mapping
from ..rewrite.names import dotted
from . import register


@register("noop_decorator")
def noop_decorator(site: Site, rngs: cst.BaseExpression):
    """`torch.jit.ignore` and friends: dropped where used as decorators; a call as a statement
    (`torch.fx.wrap("name")` at module level) is dropped too; meaningless as a value."""
    if site.statement:
        return cst.RemoveFromParent()
    return Escape("RT102", f"`{site.rule.name}` only converts as a decorator")


@register("assert_statement", consumes=("condition", "message"))
def assert_statement(site: Site, rngs: cst.BaseExpression):
    """`torch._assert(cond, msg)` as a statement -> `assert cond, msg`."""
    if not site.statement:
        return Escape("RT102", f"`{site.rule.name}` only converts as a statement")
    return cst.Assert(_one_line(site.arg("condition")), msg=_one_line(site.arg("message")))


def _one_line(node: cst.BaseExpression | None) -> cst.BaseExpression | None:
    """An argument written over several lines (inside the call's parentheses) keeps its line breaks
    in parentheses of its own: a statement cannot continue on the next line without them."""
    if node is None or getattr(node, "lpar", None) or "\n" not in cst.Module([]).code_for_node(node):
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


@register("noop_context")
def noop_context(site: Site, rngs: cst.BaseExpression):
    """`torch.no_grad()` and friends: unwrapped where used in `with`; as calls, the rule's template
    (`torch.device("cuda")` as a value) or, without one, meaningless."""
    if site.rule.templates:
        return render(site, site.bound, rngs)
    return Escape("RT102", f"`{site.rule.name}` only converts as a `with` context")


def _literal_bool(node) -> bool | None:
    if node is None:
        return True
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return node.value == "True"
    return None


@register("nonzero", consumes=("as_tuple",))
def nonzero(site: Site, rngs: cst.BaseExpression):
    """`x.nonzero()` is an (N, ndim) matrix of indices (`jnp.argwhere`); with `as_tuple=True`, one index
    array per dimension (`jnp.nonzero`). JAX's own `.nonzero()` is the tuple: never left as written."""
    tensor = site.receiver if site.receiver is not None else site.arg("input")
    flag = site.arg("as_tuple")
    as_tuple = False if flag is None else _literal_bool(flag)
    if as_tuple is None:
        return Escape("RT105", "nonzero needs a literal as_tuple")
    return cst.Call(cst.parse_expression("jnp.nonzero" if as_tuple else "jnp.argwhere"), [cst.Arg(tensor)])


@register("einsum_operands")
def einsum_operands(site: Site, rngs: cst.BaseExpression):
    """`torch.einsum(eq, [a, b])`: torch also takes the operands as one list; `jnp.einsum` only as arguments."""
    operands = site.bound.get("operands") or []
    if len(operands) == 1 and not operands[0].star and isinstance(operands[0].value, (cst.List, cst.Tuple)):
        return render(site, {**site.bound, "operands": [cst.Arg(e.value) for e in operands[0].value.elements]}, rngs)
    return render(site, site.bound, rngs)


@register("buffer", consumes=("persistent",))
def buffer(site: Site, rngs: cst.BaseExpression):
    """`nn.Buffer(t)` -> `Buffer(t)`; `nn.Buffer(t, persistent=False)` (not in torch's state dict, as
    Llama's `inv_freq`) -> the plain array, which port_weights neither expects nor fills."""
    flag = site.arg("persistent")
    persistent = True if flag is None else _literal_bool(flag)
    if persistent is None:
        return Escape("RT105", "nn.Buffer needs a literal persistent flag")
    data = site.arg("data") or cst.Name("None")
    return cst.Call(cst.Name("Buffer"), [cst.Arg(data)]) if persistent else data


@register("register_buffer")
def register_buffer(site: Site, rngs: cst.BaseExpression):
    """`self.register_buffer("mask", t, persistent=...)` -> `self.mask = Buffer(t)` (or a plain array)."""
    name, tensor = site.arg("name"), site.arg("tensor")
    persistent = _literal_bool(site.arg("persistent"))
    if not site.statement or not isinstance(name, cst.SimpleString) or persistent is None:
        return Escape("RT105", "register_buffer needs a literal name and persistent flag, as a statement")
    target = cst.Attribute(site.receiver, cst.Name(name.evaluated_value))
    if tensor is None or (isinstance(tensor, cst.Name) and tensor.value == "None"):
        # a slot filled later (timm's Swin `attn_mask`, by another register_buffer): NNX data, not static
        slot = "nnx.data(None)" if dotted(site.receiver) == "self" else "None"
        return cst.Assign([cst.AssignTarget(target)], cst.parse_expression(slot))
    if persistent:
        site.extra["ctx"].support.add("Buffer")
        tensor = cst.Call(cst.Name("Buffer"), [cst.Arg(tensor)])
    return cst.Assign([cst.AssignTarget(target)], tensor)


def _init_variable(site: Site) -> cst.BaseExpression | Escape:
    """The Flax variable an `nn.init.*_(tensor)` call writes, from the original argument."""
    ctx = site.extra["ctx"]
    original = site.original.args[0].value if site.original.args else None
    if isinstance(original, cst.Attribute) and original.attr.value == "data":
        original = original.value
    name = dotted(original) if original is not None else None
    own = ctx.module_class.param_attrs | ctx.module_class.buffer_attrs if ctx.module_class else set()
    if isinstance(original, cst.Attribute) and dotted(original.value) == "self" and original.attr.value in own:
        return cst.parse_expression(name)  # `self.gain` of a Conv2d subclass: its own parameter
    if isinstance(original, cst.Attribute) and name:
        rules = ctx.layer_rules(original.value)
        if rules:
            specs = [r.attrs.get(original.attr.value, {}) for r in rules]
            if len({s.get("var") for s in specs}) != 1 or "var" not in specs[0]:
                return Escape("RT107", f"`{original.attr.value}` is not one variable of "
                                       f"{' / '.join(r.name for r in rules)}")
            site.extra["fan"] = {k: cst.parse_expression(specs[0][k]) for k in ("in_axis", "out_axis")
                                 if all(s.get(k) == specs[0].get(k) for s in specs) and k in specs[0]}
            return cst.parse_expression(f"{dotted(original.value)}.{specs[0]['var']}")
        if dotted(original.value) == "self" and ctx.module_class is not None:
            return cst.parse_expression(name)  # a parameter of this module (a sublayer's: at run time)
    if isinstance(original, cst.Name) and ctx.function is not None and name in (
            ctx.function.written | ctx.function.parameter_views):
        # a parameter its callers fill in place: they pass a variable, or a layer's weight in torch's
        # layout (`TorchParameter(m, 'weight')`, as `torch_parameters(m)` yields), so torch's fan axes apply
        site.extra["fan"] = {"in_axis": cst.Integer("1"), "out_axis": cst.Integer("0")}
        return original
    return Escape("RT107", "nn.init on a tensor whose layer type retarget cannot tell; "
                           "narrow it with isinstance(m, nn.X) or initialise the Flax variable by hand")


def _all_of(variable: cst.BaseExpression) -> cst.Subscript:
    """`v[...]`: the whole value of a Flax variable, as Flax 0.12 reads and writes it."""
    return cst.Subscript(variable, [cst.SubscriptElement(cst.Index(cst.Ellipsis()))])


@register("nn_init")
def nn_init(site: Site, rngs: cst.BaseExpression):
    """`nn.init.normal_(m.weight, std=.02)` -> `m.kernel.value = <initialiser>` (same distribution);
    on a layer whose class only the running program knows (`def layer_init(layer): ...`), the
    initialiser runs in torch's layout through `init_torch_`."""
    if not site.statement:
        return Escape("RT104", f"`{site.rule.name}` used as a value")
    variable = _init_variable(site)
    if isinstance(variable, Escape):
        return _init_at_run_time(site) or variable
    value = _initialiser(site, variable, site.extra.get("fan", {}))
    return value if isinstance(value, Escape) else cst.Assign([cst.AssignTarget(_all_of(variable))], value)


def _initialiser(site: Site, tensor: cst.BaseExpression, fan: dict) -> cst.BaseExpression | Escape:
    ctx = site.extra["ctx"]
    key = ctx.key_expr("params") or cst.parse_expression("jax.random.key(0)")
    values = {**site.bound, **fan, "tensor": tensor, "prng": key}
    defaults = _defaults(site.rule.sig)
    for template in site.rule.templates:
        value = template.render(values, defaults)
        if value is not None:
            return value
    return Escape("RT102", f"no target form of `{site.rule.name}` fits this call")


def _init_at_run_time(site: Site) -> cst.BaseExpression | None:
    """`init_torch_(layer, "weight", lambda w: <initialiser of w in torch's layout>)`."""
    original = site.original.args[0].value if site.original.args else None
    if isinstance(original, cst.Attribute) and original.attr.value == "data":
        original = original.value
    if not (isinstance(original, cst.Attribute) and dotted(original.value)) or dotted(original.value) == "self":
        return None
    fan = {"in_axis": cst.Integer("1"), "out_axis": cst.Integer("0")}  # torch's (out, in, *kernel) layout
    value = _initialiser(site, cst.Name("w"), fan)
    if isinstance(value, Escape):
        return None
    site.extra["ctx"].support.add("init_torch_")
    init = cst.Lambda(cst.Parameters([cst.Param(cst.Name("w"))]), value)
    return cst.Call(cst.Name("init_torch_"), [cst.Arg(original.value), cst.Arg(cst.SimpleString(
        repr(original.attr.value))), cst.Arg(init)])


_DTYPE_PREFIXES = ("jnp.", "np.")


def _is_dtype(node) -> bool:
    """A torch dtype, a `.dtype` read (`x.to(self.norm.weight.dtype)`) or a name that says it holds one."""
    if isinstance(node, cst.Attribute) and node.attr.value == "dtype":
        return True
    text = dotted(node) or ""
    return text.startswith(_DTYPE_PREFIXES) or text in ("float", "int", "bool") or text.split(".")[-1].endswith("dtype")


def _is_device(node) -> bool:
    """A device: a string (`"cuda:0"`), `torch.device(...)`, or a name or attribute that says it holds
    one (`device`, `self.device`, `x.device`, `args.device`)."""
    if isinstance(node, (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString)) or (
            isinstance(node, cst.Name) and node.value == "None"):  # `x.device` converts to None
        return True
    text = dotted(node.func if isinstance(node, cst.Call) else node) or ""
    return "device" in text.split(".")[-1].lower()


def _dtype_of(site: Site) -> cst.BaseExpression | None:
    """The dtype a `.to(...)` call converts to: `dtype=`, or a dtype as the first argument."""
    first = site.arg("device")
    return site.arg("dtype") or (first if first is not None and _is_dtype(first) else None)


@register("tensor_to")
def tensor_to(site: Site, rngs: cst.BaseExpression):
    """`.to(device)` is dropped (JAX places arrays itself); `.to(dtype)` becomes `.astype(dtype)`; an
    argument that is neither visibly (`.to(input_dtype)` of a name, `.to(other)`) is told apart at run
    time by `tensor_to`: a dtype or a tensor casts, a device does nothing."""
    dtype, first = _dtype_of(site), site.arg("device")
    if dtype is not None:
        return cst.Call(cst.Attribute(site.receiver, cst.Name("astype")), [cst.Arg(dtype)])
    if first is None or _is_device(first):
        return site.receiver
    site.extra["ctx"].support.add("tensor_to")
    return cst.Call(cst.Name("tensor_to"), [cst.Arg(site.receiver), cst.Arg(first)])


@register("module_to")
def module_to(site: Site, rngs: cst.BaseExpression):
    """`model.to(device)` is the model; `model.to(torch.float64)` casts its floating parameters and
    buffers in place and returns it (`cast_module`), as torch does."""
    dtype = _dtype_of(site)
    if dtype is None:
        return site.receiver
    return cst.Call(cst.Name("cast_module"), [cst.Arg(site.receiver), cst.Arg(dtype)])


@register("module_mode", consumes=("mode",))
def module_mode(site: Site, rngs: cst.BaseExpression):
    """`model.eval()` / `model.train(mode)` as statements switch in place (NNX's methods); used as values
    they must return the model, as torch's do: `train_mode(model, mode)`."""
    mode = cst.Name("False") if site.rule.name == "eval" else site.arg("mode") or cst.Name("True")
    literal = _literal_bool(mode)
    if site.statement and literal is not None:
        return cst.Call(cst.Attribute(site.receiver, cst.Name("train" if literal else "eval")), [])
    return cst.Call(cst.Name("train_mode"), [cst.Arg(site.receiver), cst.Arg(mode)])


@register("parameter", consumes=("requires_grad",))
def parameter(site: Site, rngs: cst.BaseExpression):
    """`nn.Parameter(x)` -> `nnx.Param(x)`; with `requires_grad=False` it is in the state but neither
    differentiated nor trained: a `Buffer`; with a run-time flag, whichever the flag picks."""
    data = site.arg("data")
    flag = site.arg("requires_grad")
    literal = _literal_bool(flag)
    param, buffer = (cst.Call(cst.parse_expression(n), [cst.Arg(data)]) for n in ("nnx.Param", "Buffer"))
    if literal is not None:
        return param if literal else buffer
    return cst.IfExp(test=flag, body=param, orelse=buffer)


@register("sequential")
def sequential(site: Site, rngs: cst.BaseExpression):
    """`nn.Sequential(a, b)` -> `nnx.Sequential(a, b)`; `nn.Sequential(OrderedDict(...))` and an empty
    `nn.Sequential()` (filled by add_module) -> `NamedSequential`, which keeps the children's names."""
    args, func = site.bound.get("args", []), site.extra["ctx"].function
    named = len(args) == 1 and not args[0].star and (is_mapping(args[0].value) or (
        func is not None and dotted(args[0].value) in func.mapping_names))
    if named or not args:
        site.extra["ctx"].support.add("NamedSequential")
        return cst.Call(cst.Name("NamedSequential"), [cst.Arg(args[0].value)] if args else [])
    return site.rule.templates[0].render({"args": args}, {})
