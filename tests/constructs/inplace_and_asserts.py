import torch
import torch.fx
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

torch.fx.wrap("masked_linear")


def masked_linear(x, weight, bias):
    torch._assert(x.dim() == 2, "the input must be "
                  "2-d")  # a message spanning lines (torchvision's detection models)
    bias = bias.clone()
    length = bias.numel() // 3
    bias[length : 2 * length].zero_()
    return F.linear(x, weight, bias)


class Net(nn.Module):
    def __init__(self, c=6):
        super().__init__()
        self.weight = nn.parameter.Parameter(torch.randn(c, c))
        self.bias = nn.Parameter(torch.randn(c))
        self.cache = {}

    @torch.jit._overload_method
    def forward(self, x):
        pass

    def forward(self, x):
        seen = set()
        seen.add(1)
        self.cache.update({"calls": 1})
        y = cp.checkpoint(lambda a: masked_linear(a, self.weight, self.bias), x, use_reentrant=False)
        y = y.clone()
        y.lerp_(x, 0.25)  # blends and fused multiply/divide-adds, in place (timm's layers and EMA)
        y.addcmul_(x, x, value=0.5)
        y.addcdiv_(x, x.abs() + 1)
        return torch.swapaxes(torch.diff(y, dim=1)[None], 0, 1)[:, 0] * len(seen)


def net():
    return Net()
