"""Training loops: find `zero_grad -> forward -> loss -> backward -> [clip] -> step` in a block.

The analysis runs on the code as written, before anything is rewritten. For
each block holding `loss.backward()` followed by `optimizer.step()` it
takes the backward slice of the loss (the simple statements, earlier in the
block, that the loss depends on): that slice becomes the loss function of a
jitted NNX step. Names the slice reads that change inside the loop (batch
variables) and the modules it calls become arguments; everything else
(criterion, config) is closed over. Names it assigns that are read later
come back out. A `backward()` or `step()` that does not fit is reported with
the functional code to write, in the user's own names.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from ..diagnostics import Escape
from .names import dotted

LOOPS = (cst.For, cst.While)
CLIPS = ("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_value_")


class _Names(cst.CSTVisitor):
    """Names a statement reads and binds (nested functions and comprehensions included: conservative)."""

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.binds: set[str] = set()
        self._stores: set[int] = set()

    def visit_Name(self, node: cst.Name) -> None:
        if id(node) not in self._stores:
            self.reads.add(node.value)

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self.binds.update(_target_names(node.target))
        self._stores.update(_target_nodes(node.target))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.binds.update(_target_names(node.target))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.binds.update(_target_names(node.target))

    def visit_For(self, node: cst.For) -> None:
        self.binds.update(_target_names(node.target))

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self.binds.update(_target_names(node.asname.name))


def _target_nodes(target: cst.BaseExpression) -> set[int]:
    """Ids of the Name nodes an assignment target stores to (not those it reads, like `a[i]`)."""
    if isinstance(target, cst.Name):
        return {id(target)}
    if isinstance(target, (cst.Tuple, cst.List)):
        return set().union(*(_target_nodes(e.value) for e in target.elements))
    if isinstance(target, cst.StarredElement):
        return _target_nodes(target.value)
    return set()


def _target_names(target: cst.BaseExpression) -> set[str]:
    if isinstance(target, cst.Name):
        return {target.value}
    if isinstance(target, (cst.Tuple, cst.List)):
        return set().union(*(_target_names(e.value) for e in target.elements))
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return set()


def names_of(node: cst.CSTNode) -> _Names:
    visitor = _Names()
    node.visit(visitor)
    return visitor


def _call_of(stmt: cst.BaseStatement) -> cst.Call | None:
    """The call of a one-call statement (`x.backward()`, `n = clip(...)`)."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    value = small.value if isinstance(small, (cst.Expr, cst.Assign)) else None
    return value if isinstance(value, cst.Call) else None


def parameters_owner(node: cst.BaseExpression | None) -> cst.BaseExpression | None:
    """`model` in `model.parameters()` (the original call): the module an optimizer updates."""
    if (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and not node.args
            and node.func.attr.value == "parameters" and dotted(node.func.value)):
        return node.func.value
    return None


def method_call(stmt: cst.BaseStatement, method: str, any_args: bool = False) -> str | None:
    """`name` when `stmt` is the statement `name.method()` (no arguments unless `any_args`)."""
    call = _call_of(stmt)
    if (call is None or not isinstance(stmt.body[0], cst.Expr) or (call.args and not any_args)
            or not isinstance(call.func, cst.Attribute) or call.func.attr.value != method):
        return None
    return dotted(call.func.value)


@dataclass
class TrainStep:
    """One fused training step found in a block."""
    name: str
    optimizer: str
    model: str
    loss: str
    forward: list[cst.BaseStatement]
    clips: list[cst.BaseStatement]
    removed: list[cst.BaseStatement]
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    anchor: cst.BaseStatement | None = None
    accumulate: bool = False  # `backward()` whose `step()` comes later: gradients add up until then


