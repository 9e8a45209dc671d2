"""Constructs found in real code (issue 11, section 2): each small torch program in
tests/constructs/ is converted, built through its own factory (with `rngs`), its torch weights
ported, and run against torch eagerly and under jit."""
from pathlib import Path

import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import imports_torch, import_source, run_flax

CONSTRUCTS = Path(__file__).parent / "constructs"


def convert_pair(file: str):
    source = (CONSTRUCTS / file).read_text()
    conversion = retarget.convert(source, path=file)
    stem = file[:-3]
    return import_source(source, f"construct_torch_{stem}"), import_source(conversion.code, f"construct_flax_{stem}"), \
        conversion


def assert_same(torch_model, flax_model, *inputs, atol=1e-5):
    torch_model.eval()
    flax_model.eval()
    expected = torch_model(*[torch.from_numpy(a) for a in inputs]).detach().numpy()
    np.testing.assert_allclose(np.asarray(run_flax(flax_model, inputs)), expected, atol=atol, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(run_flax(flax_model, inputs, jit=True)), expected, atol=atol, rtol=1e-5)


def matches_torch(file: str, factory: str, shape: tuple):
    """Convert `file` with no escape hatch, build both models through `factory`, port the torch weights,
    compare eagerly and under jit; the torch model."""
    torch_mod, flax_mod, conversion = convert_pair(file)
    assert not conversion.diagnostics, conversion.diagnostics
    torch.manual_seed(0)
    original, model = getattr(torch_mod, factory)(), getattr(flax_mod, factory)(rngs=nnx.Rngs(0))
    retarget.port_weights(original.state_dict(), model)
    assert_same(original, model, np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    return original


def test_factories_classmethods_init_functions_and_late_layers():
    """A classmethod factory and a function returning it take `rngs`; `layer_init(layer, std)` and
    `self.apply(weights_init)` with `m.weight.data.normal_` initialise converted layers; a layer
    class without __init__; `self.downsample = None` then a layer; a Sequential built into a local;
    `self.body.forward(x)`; a shape from a module attribute inside jit; an abstract base forward."""
    torch_mod, flax_mod, conversion = convert_pair("init_and_factories.py")
    assert not conversion.diagnostics, conversion.diagnostics
    torch.manual_seed(0)
    net = torch_mod.make_net(8)
    flax_net = flax_mod.make_net(8, rngs=nnx.Rngs(0))
    retarget.port_weights(net.state_dict(), flax_net)
    assert_same(net, flax_net, np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32))


def test_layer_init_draws_torch_distributions():
    """`layer_init` on a layer known only at run time: orthogonal weights scaled by std (in torch's
    (out, in) layout) and a constant bias; `weights_init` draws N(0, 0.02)."""
    _, flax_mod, _ = convert_pair("init_and_factories.py")
    layer = flax_mod.layer_init(nnx.Linear(64, 32, rngs=nnx.Rngs(0)), std=0.5, bias_const=0.25, rngs=nnx.Rngs(2))
    weight = np.asarray(layer.kernel[...]).T  # torch layout (out, in): orthogonal rows
    np.testing.assert_allclose(weight @ weight.T, 0.25 * np.eye(32), atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.bias[...]), 0.25)
    big = nnx.Linear(256, 256, rngs=nnx.Rngs(0))
    flax_mod.weights_init(big, rngs=nnx.Rngs(1))
    assert abs(float(np.std(np.asarray(big.kernel[...]))) - 0.02) < 1e-3
    assert not np.asarray(big.bias[...]).any()


def test_module_without_init_builds_with_and_without_rngs():
    _, flax_mod, _ = convert_pair("init_and_factories.py")
    x = np.linspace(-2, 2, 5, dtype=np.float32)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    for gelu in (flax_mod.NewGELU(), flax_mod.NewGELU(rngs=nnx.Rngs(0))):
        np.testing.assert_allclose(np.asarray(gelu(x)), expected, rtol=1e-5)


