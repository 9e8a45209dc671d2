"""MLP classifier trained with Adam on mini-batches from a DataLoader."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class MLP(nn.Module):
    def __init__(self, d_in, d_hidden, n_classes):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, n_classes)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def train(model, X, y, epochs=3):
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    losses = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            logits = model(xb)
            loss = criterion(logits, yb)
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / len(loader))
    return losses


def main():
    torch.manual_seed(0)
    X = torch.randn(64, 10)
    y = torch.randint(0, 3, (64,))
    model = MLP(10, 32, 3)
    print(train(model, X, y, epochs=2))
    torch.save(model.state_dict(), "mlp.pt")


if __name__ == "__main__":
    main()