@dataclass
class TrainingPlan:
    optimizers: dict[str, str] = field(default_factory=dict)
    steps: list[TrainStep] = field(default_factory=list)
    blocks: dict[cst.CSTNode, list[TrainStep]] = field(default_factory=dict)
    anchors: dict[cst.CSTNode, list[TrainStep]] = field(default_factory=dict)
    dropped: set[cst.CSTNode] = field(default_factory=set)
    escapes: dict[cst.CSTNode, Escape] = field(default_factory=dict)
    calls: set[cst.CSTNode] = field(default_factory=set)
    accumulators: dict[str, str] = field(default_factory=dict)  # optimizer -> name of its summed grads
    updates: dict[cst.CSTNode, str] = field(default_factory=dict)  # `opt.step()` call -> optimizer
    resets: dict[cst.CSTNode, str] = field(default_factory=dict)  # `opt.zero_grad()` call -> optimizer


class _Reads(cst.CSTVisitor):
    """Names read in a scope outside some statements (those of a training step's loss)."""

    def __init__(self, skip: set[cst.CSTNode]):
        self.skip, self.names = skip, set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        if node in self.skip:
            return False
        if isinstance(node, cst.Name):
            self.names.add(node.value)
        return True


class _Optimizers(cst.CSTVisitor):
    """`opt = torch.optim.X(model.parameters(), ...)` -> {opt: model}; and names holding modules."""

    def __init__(self, qualnames: dict, is_module_call):
        self.qualnames, self.is_module_call = qualnames, is_module_call
        self.optimizers: dict[str, str] = {}
        self.modules: set[str] = set()

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Name):
            return
        name, value = node.targets[0].target.value, node.value
        if not isinstance(value, cst.Call):
            return
        qual = self.qualnames.get(value.func, "")
        if qual.startswith("torch.optim.") and not qual.startswith("torch.optim.lr_scheduler."):
            owner = parameters_owner(value.args[0].value) if value.args else None
            if owner is not None:
                self.optimizers[name] = dotted(owner)
        elif self.is_module_call(value):
            self.modules.add(name)


def _suggestion(loss: str, plan: "TrainingPlan") -> str:
    opt, model = next(iter(plan.optimizers.items()), ("optimizer", "model"))
    return (f"write the step functionally: `{loss}, grads = nnx.value_and_grad(loss_fn)({model})` with "
            f"`def loss_fn({model}): ... return {loss}`, then `{opt}.update({model}, grads)`")


def _simple(stmt: cst.BaseStatement) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(
        isinstance(s, (cst.Assign, cst.AugAssign, cst.AnnAssign)) for s in stmt.body)


def loss_slice(body: list[cst.BaseStatement], loss: str) -> list[cst.BaseStatement] | None:
    """The statements of `body` (in order) the value of `loss` at its end depends on; None when
    one of them is not a plain assignment (a loop or branch computing the loss)."""
    needed, chosen = {loss}, []
    for stmt in reversed(body):
        found = names_of(stmt)
        if not found.binds & needed:
            continue
        if not _simple(stmt):
            return None
        chosen.append(stmt)
        needed = (needed - found.binds) | found.reads
    return list(reversed(chosen)) or None


def free_names(stmts: list[cst.BaseStatement]) -> list[str]:
    """Names read before the statements bind them, in order of first use."""
    bound, free = set(), []
    for stmt in stmts:
        found = names_of(stmt)
        free += sorted(found.reads - bound - set(free))
        bound |= found.binds
    return free


