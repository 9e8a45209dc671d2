"""timm's ConViT: `self.v.weight.data.copy_(torch.eye(dim))` writes a Linear's weight in torch's layout (the
converted kernel is its transpose), and `self.pos_proj.weight.data[i, 2] = -1` its items."""
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, dim=3):
        super().__init__()
        self.v = nn.Linear(dim, dim)
        self.v.weight.data.copy_(torch.arange(dim * dim, dtype=torch.float32).reshape(dim, dim))
        self.v.weight.data[1, 2] = -1  # items of the weight, in torch's layout
        self.v.weight.data[0, :] *= 0.5
        self.conv = nn.Conv2d(2, 2, 1)
        self.conv.weight.data[0] = 1.0
        self.v.weight.data *= torch.arange(1.0, 4.0)  # a whole weight scaled, in torch's layout (per input)
        self.conv.weight.data += 1

    def forward(self, x):
        return self.v(x)


def net():
    return Net()
