"""torch.nn.RNN/GRU/LSTM and their cells as Flax NNX modules (torch gate order and I/O layout).

Kernels are stored (in, gates * hidden), Flax's layout; the rules transpose torch's
`weight_ih_l{k}` into `forward_cells[k].kernel_ih` (and `_reverse` into `backward_cells`).
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import _uniform, default_rngs


class _RNNCellBase(nnx.Module):
    gates = 1

    @default_rngs
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, rngs: nnx.Rngs):
        self.hidden_size, self.nonlinearity = hidden_size, nonlinearity
        bound = 1.0 / math.sqrt(hidden_size)
        width = self.gates * hidden_size
        self.kernel_ih = nnx.Param(_uniform(rngs, (input_size, width), bound))
        self.kernel_hh = nnx.Param(_uniform(rngs, (hidden_size, width), bound))
        self.bias_ih = nnx.Param(_uniform(rngs, (width,), bound)) if bias else None
        self.bias_hh = nnx.Param(_uniform(rngs, (width,), bound)) if bias else None

    def _projections(self, x, h):
        xi, hh = x @ self.kernel_ih[...], h @ self.kernel_hh[...]
        if self.bias_ih is not None:
            xi, hh = xi + self.bias_ih[...], hh + self.bias_hh[...]
        return xi, hh

    def initial_state(self, batch_shape, dtype):
        return jnp.zeros(batch_shape + (self.hidden_size,), dtype)


class RNNCell(_RNNCellBase):
    def step(self, x, h):
        xi, hh = self._projections(x, h)
        return (jnp.tanh if self.nonlinearity == "tanh" else jax.nn.relu)(xi + hh)

    def __call__(self, input, hx=None):
        return self.step(input, self.initial_state(input.shape[:-1], input.dtype) if hx is None else hx)


class GRUCell(_RNNCellBase):
    gates = 3

    def step(self, x, h):
        xi, hh = self._projections(x, h)
        (xr, xz, xn), (hr, hz, hn) = jnp.split(xi, 3, axis=-1), jnp.split(hh, 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return (1 - z) * n + z * h

    def __call__(self, input, hx=None):
        return self.step(input, self.initial_state(input.shape[:-1], input.dtype) if hx is None else hx)


class LSTMCell(_RNNCellBase):
    gates = 4

    def step(self, x, state):
        h, c = state
        xi, hh = self._projections(x, h)
        i, f, g, o = jnp.split(xi + hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    def initial_state(self, batch_shape, dtype):
        zeros = jnp.zeros(batch_shape + (self.hidden_size,), dtype)
        return zeros, zeros

    def __call__(self, input, hx=None):
        return self.step(input, self.initial_state(input.shape[:-1], input.dtype) if hx is None else hx)


class _RNNBase(nnx.Module):
    """Multi-layer, optionally bidirectional recurrent layer with torch's I/O layout."""
    cell_type = RNNCell

    @default_rngs
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, nonlinearity="tanh", *, rngs: nnx.Rngs):
        self.num_layers, self.batch_first, self.bidirectional = num_layers, batch_first, bidirectional
        self.input_size, self.hidden_size = input_size, hidden_size  # torch's attributes (timm's Sequencer reads them)
        dirs = 2 if bidirectional else 1

        def cells():
            return nnx.List([self.cell_type(input_size if i == 0 else hidden_size * dirs, hidden_size, bias,
                                            nonlinearity, rngs=rngs) for i in range(num_layers)])
        self.forward_cells = cells()
        self.backward_cells = cells() if bidirectional else nnx.List([])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def _run(self, cell, x, state, reverse):
        def step(carry, xt):
            carry = cell.step(xt, carry)
            return carry, carry[0] if isinstance(carry, tuple) else carry

        final, ys = jax.lax.scan(step, state, jnp.swapaxes(jnp.flip(x, axis=1) if reverse else x, 0, 1))
        ys = jnp.swapaxes(ys, 0, 1)
        return (jnp.flip(ys, axis=1) if reverse else ys), final

    def _initial(self, hx, index, cell, x):
        if hx is None:
            return cell.initial_state(x.shape[:1], x.dtype)
        if isinstance(hx, tuple):
            return hx[0][index], hx[1][index]
        return hx[index]

    def __call__(self, input, hx=None):
        x = input if self.batch_first else jnp.swapaxes(input, 0, 1)
        finals = []
        for layer in range(self.num_layers):
            if layer > 0:
                x = self.dropout(x)
            cells = [self.forward_cells[layer]] + ([self.backward_cells[layer]] if self.bidirectional else [])
            outs = []
            for d, cell in enumerate(cells):
                y, final = self._run(cell, x, self._initial(hx, layer * len(cells) + d, cell, x), d == 1)
                outs.append(y)
                finals.append(final)
            x = jnp.concatenate(outs, axis=-1)
        out = x if self.batch_first else jnp.swapaxes(x, 0, 1)
        if isinstance(finals[0], tuple):
            return out, (jnp.stack([f[0] for f in finals]), jnp.stack([f[1] for f in finals]))
        return out, jnp.stack(finals)


class RNN(_RNNBase):
    cell_type = RNNCell


class GRU(_RNNBase):
    cell_type = GRUCell


class LSTM(_RNNBase):
    cell_type = LSTMCell
