"""Inference: rebuild the model, load a checkpoint written by the training script, predict."""
import torch
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self, n_classes=4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def predict(path, images):
    model = SmallCNN()
    checkpoint = torch.load(path, map_location="cpu")
    model.load_state_dict(checkpoint["model"])
    model.eval()
    with torch.no_grad():
        return model(images), checkpoint["epoch"]


def resave(path, out):
    """Load, then save the model state again (the converted script must read its own files too)."""
    model = SmallCNN()
    model.load_state_dict(torch.load(path)["model"])
    torch.save({"model": model.state_dict(), "epoch": 7}, out)
