import math
from abc import abstractmethod
import torch
import torch.nn as nn
import torch.nn.functional as F


class NewGELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Base(nn.Module):
    def __init__(self):
        super().__init__()

    @abstractmethod
    def forward(self, x):
        pass


class Block(Base):
    def __init__(self, c, use_down):
        super().__init__()
        self.fc = nn.Linear(c, c)
        self.downsample = None
        if use_down:
            self.downsample = nn.Sequential(nn.Linear(c, c), NewGELU())
        layers = nn.Sequential(nn.Linear(c, c), nn.ReLU())
        self.body = layers
        self.channels = c

    def forward(self, x):
        y = self.body.forward(self.fc(x))
        if self.downsample is not None:
            y = y + self.downsample(x)
        return y.view(-1, self.channels, 1).sum(-1)


def layer_init(layer, std=math.sqrt(2), bias_const=0.0):
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def weights_init(m):
    if isinstance(m, nn.Linear):
        m.weight.data.normal_(0.0, 0.02)
        m.bias.data.fill_(0)


class Net(nn.Module):
    ACTS = {"relu": nn.ReLU, "gelu": nn.GELU}

    def __init__(self, c=8, rnn_type="GRU", act="gelu"):
        super().__init__()
        self.a = Block(c, True)
        self.b = Block(c, False)
        self.head = layer_init(nn.Linear(c, 4), std=0.01)
        self.rnn = nn.GRU(c, c, batch_first=True)
        self.act = self.ACTS[act]()
        self.acts = nn.ModuleDict({"relu": nn.ReLU(), "tanh": nn.Tanh()})
        self.emb = nn.Embedding(10, c)
        self.apply(weights_init)

    @classmethod
    def from_args(cls, c):
        return cls(c=c)

    def forward(self, x):
        h = self.b(self.a(x))
        h, _ = self.rnn(h[:, None, :])
        h = self.acts["tanh"](self.act(h[:, 0]))
        return self.head(h)


def make_net(c=8):
    return Net.from_args(c)
