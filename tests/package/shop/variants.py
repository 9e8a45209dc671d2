from torch import nn

from shop.layers import blocks
from shop.model import Net


class WideNet(Net):
    """Absolute imports, a subclass of a model from another file, and a block built through a module."""

    def __init__(self, classes=5):
        super().__init__(width=12, depths=(2,), classes=classes)
        self.extra = blocks.ConvBNAct(3, 3, act_layer=nn.GELU)

    def forward(self, x):
        return super().forward(self.extra(x))


def build(name, classes=5):
    return WideNet(classes) if name == "wide" else Net(classes=classes)
