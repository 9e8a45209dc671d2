"""The one traversal that converts a file: structural passes, then rule rewrites, per node.

Handlers run bottom-up (LibCST `leave_*`): by the time a call is rewritten
its arguments already are. Lookups (qualified names, positions, facts) always
use the *original* node, so every decision is made on the code as written.
Anything that cannot convert is kept and its statement gets a
`# RETARGET-TODO(CODE)` line.
"""
from __future__ import annotations

import sys

import libcst as cst

from ..diagnostics import Escape
from ..rules import TENSOR_METHOD_NAMES
from .caches import compute_cached_values
from .shadowing import local_names, unshadow
from . import structure, train_step
from .calls import Site, apply_rule, bind
from .context import Context
from .facts import holds_module, is_python_object, mentions
from .names import dotted
from .template import parenthesize

TENSOR_METHODS = TENSOR_METHOD_NAMES
STRING_METHODS = frozenset({"split", "index", "count"})  # also methods of str taking a str


def _string_method_args(call: cst.Call) -> bool:
    """`s.split()`, `s.split('.')`, `s.count('a')`: arguments only a string's method takes."""
    positional = [a for a in call.args if not a.keyword and not a.star]
    return (not call.args and call.func.attr.value == "split") or bool(positional) and isinstance(
        positional[0].value, (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString))


# Tensor method names that lists, dicts, strings and numpy arrays also have.
NOT_ONLY_TENSOR = frozenset({"sort", "index", "copy", "append", "extend", "count", "items", "keys", "values",
                             "get", "update", "pop", "format", "join", "strip", "replace", "startswith", "astype",
                             "reshape", "tolist", "item", "fill", "put", "take", "nonzero", "round", "all", "any",
                             "add", "discard", "remove", "clear", "insert", "setdefault"})


