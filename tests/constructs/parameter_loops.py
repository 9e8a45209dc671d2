"""Loops filling every parameter in place (timm's Sequencer: `for weight in module.parameters():
nn.init.uniform_(weight, -stdv, stdv)`; the common `if p.dim() > 1: nn.init.xavier_uniform_(p)`)."""
import math

import torch.nn as nn


def init_rnn(module):
    stdv = 1.0 / math.sqrt(module.hidden_size)
    for weight in module.parameters():
        nn.init.uniform_(weight, -stdv, stdv)


def init_any(module):
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
        else:
            nn.init.zeros_(p)


class Net(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.rnn = nn.LSTM(4, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 3)
        self.head = nn.Linear(3, 200)
        init_rnn(self.rnn)
        init_any(self.head)
        for name, p in self.fc.named_parameters():
            if name.endswith("bias"):
                p.data.fill_(0.5)
            else:
                nn.init.normal_(p, std=0.1)

    def forward(self, x):
        return self.head(self.fc(self.rnn(x)[0]))


def net():
    return Net()
