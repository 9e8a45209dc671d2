"""Emit a fused training step (found by `training.plan_training`) as a jitted NNX function.

    for xb, yb in loader:                     @nnx.jit
        optimizer.zero_grad()                 def train_step(model, optimizer, xb, yb):
        logits = model(xb)                        def loss_fn(model):
        loss = criterion(logits, yb)   ->             logits = model(xb)
        loss.backward()                               loss = criterion(logits, yb)
        optimizer.step()                              return loss
                                                  loss, grads = nnx.value_and_grad(loss_fn)(model)
                                                  optimizer.update(model, grads)
                                                  return loss

                                              for xb, yb in loader:
                                                  loss = train_step(model, optimizer, xb, yb)

The step is defined once, before the outermost loop around it (defining it
inside the loop would retrace it on every iteration).
"""
from __future__ import annotations

import libcst as cst

from ..diagnostics import Escape
from .calls import Site, bind, render
from .context import Context
from .training import TrainStep, _call_of, names_of


def _tuple(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names)


def _clip_statement(ctx: Context, original: cst.BaseStatement, updated: cst.BaseStatement) -> cst.BaseStatement | Escape:
    """`norm = clip_grad_norm_(model.parameters(), 1.0)` -> `grads, norm = clip_grad_norm(grads, 1.0)`."""
    call = _call_of(updated)
    rule = ctx.rules.get("function", ctx.qualnames[_call_of(original).func])
    bound = bind(rule.sig, call.args)
    if isinstance(bound, Escape):
        return bound
    value = render(Site(rule, _call_of(original), call, bound, extra={"ctx": ctx}), bound, ctx.rngs_expr())
    if isinstance(value, Escape):
        return value
    ctx.support.update(rule.support)
    small = updated.body[0]
    returns_norm = rule.name.endswith("clip_grad_norm_")
    if isinstance(small, cst.Assign):
        targets = [cst.AssignTarget(cst.parse_expression(f"grads, {cst.Module([]).code_for_node(small.targets[0].target)}"))]
    elif returns_norm:
        targets = [cst.AssignTarget(cst.parse_expression("grads, _"))]
    else:
        targets = [cst.AssignTarget(cst.Name("grads"))]
    return updated.with_changes(body=[cst.Assign(targets, value)])


def _results(step: TrainStep) -> tuple[list[str], list[str]]:
    """(loss-function aux outputs, clip outputs) among the values the step returns."""
    aux = [n for n in step.outputs[1:] if n in _bound(step.forward)]
    return aux, [n for n in step.outputs[1:] if n not in aux]


def step_function(step: TrainStep, forward: list[cst.BaseStatement],
                  clips: list[cst.BaseStatement]) -> cst.FunctionDef:
    """The jitted step: a loss function over the forward statements, its gradient, the update."""
    aux, clip_out = _results(step)
    aux_value = (aux[0] if len(aux) == 1 else f"({', '.join(aux)})")
    returned = f"{step.loss}, {aux_value}" if aux else step.loss
    grad_lhs = f"({step.loss}, {aux_value})" if aux else step.loss
    has_aux = ", has_aux=True" if aux else ""
    update = "" if step.accumulate else f"    {step.optimizer}.update({step.model}, grads)\n"
    source = (f"@nnx.jit\ndef {step.name}({', '.join(step.inputs)}):\n"
              f"    def loss_fn({step.model}):\n        pass\n"
              f"    {grad_lhs}, grads = nnx.value_and_grad(loss_fn{has_aux})({step.model})\n"
              f"{update}    return {_tuple(_returned(step))}\n")
    func = cst.parse_statement(source)
    inner = func.body.body[0]
    inner = inner.with_changes(body=inner.body.with_changes(body=[*forward, cst.parse_statement(f"return {returned}")]))
    body = [inner, func.body.body[1], *clips, *func.body.body[2:]]
    return func.with_changes(body=func.body.with_changes(body=body))


def _bound(stmts: list[cst.BaseStatement]) -> set[str]:
    return set().union(*(names_of(s).binds for s in stmts))


