"""einops code converts and runs: einops' functions stay as written (on JAX arrays, parameters passed
by value), its torch layers (`Rearrange`, `Reduce`) become NNX layers; numerically against torch."""
from pathlib import Path

import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import Pair, flatten_outputs, gradients, import_source, run_flax, run_torch

pytest.importorskip("einops")
SOURCE = (Path(__file__).parent / "einops" / "vit_einops.py").read_text()


@pytest.fixture(scope="module")
def pair():
    conversion = retarget.convert(SOURCE, path="vit_einops.py")
    torch_mod, flax_mod = import_source(SOURCE, "einops_torch"), import_source(conversion.code, "einops_flax")
    torch.manual_seed(0)
    torch_model = torch_mod.ViT().eval()
    flax_model = flax_mod.ViT(rngs=nnx.Rngs(0))
    retarget.port_weights(torch_model.state_dict(), flax_model)
    flax_model.eval()
    return Pair(torch_model, flax_model, conversion)


def test_conversion_keeps_einops_calls_and_imports(pair):
    code = pair.conversion.code
    assert pair.conversion.clean, [str(d) for d in pair.conversion.diagnostics]
    assert "einops.layers.torch" not in code and "from einops import einsum, pack, rearrange, reduce" in code
    assert "repeat(self.cls_token[...], '1 1 d -> b 1 d'" in code and "rearrange(self.mix[...], 'i o -> o i')" in code
    assert "class Rearrange(nnx.Module)" in code and "class Reduce(nnx.Module)" in code
    assert retarget.convert(code).code == code


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_outputs_match_torch(pair, jit):
    image = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = flatten_outputs(run_torch(pair.torch_model, [image]))
    actual = flatten_outputs(run_flax(pair.flax_model, [image], jit=jit))
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


def test_gradients_match_torch(pair):
    image = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    torch_grads, flax_grads = gradients(pair, [image])
    assert set(flax_grads) == set(torch_grads) and "cls_token" in torch_grads and "mix" in torch_grads
    for name, grad in torch_grads.items():
        np.testing.assert_allclose(flax_grads[name], grad, rtol=1e-3, atol=1e-4, err_msg=name)


def test_layer_classes_as_values_and_a_file_without_einops_layers():
    source = ("import torch.nn as nn\nfrom einops.layers.torch import Rearrange\n\n\n"
              "def block(dim, layer=Rearrange):\n"
              "    return nn.Sequential(layer('b c h w -> b (c h w)'), nn.Linear(dim, 2))\n")
    code = retarget.convert(source).code
    assert "layer=Rearrange" in code and "import einops\n" in code and "einops.layers" not in code
    plain = retarget.convert("import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
                             "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n").code
    assert "einops" not in plain


def test_einops_repeat_and_tensor_repeat_in_one_file():
    source = ("import torch\nimport torch.nn as nn\nfrom einops import repeat\n\n\nclass M(nn.Module):\n"
              "    def forward(self, x):\n"
              "        return repeat(x, 'a b -> a b c', c=2) + x.repeat(1, 2)[:, 1:4, None]\n")
    conversion = retarget.convert(source)
    assert conversion.clean and "torch_repeat(x, 1, 2)" in conversion.code
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    want = import_source(source, "einops_rep_torch").M()(torch.tensor(x))
    got = import_source(conversion.code, "einops_rep_flax").M()(x)
    np.testing.assert_array_equal(np.asarray(got), want.numpy())


def test_parameters_go_by_value_to_third_party_functions_only():
    source = ("import copy\nimport numpy as np\nimport torch\nimport torch.nn as nn\nfrom einops import rearrange\n\n\n"
              "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.w = nn.Parameter(torch.ones(2, 3))\n        self.v = copy.deepcopy(self.w)\n\n"
              "    def forward(self, x):\n        rearrange(self.w, 'a b -> b a')\n"
              "        return rearrange(self.w, 'a b -> b a') @ x, np.shape(self.w), torch.sum(self.w)\n")
    code = retarget.convert(source).code
    assert "self.v = copy.deepcopy(self.w)\n" in code and "np.shape(self.w[...])" in code
    assert "        rearrange(self.w, 'a b -> b a')\n" in code  # a statement: the call may update it in place
    assert "return rearrange(self.w[...], 'a b -> b a') @ x" in code and "jnp.sum(self.w)" in code
