import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from .variants import build


def train(model, images, labels, epochs=3, lr=0.05):
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        history.append(total / len(loader))
    return history


def main():
    torch.manual_seed(0)
    model = build("wide")
    images, labels = torch.randn(32, 3, 8, 8), torch.randint(0, 5, (32,))
    print(train(model, images, labels))


if __name__ == "__main__":
    main()
