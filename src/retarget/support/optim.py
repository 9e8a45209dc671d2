"""torch.optim optimizers, learning-rate schedulers and gradient clipping, in Optax.

Where an Optax built-in already computes what torch computes, the rules emit
it directly (`optax.adam`, `optax.adamw`, `optax.sgd`). These helpers cover
the rest: torch's L2 `weight_decay` (added to the gradient before the
moments, unlike AdamW's decoupled decay), SGD dampening, Adagrad's epsilon
outside the square root, and schedulers that step when the script calls
`scheduler.step()` (per epoch or per batch, as the original did) by writing
the learning rate Optax reads from `optax.inject_hyperparams` state.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class TorchMomentumState(NamedTuple):
    count: jax.Array
    buf: object


def torch_momentum(momentum=0.0, dampening=0.0, nesterov=False):
    """SGD's momentum buffer as torch keeps it: the first step stores the gradient itself, later
    steps `momentum * buf + (1 - dampening) * grad`; momentum 0 passes the gradient through."""
    def init(params):
        return TorchMomentumState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        first = state.count == 0
        buf = jax.tree.map(lambda b, g: jnp.where(first, g, momentum * b + (1 - dampening) * g), state.buf, updates)
        step = jax.tree.map(lambda b, g: g + momentum * b, buf, updates) if nesterov else buf
        out = jax.tree.map(lambda s, g: jnp.where(momentum == 0, g, s), step, updates)
        return out, TorchMomentumState(optax.safe_increment(state.count), buf)

    return optax.GradientTransformation(init, update)


def torch_sgd(learning_rate, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD with L2 weight decay and/or dampening (plain SGD is `optax.sgd`)."""
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       torch_momentum(momentum, dampening, nesterov),
                       optax.scale_by_learning_rate(learning_rate))


def adam_l2(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    """torch.optim.Adam with weight_decay: L2 added to the gradient before the moments
    (AdamW's decoupled decay is `optax.adamw`)."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate, b1, b2, eps))


def torch_rmsprop(learning_rate, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    """torch.optim.RMSprop: epsilon added outside the square root, L2 decay on the gradient."""
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.rmsprop(learning_rate, decay=alpha, eps=eps, eps_in_sqrt=False,
                                     centered=centered, momentum=momentum))


class TorchAdagradState(NamedTuple):
    sum: object


def torch_adagrad(learning_rate, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    """torch.optim.Adagrad: `lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum g^2) + eps)`."""
    def init(params):
        return TorchAdagradState(jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update(updates, state, params=None):
        total = jax.tree.map(lambda s, g: s + g * g, state.sum, updates)
        return jax.tree.map(lambda s, g: g / (jnp.sqrt(s) + eps), total, updates), TorchAdagradState(total)

    decay = optax.scale_by_schedule(lambda count: -learning_rate / (1 + count * lr_decay))
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.GradientTransformation(init, update), decay)


TORCH_OPTION_NAMES = {"lr": "learning_rate"}


def _group_options(group, defaults):
    """One torch parameter group's options over the optimizer's defaults, in Optax's names."""
    options = dict(defaults)
    for key, value in group.items():
        if key == "betas":
            options["b1"], options["b2"] = value
        elif key != "params":
            options[TORCH_OPTION_NAMES.get(key, key)] = value
    return options


def torch_param_groups(model, groups, make, **defaults):
    """torch parameter groups (dicts with `params` and options overriding the defaults) as one
    `optax.multi_transform`: group i updates the parameters its `params` list holds (the arrays
    `model.parameters()` / `named_parameters()` gave, matched by identity, as torch does) with
    `make(**options)`; parameters in no group are not updated, as in torch."""
    owner = {id(p): f"group{i}" for i, group in enumerate(groups) for p in group["params"]}
    labels = jax.tree.map(lambda v: owner.get(id(v), "frozen"), nnx.as_pure(nnx.state(model, nnx.Param)))
    transforms = {"frozen": optax.set_to_zero()}
    for i, group in enumerate(groups):
        options = _group_options(group, defaults)
        try:
            transforms[f"group{i}"] = make(**options)
        except TypeError as exc:
            raise ValueError(f"parameter group {i}: {sorted(options)} do not fit {make.__name__}: {exc}") from None
    return optax.multi_transform(transforms, labels)


def add_grads(total, grads):
    """torch's `backward()` adds to `.grad` until `zero_grad()`: the running sum (None when empty)."""
    return grads if total is None else jax.tree.map(jnp.add, total, grads)


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    """torch.nn.utils.clip_grad_norm_ on a gradient tree: returns (clipped grads, total norm);
    grads scale by max_norm / (norm + 1e-6) only when that is below 1, as in torch."""
    leaves = jax.tree.leaves(grads)
    if norm_type == math.inf:
        total = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in leaves]))
    else:
        total = jnp.sum(jnp.stack([jnp.sum(jnp.abs(g) ** norm_type) for g in leaves])) ** (1.0 / norm_type)
    coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
    return jax.tree.map(lambda g: g * coef.astype(g.dtype), grads), total


def clip_grad_value(grads, clip_value):
    """torch.nn.utils.clip_grad_value_ on a gradient tree."""
    return jax.tree.map(lambda g: jnp.clip(g, -clip_value, clip_value), grads)


