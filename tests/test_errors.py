"""Error paths: bad source, unknown APIs, weights that do not fit, malformed rules."""
import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import import_source
from retarget.diagnostics import MARKER
from retarget.rules import RuleError, load_rules

MODEL = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.fc(x))
"""


def test_syntax_error_names_file_line_and_problem():
    with pytest.raises(retarget.ConversionError) as info:
        retarget.convert("import torch\n\ndef f(:\n    pass\n", path="bad.py")
    assert info.value.path == "bad.py" and info.value.line == 3
    assert "syntax error" in str(info.value) and "bad.py:3" in str(info.value)


def test_unknown_api_is_kept_marked_and_reported():
    source = "import torch\n\n\ndef f(x):\n    return torch.special.i0e(x) + 1\n"
    result = retarget.convert(source)
    assert [(d.code, d.line, d.column) for d in result.diagnostics] == [("RT101", 5, 12)]
    assert f"# {MARKER}(RT101): `torch.special.i0e` has no rule\n    return torch.special.i0e(x) + 1" in result.code
    assert "import torch\n" in result.code  # still used, so still imported


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="unknown target"):
        retarget.convert("x = 1\n", target="mlx")


@pytest.fixture(scope="module")
def models():
    torch_ns = {}
    exec(compile(MODEL, "model.py", "exec"), torch_ns)
    flax_module = import_source(retarget.convert(MODEL).code, "errors_flax_model")
    return torch_ns["Net"](), flax_module.Net(rngs=nnx.Rngs(0))


def test_weights_error_lists_every_problem_at_once(models):
    torch_model, flax_model = models
    state = dict(torch_model.state_dict())
    del state["bn.running_var"]                       # missing
    state["fc.weight"] = torch.zeros(3, 5)            # shape mismatch
    state["head.weight"] = torch.zeros(2)             # unexpected
    with pytest.raises(retarget.WeightsError) as info:
        retarget.port_weights(state, flax_model)
    error = info.value
    assert error.missing == ["bn.running_var"]
    assert error.unexpected == ["head.weight"]
    assert error.mismatched == ["fc.weight (3, 5) -> fc.kernel (4, 3)"]
    assert "missing from the checkpoint (1): bn.running_var" in str(error)


def test_failed_port_leaves_the_model_untouched(models):
    torch_model, flax_model = models
    before = np.asarray(flax_model.fc.kernel[...]).copy()
    state = dict(torch_model.state_dict())
    state.pop("fc.bias")
    with pytest.raises(retarget.WeightsError):
        retarget.port_weights(state, flax_model)
    np.testing.assert_array_equal(np.asarray(flax_model.fc.kernel[...]), before)


def test_port_accepts_numpy_and_transposes_by_rule(models):
    torch_model, flax_model = models
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    retarget.port_weights(state, flax_model)
    np.testing.assert_array_equal(np.asarray(flax_model.fc.kernel[...]), state["fc.weight"].T)
    assert int(flax_model.bn.num_batches_tracked[...]) == int(state["bn.num_batches_tracked"])


def _rules_dir(tmp_path, text):
    (tmp_path / "family.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, message", [
    ('[function."torch.x"]\nsig = "a"\nto = "f({a}"\n', "does not parse"),
    ('[function."torch.x"]\nsig = "a"\nto = "f({a})"\ncolour = "red"\n', "unknown field"),
    ('[function."torch.x"]\nsig = "a"\nplugin = "no_such_plugin"\n', "not registered"),
    ('[function."torch.x"]\nsig = "a"\nto = "f({a})"\nsupport = "NoSuchHelper"\n', "does not define"),
    ('[module."torch.nn.X"]\nsig = "a"\nto = "X({a})"\nparams = { weight = { to = "k", transform = "flip" } }\n',
     "unknown transform"),
    ('[operator."torch.x"]\nto = "y"\n', "unknown section"),
    ('[function."torch.x"]\nsig = "a"\n', "needs `to` or `plugin`"),
    ('[function."torch.x"]\nsig = "a"\nto = [{ when = { a = "shape" }, to = "f({a})" }]\n', "unknown argument form"),
])
def test_malformed_rules_fail_at_load_time(tmp_path, text, message):
    with pytest.raises(RuleError, match=message):
        load_rules(_rules_dir(tmp_path, text))


def test_bundled_rules_load_and_every_plugin_and_helper_exists():
    rules = load_rules()
    assert len(rules.by_kind["function"]) > 100 and len(rules.by_kind["method"]) > 60


def test_an_imported_name_a_helper_would_shadow_is_reported():
    source = "import torch.nn.functional as F\nfrom numpy import pad\n\n\ndef f(x):\n    return F.pad(x, (1, 1))\n"
    result = retarget.convert(source)
    assert [(d.code, d.line) for d in result.diagnostics] == [("RT109", 2)]
    assert "import it under another name" in result.diagnostics[0].message


def test_definitions_named_like_helpers_keep_both_meanings():
    """`def pad(x)` and `def flatten(x)` of the file's own beside `F.pad`, `torch.flatten` and a reflect-padded
    Conv2d (whose helper calls `pad` itself): the copied helpers are defined and call one another as
    `torch_pad` / `torch_flatten`, the file's functions keep their names, and the numbers are torch's."""
    import numpy as np
    import torch
    from flax import nnx
    from harness import import_source
    source = '''import torch
import torch.nn as nn
import torch.nn.functional as F


def pad(x):
    return x + 1


def flatten(x):
    return x * 2


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        y = F.pad(self.conv(x), (1, 1)) + pad(x).mean()
        return torch.flatten(y, 1) + flatten(y).sum()
'''
    result = retarget.convert(source)
    assert not result.diagnostics, result.diagnostics
    assert "def pad(x):" in result.code and "def torch_pad(x, pad," in result.code
    torch.manual_seed(0)
    original, model = import_source(source, "clash_torch").Net(), import_source(result.code, "clash_flax").Net(
        rngs=nnx.Rngs(0))
    retarget.port_weights(original.state_dict(), model)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), original(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-5)
    assert retarget.convert(result.code).code == result.code  # converting again changes nothing
