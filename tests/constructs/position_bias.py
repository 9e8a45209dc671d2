import torch
import torch.nn as nn


def _bias(table, index, n):
    return table[index].reshape(n, n, -1).permute(2, 0, 1)


class Attn(nn.Module):
    def __init__(self, n=3, heads=2):
        super().__init__()
        self.n = n
        self.table = nn.Parameter(torch.randn(n * n, heads))
        self.define_index()

    def define_index(self):
        index = torch.arange(self.n * self.n).flip(0)
        self.register_buffer("index", index)

    def forward(self, x):
        return x + _bias(self.table, self.index, self.n).sum(0)


def attn():
    return Attn()
