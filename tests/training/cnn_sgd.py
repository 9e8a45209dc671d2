"""Small CNN with BatchNorm: SGD with momentum and weight decay, StepLR stepped per epoch,
drop_last batches, accuracy under torch.no_grad() in eval mode."""
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


class SmallCNN(nn.Module):
    def __init__(self, n_classes=4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def evaluate(model, X, y):
    model.eval()
    with torch.no_grad():
        correct = (model(X).argmax(dim=1) == y).sum().item()
    return correct / len(y)


def train(model, X, y, epochs=3):
    loader = DataLoader(TensorDataset(X, y), batch_size=12, shuffle=False, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for epoch in range(epochs):
        model.train()
        running = 0.0
        for images, labels in loader:
            outputs = model(images)
            loss = criterion(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
        scheduler.step()
        losses.append(running / len(loader))
        losses.append(evaluate(model, X, y))
    return losses


def main():
    torch.manual_seed(0)
    X = torch.randn(40, 1, 8, 8)
    y = torch.randint(0, 4, (40,))
    print(train(SmallCNN(), X, y, epochs=2))


if __name__ == "__main__":
    main()
