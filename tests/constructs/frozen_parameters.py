"""`nn.Parameter(..., requires_grad=<flag>)` (timm's metaformer Scale with `trainable`, literal False):
in the state dict, but not differentiated."""
import torch
import torch.nn as nn


class Scale(nn.Module):
    def __init__(self, dim, init_value=1.0, trainable=True):
        super().__init__()
        self.scale = nn.Parameter(init_value * torch.ones(dim), requires_grad=trainable)

    def forward(self, x):
        return x * self.scale


class Net(nn.Module):
    def __init__(self, dim=6):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.learned = Scale(dim, 0.5)
        self.frozen = Scale(dim, 2.0, trainable=False)
        self.shift = nn.Parameter(torch.full((dim,), 0.25), requires_grad=False)

    def forward(self, x):
        return self.frozen(self.learned(self.fc(x))) + self.shift


def net():
    return Net()