REEXPORT = {
    "__init__.py": "",
    "common.py": (
        "try:\n    from torch.hub import load_state_dict_from_url\n"
        "except ImportError:\n    from torch.utils.model_zoo import load_url as load_state_dict_from_url\n"
        "from torch.nn import LayerNorm\n"
    ),
    "model.py": (
        "import torch.nn as nn\n"
        "from .common import LayerNorm, load_state_dict_from_url\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, c):\n        super().__init__()\n"
        "        self.norm = LayerNorm(c)\n        self.fc = nn.Linear(c, 2)\n\n"
        "    def forward(self, x):\n        return self.fc(self.norm(x))\n\n\n"
        "def net(c=4, url=None):\n    model = Net(c)\n"
        "    if url:\n        model.load_state_dict(load_state_dict_from_url(url))\n    return model\n"
    ),
}


def test_torch_names_re_exported_by_a_package_file(tmp_path, monkeypatch):
    """`from torch.hub import load_state_dict_from_url` (in try/except) and `from torch.nn import
    LayerNorm` in one file, imported from it by another: the importer converts them as torch's and
    the converted package imports, runs like torch, and loads a torch checkpoint from a URL."""
    from retarget.cli import main
    source = tmp_path / "src" / "reexp"
    source.mkdir(parents=True)
    for name, text in REEXPORT.items():
        (source / name).write_text(text)
    assert main(["convert", str(source), "-o", str(tmp_path / "out" / "reexp"), "-q"]) == 0
    assert not imports_torch((tmp_path / "out" / "reexp" / "model.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path / "out"))
    import importlib
    converted = importlib.import_module("reexp.model")
    torch.manual_seed(0)
    torch_mod = import_source("import torch.nn as nn\nfrom torch.nn import LayerNorm\n" +
                              REEXPORT["model.py"].split("\n", 2)[2].replace(
                                  "load_state_dict_from_url(url)", "None"), "reexp_torch_model")
    original = torch_mod.net(4)
    checkpoint = tmp_path / "net.pth"
    torch.save(original.state_dict(), checkpoint)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    model = converted.net(4, url=checkpoint.as_uri(), rngs=nnx.Rngs(0))
    assert_same(original, model, np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))


def test_inplace_on_slices_asserts_checkpoints_and_python_containers():
    """`b[i:j].zero_()` on a slice, `torch._assert` as `assert`, `torch.utils.checkpoint`, module-level
    `torch.fx.wrap`, `@torch.jit._overload_method`, `nn.parameter.Parameter`, and methods of sets and
    dicts (`seen.add`, `self.cache.update`) that stay Python's."""
    torch_mod, flax_mod, conversion = convert_pair("inplace_and_asserts.py")
    assert not conversion.diagnostics, conversion.diagnostics
    assert "seen.add(1)" in conversion.code and "self.cache.update" in conversion.code
    torch.manual_seed(0)
    original, model = torch_mod.net(), flax_mod.net(rngs=nnx.Rngs(0))
    retarget.port_weights(original.state_dict(), model)
    assert_same(original, model, np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32))


def test_layer_factories_in_config_fields_and_module_dict_order():
    """`cfg.block(...)` where a dataclass declares `block: Callable[..., nn.Module]` receives `rngs`
    (torchvision's EfficientNet); an `nn.ModuleDict` of 11 blocks runs in insertion order under jit
    too (NNX sorts merged attributes: "b10" < "b2"; torchvision's DenseNet)."""
    matches_torch("config_factories.py", "net", (3, 4))


def test_layer_arguments_forwarded_with_kwargs():
    """`nn.Conv2d(a, b, bias=False, **kwargs)`: the torch-signature helper class takes the call as written."""
    matches_torch("kwargs_passthrough.py", "net", (2, 3, 8, 8))


