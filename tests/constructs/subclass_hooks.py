"""timm's rotary embeddings: the base class calls a hook (`_init_cached_embed`) that only its subclasses
define, and theirs reaches a function drawing random numbers; `get_embed`, which augments in training,
is called from another module's forward (EVA-02): the module's methods draw from its own `self.rngs`."""
import torch
import torch.nn as nn


def jitter(x, generator=None):
    return x + torch.rand(x.shape) * 0.1


class Base(nn.Module):
    def __init__(self, dim=4):
        super().__init__()
        self.register_buffer("bands", torch.linspace(0, 1, dim), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        self._init_buffers()

    def _init_buffers(self):
        self._init_cached(self.bands)

    def _build(self, bands, augment=False):
        return jitter(bands) if augment else bands


class Cat(Base):
    def _init_cached(self, bands):
        self.emb = self._build(bands) * 2

    def get_embed(self):
        return self._build(self.bands, augment=self.training) if self.training else self.emb

    def forward(self, x):
        return x + self.emb


class Outer(nn.Module):
    def __init__(self, dim=4):
        super().__init__()
        self.rope = Cat(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.proj(x) * self.rope.get_embed()


def net():
    return Cat()


def outer():
    return Outer()
