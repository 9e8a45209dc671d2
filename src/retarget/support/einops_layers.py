"""einops' torch layers as Flax NNX modules (einops ships Flax layers for Linen only).

`einops.layers.torch.Rearrange(pattern, **axes_lengths)` and `Reduce(pattern, reduction,
**axes_lengths)` hold no parameters: each call runs einops' own function, which works on JAX arrays.
"""
import einops
from flax import nnx


class Rearrange(nnx.Module):
    def __init__(self, pattern, *, rngs=None, **axes_lengths):
        self.pattern, self.axes_lengths = pattern, tuple(axes_lengths.items())

    def __call__(self, x):
        return einops.rearrange(x, self.pattern, **dict(self.axes_lengths))


class Reduce(nnx.Module):
    def __init__(self, pattern, reduction, *, rngs=None, **axes_lengths):
        self.pattern, self.reduction, self.axes_lengths = pattern, reduction, tuple(axes_lengths.items())

    def __call__(self, x):
        return einops.reduce(x, self.pattern, self.reduction, **dict(self.axes_lengths))
