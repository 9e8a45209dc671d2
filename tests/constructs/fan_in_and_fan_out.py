"""timm's initialisers compute fans with torch's private `_calculate_fan_in_and_fan_out` on a weight."""
import math
import torch
import torch.nn as nn
from torch.nn.init import _calculate_fan_in_and_fan_out


def lecun_normal_(tensor):
    fan_in, _ = _calculate_fan_in_and_fan_out(tensor)
    with torch.no_grad():
        tensor.normal_(0, 1 / math.sqrt(fan_in))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.conv = nn.Conv2d(2, 5, 3)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                lecun_normal_(m.weight)

    def fans(self):
        return [_calculate_fan_in_and_fan_out(self.fc.weight), _calculate_fan_in_and_fan_out(self.conv.weight)]

    def forward(self, x):
        return self.fc(x)


def net():
    return Net()