def test_random_function_called_from_forward_draws_from_the_module():
    """torchvision's stochastic depth: `noise = noise.bernoulli_(rate)` re-bound to its name, a
    module-level function drawing random numbers (it receives `rngs`), called from `forward` with the
    module's own `self.rngs`: identity in eval mode, torch's distribution in train mode, new draws
    on every call, under jit too."""
    _, flax_mod, conversion = convert_pair("stochastic_depth.py")
    assert not conversion.diagnostics, conversion.diagnostics
    layer = flax_mod.block(rngs=nnx.Rngs(0))
    x = np.ones((4000, 3), np.float32)
    layer.eval()
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    layer.train()
    step = nnx.jit(lambda m, a: m(a))
    first, second = np.asarray(step(layer, x)), np.asarray(step(layer, x))
    assert set(np.unique(first)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(float((first[:, 0] == 0).mean()) - 0.25) < 0.03
    assert (first[:, 0] == first[:, 1]).all() and not (first == second).all()


def test_sequential_of_an_annotated_ordered_dict_and_meshgrid_of_a_list():
    matches_torch("ordered_layers.py", "encoder", (3, 4))


def test_parameters_and_buffers_handed_to_the_files_own_function():
    """Swin's `_get_relative_position_bias(self.table, self.index, ...)` indexes a parameter with a buffer
    registered in a helper method: both reach the function as values."""
    matches_torch("position_bias.py", "attn", (3, 3))


def test_children_in_order_and_sequential_iteration():
    """`named_children()` in assignment order (an IntermediateLayerGetter stops before `fc`, whose
    weights the checkpoint then lacks), `enumerate`/`len`/slices of an `nn.Sequential` (DeepLabV3), a Sequential subclass iterating over itself
    (ASPPPooling)."""
    torch_model = matches_torch("layer_getter.py", "net", (3, 4))
    assert "body.fc.weight" not in torch_model.state_dict()


def test_user_class_named_like_a_torch_layer_keeps_its_own_layout():
    matches_torch("own_rnn.py", "rnn", (2, 5, 4))


def test_dataset_generic_in_annotations():
    """torchvision's datasets subclass and annotate `Dataset[...]`: the converted module imports and indexes."""
    source = ("import torch\nfrom torch.utils import data\n\n\nclass Squares(data.Dataset[tuple]):\n"
              "    def __len__(self):\n        return 3\n\n    def __getitem__(self, i) -> tuple:\n"
              "        return torch.tensor(float(i)) ** 2, i\n\n\ndef first(ds: data.Dataset[tuple]):\n"
              "    return ds[2]\n")
    module = import_source(retarget.convert(source).code, "construct_flax_dataset_generic")
    value, index = module.first(module.Squares())
    assert float(value) == 4.0 and index == 2 and len(module.Squares()) == 3


TRAINING_FLAG = '''import torch.nn as nn


class Policy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)

    def set_training_mode(self, mode):
        self.training = mode

    def forward(self, x):
        return self.net(x) * 2 if self.training else self.net(x)
'''


def test_writing_self_training_sets_this_modules_flag():
    """stable-baselines3's `set_training_mode`: `self.training = mode` became an assignment to the
    read form `(not self.deterministic)`, which does not parse (an internal error)."""
    conversion = retarget.convert(TRAINING_FLAG, path="flag.py")
    assert not conversion.diagnostics and "self.deterministic = not mode" in conversion.code
    torch_mod, flax_mod = import_source(TRAINING_FLAG, "flag_torch"), import_source(conversion.code, "flag_flax")
    torch.manual_seed(0)
    policy, flax_policy = torch_mod.Policy(), flax_mod.Policy(rngs=nnx.Rngs(0))
    retarget.port_weights(policy.state_dict(), flax_policy)
    x = np.ones((3, 4), np.float32)
    for mode in (False, True, False):
        policy.set_training_mode(mode)
        flax_policy.set_training_mode(mode)
        np.testing.assert_allclose(np.asarray(flax_policy(x)), policy(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)


def test_local_names_shadowing_helpers_and_unpacked_tensors():
    """Swin's `shifted_window_attention(..., dropout: float, ...)` calls `F.dropout`: the helper is reached
    by an alias there, not the float; `q, k, v = qkv[0], qkv[1], qkv[2]` are tensors (`k.transpose(-2, -1)`
    swaps two axes); in a subclass, `self.proj.bias[i:].data.zero_()` on a layer its base built writes
    the layer's parameter, which stays one."""
    matches_torch("window_attention.py", "block", (2, 4, 8))
    torch_model = matches_torch("window_attention.py", "block_v2", (2, 4, 8))
    assert not torch_model.proj.bias[4:].any()


def test_layer_classes_chosen_at_run_time():
    """A registry, kwargs dicts of classes, `se_layer=None` given a class, tables of torch layers: those
    layers get their builder's `rngs` (`@default_rngs`); built alone they ask for one clearly."""
    matches_torch("run_time_layers.py", "net", (2, 8))
    _, flax_mod, _ = convert_pair("run_time_layers.py")
    model = flax_mod.Net(rngs=nnx.Rngs(0))
    assert type(model.blocks[0].se).__name__ == "SE" and type(model.blocks[1]).__name__ == "Mixer"
    np.testing.assert_array_equal(model.blocks[1].norm.scale[...], np.full(8, 1.5, np.float32))  # fill_ on `weight`
    model.blocks[1].set_norm_weight(np.arange(8.0))  # `norm.weight.data = w`
    np.testing.assert_array_equal(model.blocks[1].norm.scale[...], np.arange(8.0))
    with pytest.raises(TypeError, match=r"Block\(\.\.\.\) needs rngs=nnx.Rngs"):
        flax_mod.Block(8)
    assert flax_mod.Block(8, rngs=nnx.Rngs(1)).fc.kernel.shape == (8, 8)


def test_functions_filling_a_parameter_in_place():
    """timm's `trunc_normal_` on `self.pos_embed` and, through `named_apply(init_weights, self)`, on each
    Linear's `weight`: the converted model starts from the same distribution (moments over large
    layers), biases zeroed, and with torch's weights ported it computes the same."""
    matches_torch("init_in_place.py", "net", (2, 4, 8))
    _, flax_mod, _ = convert_pair("init_in_place.py")
    model = flax_mod.Net(dim=256, hidden=384, rngs=nnx.Rngs(0))
    for values, mean in ((model.pos_embed[...], 0.1), (model.fc.kernel[...], 0.0)):
        values = np.asarray(values)
        assert abs(values.std() - 0.02) < 0.002 and abs(values.mean() - mean) < 0.002, (values.std(), values.mean())
    assert not np.asarray(model.fc.bias[...]).any()
    head = np.asarray(model.head.kernel[...])  # fan-in from torch's shape (2, 384): std 1/sqrt(384)
    assert abs(head.std() - 384 ** -0.5) < 0.005, head.std()
    proj = np.asarray(model.proj.kernel[...])  # nn.init.kaiming_normal_ on an argument: fan-in 256 (torch's dim 1)
    assert abs(proj.std() - 256 ** -0.5) < 0.005, proj.std()


def test_parameters_that_do_not_require_grad():
    """Frozen parameters port and compute as torch's; gradients flow to exactly the parameters torch
    differentiates (`nnx.grad` over `nnx.Param`), the frozen ones get none."""
    original = matches_torch("frozen_parameters.py", "net", (3, 6))
    _, flax_mod, _ = convert_pair("frozen_parameters.py")
    model = flax_mod.Net(rngs=nnx.Rngs(0))
    retarget.port_weights(original.state_dict(), model)
    grads = nnx.grad(lambda m: m(np.ones((3, 6), np.float32)).sum())(model)
    flat = {".".join(map(str, path)) for path, _ in nnx.to_flat_state(grads)}
    trained = {n.replace("weight", "kernel") for n, p in original.named_parameters() if p.requires_grad}
    assert flat == trained == {"fc.kernel", "fc.bias", "learned.scale"}, flat


def test_a_layer_subclass_with_its_own_parameter_and_reset_parameters():
    """`self.gain` of a Conv2d subclass ports under its own name; `reset_parameters` (its override and
    the base's, called from `super()`) initialises as torch does."""
    matches_torch("layer_subclass_reset.py", "net", (2, 3, 8, 8))
    _, flax_mod, _ = convert_pair("layer_subclass_reset.py")
    conv = flax_mod.Net(rngs=nnx.Rngs(0)).conv
    assert (np.asarray(conv.gain[...]) == 0.5).all()
    assert np.abs(np.asarray(conv.kernel[...])).max() <= 27 ** -0.5  # kaiming-uniform bound 1/sqrt(fan_in)


def test_batchnorm_subclass_with_torchs_forward_trains_like_torch():
    """timm's BatchNormAct2d (a BatchNorm2d subclass calling `F.batch_norm(..., training, momentum)` and
    counting `num_batches_tracked`): eval outputs, and after two train-mode forwards the same outputs and
    running statistics as torch (one without running statistics normalises with the batch's)."""
    original = matches_torch("batchnorm_subclass_forward.py", "net", (2, 3, 6, 6))
    _, flax_mod, _ = convert_pair("batchnorm_subclass_forward.py")
    model = flax_mod.net(rngs=nnx.Rngs(0))
    retarget.port_weights(original.state_dict(), model)
    original.train()
    model.train()
    for seed in (1, 2):
        x = np.random.default_rng(seed).standard_normal((2, 3, 6, 6)).astype(np.float32)
        expected = original(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model.bn.mean[...]), original.bn.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.bn.var[...]), original.bn.running_var.numpy(), atol=1e-6)
    assert int(model.bn.num_batches_tracked[...]) == int(original.bn.num_batches_tracked) == 2