class Converter(cst.CSTTransformer):
    def __init__(self, ctx: Context, prepass: "Prepass"):
        super().__init__()
        self.ctx = ctx
        self.call_funcs, self.statement_calls = prepass.call_funcs, prepass.statement_calls
        self.structural_calls = prepass.structural_calls
        self.operands = prepass.operands
        self.imported_names = prepass.imported_names
        self.foreign_names = prepass.foreign_names
        self.imports_jax = prepass.imports_jax
        self.elifs = prepass.elifs
        self.assign_targets = prepass.assign_targets
        self.rebinding = prepass.rebinding
        self.dtype_lookups = prepass.dtype_lookups
        self.builds_module = ctx.analysis.model_call_test(ctx.facts)

    # -- escape-hatch comments, one frame per statement ----------------------
    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self.ctx.frames.append([])
        if isinstance(node, cst.SimpleStatementLine) and structure.report_kept_markers(self.ctx, node):
            return False  # retarget kept this line on purpose before: converting again changes nothing
        return super().on_visit(node)

    def on_leave(self, original: cst.CSTNode, updated):
        result = super().on_leave(original, updated)
        if isinstance(original, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            result = structure.attach_comments(self.ctx.frames.pop(), result)
        return result

    # -- scopes ------------------------------------------------------------------
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.ctx.classes.append(self.ctx.facts.classes.get(node.name.value))

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        cls = self.ctx.classes.pop()
        return structure.keep_rngs(self.ctx, cls, structure.constructor_for(self.ctx, cls, updated))

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        owner = self.ctx.module_class if not self.ctx.functions else None
        name = node.name.value
        facts = self.ctx.facts.functions
        self.ctx.functions.append(facts.get(f"{owner.name}.{name}" if owner else name) or
                                  facts.get(name) or structure.anonymous(node))

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        func = self.ctx.functions.pop()
        return structure.convert_function(self.ctx, func, updated)

    def visit_If(self, node: cst.If) -> None:
        self.ctx.narrowed.append(structure.isinstance_narrowing(self.ctx, node.test))

    def leave_If(self, original: cst.If, updated: cst.If):
        self.ctx.narrowed.pop()
        return structure.fold_constant_if(updated, elif_branch=original in self.elifs)

    # -- expressions -----------------------------------------------------------
    def visit_Comparison(self, node: cst.Comparison) -> bool:
        return structure.feature_test(self.ctx, node) is None  # a constant: nothing inside converts

    def leave_Comparison(self, original: cst.Comparison, updated: cst.Comparison) -> cst.BaseExpression:
        return structure.feature_test(self.ctx, original) or updated

    def visit_Call(self, node: cst.Call) -> bool:
        return structure.feature_test(self.ctx, node) is None

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        test = structure.feature_test(self.ctx, original)
        if test is not None:
            return test
        updated = structure.written_args(self.ctx, original, updated)
        if original in self.statement_calls or original in self.structural_calls or original in self.ctx.training.calls:
            return updated
        if self._calls_foreign(original):
            updated = structure.param_values(self.ctx, original, updated)
        result = self._rewrite_call(original, updated, statement=False)
        if isinstance(result, Escape) or result is None:
            return updated
        if updated.lpar and not getattr(result, "lpar", True):
            # `(x\n .view(...))`: the parentheses hold the line breaks inside; the result keeps them
            result = result.with_changes(lpar=updated.lpar, rpar=updated.rpar)
        # `s * F.linear(a, b)` -> `s * (a @ b.T)`: an operator result inside an operator needs parentheses
        return parenthesize(result) if original in self.operands else result

    def leave_Expr(self, original: cst.Expr, updated: cst.Expr):
        accumulation = train_step.accumulation_statement(self.ctx, original.value)
        if accumulation is not None:
            return accumulation
        if original.value in self.ctx.training.calls:
            escape = self.ctx.training.escapes.get(original.value)
            if escape is not None:
                self.ctx.escape(original.value, escape)
            return updated
        if original.value not in self.statement_calls:
            return updated
        result = self._rewrite_call(original.value, updated.value, statement=True)
        if result is None or isinstance(result, Escape):
            return updated
        if isinstance(result, (cst.BaseSmallStatement, cst.RemovalSentinel)):
            return result
        return updated.with_changes(value=result)

    def _calls_foreign(self, call: cst.Call) -> bool:
        """`rearrange(...)`, `einops.reduce(...)`: a function of another library (not torch's or JAX's); or a
        plain function of this file that builds no layers (`_get_relative_position_bias(self.table,
        self.index)` indexes one with the other, which NNX variables cannot do)."""
        name = dotted(call.func) or ""
        facts = self.ctx.facts
        own = name in facts.functions and facts.functions[name].owner is None and name not in facts.rngs_functions
        return own or (name.split(".")[0] in self.foreign_names and call.func not in self.ctx.qualnames)

    def _rewrite_call(self, original: cst.Call, updated: cst.Call, statement: bool):
        ctx = self.ctx
        updated = structure.thread_rngs(ctx, original, updated)
        site = self._site(original, updated, statement)
        if site is None or isinstance(site, cst.Call):
            return updated if site is None else site
        if isinstance(site, Escape):
            self.ctx.escape(original, site)
            return site
        result = apply_rule(site, ctx.rngs_expr())
        if isinstance(result, Escape):
            self.ctx.escape(original, result)
            return result
        ctx.support.update(site.rule.support)
        func = ctx.function.node if ctx.function else None
        result = unshadow(result, set(site.rule.support), func, [*site.bound.values(), site.receiver], ctx.aliases,
                          ctx.own_definitions)
        if statement and site.rule.kind == "method" and site.rule.name.endswith("_") and not site.rule.plugin:
            return cst.Assign([cst.AssignTarget(site.extra.get("target", site.receiver))],
                              structure.scatter_back(site, result))
        return result

    def _site(self, original: cst.Call, updated: cst.Call, statement: bool):
        ctx = self.ctx
        qual = ctx.qualnames.get(original.func)
        if qual is not None:
            rule = ctx.rules.get("function", qual) or ctx.rules.get("module", qual)
            if rule is None:
                return structure.call_of_value(ctx, qual, updated) or Escape("RT101", f"`{qual}` has no rule")
            receiver = None
        elif isinstance(original.func, cst.Attribute) and isinstance(updated.func, cst.Attribute):
            rule = self._method_rule(original, statement)
            if rule is None or isinstance(rule, Escape):
                return rule
            receiver = updated.func.value
        else:
            return None
        if rule.name.endswith("_") and not statement and rule.kind == "method" and not isinstance(
                original.func.value, cst.Call) and original not in self.rebinding:
            # in place on a temporary (`x.new_empty(s).bernoulli_(p)`) or re-bound (`x = x.mul_(2)`) is fine
            return Escape("RT104", f"in-place `{rule.name}` used as a value")
        bound = bind(rule.sig, self._spread_dicts(updated.args))
        if isinstance(bound, Escape):
            # a method call that does not fit the Tensor signature is some other type's method
            # (`arr.mean(axis=1)` on a JAX array, `obj.sigmoid(x)`): leave it alone; not on a known tensor
            # or in place (`x.div_(y, bogus=1)`: JAX arrays have no in-place methods): reported
            if rule.kind == "method":
                tensor = self._tensor_receiver(original.func.value) or rule.name.endswith("_")
                return bound if tensor and not self._is_module(original.func.value) else None
            return self._as_value(rule, updated) or bound
        site = Site(rule, original, updated, bound, receiver, statement, {"ctx": ctx})
        if statement and rule.kind == "method" and rule.name.endswith("_"):
            return structure.inplace_target(ctx, site)
        return site

    def _spread_dicts(self, args) -> tuple[cst.Arg, ...]:
        """`nn.Linear(a, b, **dd)` with `dd = dict(device=device, dtype=dtype)` in the function: the
        call passes those keywords, as if written out."""
        func = self.ctx.function
        if func is None or not any(a.star == "**" and dotted(a.value) in func.dicts for a in args):
            return args
        out = []
        for arg in args:
            entries = func.dicts.get(dotted(arg.value)) if arg.star == "**" else None
            out += [arg] if entries is None else [structure.keyword_arg(k, v) for k, v in entries]
        return tuple(out)

    def _python_object(self, receiver: cst.BaseExpression) -> bool:
        """A receiver the function (or, for `self.x`, the constructor) binds to a set, list, dict or string."""
        name, func, cls = dotted(receiver), self.ctx.function, self.ctx.module_class
        if name is None:
            return is_python_object(receiver)
        if func is not None and name in func.python_names:
            return True
        if name.split(".")[0] in self.ctx.facts.top_python_names and (
                func is None or name.split(".")[0] not in local_names(func.node)):
            return True  # `_leaf_modules.add(m)` on a module-level `_leaf_modules = set()`
        init = self.ctx.facts.functions.get(f"{cls.name}.__init__") if cls is not None else None
        return name.startswith("self.") and init is not None and name in init.python_names

    def _as_value(self, rule, updated: cst.Call) -> cst.Call | None:
        """A call form no template takes (`f(url, *args, **kwargs)`, `nn.Conv2d(a, b, **kwargs)`), to a
        function or layer whose helper has torch's own signature: call the helper as written."""
        helper = rule.as_value if rule.kind == "function" else rule.as_class
        if not helper or not any(a.star for a in updated.args):
            return None
        if not helper.startswith("nnx."):
            self.ctx.support.update(rule.support)
            self.ctx.support.add(helper)
        args = list(updated.args)
        if rule.kind == "module" and rule.needs_rngs:
            args.append(structure.keyword_arg("rngs", self.ctx.rngs_expr()))
        return updated.with_changes(func=cst.parse_expression(helper), args=args)

    def _method_rule(self, original: cst.Call, statement: bool):
        """The rule for `x.method(...)`: a model's own (`to(module)`) or the tensor method's; None when `x`
        is not what the rule applies to."""
        ctx, method, value = self.ctx, original.func.attr.value, original.func.value
        if (dotted(value) or "").split(".")[0] in self.imported_names:
            return None  # `math.sqrt(x)`, `np.mean(x)`: a module function, not a tensor method
        if self.imports_jax or _is_jax_at(value):
            return None  # a JAX file (`x.at[i].add(v)`, `x.flatten()`): methods of JAX arrays
        on_module = self._is_module(value)
        rule = (on_module and ctx.rules.get("method", f"{method}(module)")) or ctx.rules.get("method", method)
        if self._python_object(value):
            return None  # `seen.add(p)`, `self.cache.update(d)`: a set's or dict's own method
        if method in STRING_METHODS and _string_method_args(original):
            return None  # `info['module'].split('.')`: a string's split (a tensor's takes a size)
        if rule is None:
            return self._unknown_method(original, method)
        if statement and method in NOT_ONLY_TENSOR:
            return None  # `names.sort()` for its effect: a list's method (a tensor's would do nothing)
        if rule.ambiguous and ctx.module_class is None and not on_module and not self._tensor_receiver(value):
            return None  # `.repeat`, `.view` on an unknown object outside model code: maybe not a tensor
        if (rule.receiver == "tensor" and on_module) or (rule.receiver == "module" and not on_module
                                                          and rule.ambiguous):
            return None
        return rule

    def _unknown_method(self, original: cst.Call, method: str):
        """A torch.Tensor method with no rule, called in model code: report it rather than keep it silently."""
        if (method in TENSOR_METHODS and method not in NOT_ONLY_TENSOR
                and not self._is_module(original.func.value)):
            return Escape("RT101", f"Tensor method `{method}` has no rule")
        return None

    def _tensor_receiver(self, receiver: cst.BaseExpression) -> bool:
        """A receiver computed by torch (`torch.matmul(a, b)[:, None]`) or a name bound to a torch result."""
        func = self.ctx.function
        names = func.tensor_names if func else set()
        return mentions(receiver, lambda n: n in self.ctx.qualnames or (isinstance(n, cst.Name) and n.value in names))

    def _is_module(self, receiver: cst.BaseExpression) -> bool:
        """`self`, layer attributes and models (`model = Net()`, `Net().to(device)`) are modules: `.relu(x)`
        on them is not Tensor.relu, `.double()` casts parameters."""
        name = dotted(receiver)
        cls = self.ctx.module_class
        if name == "self" or (cls and name and name.startswith("self.") and name[5:] in cls.attr_types):
            return True
        func, facts = self.ctx.function, self.ctx.facts
        names = (func.module_names if func else set()) | facts.top_module_names
        return holds_module(receiver, self.builds_module, names)

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        if original in self.call_funcs:
            return updated
        qual = self.ctx.qualnames.get(original)
        if qual is not None:
            return self._torch_reference(original, updated, qual)
        if original.attr.value == "type" and isinstance(updated.value, cst.Name) and updated.value.value == "None" \
                and isinstance(original.value, cst.Attribute) and original.value.attr.value == "device":
            return cst.parse_expression("jax.default_backend()")  # `x.device.type`: where JAX runs ("cpu", "gpu")
        prop = self.ctx.rules.get("property", original.attr.value)
        # ambiguous properties (`.data`, `.device`) are tensors' only inside model code or on known tensors
        if prop and (self.ctx.module_class is not None or not prop.ambiguous or self._tensor_receiver(
                original.value)) and not self._is_module(original.value) and not self.imports_jax:
            if original in self.assign_targets and "self" not in prop.templates[0].placeholders:
                self.ctx.escape(original, Escape("RT102", f"assigning `.{prop.name}` has no JAX equivalent: {prop.note}"))
                return updated
            self.ctx.support.update(prop.support)
            return prop.templates[0].render({"self": updated.value}, {})
        return structure.rewrite_attribute(self.ctx, original, updated)

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        qual = self.ctx.qualnames.get(original)
        if qual is None or original in self.call_funcs:
            return updated
        if qual == "torch" and original in self.dtype_lookups:
            return cst.Name("jnp")  # `getattr(torch, "bfloat16")` -> `getattr(jnp, "bfloat16")`: the same dtype
        return self._torch_reference(original, updated, qual)

    def _torch_reference(self, original, updated, qual: str) -> cst.BaseExpression:
        ctx = self.ctx
        result = structure.torch_reference(ctx, qual, original)
        if isinstance(result, Escape):
            ctx.escape(original, result)
            return updated
        helper = {result.value} & ctx.support if isinstance(result, cst.Name) else set()
        # `class GroupNorm(nn.GroupNorm)` (timm's layers/norm.py): the base is the helper, by its alias
        return unshadow(result, helper, ctx.function.node if ctx.function else None, [], ctx.aliases,
                        ctx.own_definitions)

    def leave_For(self, original: cst.For, updated: cst.For):
        updated = structure.parameter_views(self.ctx, original, structure.loop_over_modules(original, updated))
        return train_step.define_before_loop(self.ctx, original, updated)

    def leave_While(self, original: cst.While, updated: cst.While):
        return train_step.define_before_loop(self.ctx, original, updated)

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock):
        cls = self.ctx.module_class
        init = self.ctx.facts.functions.get(f"{cls.name}.__init__") if cls is not None else None
        if init is not None and self.ctx.function is not None:
            updated = compute_cached_values(updated, {n[5:] for n in init.mapping_names if n.startswith("self.")})
        return train_step.rewrite_block(self.ctx, original, updated)

    def leave_Module(self, original: cst.Module, updated: cst.Module):
        return train_step.rewrite_block(self.ctx, original, updated)

    def leave_SimpleStatementLine(self, original, updated):
        return structure.apply_as_loop(self.ctx, original, updated)

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign):
        updated = structure.set_training(self.ctx, original, updated)
        result = structure.functional_update(self.ctx, original, updated)
        if result is not updated:
            return result
        updated = structure.runtime_layer_store(self.ctx, original, updated)
        return structure.data_placeholder(self.ctx, original, structure.tie_weights(self.ctx, original, updated))

    def leave_AnnAssign(self, original: cst.AnnAssign, updated: cst.AnnAssign):
        return structure.data_placeholder(self.ctx, original, updated)

    def leave_AugAssign(self, original: cst.AugAssign, updated: cst.AugAssign):
        return structure.functional_update(self.ctx, original, updated)

    def leave_Index(self, original: cst.Index, updated: cst.Index) -> cst.Index:
        return structure.variable_index(self.ctx, original, updated)

    def leave_UnaryOperation(self, original, updated) -> cst.BaseExpression:
        return structure.simplify_not(updated)

    def leave_Decorator(self, original: cst.Decorator, updated: cst.Decorator):
        return structure.drop_noop_decorator(self.ctx, original, updated)

    def leave_With(self, original: cst.With, updated: cst.With):
        return structure.unwrap_noop_context(self.ctx, original, updated)


