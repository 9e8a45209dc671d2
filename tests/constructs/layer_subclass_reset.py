"""timm's ScaledStdConv2d shape: a subclass of nn.Conv2d with a parameter of its own, initialised in an
overridden `reset_parameters` that calls `super().reset_parameters()`, built through a registry."""
import torch
import torch.nn as nn


class ScaledConv2d(nn.Conv2d):
    def __init__(self, cin, cout, k, gain_init=1.0):
        super().__init__(cin, cout, k)
        self.gain_init = gain_init
        self.gain = nn.Parameter(torch.empty((self.out_channels, 1, 1, 1)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if hasattr(self, 'gain'):
            torch.nn.init.constant_(self.gain, self.gain_init)
            super().reset_parameters()

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight * self.gain, self.bias)


_REG = {"sc": ScaledConv2d}


class Net(nn.Module):
    def __init__(self, kind="sc"):
        super().__init__()
        self.conv = _REG[kind](3, 4, 3, gain_init=0.5)

    def forward(self, x):
        return self.conv(x)


def net():
    return Net()
