"""Hugging Face transformers' runtime in converted modeling files (issue 13, first part): names a
modeling file imports from the library's runtime (`from ...modeling_utils import PreTrainedModel`)
resolve through the enclosing packages of the converted tree and map to the support module's
definitions; configuration files (no torch code) stay as written, with imports that left the tree
made absolute. transformers itself is not installed here: the tree imitates its layout."""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from retarget.cli import main

MODELING = '''\
import torch
from torch import nn

from ...activations import ACT2FN
from ...masking_utils import create_causal_mask
from ...modeling_layers import GradientCheckpointingLayer
from ...modeling_outputs import BaseModelOutputWithPast
from ...modeling_utils import PreTrainedModel
from ...utils import auto_docstring, can_return_tuple, logging
from ...utils.deprecation import deprecate_kwarg
from .configuration_tiny import TinyConfig

logger = logging.get_logger(__name__)


class TinyLayer(GradientCheckpointingLayer):
    def __init__(self, config):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.down = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x, attention_mask=None):
        scores = x @ x.transpose(-1, -2) + attention_mask[:, 0]
        x = x + torch.softmax(scores, dim=-1, dtype=torch.float32).to(x.dtype) @ x
        return x + self.down(self.act(self.up(x)))


@auto_docstring
class TinyPreTrainedModel(PreTrainedModel):
    config: TinyConfig
    base_model_prefix = "model"


@auto_docstring(custom_intro="A tiny model")
class TinyModel(TinyPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([TinyLayer(config) for _ in range(2)])
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(self, input_ids, attention_mask=None, cache=None):
        x = self.embed(input_ids)
        mask = create_causal_mask(config=self.config, inputs_embeds=x, attention_mask=attention_mask, cache=cache)
        for layer in self.layers:
            x = layer(x, attention_mask=mask)
        return BaseModelOutputWithPast(last_hidden_state=x)
'''

CONFIGURATION = '''\
from ...configuration_utils import PretrainedConfig
from ...utils import auto_docstring


@auto_docstring
class TinyConfig(PretrainedConfig):
    model_type = "tiny"

    def __init__(self, vocab_size=11, hidden_size=8, hidden_act="silu", **kwargs):
        self.vocab_size, self.hidden_size, self.hidden_act = vocab_size, hidden_size, hidden_act
        super().__init__(**kwargs)
'''


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    tree = root / "transformers" / "models" / "tiny"
    tree.mkdir(parents=True)
    for package in (root / "transformers", root / "transformers" / "models", tree):
        (package / "__init__.py").write_text("")
    (tree / "modeling_tiny.py").write_text(MODELING)
    (tree / "configuration_tiny.py").write_text(CONFIGURATION)
    out = root / "out" / "tiny"
    assert main(["convert", str(tree), "-o", str(out), "-q"]) == 0
    return out


def test_runtime_names_map_to_the_support_module_and_configs_stay(converted):
    code = (converted / "modeling_tiny.py").read_text()
    assert "...modeling_utils" not in code and "...utils" not in code and "import torch\n" not in code
    assert "from ._torch_compat import" in code and "PreTrainedModel" in code
    assert "def __call__(self, x, attention_mask=None)" in code  # a GradientCheckpointingLayer is a module
    assert "get_logger(__name__)" in code
    config = (converted / "configuration_tiny.py").read_text()
    assert config == CONFIGURATION.replace("from ...configuration_utils", "from transformers.configuration_utils") \
        .replace("from ...utils", "from transformers.utils")  # not torch code: as written, imports absolute


def test_converted_modeling_file_runs_eagerly_and_under_jit(converted, monkeypatch):
    """The converted tiny model against the same computation in numpy, padding mask included."""
    import importlib.util
    import types
    support = (converted / "_torch_compat.py").read_text()
    assert "def create_causal_mask" in support and "class PreTrainedModel" in support
    monkeypatch.syspath_prepend(str(converted.parent))
    config_module = types.ModuleType("tiny.configuration_tiny")  # transformers' config class, imitated
    config_module.TinyConfig = type("TinyConfig", (), {"__init__": lambda self, **kw: self.__dict__.update(
        dict(vocab_size=11, hidden_size=8, hidden_act="silu", use_cache=False, return_dict=True), **kw)})
    monkeypatch.setitem(sys.modules, "tiny.configuration_tiny", config_module)
    spec = importlib.util.spec_from_file_location("tiny.modeling_tiny", converted / "modeling_tiny.py",
                                                  submodule_search_locations=None)
    monkeypatch.setitem(sys.modules, "tiny", types.ModuleType("tiny"))
    sys.modules["tiny"].__path__ = [str(converted)]
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tiny.modeling_tiny", module)
    spec.loader.exec_module(module)
    model = module.TinyModel(config_module.TinyConfig(), rngs=nnx.Rngs(0))
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    mask = np.array([[1, 1, 1, 1], [0, 1, 1, 1]])
    out = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    jitted = nnx.jit(lambda m, i, a: m(i, attention_mask=a))(model, jnp.asarray(ids), jnp.asarray(mask))
    assert type(jitted).__name__ == "BaseModelOutputWithPast"
    tuple_out = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask), return_dict=False)
    np.testing.assert_allclose(np.asarray(tuple_out[0]), np.asarray(out.last_hidden_state))
    x = np.asarray(model.embed.embedding[...], np.float64)[ids]
    allowed = (np.arange(4)[None, :] <= np.arange(4)[:, None])[None] & mask[:, None, :].astype(bool)
    for layer in model.layers:
        scores = x @ x.transpose(0, 2, 1) + np.where(allowed, 0.0, np.finfo(np.float32).min)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        x = x + (weights / weights.sum(-1, keepdims=True)) @ x
        k1, b1 = (np.asarray(v[...], np.float64) for v in (layer.up.kernel, layer.up.bias))
        k2, b2 = (np.asarray(v[...], np.float64) for v in (layer.down.kernel, layer.down.bias))
        h = x @ k1 + b1
        x = x + (h / (1 + np.exp(-h))) @ k2 + b2
    for got in (out.last_hidden_state, jitted.last_hidden_state):
        np.testing.assert_allclose(np.asarray(got), x, rtol=1e-4, atol=1e-4)
    assert jax.tree.leaves(jitted) and out.keys() == ["last_hidden_state"]
