from torch import nn

from . import blocks


class ClassifierHead(nn.Module):
    def __init__(self, features, classes, dropout=0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        return self.fc(self.drop(blocks.pool_flat(x)))
