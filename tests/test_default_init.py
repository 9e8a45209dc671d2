"""Converted layers start from torch's default initialisation (issue 12, item 3): a model converted and
built from scratch draws each parameter from the distribution torch's constructor draws it from, checked
on large layers by bounds and moments against a torch layer of the same shape."""
import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import import_source

SOURCE = '''import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(400, 300)
        self.emb = nn.Embedding(500, 64)
        self.pad = nn.Embedding(500, 64, padding_idx=0)
        self.conv = nn.Conv2d(16, 32, 5)
        self.norm = nn.LayerNorm(300)
        self.make = nn.Linear  # a layer class passed as a value (TorchLinear)

    def forward(self, x):
        return self.norm(self.fc(x))
'''


@pytest.fixture(scope="module")
def layers():
    torch.manual_seed(0)
    flax_mod = import_source(retarget.convert(SOURCE, path="init.py").code, "default_init_flax")
    torch_mod = import_source(SOURCE, "default_init_torch")
    return torch_mod.Net(), flax_mod.Net(rngs=nnx.Rngs(0))


def assert_same_distribution(ours: np.ndarray, theirs: np.ndarray, bound: float | None = None):
    """Same shape, moments within sampling error; for a uniform draw, torch's bound, nearly reached."""
    assert ours.shape == theirs.shape
    if bound is not None:
        assert np.abs(theirs).max() <= bound and np.abs(ours).max() <= bound
        assert np.abs(ours).max() > bound * (1 - 10 / ours.size)
    np.testing.assert_allclose(ours.mean(), theirs.mean(), atol=5 * theirs.std() / np.sqrt(ours.size))
    np.testing.assert_allclose(ours.std(), theirs.std(), rtol=5 / np.sqrt(2 * ours.size))


def test_linear_weight_and_bias_are_torchs(layers):
    original, model = layers
    assert isinstance(model.fc, nnx.Linear)
    assert_same_distribution(np.asarray(model.fc.kernel[...]).T, original.fc.weight.detach().numpy(), 400 ** -.5)
    assert_same_distribution(np.asarray(model.fc.bias[...]), original.fc.bias.detach().numpy(), 400 ** -.5)


def test_linear_class_passed_as_a_value_is_initialised_like_torch(layers):
    original, model = layers
    ours, theirs = model.make(400, 300, rngs=nnx.Rngs(1)), original.make(400, 300)
    assert_same_distribution(np.asarray(ours.kernel[...]).T, theirs.weight.detach().numpy(), 400 ** -.5)
    assert_same_distribution(np.asarray(ours.bias[...]), theirs.bias.detach().numpy(), 400 ** -.5)


def test_embeddings_are_standard_normal(layers):
    original, model = layers
    assert isinstance(model.emb, nnx.Embed)
    assert_same_distribution(np.asarray(model.emb.embedding[...]), original.emb.weight.detach().numpy())
    table = np.asarray(model.pad.embedding[...])
    assert not table[0].any()
    assert_same_distribution(table[1:], original.pad.weight.detach().numpy()[1:])


def test_conv_and_layer_norm_are_torchs(layers):
    original, model = layers
    bound = (16 * 25) ** -.5
    assert_same_distribution(np.asarray(model.conv.kernel[...]), original.conv.weight.detach().numpy(), bound)
    assert_same_distribution(np.asarray(model.conv.bias[...]), original.conv.bias.detach().numpy(), bound)
    np.testing.assert_array_equal(np.asarray(model.norm.scale[...]), 1.0)
    np.testing.assert_array_equal(np.asarray(model.norm.bias[...]), 0.0)
