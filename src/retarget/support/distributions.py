"""torch.distributions in plain JAX: Categorical, Normal, Independent and kl_divergence.

Same parameters and the same `log_prob`, `entropy`, `probs`, `logits`, `mean`, `stddev`, ... as
torch, with the same gradients. A distribution holds a PRNG key (the converted code passes one from
its `rngs`); `sample()` and `rsample()` split it, so successive draws differ. Draws follow torch's
law, but the numbers are JAX's: no JAX stream reproduces torch's generator. Distributions are
pytrees, so jitted functions can take and return them.
"""
import math

import jax
import jax.numpy as jnp


def _flatten_distribution(dist):
    names = tuple(sorted(n for n in vars(dist) if n not in dist._static))
    return [vars(dist)[n] for n in names], (names, tuple((n, getattr(dist, n)) for n in dist._static))


def _unflatten_distribution(cls, aux, children):
    names, static = aux
    dist = object.__new__(cls)
    vars(dist).update(zip(names, children), **dict(static))
    return dist


class Distribution:
    """Base class: the sampling key (split at each draw), shapes, and `sample` as a detached `rsample`."""
    _static = ()  # attributes that are Python values (not arrays) when flattened as a pytree

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, _flatten_distribution,
                                           lambda aux, children: _unflatten_distribution(cls, aux, children))

    def _next_key(self):
        if self.key is None:
            raise ValueError("this distribution has no PRNG key to sample with: build it with key=...")
        self.key, key = jax.random.split(self.key)
        return key

    def _extended_shape(self, sample_shape=()):
        return tuple(sample_shape) + tuple(self.batch_shape) + tuple(self.event_shape)

    @property
    def event_shape(self):
        return ()

    @property
    def stddev(self):
        return jnp.sqrt(self.variance)

    def sample(self, sample_shape=()):
        return jax.lax.stop_gradient(self.rsample(sample_shape))


def _float(*params):
    """Parameters as arrays of one floating dtype: their common one, float32 for numbers and integers."""
    params = [p if isinstance(p, (int, float)) else jnp.asarray(p) for p in params]
    dtype = jnp.result_type(*params)
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32
    return [jnp.asarray(p, dtype) for p in params]


class Categorical(Distribution):
    """torch.distributions.Categorical: `probs` (normalised over the last axis) or `logits` (normalised
    in log space, as torch does); samples are indices into the last axis."""

    def __init__(self, probs=None, logits=None, validate_args=None, *, key=None):
        if (probs is None) == (logits is None):
            raise ValueError("Categorical: pass exactly one of `probs` or `logits`")
        if probs is not None:
            (probs,) = _float(probs)
            self.probs = probs / probs.sum(-1, keepdims=True)
            eps = jnp.finfo(self.probs.dtype).eps
            self.logits = jnp.log(jnp.clip(self.probs, eps, 1 - eps))
        else:
            (logits,) = _float(logits)
            self.logits = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
            self.probs = jax.nn.softmax(self.logits, axis=-1)
        self.key = key

    @property
    def batch_shape(self):
        return self.logits.shape[:-1]

    @property
    def param_shape(self):
        return self.logits.shape

    @property
    def mean(self):
        return jnp.full(self.batch_shape, jnp.nan, self.probs.dtype)

    @property
    def variance(self):
        return self.mean

    @property
    def mode(self):
        return jnp.argmax(self.probs, axis=-1)

    def sample(self, sample_shape=()):
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        log_probs = jnp.log(jax.lax.stop_gradient(self.probs))  # a class of probability 0 is never drawn
        return jax.random.categorical(self._next_key(), log_probs, axis=-1, shape=shape)

    def log_prob(self, value):
        value = jnp.asarray(value).astype(jnp.int32)[..., None]
        shape = jnp.broadcast_shapes(value.shape, self.logits.shape)
        log_pmf = jnp.broadcast_to(self.logits, shape)
        index = jnp.broadcast_to(value, shape[:-1] + (1,))
        return jnp.take_along_axis(log_pmf, index, axis=-1)[..., 0]

    def entropy(self):
        logits = jnp.maximum(self.logits, jnp.finfo(self.logits.dtype).min)
        return -(logits * self.probs).sum(-1)