class _Finder(cst.CSTVisitor):
    def __init__(self, plan: TrainingPlan, modules: set[str], qualnames: dict):
        self.plan, self.modules, self.qualnames = plan, modules, qualnames
        self.stack: list[cst.CSTNode] = []
        self.optimizer_steps: list[cst.BaseStatement] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, (cst.BaseCompoundStatement, cst.Module)):
            self.stack.append(node)
        if isinstance(node, (cst.IndentedBlock, cst.Module)):
            self._scan(node)
        return super().on_visit(node)

    def on_leave(self, original: cst.CSTNode) -> None:
        if isinstance(original, (cst.BaseCompoundStatement, cst.Module)):
            self.stack.pop()
        super().on_leave(original)

    def _is_clip(self, stmt: cst.BaseStatement) -> bool:
        call = _call_of(stmt)
        return call is not None and self.qualnames.get(call.func) in CLIPS

    def _scan(self, block) -> None:
        body, start = list(block.body), 0
        for i, stmt in enumerate(body):
            if method_call(stmt, "zero_grad", any_args=True) in {*self.plan.optimizers, *self.modules}:
                self.plan.dropped.add(stmt)
            if method_call(stmt, "step") in self.plan.optimizers:
                self.optimizer_steps.append(stmt)
            loss = method_call(stmt, "backward")
            if loss is None:
                continue
            step = self._match(body, start, i, loss) or self._accumulating(body, start, i, loss)
            if step is None:
                self.plan.escapes[_call_of(stmt)] = Escape("RT110", "`backward()` outside a recognised training "
                                                                    "step; " + _suggestion(loss, self.plan))
                continue
            self.plan.blocks.setdefault(block, []).append(step)
            start = body.index(step.removed[-1]) + 1

    def _match(self, body, start: int, i: int, loss: str) -> TrainStep | None:
        clips = []
        for j in range(i + 1, len(body)):
            opt = method_call(body[j], "step")
            if opt in self.plan.optimizers:
                break
            if self._is_clip(body[j]):
                clips.append(body[j])
            elif method_call(body[j], "zero_grad", any_args=True) is None:
                return None
        else:
            return None
        model = self.plan.optimizers[opt]
        forward = loss_slice([s for s in body[start:i] if method_call(s, "zero_grad", any_args=True) is None], loss)
        if forward is None or any(not self._clips_model(c, model) for c in clips):
            return None
        forward = self._model_dependent(forward, {model, *self.modules, *self.plan.optimizers.values()})
        if not forward:  # the loss reaches the model only through a loop or a list: nothing to differentiate here
            return None
        removed = [body[i], *clips, body[j]]
        return self._signature(TrainStep("", opt, model, loss, forward, clips, removed, anchor=self._anchor()))

    def _accumulating(self, body, start: int, i: int, loss: str) -> TrainStep | None:
        """`loss.backward()` with the optimizer's `step()` elsewhere (under `if (i + 1) % k == 0:`,
        after the loop): gradient accumulation, when one optimizer's model computes the loss inside
        a loop and no `step()` follows in this block."""
        if any(method_call(s, "step") in self.plan.optimizers for s in body[i + 1:]) or self._anchor() is None:
            return None
        forward = loss_slice([s for s in body[start:i] if method_call(s, "zero_grad", any_args=True) is None], loss)
        if forward is None:
            return None
        read = set(free_names(forward))
        owners = [opt for opt, model in self.plan.optimizers.items() if model in read]
        if len(owners) != 1:
            return None
        model = self.plan.optimizers[owners[0]]
        forward = self._model_dependent(forward, {model, *self.modules, *self.plan.optimizers.values()})
        if not forward:
            return None
        step = TrainStep("", owners[0], model, loss, forward, [], [body[i]], anchor=self._anchor(), accumulate=True)
        step = self._signature(step)
        step.inputs.remove(step.optimizer)
        return step

    def _signature(self, step: TrainStep) -> TrainStep:
        """Arguments: the model, the optimizer, other modules and what changes inside the loop;
        results: the loss and whatever the step computes that the code reads later."""
        varying = names_of(step.anchor).binds if step.anchor is not None else set()
        modules = {*self.modules, *self.plan.optimizers.values()}
        extra = [n for n in free_names(step.forward) if n not in (step.model, step.optimizer)
                 and (n in modules or n in varying)]
        step.inputs = [step.model, step.optimizer, *extra]
        reads = _Reads(set(step.forward))
        self.scope().visit(reads)
        bound = set().union(*(names_of(s).binds for s in [*step.forward, *step.clips]))
        step.outputs = [step.loss, *sorted((bound & reads.names) - {step.loss})]
        return step

    @staticmethod
    def _model_dependent(forward: list[cst.BaseStatement], modules: set[str]) -> list[cst.BaseStatement]:
        """The statements that depend on a module: batch preparation before them (slicing with the
        loop index, `.to(device)`) stays outside the jitted step, where Python values are concrete."""
        tainted, kept = set(modules), []
        for stmt in forward:
            found = names_of(stmt)
            if found.reads & tainted:
                kept.append(stmt)
                tainted |= found.binds
        return kept

    def _clips_model(self, stmt, model: str) -> bool:
        call = _call_of(stmt)
        owner = parameters_owner(call.args[0].value) if call.args else None
        return owner is not None and dotted(owner) == model

    def _anchor(self) -> cst.CSTNode | None:
        """The outermost loop around the block, inside its function: the step is defined before it."""
        anchor = None
        for node in reversed(self.stack):
            if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Module)):
                break
            if isinstance(node, LOOPS):
                anchor = node
        return anchor

    def scope(self) -> cst.CSTNode:
        return next(n for n in reversed(self.stack) if isinstance(n, (cst.FunctionDef, cst.Module)))


