"""A ViT in the style of lucidrains' vit-pytorch: einops layers in nn.Sequential (patch embedding),
einops functions on activations and on parameters (class token, a projection matrix)."""
import einops
import torch
import torch.nn as nn
from einops import einsum, pack, rearrange, reduce, repeat, unpack
from einops.layers.torch import Rearrange, Reduce


class Attention(nn.Module):
    def __init__(self, dim, heads=2):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.out = nn.Sequential(Rearrange('b h n d -> b n (h d)'), nn.Linear(dim, dim))

    def forward(self, x):
        q, k, v = (rearrange(t, 'b n (h d) -> b h n d', h=self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        dots = einsum(q, k, 'b h i d, b h j d -> b h i j') * q.shape[-1] ** -0.5
        return self.out(einsum(dots.softmax(dim=-1), v, 'b h i j, b h j d -> b h i d'))


class ViT(nn.Module):
    def __init__(self, image_size=16, patch=4, channels=3, dim=32, classes=5):
        super().__init__()
        self.to_patch_embedding = nn.Sequential(
            Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)', p1=patch, p2=patch),
            nn.LayerNorm(patch * patch * channels),
            nn.Linear(patch * patch * channels, dim),
        )
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, (image_size // patch) ** 2 + 1, dim))
        self.mix = nn.Parameter(torch.randn(dim, dim) / dim ** 0.5)
        self.attn = Attention(dim)
        self.pool = Reduce('b n d -> b d', 'max')
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))

    def forward(self, img):
        x = self.to_patch_embedding(img)
        cls = repeat(self.cls_token, '1 1 d -> b 1 d', b=x.shape[0])
        x, shapes = pack([cls, x], 'b * d')
        x = x + self.pos_embedding
        x = x + self.attn(x)
        x = einsum(x, rearrange(self.mix, 'i o -> o i'), 'b n o, o i -> b n i')
        cls, patches = unpack(x, shapes, 'b * d')
        pooled = reduce(patches, 'b n d -> b d', 'mean') + self.pool(patches) + einops.reduce(cls, 'b 1 d -> b d', 'sum')
        return self.head(pooled)