def test_private_fan_helper_on_weights_in_torch_layout():
    """`torch.nn.init._calculate_fan_in_and_fan_out` on a Linear's and a Conv2d's weight (and inside an
    initialiser on a layer of unknown type): torch's fans, and the converted model computes as torch's."""
    matches_torch("fan_in_and_fan_out.py", "net", (2, 6))
    torch_mod, flax_mod, _ = convert_pair("fan_in_and_fan_out.py")
    assert flax_mod.net(rngs=nnx.Rngs(0)).fans() == torch_mod.net().fans() == [(6, 3), (18, 45)]


def test_list_annotated_inputs_stay_lists():
    """`forward(self, x: List[torch.Tensor])` with `x[i] = branch(x[i])` (timm's HRNet) stores into the list."""
    matches_torch("list_inputs.py", "net", (2, 4))


def test_attention_biases_gathered_by_a_buffer_and_cached_per_device():
    """`self.attention_biases[:, self.attention_bias_idxs]` indexes with the buffer's value, and the eval-mode
    per-device cache is computed each call (an array stored on the module would leak out of jit)."""
    matches_torch("cached_biases.py", "net", (2, 2, 9, 9))


def test_copy_into_a_transposed_layer_weight():
    """`linear.weight.data.copy_(w)` and `linear.weight.data[i, j] = v`: the converted kernel holds the
    transpose of torch's weight; a convolution's item writes land in place."""
    torch_mod, flax_mod, conversion = convert_pair("copy_into_linear.py")
    assert not conversion.diagnostics, conversion.diagnostics
    original, model = torch_mod.net(), flax_mod.net(rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(model.v.kernel[...]), original.v.weight.detach().numpy().T)
    np.testing.assert_array_equal(np.asarray(model.conv.kernel[...][0]), original.conv.weight.detach().numpy()[0])
    assert (np.asarray(model.conv.kernel[...][0]) == 2.0).all()


