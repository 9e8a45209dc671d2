import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def window_attention(x: Tensor, qkv_weight: Tensor, heads: int, dropout: float = 0.0,
                     training: bool = True) -> Tensor:
    """torchvision's Swin: a parameter named like the dropout helper, q/k/v unpacked from one tensor."""
    B, N, C = x.shape
    qkv = F.linear(x, qkv_weight).reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = q.matmul(k.transpose(-2, -1)) * (C // heads) ** -0.5
    attn = F.dropout(F.softmax(attn, dim=-1), p=dropout, training=training)
    out = attn.matmul(v).transpose(1, 2).reshape(B, N, C)
    return F.dropout(out, p=dropout, training=training)


class Block(nn.Module):
    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Parameter(torch.randn(3 * dim, dim) * 0.2)
        self.dropout = 0.1
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.proj(window_attention(x, self.qkv, self.heads, dropout=self.dropout, training=self.training))


def block():
    return Block()


class BlockV2(Block):
    """Swin V2 zeroes the key bias of the qkv layer its base class built."""

    def __init__(self):
        super().__init__()
        length = self.proj.bias.numel() // 2
        self.proj.bias[length:].data.zero_()


def block_v2():
    return BlockV2()
