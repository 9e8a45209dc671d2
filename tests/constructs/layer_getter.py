from collections import OrderedDict

import torch
import torch.nn as nn


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.relu = nn.ReLU(inplace=True)  # a child without parameters: a JAX function once converted
        self.layer2 = nn.Linear(4, 4)
        self.layer10 = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 2)  # after the layers a getter needs: left out, as torchvision does


class IntermediateLayerGetter(nn.ModuleDict):
    """torchvision's: keeps the children in order until the last one asked for."""

    def __init__(self, model, return_layers):
        layers = OrderedDict()
        for name, module in model.named_children():
            layers[name] = module
            if name in return_layers:
                return_layers = {k: v for k, v in return_layers.items() if k != name}
            if not return_layers:
                break
        super().__init__(layers)

    def forward(self, x):
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            out[name] = x
        return out["layer10"]


class Pooling(nn.Sequential):
    """torchvision's ASPPPooling: a Sequential subclass whose forward iterates over itself."""

    def __init__(self, channels):
        super().__init__(nn.Linear(channels, channels), nn.Tanh())

    def forward(self, x):
        for mod in self:
            x = mod(x)
        return x + len(self)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = IntermediateLayerGetter(Backbone(), {"layer10": "out"})
        features = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh())
        stages = [i for i, b in enumerate(features) if isinstance(b, nn.Linear)] + [len(features) - 1]
        self.head = features[: stages[1] + 1]  # DeepLabV3's backbone slicing
        self.pool = Pooling(4)

    def forward(self, x):
        return self.pool(self.head(self.body(x)))


def net():
    return Net()