class Normal(Distribution):
    """torch.distributions.Normal(loc, scale): parameters broadcast together; `rsample` is
    reparameterised (gradients reach `loc` and `scale`), `sample` is not."""

    def __init__(self, loc, scale, validate_args=None, *, key=None):
        self.loc, self.scale = jnp.broadcast_arrays(*_float(loc, scale))
        self.key = key

    @property
    def batch_shape(self):
        return self.loc.shape

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def stddev(self):
        return self.scale

    @property
    def variance(self):
        return self.scale ** 2

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        return self.loc + jax.random.normal(self._next_key(), shape, self.loc.dtype) * self.scale

    def log_prob(self, value):
        return -((value - self.loc) ** 2) / (2 * self.variance) - jnp.log(self.scale) - math.log(math.sqrt(2 * math.pi))

    def entropy(self):
        return 0.5 + 0.5 * math.log(2 * math.pi) + jnp.log(self.scale)

    def cdf(self, value):
        return 0.5 * (1 + jax.scipy.special.erf((value - self.loc) / self.scale / math.sqrt(2)))

    def icdf(self, value):
        return self.loc + self.scale * jax.scipy.special.erfinv(2 * value - 1) * math.sqrt(2)


def _sum_rightmost(value, n):
    return value.sum(tuple(range(-n, 0))) if n > 0 else value


class Independent(Distribution):
    """torch.distributions.Independent: the last `reinterpreted_batch_ndims` batch axes of the base
    distribution become event axes (`log_prob` and `entropy` sum over them). Draws use the base's key."""
    _static = ("reinterpreted_batch_ndims",)

    def __init__(self, base_distribution, reinterpreted_batch_ndims, validate_args=None):
        self.base_dist, self.reinterpreted_batch_ndims = base_distribution, reinterpreted_batch_ndims

    @property
    def batch_shape(self):
        shape = tuple(self.base_dist.batch_shape)
        return shape[:len(shape) - self.reinterpreted_batch_ndims]

    @property
    def event_shape(self):
        shape = tuple(self.base_dist.batch_shape)
        return shape[len(shape) - self.reinterpreted_batch_ndims:] + tuple(self.base_dist.event_shape)

    def __getattr__(self, name):  # mean, mode, stddev, variance, probs, ...: the base's
        if name.startswith("_") or name == "base_dist":
            raise AttributeError(name)
        return getattr(self.base_dist, name)

    def sample(self, sample_shape=()):
        return self.base_dist.sample(sample_shape)

    def rsample(self, sample_shape=()):
        return self.base_dist.rsample(sample_shape)

    def log_prob(self, value):
        return _sum_rightmost(self.base_dist.log_prob(value), self.reinterpreted_batch_ndims)

    def entropy(self):
        return _sum_rightmost(self.base_dist.entropy(), self.reinterpreted_batch_ndims)


def kl_divergence(p, q):
    """KL(p || q) for two Categorical, two Normal or two Independent distributions, as torch computes it."""
    if isinstance(p, Categorical) and isinstance(q, Categorical):
        t = p.probs * (p.logits - q.logits)
        t = jnp.where(q.probs == 0, jnp.inf, t)
        return jnp.where(p.probs == 0, 0.0, t).sum(-1)
    if isinstance(p, Normal) and isinstance(q, Normal):
        var_ratio = (p.scale / q.scale) ** 2
        t1 = ((p.loc - q.loc) / q.scale) ** 2
        return 0.5 * (var_ratio + t1 - 1 - jnp.log(var_ratio))
    if isinstance(p, Independent) and isinstance(q, Independent) and (
            p.reinterpreted_batch_ndims == q.reinterpreted_batch_ndims):
        return _sum_rightmost(kl_divergence(p.base_dist, q.base_dist), p.reinterpreted_batch_ndims)
    raise NotImplementedError(f"kl_divergence({type(p).__name__}, {type(q).__name__}) has no JAX helper")
