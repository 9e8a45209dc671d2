"""timm's BEiT `fix_init_weight`: `layer.attn.proj.weight.data.div_(...)` for each block of a ModuleList
(a sublayer reached from a loop variable), directly and through a function filling its argument."""
import math
import torch.nn as nn


class Attn(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        nn.init.ones_(self.proj.weight)
        nn.init.ones_(self.proj.bias)

    def forward(self, x):
        return self.proj(x)


class Net(nn.Module):
    def __init__(self, dim=4, depth=2):
        super().__init__()
        self.blocks = nn.ModuleList([Attn(dim) for _ in range(depth)])
        self.fix_init_weight()

    def fix_init_weight(self):
        def rescale(param, layer_id):
            param.div_(math.sqrt(2.0 * layer_id))

        for layer_id, layer in enumerate(self.blocks):
            layer.proj.weight.data.div_(math.sqrt(2.0 * (layer_id + 1)))
            rescale(layer.proj.bias.data, layer_id + 1)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def net():
    return Net()
