"""timm's EfficientFormer / LeViT attention biases: a parameter gathered by an index buffer, and in
eval mode memoised per device in a dict attribute (`self.attention_bias_cache`)."""
import torch
import torch.nn as nn


class Attention(nn.Module):
    def __init__(self, heads=2, resolution=3):
        super().__init__()
        pos = torch.stack(torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")).flatten(1)
        rel_pos = (pos[..., :, None] - pos[..., None, :]).abs()
        self.attention_biases = nn.Parameter(torch.randn(heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", rel_pos[0] * resolution + rel_pos[1])
        self.attention_bias_cache = {}

    def get_attention_biases(self, device: torch.device) -> torch.Tensor:
        if torch.jit.is_tracing() or self.training:
            return self.attention_biases[:, self.attention_bias_idxs]
        else:
            device_key = str(device)
            if device_key not in self.attention_bias_cache:
                self.attention_bias_cache[device_key] = self.attention_biases[:, self.attention_bias_idxs]
            return self.attention_bias_cache[device_key]

    def forward(self, x):  # x: (B, heads, N, N) scores
        return (x + self.get_attention_biases(x.device)).softmax(-1)


def net():
    return Attention()
