"""timm's initialisation: its own `trunc_normal_` fills the tensor it is given in place (uniform_,
erfinv_, then mul_ and add_ as a chain, clamp_), called on a parameter of the model and, through `named_apply`, on the
`weight` of every Linear, and a fan-in initialiser reading `tensor.shape[1]` (torch's layout
(out, in); the converted kernel is (in, out))."""
import math
import torch
from torch import nn


def _trunc_normal_(tensor, mean, std, a, b):
    def norm_cdf(x):
        return (1. + math.erf(x / math.sqrt(2.))) / 2.
    l = norm_cdf((a - mean) / std)
    u = norm_cdf((b - mean) / std)
    tensor.uniform_(2 * l - 1, 2 * u - 1)
    tensor.erfinv_()
    tensor.mul_(std * math.sqrt(2.)).add_(mean)  # a chain, as timm's trunc_normal_tf_ writes it
    tensor.clamp_(min=a, max=b)
    return tensor


def trunc_normal_(tensor, mean=0., std=1., a=-2., b=2.):
    with torch.no_grad():
        return _trunc_normal_(tensor, mean, std, a, b)


def fan_in_normal_(tensor):
    tensor.data.normal_(0, 1 / math.sqrt(tensor.shape[1]))


def fan_in_kaiming_(tensor):
    nn.init.kaiming_normal_(tensor, mode='fan_in', nonlinearity='linear')  # on its argument: the caller's weight


def init_weights(module, name=''):
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def named_apply(fn, module, name='', depth_first=True, include_root=False):
    if not depth_first and include_root:
        fn(module=module, name=name)
    for child_name, child_module in module.named_children():
        child_name = '.'.join((name, child_name)) if name else child_name
        named_apply(fn=fn, module=child_module, name=child_name, depth_first=depth_first, include_root=True)
    if depth_first and include_root:
        fn(module=module, name=name)
    return module


class Net(nn.Module):
    def __init__(self, dim=8, hidden=8):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, dim))
        self.fc = nn.Linear(dim, hidden)
        self.head = nn.Linear(hidden, 2)
        self.proj = nn.Linear(dim, 64)
        trunc_normal_(self.pos_embed, mean=.1, std=.02)
        named_apply(init_weights, self)
        fan_in_normal_(self.head.weight)
        fan_in_kaiming_(self.proj.weight)

    def forward(self, x):
        return self.head(self.fc(x + self.pos_embed)) + self.proj(x).mean(-1, keepdim=True)


def net():
    return Net()
