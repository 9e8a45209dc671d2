"""Plugins for the training side of a script: optimizers, clipping, saving and loading state."""
from __future__ import annotations

import libcst as cst

from ..diagnostics import Escape
from ..rewrite.calls import Site, render
from ..rewrite.structure import keyword_arg
from ..rewrite.names import dotted
from ..rewrite.training import parameters_owner
from . import register


def _pair(node: cst.BaseExpression) -> list[cst.BaseExpression]:
    """`(0.9, 0.98)` -> its two elements; any other expression -> `betas[0]`, `betas[1]`."""
    if isinstance(node, cst.Tuple) and len(node.elements) == 2 and not any(
            isinstance(e, cst.StarredElement) for e in node.elements):
        return [e.value for e in node.elements]
    return [cst.Subscript(node, [cst.SubscriptElement(cst.Index(cst.Integer(str(i))))]) for i in (0, 1)]


def scheduled(ctx) -> bool:
    """Whether the file changes learning rates as it runs (a torch scheduler or `param_groups`
    writes): its optimizers then keep the learning rate in state (`optax.inject_hyperparams`)."""
    return any(q.startswith("torch.optim.lr_scheduler.") for q in ctx.qualnames.values()) or ctx.writes_param_groups


def _inject(tx: cst.BaseExpression) -> cst.BaseExpression | Escape:
    if not isinstance(tx, cst.Call) or any(a.keyword is None for a in tx.args):
        return Escape("RT102", "this optimizer cannot keep its learning rate in state for a scheduler")
    inject = cst.Call(cst.parse_expression("optax.inject_hyperparams"), [cst.Arg(tx.func)])
    return tx.with_changes(func=inject)


@register("optimizer", consumes=("params", "betas"))
def optimizer(site: Site, rngs: cst.BaseExpression):
    """`torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))` ->
    `nnx.Optimizer(model, optax.adam(learning_rate=1e-3, b1=0.9, b2=0.98), wrt=nnx.Param)`."""
    original = site.original.args[0].value if site.original.args and not site.original.args[0].keyword else None
    model = parameters_owner(original)
    ctx = site.extra["ctx"]
    groups = None
    if model is None:
        model, groups = _parameters_module(ctx), site.bound.get("params")
        if model is None or groups is None or scheduled(ctx):
            return Escape("RT102", "optimizer over parameter groups whose module retarget cannot tell (or with a "
                                   "scheduler): build `nnx.Optimizer(model, optax.multi_transform(...), "
                                   "wrt=nnx.Param)` by hand")
    bound = {k: v for k, v in site.bound.items() if k not in ("params", "betas")}
    if "betas" in site.bound:
        bound.update(zip(("b1", "b2"), _pair(site.bound["betas"])))
    tx = render(site, bound, rngs)
    if isinstance(tx, Escape):
        return tx
    if groups is not None:
        tx = _grouped(ctx, tx, model, groups)
    elif scheduled(ctx):
        tx = _inject(tx)
        if isinstance(tx, Escape):
            return tx
    return cst.Call(cst.parse_expression("nnx.Optimizer"), [
        cst.Arg(model), cst.Arg(tx), keyword_arg("wrt", cst.parse_expression("nnx.Param"))])


def _parameters_module(ctx) -> cst.BaseExpression | None:
    """The one module whose `parameters()`/`named_parameters()` the enclosing function reads (the
    parameter groups are built from them), e.g. `self` in nanoGPT's `configure_optimizers`."""
    calls = ctx.function.calls if ctx.function else ctx.analysis.collector.module_calls
    owners = {dotted(c.func.value) for c in calls if isinstance(c.func, cst.Attribute)
              and c.func.attr.value in ("parameters", "named_parameters") and dotted(c.func.value)}
    return cst.parse_expression(owners.pop()) if len(owners) == 1 else None


def _grouped(ctx, tx: cst.Call, model: cst.BaseExpression, groups: cst.BaseExpression) -> cst.Call:
    """`optax.adamw(learning_rate=lr, ...)` -> `torch_param_groups(model, groups, optax.adamw, learning_rate=lr, ...)`."""
    ctx.support.add("torch_param_groups")
    args = [cst.Arg(model), cst.Arg(groups), cst.Arg(tx.func), *tx.args]
    return cst.Call(cst.Name("torch_param_groups"), [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args])


@register("outside_train_step")
def outside_train_step(site: Site, rngs: cst.BaseExpression):
    """Gradient clipping converts inside a fused training step (between `backward()` and
    `step()`); anywhere else there are no gradients to clip."""
    return Escape("RT110", f"`{site.rule.name.rsplit('.', 1)[-1]}` outside a recognised training step: clip the "
                           "gradients between `nnx.value_and_grad` and `optimizer.update`, e.g. "
                           f"`{cst.Module([]).code_for_node(site.rule.templates[0].expr)}`")


@register("manual_seed")
def manual_seed(site: Site, rngs: cst.BaseExpression):
    """`torch.manual_seed(0)` -> `rngs = nnx.Rngs(0)`: the explicit key source every layer and random
    op after it in this function draws from (its layers get `rngs=rngs`)."""
    if not site.statement:
        return Escape("RT102", "`torch.manual_seed` used as a value (the torch Generator has no JAX equivalent)")
    return cst.Assign([cst.AssignTarget(cst.Name("rngs"))],
                      cst.Call(cst.parse_expression("nnx.Rngs"), [cst.Arg(site.arg("seed"))]))


@register("generator_seed")
def generator_seed(site: Site, rngs: cst.BaseExpression):
    """`g.manual_seed(s)` -> `g = nnx.Rngs(s)`; `torch.Generator().manual_seed(s)` -> `nnx.Rngs(s)`."""
    seeded = render(site, site.bound, rngs)
    if site.statement and dotted(site.receiver):
        return cst.Assign([cst.AssignTarget(site.receiver)], seeded)
    if not site.statement and isinstance(site.receiver, cst.Call):
        return seeded  # a fresh generator, seeded
    return Escape("RT102", "re-seeding a generator used as a value: write `g = nnx.Rngs(seed)` and use `g`")
