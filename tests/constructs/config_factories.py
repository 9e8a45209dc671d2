from dataclasses import dataclass
from typing import Callable, Optional
import torch.nn as nn


class MB(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c, c)

    def forward(self, x):
        return self.fc(x)


@dataclass
class Cfg:
    c: int
    block: Callable[..., nn.Module]


class Net(nn.Module):
    def __init__(self, cfgs, layer: Optional[Callable[..., nn.Module]] = None):
        super().__init__()
        self.blocks = nn.ModuleDict({f"b{i}": cfg.block(cfg.c) for i, cfg in enumerate(cfgs)})

    def forward(self, x):
        for k, b in self.blocks.items():
            x = b(x)
        return x


def net():
    return Net([Cfg(4, MB)] * 11)
