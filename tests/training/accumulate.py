"""MLP trained with SGD (momentum) and gradient accumulation: one update every `accum_steps` batches."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class MLP(nn.Module):
    def __init__(self, d_in=8, d_hidden=24, n_classes=3):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, n_classes)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def train(model, X, y, epochs=3, accum_steps=3):
    loader = DataLoader(TensorDataset(X, y), batch_size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    optimizer.zero_grad()
    for epoch in range(epochs):
        total = 0.0
        for i, (xb, yb) in enumerate(loader):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb) / accum_steps
            loss.backward()
            total += loss.item()
            if (i + 1) % accum_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
        losses.append(total)
    return losses


def main():
    torch.manual_seed(0)
    X, y = torch.randn(48, 8), torch.randint(0, 3, (48,))
    print(train(MLP(), X, y, epochs=2))


if __name__ == "__main__":
    main()
