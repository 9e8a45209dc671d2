import torch
import torch.nn as nn


class Positions(nn.Embedding):
    """A fixed table, as Marian's sinusoidal positions: given by `_weight`, frozen by `_freeze`."""

    def __init__(self, count, dim):
        table = torch.arange(count * dim, dtype=torch.float32).reshape(count, dim) / (count * dim)
        super().__init__(count, dim, _weight=table, _freeze=True)


class Stages(nn.Module):
    def __init__(self, dim=8, depth=3):
        super().__init__()
        self.stages = nn.ModuleList([])
        for i in range(depth):
            self.stages.add_module(str(i), nn.Linear(dim, dim))
        self.positions = Positions(4, dim)
        self.gate = nn.Linear(dim, dim)
        self.gate.requires_grad_(False)

    def forward(self, x):
        dtype = next(self.parameters()).dtype
        shape = list(x.shape)
        shape[-1] = -1
        for stage in self.stages:
            x = torch.relu(stage(x.to(dtype)))
        mix = torch.einsum("bd,de->be", [x, self.gate.weight])
        if x.device.type == "meta":
            return x
        return (mix + self.positions(torch.arange(x.shape[0]) % 4)).reshape(shape)


def build():
    return Stages()
