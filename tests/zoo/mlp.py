"""A plain MLP classifier, the way tutorials write it."""
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features=20, hidden=(64, 32), num_classes=5, dropout=0.1):
        super(MLP, self).__init__()
        layers = []
        prev = in_features
        for width in hidden:
            layers.append(nn.Linear(prev, width))
            layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Dropout(dropout))
            prev = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.head(self.body(x))
