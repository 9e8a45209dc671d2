import torch.nn as nn

from .layers import ClassifierHead, make_stage
from .layers.blocks import ConvBNAct


class Net(nn.Module):
    def __init__(self, width=8, depths=(1, 2), classes=5):
        super().__init__()
        self.stem = ConvBNAct(3, width)
        stages, cin = [], width
        for i, depth in enumerate(depths):
            stages.append(make_stage(cin, width * 2 ** (i + 1), depth))
            cin = width * 2 ** (i + 1)
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(cin, classes)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))