def plan_training(module: cst.Module, qualnames: dict, is_module_call) -> TrainingPlan:
    """Every fused training step of the file, and what cannot be fused."""
    found = _Optimizers(qualnames, is_module_call)
    module.visit(found)
    plan = TrainingPlan(found.optimizers)
    finder = _Finder(plan, found.modules, qualnames)
    module.visit(finder)
    for steps in plan.blocks.values():
        plan.steps.extend(steps)
    for step in plan.steps:
        step.name = _step_name(step, plan)
        plan.anchors.setdefault(step.anchor, []).append(step)
        plan.calls.update(_call_of(s) for s in step.removed)
        if step.accumulate:
            plan.accumulators[step.optimizer] = "accumulated_grads" if len(plan.optimizers) == 1 else (
                f"{step.optimizer.replace('.', '_')}_grads")
    _accumulation_points(plan, finder.optimizer_steps)
    removed = {s for step in plan.steps for s in step.removed}
    for stmt in finder.optimizer_steps:
        if stmt not in removed and _call_of(stmt) not in plan.updates:
            plan.escapes[_call_of(stmt)] = Escape("RT110", "`step()` without a `backward()` before it in the same "
                                                           "block; " + _suggestion("loss", plan))
    plan.calls.update(_call_of(s) for s in plan.dropped)
    plan.calls.update(plan.escapes, plan.updates, plan.resets)
    return plan


def _step_name(step: TrainStep, plan: TrainingPlan) -> str:
    if step.accumulate:
        return "grad_step" if len(plan.optimizers) == 1 else f"{step.optimizer.replace('.', '_')}_grad_step"
    return "train_step" if len(plan.steps) == 1 else f"{step.optimizer.replace('.', '_')}_step"


def _accumulation_points(plan: TrainingPlan, optimizer_steps: list[cst.BaseStatement]) -> None:
    """For optimizers that accumulate: `step()` applies the sum, `zero_grad()` resets it."""
    if not plan.accumulators:
        return
    for stmt in optimizer_steps:
        opt = method_call(stmt, "step")
        if opt in plan.accumulators:
            plan.updates[_call_of(stmt)] = opt
    by_model = {model: opt for opt, model in plan.optimizers.items()}
    for stmt in list(plan.dropped):
        owner = method_call(stmt, "zero_grad", any_args=True)
        opt = owner if owner in plan.optimizers else by_model.get(owner)
        if opt in plan.accumulators:
            plan.dropped.discard(stmt)
            plan.resets[_call_of(stmt)] = opt
