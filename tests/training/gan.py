"""A tiny GAN: two models, two optimizers, two steps per batch (discriminator, then generator)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Generator(nn.Module):
    def __init__(self, z_dim=4, d=6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, 16), nn.ReLU(), nn.Linear(16, d))

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)


def train(gen, disc, real, noise, epochs=3):
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.999))
    history = []
    for epoch in range(epochs):
        for i in range(real.shape[0] // 8):
            x, z = real[i * 8:(i + 1) * 8], noise[i * 8:(i + 1) * 8]
            opt_d.zero_grad()
            fake = gen(z).detach()
            d_loss = F.binary_cross_entropy_with_logits(disc(x), torch.ones(8, 1)) + \
                F.binary_cross_entropy_with_logits(disc(fake), torch.zeros(8, 1))
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad()
            g_loss = F.binary_cross_entropy_with_logits(disc(gen(z)), torch.ones(8, 1))
            g_loss.backward()
            opt_g.step()
        history.append((d_loss.item(), g_loss.item()))
    return history