class LRScheduler:
    """A torch learning-rate scheduler over an Optax schedule.

    `step()` advances the scheduler's own counter (epochs or batches: whatever
    the script steps it by) and writes `schedule(counter)` into the
    optimizer's injected `learning_rate`; the jitted update reads it from
    there, so the learning rate of every update equals torch's.
    """

    def __init__(self, optimizer, schedule, momentum=None):
        self.optimizer, self.schedule, self.momentum, self.last_epoch = optimizer, schedule, momentum, 0
        self._apply()

    def step(self, epoch=None):
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        self._apply()

    def get_last_lr(self):
        return [self.last_lr]

    def _apply(self):
        self.last_lr = float(self.schedule(self.last_epoch))
        set_hyperparam(self.optimizer, "learning_rate", self.last_lr)
        if self.momentum is not None:
            hyperparams = self.optimizer.opt_state.hyperparams
            set_hyperparam(self.optimizer, "momentum" if "momentum" in hyperparams else "b1",
                           float(self.momentum(self.last_epoch)))


def set_hyperparam(optimizer, name, value):
    """Write a hyperparameter an `optax.inject_hyperparams` optimizer reads on its next update."""
    optimizer.opt_state.hyperparams[name][...] = value


class ParamGroup:
    """torch's `optimizer.param_groups[i]` over an Optax optimizer built with
    `optax.inject_hyperparams` (one group: the whole model): `group['lr'] = v` sets the learning
    rate of the next update, `group['lr']` reads it; `betas` reads and writes `b1`, `b2`."""
    NAMES = {"lr": "learning_rate"}

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def _slot(self, key):
        hyperparams = self.optimizer.opt_state.hyperparams
        name = self.NAMES.get(key, key)
        if name not in hyperparams:
            raise KeyError(f"{key!r} is not a hyperparameter of this optimizer ({', '.join(hyperparams)})")
        return hyperparams[name]

    def __getitem__(self, key):
        if key == "betas":
            return self["b1"], self["b2"]
        return float(self._slot(key)[...])

    def __setitem__(self, key, value):
        if key == "betas":
            self["b1"], self["b2"] = value
        else:
            self._slot(key)[...] = value

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self):
        return [{v: k for k, v in self.NAMES.items()}.get(n, n) for n in self.optimizer.opt_state.hyperparams]


def param_groups(optimizer):
    """The optimizer's parameter groups as torch lists them (a single group here)."""
    return [ParamGroup(optimizer)]


def initial_lr(optimizer):
    """The learning rate the optimizer was built with (torch's `initial_lr`), kept across schedulers."""
    if not hasattr(optimizer, "initial_lr"):
        optimizer.initial_lr = float(optimizer.opt_state.hyperparams["learning_rate"][...])
    return optimizer.initial_lr


def StepLR(optimizer, step_size, gamma=0.1):
    return LRScheduler(optimizer, optax.exponential_decay(initial_lr(optimizer), step_size, gamma, staircase=True))


def MultiStepLR(optimizer, milestones, gamma=0.1):
    scales = {m: gamma ** n for m, n in Counter(milestones).items()}
    return LRScheduler(optimizer, optax.piecewise_constant_schedule(initial_lr(optimizer), scales))


def ExponentialLR(optimizer, gamma):
    return LRScheduler(optimizer, optax.exponential_decay(initial_lr(optimizer), 1, gamma))


def CosineAnnealingLR(optimizer, T_max, eta_min=0.0):
    """torch's cosine annealing, which keeps oscillating past T_max (optax.cosine_decay_schedule stops)."""
    base = initial_lr(optimizer)
    return LRScheduler(optimizer, lambda step: eta_min + (base - eta_min) * (1 + math.cos(math.pi * step / T_max)) / 2)


def LinearLR(optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
    base = initial_lr(optimizer)
    return LRScheduler(optimizer, optax.linear_schedule(base * start_factor, base * end_factor, total_iters))


def ConstantLR(optimizer, factor=1.0 / 3, total_iters=5):
    base = initial_lr(optimizer)
    return LRScheduler(optimizer, optax.piecewise_constant_schedule(base * factor, {total_iters: 1 / factor}))


def LambdaLR(optimizer, lr_lambda):
    base = initial_lr(optimizer)
    return LRScheduler(optimizer, lambda step: base * lr_lambda(step))


def SequentialLR(optimizer, schedulers, milestones):
    """Each scheduler in turn, restarted from 0 at its milestone (`optax.join_schedules`)."""
    return LRScheduler(optimizer, optax.join_schedules([s.schedule for s in schedulers], list(milestones)))


def _one_cycle(ends, values, cosine):
    """A piecewise schedule through `values` at steps `ends` (torch's OneCycleLR phases)."""
    def schedule(step):
        begin = 0.0
        for i, end in enumerate(ends):
            if step <= end or i == len(ends) - 1:
                frac = (step - begin) / (end - begin)
                start, stop = values[i], values[i + 1]
                if cosine:
                    return stop + (start - stop) / 2.0 * (math.cos(math.pi * frac) + 1)
                return (stop - start) * frac + start
            begin = end
    return schedule


def OneCycleLR(optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
               anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
               div_factor=25.0, final_div_factor=1e4, three_phase=False):
    """torch's one-cycle policy, momentum (or Adam's b1) cycled in the opposite direction."""
    total = total_steps if total_steps is not None else epochs * steps_per_epoch
    initial, low = max_lr / div_factor, max_lr / div_factor / final_div_factor
    ends = [pct_start * total - 1, total - 1]
    lrs, moms = [initial, max_lr, low], [max_momentum, base_momentum, max_momentum]
    if three_phase:
        ends = [pct_start * total - 1, 2 * pct_start * total - 2, total - 1]
        lrs, moms = [initial, max_lr, initial, low], [max_momentum, base_momentum, max_momentum, max_momentum]
    optimizer.initial_lr = initial
    cosine = anneal_strategy == "cos"
    momentum = _one_cycle(ends, moms, cosine) if cycle_momentum else None
    return LRScheduler(optimizer, _one_cycle(ends, lrs, cosine), momentum)
