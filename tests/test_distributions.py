"""torch.distributions: the JAX helpers against torch, and a converted cleanrl-style agent.

Densities, entropies, parameters and KL divergences must equal torch's, values and gradients.
Draws cannot: no JAX stream reproduces torch's generator. They are checked for what torch
promises instead: values in the support, the right frequencies and moments over many draws,
fresh numbers at each draw, and gradients only through `rsample`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.distributions as td
from flax import nnx

import retarget
from harness import imports_torch, import_source
from retarget.support import distributions as D

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((5, 4)).astype(np.float32)
PROBS = RNG.random((5, 4)).astype(np.float32) + 0.05
ACTIONS = RNG.integers(0, 4, (5,))
LOC = RNG.standard_normal((5, 3)).astype(np.float32)
SCALE = RNG.random((5, 3)).astype(np.float32) + 0.3
VALUES = RNG.standard_normal((5, 3)).astype(np.float32)


def close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), expected.detach().numpy(), rtol=tol, atol=tol)


def _torch_grad(fn, *arrays):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(*tensors).sum().backward()
    return [t.grad for t in tensors]


def _jax_grad(fn, *arrays):
    return jax.grad(lambda *xs: fn(*xs).sum(), argnums=tuple(range(len(arrays))))(*map(jnp.asarray, arrays))


CATEGORICAL = {
    "log_prob": (lambda d: d.log_prob(torch.tensor(ACTIONS)), lambda d: d.log_prob(jnp.asarray(ACTIONS))),
    "entropy": (lambda d: d.entropy(), lambda d: d.entropy()),
    "probs": (lambda d: d.probs, lambda d: d.probs),
    "logits": (lambda d: d.logits, lambda d: d.logits),
}


@pytest.mark.parametrize("what", sorted(CATEGORICAL))
@pytest.mark.parametrize("given, data", [("logits", LOGITS), ("probs", PROBS)])
def test_categorical_matches_torch_values_and_gradients(what, given, data):
    torch_fn, jax_fn = CATEGORICAL[what]
    weights = RNG.standard_normal(np.asarray(jax_fn(D.Categorical(**{given: data}))).shape).astype(np.float32)
    close(jax_fn(D.Categorical(**{given: data})), torch_fn(td.Categorical(**{given: torch.tensor(data)})))
    (expected,) = _torch_grad(lambda t: torch_fn(td.Categorical(**{given: t})) * torch.tensor(weights), data)
    (got,) = _jax_grad(lambda a: jax_fn(D.Categorical(**{given: a})) * weights, data)
    close(got, expected)


NORMAL = {
    "log_prob": (lambda d: d.log_prob(torch.tensor(VALUES)), lambda d: d.log_prob(jnp.asarray(VALUES))),
    "entropy": (lambda d: d.entropy(), lambda d: d.entropy()),
    "mean": (lambda d: d.mean, lambda d: d.mean),
    "stddev": (lambda d: d.stddev, lambda d: d.stddev),
    "variance": (lambda d: d.variance, lambda d: d.variance),
    "cdf": (lambda d: d.cdf(torch.tensor(VALUES)), lambda d: d.cdf(jnp.asarray(VALUES))),
    "icdf": (lambda d: d.icdf(torch.tensor(0.1 + 0.8 * np.abs(np.tanh(VALUES)))),
             lambda d: d.icdf(jnp.asarray(0.1 + 0.8 * np.abs(np.tanh(VALUES))))),
    "independent_log_prob": (lambda d: td.Independent(d, 1).log_prob(torch.tensor(VALUES)),
                             lambda d: D.Independent(d, 1).log_prob(jnp.asarray(VALUES))),
    "independent_entropy": (lambda d: td.Independent(d, 1).entropy(), lambda d: D.Independent(d, 1).entropy()),
}


@pytest.mark.parametrize("what", sorted(NORMAL))
def test_normal_matches_torch_values_and_gradients(what):
    torch_fn, jax_fn = NORMAL[what]
    close(jax_fn(D.Normal(LOC, SCALE)), torch_fn(td.Normal(torch.tensor(LOC), torch.tensor(SCALE))))
    expected = _torch_grad(lambda loc, scale: torch_fn(td.Normal(loc, scale)), LOC, SCALE)
    got = _jax_grad(lambda loc, scale: jax_fn(D.Normal(loc, scale)), LOC, SCALE)
    for g, e in zip(got, expected):
        close(g, torch.zeros_like(torch.tensor(LOC)) if e is None else e)


def test_shapes_and_numbers_as_parameters():
    normal, torch_normal = D.Normal(0, 1), td.Normal(0, 1)
    assert normal.loc.dtype == jnp.float32 and normal.batch_shape == tuple(torch_normal.batch_shape) == ()
    assert D.Normal(jnp.zeros(2, jnp.bfloat16), 1.0).scale.dtype == jnp.bfloat16  # torch keeps the tensors' dtype
    independent = D.Independent(D.Normal(LOC, SCALE), 1)
    expected = td.Independent(td.Normal(torch.tensor(LOC), torch.tensor(SCALE)), 1)
    assert (independent.batch_shape, independent.event_shape) == (tuple(expected.batch_shape),
                                                                  tuple(expected.event_shape))
    close(independent.mean, expected.mean)
    categorical = D.Categorical(logits=LOGITS)
    close(categorical.mode, td.Categorical(logits=torch.tensor(LOGITS)).mode)


@pytest.mark.parametrize("kind", ["categorical", "normal", "independent"])
def test_kl_divergence_matches_torch(kind):
    other = RNG.standard_normal(LOGITS.shape).astype(np.float32)
    build = {"categorical": (lambda m, a, b: m.Categorical(logits=a), LOGITS, other),
             "normal": (lambda m, a, b: m.Normal(a, b), LOC, SCALE),
             "independent": (lambda m, a, b: m.Independent(m.Normal(a, b), 1), LOC, SCALE)}
    make, a, b = build[kind]
    p, q = (a, b), (b * 0.5 + 0.1, np.abs(a) + 0.2) if kind != "categorical" else (other, b)
    expected = td.kl_divergence(make(td, *map(torch.tensor, p)), make(td, *map(torch.tensor, q)))
    close(D.kl_divergence(make(D, *p), make(D, *q)), expected)


def test_categorical_draws_follow_the_probabilities():
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]], np.float32)
    dist = D.Categorical(probs=probs, key=jax.random.key(0))
    draws = np.asarray(dist.sample((20000,)))
    assert draws.shape == (20000, 2) and draws.min() >= 0 and draws.max() <= 2
    frequencies = np.stack([(draws == k).mean(0) for k in range(3)], -1)
    np.testing.assert_allclose(frequencies, probs, atol=0.015)
    assert not np.any(draws[:, 1] == 2)  # probability 0: never drawn, as in torch
    assert not np.array_equal(np.asarray(dist.sample((50,))), np.asarray(dist.sample((50,))))  # fresh each draw
    assert dist.sample().shape == (2,) == tuple(td.Categorical(probs=torch.tensor(probs)).sample().shape)


def test_normal_draws_have_the_moments_and_rsample_carries_gradients():
    dist = D.Normal(LOC, SCALE, key=jax.random.key(1))
    draws = np.asarray(dist.sample((20000,)))
    assert draws.shape == (20000, *LOC.shape)
    np.testing.assert_allclose(draws.mean(0), LOC, atol=0.05)
    np.testing.assert_allclose(draws.std(0), SCALE, rtol=0.05)
    key = jax.random.key(2)
    d_loc, d_scale = jax.grad(lambda m, s: D.Normal(m, s, key=key).rsample().sum(), (0, 1))(LOC, SCALE)
    eps = (D.Normal(LOC, SCALE, key=key).rsample() - LOC) / SCALE  # the same draw: its noise
    np.testing.assert_allclose(d_loc, np.ones_like(LOC))
    np.testing.assert_allclose(d_scale, eps, rtol=1e-5, atol=1e-6)
    assert not np.any(jax.grad(lambda m: D.Normal(m, SCALE, key=key).sample().sum())(LOC))  # sample(): no grad


def test_distributions_are_pytrees_and_need_a_key_to_draw():
    dist = jax.jit(lambda logits: D.Categorical(logits=logits, key=jax.random.key(0)))(LOGITS)
    close(dist.entropy(), td.Categorical(logits=torch.tensor(LOGITS)).entropy())
    independent = jax.jit(lambda d: d)(D.Independent(D.Normal(LOC, SCALE), 1))
    assert independent.reinterpreted_batch_ndims == 1 and independent.event_shape == (3,)
    with pytest.raises(ValueError, match="no PRNG key"):
        D.Normal(LOC, SCALE).sample()


AGENT = '''import numpy as np
import torch
import torch.nn as nn
from torch.distributions.categorical import Categorical
from torch.distributions.normal import Normal


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, n_obs, n_actions):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(n_obs, 64)), nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        self.actor = nn.Sequential(layer_init(nn.Linear(n_obs, 64)), nn.Tanh(),
                                   layer_init(nn.Linear(64, n_actions), std=0.01))

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        logits = self.actor(x)
        probs = Categorical(logits=logits)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


class ContinuousAgent(nn.Module):
    def __init__(self, n_obs, n_actions):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(n_obs, 64)), nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        self.actor_mean = nn.Sequential(layer_init(nn.Linear(n_obs, 64)), nn.Tanh(),
                                        layer_init(nn.Linear(64, n_actions), std=0.01))
        self.actor_logstd = nn.Parameter(torch.zeros(1, n_actions))

    def get_action_and_value(self, x, action=None):
        action_mean = self.actor_mean(x)
        action_logstd = self.actor_logstd.expand_as(action_mean)
        action_std = torch.exp(action_logstd)
        probs = Normal(action_mean, action_std)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)
'''


def _agents(cls: str):
    result = retarget.convert(AGENT, path="agent.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    assert "key=self.rngs()" in result.code and not imports_torch(result.code)
    tmod, fmod = import_source(AGENT, "torch_agent"), import_source(result.code, "flax_agent")
    torch.manual_seed(0)
    tagent = getattr(tmod, cls)(8, 3)
    fagent = getattr(fmod, cls)(8, 3, rngs=nnx.Rngs(0))
    with torch.no_grad():
        for p in tagent.parameters():
            p.add_(0.3 * torch.randn_like(p))  # the policy head starts almost uniform: make it not
    retarget.port_weights(tagent.state_dict(), fagent)
    return tagent, fagent


def _ppo_terms(outputs):
    _, log_prob, entropy, value = outputs
    return log_prob, entropy, value


@pytest.mark.parametrize("cls, actions", [("Agent", RNG.integers(0, 3, (6,))),
                                          ("ContinuousAgent", RNG.standard_normal((6, 3)).astype(np.float32))])
def test_converted_agent_gives_torchs_log_prob_entropy_and_value(cls, actions):
    tagent, fagent = _agents(cls)
    obs = RNG.standard_normal((6, 8)).astype(np.float32)
    expected = _ppo_terms(tagent.get_action_and_value(torch.tensor(obs), torch.tensor(actions)))
    step = nnx.jit(lambda agent, x, a: agent.get_action_and_value(x, a))
    for got in (_ppo_terms(fagent.get_action_and_value(obs, actions)), _ppo_terms(step(fagent, obs, actions))):
        for g, e in zip(got, expected):
            close(g, e, tol=1e-5)
    torch_loss = sum(t.sum() for t in expected)
    torch_loss.backward()
    grads = nnx.grad(lambda agent: sum(t.sum() for t in _ppo_terms(agent.get_action_and_value(obs, actions))))(fagent)
    close(grads["critic"]["layers"][0]["kernel"][...], tagent.critic[0].weight.grad.T, tol=1e-4)
    head = "actor" if cls == "Agent" else "actor_mean"
    close(grads[head]["layers"][2]["kernel"][...], getattr(tagent, head)[2].weight.grad.T, tol=1e-4)


def test_converted_agent_samples_valid_actions_with_fresh_keys():
    _, fagent = _agents("Agent")
    obs = RNG.standard_normal((256, 8)).astype(np.float32)
    first, log_prob, _, _ = fagent.get_action_and_value(obs)
    second = fagent.get_action_and_value(obs)[0]
    assert first.shape == (256,) and int(first.min()) >= 0 and int(first.max()) <= 2
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    np.testing.assert_allclose(log_prob, fagent.get_action_and_value(obs, first)[1], rtol=1e-6)
    act = nnx.jit(lambda agent, x: agent.get_action_and_value(x)[0])  # the key stream advances under jit too
    jitted = [np.asarray(act(fagent, obs)) for _ in range(2)]
    assert jitted[0].shape == (256,) and not np.array_equal(*jitted)