def _returned(step: TrainStep) -> list[str]:
    """What the step returns: the loss, values read later, and for accumulation the gradients."""
    aux, clip_out = _results(step)
    return [step.loss, *aux, *clip_out, *(["grads"] if step.accumulate else [])]


def _call_statements(ctx: Context, step: TrainStep) -> list[cst.BaseStatement]:
    call = cst.parse_statement(f"{_tuple(_returned(step))} = {step.name}({', '.join(step.inputs)})\n")
    if not step.accumulate:
        return [call]
    total = ctx.training.accumulators[step.optimizer]
    ctx.support.add("add_grads")
    return [call, cst.parse_statement(f"{total} = add_grads({total}, grads)  # backward() adds to .grad\n")]


def _emit(ctx: Context, step: TrainStep, updated: dict) -> list[cst.BaseStatement] | Escape:
    """The statements replacing the step in its block (with the definition when no loop is around)."""
    clips = [_clip_statement(ctx, c, updated[c]) for c in step.clips]
    problem = next((c for c in clips if isinstance(c, Escape)), None)
    if problem:
        return problem
    func = step_function(step, [updated[s] for s in step.forward], clips)
    if step.anchor is None:
        return [func, *_call_statements(ctx, step)]
    ctx.pending_steps.setdefault(step.anchor, []).append(func)
    if step.accumulate:  # torch's `.grad` starts empty
        total = ctx.training.accumulators[step.optimizer]
        ctx.pending_steps[step.anchor].append(cst.parse_statement(f"{total} = None\n"))
    return _call_statements(ctx, step)


def rewrite_block(ctx: Context, original, updated):
    """Replace each fused step of this block by a call to it; drop `zero_grad()` statements."""
    plan = ctx.training
    steps = plan.blocks.get(original, [])
    if (not steps and not plan.dropped.intersection(original.body)) or len(original.body) != len(updated.body):
        return updated
    pairs = dict(zip(original.body, updated.body))
    emitted, skip, deferred = {}, set(plan.dropped), {}
    for step in steps:
        result = _emit(ctx, step, pairs)
        if isinstance(result, Escape):
            ctx.report(_call_of(step.removed[0]), result)  # the step stays as written, reported
            continue
        emitted[step.forward[-1]] = result
        skip.update(step.forward, step.removed)
        deferred[step.forward[-1]] = _reading_results(original.body, step)
        skip.update(deferred[step.forward[-1]])
    body = []
    for stmt in original.body:
        if stmt in emitted:
            body.extend([*emitted[stmt], *(pairs[s] for s in deferred[stmt])])
        elif stmt not in skip:
            body.append(pairs[stmt])
    return updated.with_changes(body=body or [cst.SimpleStatementLine([cst.Pass()])])


def _reading_results(body: list, step: TrainStep) -> list[cst.BaseStatement]:
    """Statements between the step's first and last forward statements that read what the step
    computes: they run right after the call, which stands where the last forward statement was."""
    first, last = body.index(step.forward[0]), body.index(step.forward[-1])
    computed = _bound(step.forward)
    return [s for s in body[first:last] if s not in step.forward and names_of(s).reads & computed]


def accumulation_statement(ctx: Context, call: cst.Call) -> cst.BaseSmallStatement | None:
    """`opt.step()` -> the update with the summed gradients; `opt.zero_grad()` -> reset the sum."""
    plan = ctx.training
    if call in plan.updates:
        opt = plan.updates[call]
        return cst.Expr(cst.parse_expression(f"{opt}.update({plan.optimizers[opt]}, {plan.accumulators[opt]})"))
    if call in plan.resets:
        return cst.Assign([cst.AssignTarget(cst.Name(plan.accumulators[plan.resets[call]]))], cst.Name("None"))
    return None


def define_before_loop(ctx: Context, original, updated):
    """Put the steps used inside this loop right before it."""
    funcs = ctx.pending_steps.pop(original, [])
    if not funcs:
        return updated
    blank = [cst.EmptyLine(indent=False)]
    funcs = [f.with_changes(leading_lines=[*blank, *f.leading_lines]) for f in funcs]
    return cst.FlattenSentinel([*funcs, updated.with_changes(leading_lines=[*blank, *updated.leading_lines])])
