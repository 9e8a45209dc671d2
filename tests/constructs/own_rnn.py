import torch
import torch.nn as nn


class RNN(nn.Module):
    """A user's class named like torch's: its checkpoint keys are its own attributes."""

    def __init__(self, c=4):
        super().__init__()
        self.cell = nn.GRU(c, c, batch_first=True)
        self.fc = nn.Linear(c, 2)

    def forward(self, x):
        out, _ = self.cell(x)
        return self.fc(out[:, -1])


def rnn():
    return RNN()