def test_a_hook_only_subclasses_define_gets_rngs_from_the_base():
    """The base's `_init_buffers` calls `self._init_cached(...)`, defined by subclasses only, whose body
    reaches a random function: the chain takes `rngs`, the subclass builds and computes torch's numbers."""
    matches_torch("subclass_hooks.py", "net", (2, 4))


def test_a_method_drawing_random_numbers_called_from_another_module_draws_from_its_own_rngs():
    """EVA-02: `self.rope.get_embed()` in the model's forward, where `get_embed` may jitter coordinates
    in training: called as torch calls it, computing torch's numbers in eval; in training it draws."""
    matches_torch("subclass_hooks.py", "outer", (2, 4))
    _, flax_mod, _ = convert_pair("subclass_hooks.py")
    model = flax_mod.outer(rngs=nnx.Rngs(0))
    model.train()
    first, second = (np.asarray(model.rope.get_embed()) for _ in range(2))
    assert not np.allclose(first, second) and np.abs(first - np.linspace(0, 1, 4)).max() <= 0.1


def test_in_place_rescale_of_sublayers_reached_from_a_loop_variable():
    """BEiT's `layer.attn.proj.weight.data.div_(s)` per block writes the converted kernel (in its layout)."""
    torch_mod, flax_mod, conversion = convert_pair("rescale_blocks.py")
    assert not conversion.diagnostics, conversion.diagnostics
    original, model = torch_mod.net(), flax_mod.net(rngs=nnx.Rngs(0))
    for theirs, ours in zip(original.blocks, model.blocks):
        np.testing.assert_allclose(np.asarray(ours.proj.kernel[...]), theirs.proj.weight.detach().numpy().T, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(ours.proj.bias[...]), theirs.proj.bias.detach().numpy(), rtol=1e-6)
    matches_torch("rescale_blocks.py", "net", (2, 4))


