"""timm's ConViT: `self.v.weight.data.copy_(torch.eye(dim))` writes a Linear's weight in torch's layout (the
converted kernel is its transpose)."""
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, dim=3):
        super().__init__()
        self.v = nn.Linear(dim, dim)
        self.v.weight.data.copy_(torch.arange(dim * dim, dtype=torch.float32).reshape(dim, dim))

    def forward(self, x):
        return self.v(x)


def net():
    return Net()