def _is_jax_at(receiver: cst.BaseExpression) -> bool:
    """`x.at[...]`: the receiver of JAX's functional index updates."""
    return isinstance(receiver, cst.Subscript) and isinstance(receiver.value, cst.Attribute) and (
        receiver.value.attr.value == "at")


def _is_foreign(module: str | None) -> bool:
    """A third-party library other than torch and JAX (einops, ...): its functions take arrays, not Flax
    variables. The standard library's (`copy.deepcopy(self.w)`) get what they were given."""
    root = (module or "").split(".")[0]
    return bool(root) and root not in ("torch", "jax", "flax") and root not in sys.stdlib_module_names
def _stored(target: cst.BaseExpression) -> list[cst.Attribute]:
    """The attributes an assignment, `del` or loop target writes (`a.x, (b.y, *c.z) = ...`; `w.data = v`
    writes `w` too)."""
    if isinstance(target, cst.Attribute):
        return [target, target.value] if target.attr.value == "data" else [target]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [a for e in target.elements for a in _stored(e.value)]
    return _stored(target.value) if isinstance(target, cst.StarredElement) else []


class Prepass(cst.CSTVisitor):
    """Nodes whose role depends on their parent: call targets and expression statements."""

    def __init__(self) -> None:
        self.call_funcs: set = set()
        self.statement_calls: set = set()
        self.structural_calls: set = set()
        self.isinstance_refs: set = set()
        self.annotation_refs: set = set()
        self.operands: set = set()
        self.imported_names: set[str] = set()
        self.foreign_names: set[str] = set()  # bound by imports of other libraries (einops, scipy, ...)
        self.param_groups = False
        self.imports_jax = False  # JAX code already (e.g. retarget's own output): tensor methods are JAX's
        self.elifs: set = set()  # `elif` branches: an If whose replacement cannot be several statements
        self.assign_targets: set = set()  # `x.attr = ...` targets: a property rule cannot write a constant
        self.rebinding: set = set()  # `x = x.op_(...)`: in-place calls whose result re-binds their receiver
        self.stores: set = set()  # attributes written (assigned, deleted, loop targets), not read
        self.lone_targets: set = set()  # the target of a one-target `=` statement
        self.dtype_lookups: set = set()  # `torch` in `getattr(torch, config.router_dtype)`: a dtype by name
        self._annotations = 0
        self._functions = 0  # inside a function: its imports are its own (timm's `import jax.numpy` in a loader)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._functions += 1

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._functions -= 1

    def _jax_module(self, module: str | None) -> bool:
        return not self._functions and (module or "").split(".")[0] in ("jax", "flax")

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            bound = dotted(alias.asname.name) if alias.asname else dotted(alias.name).split(".")[0]
            self.imported_names.add(bound)
            self.imports_jax |= self._jax_module(dotted(alias.name))
            if _is_foreign(dotted(alias.name)):
                self.foreign_names.add(bound)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        self.imports_jax |= self._jax_module(dotted(node.module) if node.module else None)
        if not isinstance(node.names, cst.ImportStar):
            bound = {dotted(a.asname.name) if a.asname else dotted(a.name) for a in node.names}
            self.imported_names.update(bound)
            if not node.relative and _is_foreign(dotted(node.module)):
                self.foreign_names.update(bound)
        return False

    def visit_Assign(self, node: cst.Assign) -> None:
        value = node.value
        if (len(node.targets) == 1 and isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute)
                and dotted(value.func.value) and dotted(value.func.value) == dotted(node.targets[0].target)):
            self.rebinding.add(value)  # `noise = noise.bernoulli_(p)`: the in-place result re-bound to its name
        if len(node.targets) == 1:
            self.lone_targets.add(node.targets[0].target)

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        if isinstance(node.target, cst.Attribute):
            self.assign_targets.add(node.target)
        self.stores.update(_stored(node.target))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.stores.update(_stored(node.target))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.stores.update(_stored(node.target))

    def visit_For(self, node: cst.For) -> None:
        self.stores.update(_stored(node.target))

    def visit_Del(self, node: cst.Del) -> None:
        self.stores.update(_stored(node.target))

    def visit_If(self, node: cst.If) -> None:
        if isinstance(node.orelse, cst.If):
            self.elifs.add(node.orelse)

    def visit_Annotation(self, node: cst.Annotation) -> None:
        self._annotations += 1

    def leave_Annotation(self, node: cst.Annotation) -> None:
        self._annotations -= 1

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.param_groups = self.param_groups or node.attr.value == "param_groups"
        self.operands.add(node.value)
        if self._annotations:
            self.annotation_refs.add(node)

    def visit_Name(self, node: cst.Name) -> None:
        if self._annotations:
            self.annotation_refs.add(node)

    def visit_Call(self, node: cst.Call) -> None:
        self.call_funcs.add(node.func)
        if dotted(node.func) == "getattr" and len(node.args) == 2 and dotted(node.args[0].value) \
                and (dotted(node.args[1].value) or "").lower().endswith("dtype"):
            self.dtype_lookups.add(node.args[0].value)
        if dotted(node.func) == "isinstance" and len(node.args) == 2:
            kinds = node.args[1].value
            elements = kinds.elements if isinstance(kinds, cst.Tuple) else [cst.Element(kinds)]
            self.isinstance_refs.update(e.value for e in elements)

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        self.operands.update((node.left, node.right))

    def visit_UnaryOperation(self, node: cst.UnaryOperation) -> None:
        self.operands.add(node.expression)

    def visit_Comparison(self, node: cst.Comparison) -> None:
        self.operands.update([node.left, *(c.comparator for c in node.comparisons)])

    def visit_Subscript(self, node: cst.Subscript) -> None:
        self.operands.add(node.value)

    def visit_Expr(self, node: cst.Expr) -> None:
        if isinstance(node.value, cst.Call):
            self.statement_calls.add(node.value)

    def visit_Decorator(self, node: cst.Decorator) -> None:
        if isinstance(node.decorator, cst.Call):
            self.structural_calls.add(node.decorator)
        else:
            self.call_funcs.add(node.decorator)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if isinstance(node.item, cst.Call):
            self.structural_calls.add(node.item)