def test_loops_filling_every_parameter_in_place_write_the_variables():
    """`for p in m.parameters(): nn.init.*_(p)` (and `named_parameters()` with `p.data.fill_`) walk
    torch-layout views of the variables: the converted model starts from torch's distributions, with
    torch's fan axes for xavier, and computes torch's numbers on ported weights."""
    matches_torch("parameter_loops.py", "net", (2, 5, 4))
    _, flax_mod, _ = convert_pair("parameter_loops.py")
    model = flax_mod.Net(hidden=64, rngs=nnx.Rngs(0))
    kernels = [np.asarray(v[...]) for v in (model.rnn.forward_cells[0].kernel_ih, model.rnn.forward_cells[0].kernel_hh)]
    assert all(np.abs(k).max() <= 1 / 8 and np.abs(k).max() > 0.12 for k in kernels)  # U(-1/sqrt(64), +)
    head = np.asarray(model.head.kernel[...])  # xavier over torch's (200, 3): bound sqrt(6 / 203)
    assert np.abs(head).max() <= np.sqrt(6 / 203) and np.abs(head).max() > 0.9 * np.sqrt(6 / 203)
    assert not np.asarray(model.head.bias[...]).any()
    np.testing.assert_allclose(np.asarray(model.fc.bias[...]), 0.5)
    assert abs(float(np.asarray(model.fc.kernel[...]).std()) - 0.1) < 0.03


def test_an_in_place_chain_across_lines_with_comments_computes_torchs_numbers():
    """torchvision's `_equalize`: `(t.add_(a)  # comment\n .div_(s, rounding_mode="floor").clamp_(0, 255))`
    inside parentheses, one statement per method (its output used not to parse); `div_` keeps the
    rounding mode."""
    source = (Path(__file__).parent / "cases" / "inplace_chain_in_parentheses.case").read_text()
    source = source.split("=== before ===\n")[1].split("=== after ===")[0]
    torch_mod, flax_mod = import_source(source, "chain_torch"), import_source(
        retarget.convert(source).code, "chain_flax")
    hist = np.random.default_rng(0).integers(0, 40, (3, 16)).astype(np.int64)
    step = np.array([[0], [5], [7]], np.int64) + 1
    expected = torch_mod.equalize(torch.from_numpy(hist), torch.from_numpy(step)).numpy()
    np.testing.assert_array_equal(np.asarray(flax_mod.equalize(hist, step)), expected)


def test_module_list_stages_frozen_layers_and_parameter_iterator():
    """`add_module(str(i), ...)` on a ModuleList appends (BiT's encoder); `layer.requires_grad_(False)` and
    `nn.Embedding(_weight=..., _freeze=True)` keep their tables out of the `nnx.Param`s (still ported);
    `next(self.parameters())`; `list(x.shape)` written as a list; `torch.einsum(eq, [a, b])`; `x.device.type`."""
    import jax
    matches_torch("stages_and_frozen.py", "build", (4, 8))
    _, flax_mod, _ = convert_pair("stages_and_frozen.py")
    model = flax_mod.build(rngs=nnx.Rngs(0))
    assert len(model.stages) == 3
    trained = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))}
    assert not any("gate" in p or "positions" in p for p in trained) and any("stages" in p for p in trained)
