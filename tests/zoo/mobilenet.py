"""MobileNetV3-style inverted residual blocks with squeeze-excite."""
from functools import partial

import torch
from torch import nn
import torch.nn.functional as F


def _make_divisible(v, divisor=8, min_value=None):
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class SqueezeExcitation(nn.Module):
    def __init__(self, input_channels: int, squeeze_factor: int = 4):
        super().__init__()
        squeeze_channels = _make_divisible(input_channels // squeeze_factor, 8)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)

    def _scale(self, input):
        scale = F.adaptive_avg_pool2d(input, 1)
        scale = self.fc1(scale)
        scale = self.relu(scale)
        scale = self.fc2(scale)
        return F.hardsigmoid(scale, inplace=True)

    def forward(self, input):
        scale = self._scale(input)
        return scale * input


class ConvBNActivation(nn.Sequential):
    def __init__(self, in_planes, out_planes, kernel_size=3, stride=1, groups=1, activation_layer=None):
        padding = (kernel_size - 1) // 2
        if activation_layer is None:
            activation_layer = nn.ReLU6
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes, eps=0.001, momentum=0.01),
            activation_layer(inplace=True),
        )
        self.out_channels = out_planes


class InvertedResidual(nn.Module):
    def __init__(self, inp, expanded, oup, kernel, stride, use_se, use_hs):
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        activation_layer = nn.Hardswish if use_hs else nn.ReLU
        if expanded != inp:
            layers.append(ConvBNActivation(inp, expanded, kernel_size=1, activation_layer=activation_layer))
        layers.append(ConvBNActivation(expanded, expanded, kernel_size=kernel, stride=stride, groups=expanded,
                                       activation_layer=activation_layer))
        if use_se:
            layers.append(SqueezeExcitation(expanded))
        layers.append(ConvBNActivation(expanded, oup, kernel_size=1, activation_layer=nn.Identity))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


class MobileNetTiny(nn.Module):
    def __init__(self, num_classes=10, dropout=0.2):
        super().__init__()
        self.features = nn.Sequential(
            ConvBNActivation(3, 16, stride=2, activation_layer=nn.Hardswish),
            InvertedResidual(16, 16, 16, 3, 1, True, False),
            InvertedResidual(16, 48, 24, 3, 2, False, True),
            InvertedResidual(24, 72, 24, 5, 1, True, True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(24, 32), nn.Hardswish(inplace=True), nn.Dropout(p=dropout, inplace=True), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
