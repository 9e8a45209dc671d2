import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBNAct(nn.Module):
    """conv -> batch norm -> activation."""

    def __init__(self, cin, cout, stride=1, act_layer=nn.ReLU):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act_layer()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Residual(ConvBNAct):
    """A block whose output adds its input back."""

    def forward(self, x):
        return x + super().forward(x)


def make_stage(cin, cout, depth, stride=2):
    layers = [ConvBNAct(cin, cout, stride=stride)]
    for _ in range(depth - 1):
        layers.append(Residual(cout, cout))
    return nn.Sequential(*layers)


def pool_flat(x):
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
