"""Layer classes chosen at run time, as timm builds its models: a registry filled by a decorator,
kwargs dicts carrying classes, an optional `se_layer=None` given a class by the caller,
module-level tables of torch layers, and a dataclass of layer factories (timm's LayerFn)."""
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn as nn

_registry = {}
_NORMS = dict(ln=nn.LayerNorm, bn=nn.BatchNorm1d)
_ACTS = {"gelu": nn.GELU, "relu": nn.ReLU}


def register(cls):
    _registry[cls.__name__.lower()] = cls
    return cls


class SE(nn.Module):
    def __init__(self, dim, rd_ratio=0.5):
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * rd_ratio))
        self.fc2 = nn.Linear(int(dim * rd_ratio), dim)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))


@register
class Block(nn.Module):
    def __init__(self, dim, norm_layer=nn.LayerNorm, act="gelu", se_layer=None, drop=0.0):
        super().__init__()
        self.norm = norm_layer(dim)
        self.fc = nn.Linear(dim, dim)
        self.act = _ACTS[act]()
        self.se = se_layer(dim) if se_layer is not None else nn.Identity()
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return x + self.drop(self.se(self.act(self.fc(self.norm(x)))))


@register
class Mixer(nn.Module):
    def __init__(self, dim, norm_layer=nn.LayerNorm, **kwargs):
        super().__init__()
        self.norm = norm_layer(dim)
        self.norm.weight.data.fill_(1.5)  # the parameter of a layer whose class is known at run time
        self.mix = nn.Linear(dim, dim, bias=False)
        self.register_buffer("gate", None, persistent=False)  # filled later (timm's Swin attn_mask)
        self._init_buffers()

    def _init_buffers(self):
        self.register_buffer("gate", torch.linspace(0.5, 1.5, self.mix.in_features), persistent=False)

    def set_norm_weight(self, weight):
        self.norm.weight.data = weight

    def forward(self, x):
        return x + self.mix(self.norm(x)).to(self.norm.weight.dtype) * self.norm.weight.mean() * self.gate


@dataclass
class LayerFn:  # timm's byobnet: a field named like a layer attribute (`act`) holds a class
    act: Callable[..., nn.Module] = nn.ReLU


class Head(nn.Module):
    def __init__(self, dim, num_classes, layers=None):
        super().__init__()
        layers = layers or LayerFn()
        self.fc = nn.Linear(dim, num_classes)
        self.act = layers.act(inplace=True)  # an instance: calling it builds nothing

    def forward(self, x):
        return self.act(self.fc(x))


class Net(nn.Module):
    def __init__(self, kinds=("block", "mixer", "block"), dim=8, norm="ln", num_classes=3):
        super().__init__()
        block_kwargs = dict(norm_layer=partial(_NORMS[norm], eps=1e-6), se_layer=SE)
        self.blocks = nn.Sequential(*[_registry[kind](dim, **block_kwargs) for kind in kinds])
        self.head = Head(dim, num_classes)

    def forward(self, x):
        return self.head(self.blocks(x))


def net():
    return Net()
