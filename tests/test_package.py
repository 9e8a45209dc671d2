"""A package whose files import each other converts as a whole and gives the same numbers.

tests/package/shop: a `layers/` subpackage (blocks re-exported by `layers/__init__.py`, a head that
calls a helper through `from . import blocks`), a model built from those, a subclass in a file
using absolute imports, and a training script. Classes and layer-building helpers defined in one
file get `rngs` where another file uses them; the converted package imports and trains.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import randomize_statistics
from retarget.cli import main
from retarget.project import ProjectFacts, import_bindings, source_files

PACKAGE = Path(__file__).parent / "package"


def _import_shop(root: Path):
    """Import `shop` from `root` (the original and the converted package share the name)."""
    for name in [m for m in sys.modules if m in ("shop", "_torch_compat") or m.startswith("shop.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return {name: importlib.import_module(f"shop.{name}") for name in ("model", "variants", "train")}
    finally:
        sys.path.remove(str(root))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    assert main(["convert", str(PACKAGE), "-o", str(out), "-q"]) == 0
    original = _import_shop(PACKAGE)
    flax_side = _import_shop(out)
    return out, original, flax_side


def _pair(original, flax_side, name: str):
    torch.manual_seed(0)
    tmodel = original["variants"].build(name)
    randomize_statistics(tmodel)
    fmodel = flax_side["variants"].build(name, rngs=nnx.Rngs(0))
    retarget.port_weights(tmodel.state_dict(), fmodel)
    return tmodel, fmodel


@pytest.mark.parametrize("name", ["wide", "plain"])
def test_models_across_files_match_in_eval_and_train_mode(converted, name):
    _, original, flax_side = converted
    tmodel, fmodel = _pair(original, flax_side, name)
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    for mode in ("eval", "train"):
        getattr(tmodel, mode)()
        getattr(fmodel, mode)()
        expected = tmodel(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(np.asarray(fmodel(x)), expected, rtol=1e-4, atol=1e-5)


def test_training_script_from_another_file_tracks_torch(converted):
    _, original, flax_side = converted
    tmodel, fmodel = _pair(original, flax_side, "wide")
    rng = np.random.default_rng(1)
    images, labels = rng.standard_normal((32, 3, 8, 8)).astype(np.float32), rng.integers(0, 5, 32)
    expected = original["train"].train(tmodel, torch.tensor(images), torch.tensor(labels))
    got = flax_side["train"].train(fmodel, images, labels)
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_cross_file_rngs_in_the_converted_source(converted):
    out, _, _ = converted
    model = (out / "shop" / "model.py").read_text()
    assert "self.stem = ConvBNAct(3, width, rngs=rngs)" in model
    assert "make_stage(cin, width * 2 ** (i + 1), depth, rngs=rngs)" in model
    variants = (out / "shop" / "variants.py").read_text()
    assert "super().__init__(width=12, depths=(2,), classes=classes, rngs=rngs)" in variants
    assert "blocks.ConvBNAct(3, 3, act_layer=GELU, rngs=rngs)" in variants
    assert "def build(name, classes=5, *, rngs: nnx.Rngs):" in variants


def test_converting_again_with_the_package_facts_changes_nothing():
    """Each converted file, converted again with what its package says about its imports: unchanged.
    `super().__init__(..., rngs=rngs)` in a subclass of another file's module class used to get a
    second `rngs=rngs` (labml-nn's attention variants, in the scripts corpus)."""
    from retarget.pipeline import convert_source
    from retarget.project import index_project
    files = source_files(PACKAGE, sorted(PACKAGE.rglob("*.py")))
    index = index_project(files, {f.path: f.path.read_text() for f in files})
    for file in files:
        first = convert_source(file.path.read_text(), str(file.path), external=index.external(file)).code
        assert convert_source(first, str(file.path), external=index.external(file)).code == first, file.path


def test_parallel_conversion_is_byte_identical(tmp_path):
    """Same input, same output: sequential and parallel (spawned workers) agree byte for byte."""
    outputs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        assert main(["convert", str(PACKAGE), "-o", str(out), "-q", "-j", jobs]) == 0
        outputs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.py"))})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 8  # 7 files and the helper module


def test_parallel_workers_are_used(tmp_path, monkeypatch):
    import retarget.project as project
    monkeypatch.setattr(project, "PARALLEL_MIN_FILES", 2)
    used = []
    real = project.ProcessPoolExecutor
    monkeypatch.setattr(project, "ProcessPoolExecutor", lambda *a, **k: used.append(a) or real(*a, **k))
    out = tmp_path / "out"
    assert main(["convert", str(PACKAGE), "-o", str(out), "-q", "-j", "2"]) == 0
    assert used == [(2,)]


def test_relative_and_absolute_imports_resolve(tmp_path):
    files = source_files(PACKAGE, sorted(PACKAGE.rglob("*.py")))
    by_module = {f.module: f for f in files}
    assert set(by_module) == {"shop", "shop.layers", "shop.layers.blocks", "shop.layers.head", "shop.model",
                              "shop.variants", "shop.train"}
    head = by_module["shop.layers.head"]
    tree = retarget.pipeline.parse(head.path.read_text(), str(head.path))
    assert import_bindings(tree, head) == {"nn": "torch.nn", "blocks": "shop.layers.blocks"}
    facts = ProjectFacts(aliases={"shop.layers.ConvBNAct": "shop.layers.blocks.ConvBNAct", "a.x": "a.y",
                                  "a.y": "a.x"})
    assert facts.resolve("shop.layers.ConvBNAct") == "shop.layers.blocks.ConvBNAct"
    assert facts.resolve("a.x") in ("a.x", "a.y")  # a re-export cycle ends


def test_a_lone_file_is_unaffected_by_package_analysis():
    source = (PACKAGE / "shop" / "model.py").read_text()
    alone = retarget.convert(source, path="model.py").code
    assert "ConvBNAct(3, width)" in alone  # without its package, nothing says ConvBNAct is a module


# -- star imports and imports written as if the package directory were on sys.path ---------------

PARTS = '''"""Building blocks, star-imported by model.py (milesial's Pytorch-UNet does the same)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1))

    def forward(self, x):
        return self.net(x)


def out_conv(cin, classes):
    return nn.Conv2d(cin, classes, kernel_size=1)
'''
STAR_MODEL = '''from .parts import *  # DoubleConv, out_conv, and also nn and F: this file imports nothing else


class UNetLite(nn.Module):
    def __init__(self, classes=2):
        super().__init__()
        self.inc = DoubleConv(3, 8)
        self.down = DoubleConv(8, 16)
        self.outc = out_conv(16, classes)

    def forward(self, x):
        x = self.inc(x)
        return self.outc(self.down(F.max_pool2d(x, 2)))
'''
FLAT_MODEL = '''import torch.nn as nn
from parts import DoubleConv, out_conv


class FlatNet(nn.Module):
    """Imports its sibling as a script would, with this directory on sys.path."""

    def __init__(self):
        super().__init__()
        self.body = DoubleConv(3, 4)
        self.head = out_conv(4, 2)

    def forward(self, x):
        return self.head(self.body(x))
'''


def _import_unet(root: Path):
    """`unet.model` (the package on sys.path) and `flat` (its directory on sys.path, as a script has)."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("unet", "parts", "flat", "_torch_compat")]:
        del sys.modules[name]
    sys.path[:0] = [str(root), str(root / "unet")]
    try:
        return importlib.import_module("unet.model").UNetLite, importlib.import_module("flat").FlatNet
    finally:
        del sys.path[:2]


def _write_unet(src: Path, model: str = STAR_MODEL) -> None:
    (src / "unet").mkdir(parents=True)
    for name, text in {"__init__": "", "parts": PARTS, "model": model, "flat": FLAT_MODEL}.items():
        (src / "unet" / f"{name}.py").write_text(text)


@pytest.mark.parametrize("which", [0, 1], ids=["star-import", "sys-path-import"])
def test_star_and_sys_path_imports_of_package_files_convert_and_match_torch(tmp_path, which):
    src, out = tmp_path / "src", tmp_path / "out"
    _write_unet(src)
    assert main(["convert", str(src), "-o", str(out), "-q"]) == 0
    torch.manual_seed(0)
    tmodel = _import_unet(src)[which]()
    randomize_statistics(tmodel)
    tmodel.eval()
    fmodel = _import_unet(out)[which](rngs=nnx.Rngs(0))
    retarget.port_weights(tmodel.state_dict(), fmodel)
    fmodel.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = tmodel(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(fmodel(x)), expected, rtol=1e-4, atol=1e-5)


def _bindings(tmp_path, files: dict[str, str]) -> dict[str, dict[str, str]]:
    from retarget.project import index_project
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = source_files(tmp_path, sorted(tmp_path.rglob("*.py")))
    index = index_project(found, {f.path: f.path.read_text() for f in found})
    return {f.module: index.bindings[f.path] for f in found}


def test_star_imports_follow_all_privacy_and_re_exports(tmp_path):
    bindings = _bindings(tmp_path / "pkg", {
        "__init__.py": "",
        "shapes.py": "__all__ = ('Square',)\nclass Square: pass\nclass Circle: pass\n",
        "blocks.py": "import torch.nn as nn\nclass Block(nn.Module): pass\ndef _helper(): pass\n",
        "layers/__init__.py": "from ..blocks import *\nfrom .extra import Extra as Renamed\n",
        "layers/extra.py": "class Extra: pass\n",
        "model.py": "from .shapes import *\nfrom .layers import *\nfrom torch.nn import *\n",
    })
    model = bindings["pkg.model"]
    assert model["Square"] == "pkg.shapes.Square" and "Circle" not in model  # __all__ decides
    assert model["Block"] == "pkg.layers.Block" and "_helper" not in model  # no __all__: no underscore names
    assert model["Renamed"] == "pkg.layers.Renamed" and model["nn"] == "pkg.layers.nn"  # what layers imports
    facts = ProjectFacts(aliases={f"pkg.layers.{k}": v for k, v in bindings["pkg.layers"].items()})
    assert facts.resolve(model["Block"]) == "pkg.blocks.Block"
    assert facts.resolve(model["Renamed"]) == "pkg.layers.extra.Extra"


def test_imports_written_as_if_the_directory_were_on_sys_path(tmp_path):
    bindings = _bindings(tmp_path / "models", {
        "__init__.py": "from models.base import BaseVAE\n",
        "base.py": "class BaseVAE: pass\n",
        "vae/__init__.py": "",
        "vae/conv.py": "from base import BaseVAE\nimport helpers\nfrom helpers import act\nimport torch\n",
        "vae/helpers.py": "def act(): pass\n",
    })
    assert bindings["models"] == {"BaseVAE": "models.base.BaseVAE"}
    assert bindings["models.vae.conv"] == {"BaseVAE": "models.base.BaseVAE", "helpers": "models.vae.helpers",
                                           "act": "models.vae.helpers.act", "torch": "torch"}


def test_a_star_imported_torch_name_is_torch_s_unless_shadowed():
    from retarget.rewrite.names import torch_names
    source = ("from .parts import *\n\nclass M(nn.Module):\n    def f(self, x, nn=None):\n"
              "        return F.relu(x), nn.Linear, g(F=1).F\n")
    found = sorted(torch_names(retarget.pipeline.parse(source, "m.py"),
                               {"nn": "torch.nn", "F": "torch.nn.functional"}).values())
    assert found == ["torch.nn.Module", "torch.nn.functional.relu"]  # not the parameter `nn`, not `F=` or `.F`
    assert torch_names(retarget.pipeline.parse(source, "m.py")) == {}


def test_a_package_attribute_shadowing_its_submodule_still_resolves_the_submodules_classes():
    """torchvision.ops: `from .stochastic_depth import stochastic_depth, StochasticDepth` binds the
    function over the submodule's name; `from torchvision.ops import StochasticDepth` elsewhere is
    still the class (it must get `rngs`)."""
    facts = ProjectFacts(module_classes={"tv.ops.stochastic_depth.StochasticDepth": None},
                         aliases={"tv.ops.stochastic_depth": "tv.ops.stochastic_depth.stochastic_depth",
                                  "tv.ops.StochasticDepth": "tv.ops.stochastic_depth.StochasticDepth"})
    assert facts.resolve("tv.ops.StochasticDepth") == "tv.ops.stochastic_depth.StochasticDepth"
    assert facts.resolve("tv.ops.stochastic_depth") == "tv.ops.stochastic_depth.stochastic_depth"


def _import_module(root: Path, module: str):
    """`module` imported afresh from the tree at `root` (with the helper module it imports)."""
    package = module.split(".")[0]
    for name in [m for m in sys.modules if m.split(".")[0] in (package, "_torch_compat")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(root))


# -- the package's helper module ---------------------------------------------------------------

def test_helpers_are_written_once_and_imported(converted):
    """Each helper is defined once, in `_torch_compat.py` at the output's root; the files import what
    they use from it (absolutely here: the converted tree is not itself a package) and copy nothing in."""
    out, _, _ = converted
    compat = (out / "_torch_compat.py").read_text()
    assert compat.count("\nclass Conv2d(") == 1 and "PyTorch-semantics helpers" in compat
    for path in (out / "shop").rglob("*.py"):
        text = path.read_text()
        assert "copied in by retarget" not in text and "\nclass Conv2d(" not in text, path
    assert "from _torch_compat import " in (out / "shop" / "layers" / "blocks.py").read_text()


def test_a_package_root_imports_its_helpers_relatively_and_scripts_copy_them(tmp_path):
    """Converting the package itself: `from ._torch_compat import ...` at the top, `.._torch_compat` in
    a subpackage; a folder of scripts without `__init__.py` (no import reaches the module) copies them.
    Converting the output again changes nothing."""
    import shutil
    source = tmp_path / "shop"
    shutil.copytree(PACKAGE / "shop", source)
    (source / "scripts").mkdir()
    (source / "scripts" / "probe.py").write_text("import torch.nn as nn\n\nlayer = nn.Conv2d(3, 4, 3)\n")
    out = tmp_path / "out" / "shop"
    assert main(["convert", str(source), "-o", str(out), "-q"]) == 0
    assert "from ._torch_compat import " in (out / "model.py").read_text()
    assert "from .._torch_compat import " in (out / "layers" / "blocks.py").read_text()
    assert "copied in by retarget" in (out / "scripts" / "probe.py").read_text()
    modules = _import_shop(out.parent)
    assert modules["model"].__name__ == "shop.model"
    again = tmp_path / "again"
    assert main(["convert", str(out), "-o", str(again), "-q"]) == 0
    files = lambda root: {p.relative_to(root): p.read_text() for p in root.rglob("*.py")}
    assert files(again) == files(out)


def test_single_file_helpers_module_option(tmp_path):
    """`--helpers module` on one file writes `_torch_compat.py` beside the output; inline is the default."""
    source = tmp_path / "net.py"
    source.write_text("import torch.nn as nn\n\n\ndef make():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n")
    assert main(["convert", str(source), "-o", str(tmp_path / "out" / "net.py"), "--helpers", "module", "-q"]) == 0
    assert "from _torch_compat import Conv2d" in (tmp_path / "out" / "net.py").read_text()
    assert "class Conv2d(" in (tmp_path / "out" / "_torch_compat.py").read_text()
    assert main(["convert", str(source), "-o", str(tmp_path / "inline.py"), "-q"]) == 0
    assert "class Conv2d(" in (tmp_path / "inline.py").read_text()
    sys.path.insert(0, str(tmp_path / "out"))
    sys.modules.pop("_torch_compat", None)
    try:
        net = importlib.import_module("net").make(rngs=nnx.Rngs(0))
    finally:
        sys.path.remove(str(tmp_path / "out"))
        sys.modules.pop("_torch_compat", None)
        sys.modules.pop("net", None)
    assert net(np.ones((1, 3, 5, 5), np.float32)).shape == (1, 4, 3, 3)


def test_a_layer_class_passed_to_another_files_builder_gets_rngs(tmp_path):
    """timm's registry: `vit_tiny(**kwargs)` calls `build_model_with_cfg(VisionTransformer, ...)` in
    `_builder.py`, which builds `model_cls(**kwargs)`: that parameter holds a layer class, so the call
    passes `rngs` (it went missing there, and no timm model built)."""
    source = tmp_path / "zoo"
    source.mkdir()
    (source / "__init__.py").write_text("")
    (source / "_builder.py").write_text(
        "def build_model_with_cfg(model_cls, variant, cfg=None, **kwargs):\n"
        "    model = model_cls(**kwargs) if cfg is None else model_cls(cfg=cfg, **kwargs)\n"
        "    model.variant = variant\n    return model\n")
    (source / "net.py").write_text(
        "import torch.nn as nn\n\nfrom ._builder import build_model_with_cfg\n\n\n"
        "class Net(nn.Module):\n    def __init__(self, width=4, num_classes=2):\n        super().__init__()\n"
        "        self.fc = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Linear(width, num_classes))\n\n"
        "    def forward(self, x):\n        return self.fc(x)\n\n\n"
        "def net_small(**kwargs):\n    return build_model_with_cfg(Net, 'net_small', **dict(dict(width=8), **kwargs))\n")
    out = tmp_path / "out" / "zoo"
    assert main(["convert", str(source), "-o", str(out), "-q"]) == 0
    assert "model_cls(**kwargs, rngs=rngs)" in (out / "_builder.py").read_text()

    load = lambda root: _import_module(root, "zoo.net")
    torch.manual_seed(0)
    original = load(tmp_path).net_small(num_classes=3)
    converted = load(tmp_path / "out").net_small(num_classes=3, rngs=nnx.Rngs(0))
    retarget.port_weights(original.state_dict(), converted)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(converted(x)), original(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_layer_classes_from_factories_of_other_files_get_rngs(tmp_path):
    """timm's `norm_act_layer = get_norm_act_layer(norm_layer, act_layer)` (a function of another file
    returning a layer class) and `linear_layer = partial(nn.Conv2d, kernel_size=1) if use_conv else
    nn.Linear`: both are layer classes, built with `rngs`."""
    source = tmp_path / "kit"
    source.mkdir()
    (source / "__init__.py").write_text("")
    (source / "create.py").write_text(
        "import torch.nn as nn\n\n\ndef get_norm_layer(name):\n    layer = nn.LayerNorm if name == 'ln' else None\n"
        "    if layer is None:\n        layer = nn.Identity\n    return layer\n")
    (source / "mlp.py").write_text(
        "from functools import partial\n\nimport torch.nn as nn\n\nfrom .create import get_norm_layer\n\n\n"
        "class Mlp(nn.Module):\n    def __init__(self, dim, use_conv=False, norm='ln'):\n        super().__init__()\n"
        "        linear_layer = partial(nn.Conv2d, kernel_size=1) if use_conv else nn.Linear\n"
        "        norm_layer = get_norm_layer(norm)\n"
        "        self.fc = linear_layer(dim, dim)\n        self.norm = norm_layer(dim)\n\n"
        "    def forward(self, x):\n        return self.norm(self.fc(x))\n")
    out = tmp_path / "out" / "kit"
    assert main(["convert", str(source), "-o", str(out), "-q"]) == 0

    load = lambda root: _import_module(root, "kit.mlp")
    torch.manual_seed(0)
    original = load(tmp_path).Mlp(4)
    converted = load(tmp_path / "out").Mlp(4, rngs=nnx.Rngs(0))
    retarget.port_weights(original.state_dict(), converted)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(converted(x)), original(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_in_place_initialisers_and_registries_across_files(tmp_path):
    """timm's layout: `weight_init.py` defines `trunc_normal_` (it fills the tensor it is given in place),
    `registry.py` a class registry; `net.py` registers its blocks there, builds them by name and
    initialises with `named_apply(init_weights, self)`. Across files the converted initialiser gets
    each Linear's weight in torch's layout (`TorchParameter`) and the registered blocks their
    builder's `rngs`; with torch's weights ported, the outputs match."""
    source = tmp_path / "kit"
    source.mkdir()
    (source / "__init__.py").write_text("")
    (source / "weight_init.py").write_text(
        "import math\nimport torch\n\n\ndef trunc_normal_(tensor, std=1.0):\n    with torch.no_grad():\n"
        "        tensor.uniform_(-0.9544997, 0.9544997)\n        tensor.erfinv_()\n"
        "        tensor.mul_(std * math.sqrt(2.0))\n        return tensor\n")
    (source / "registry.py").write_text(
        "_blocks = {}\n\n\ndef register(cls):\n    _blocks[cls.__name__] = cls\n    return cls\n\n\n"
        "def create_block(name, *args, **kwargs):\n    return _blocks[name](*args, **kwargs)\n")
    (source / "net.py").write_text(
        "import torch.nn as nn\n\nfrom .registry import create_block, register\nfrom .weight_init import trunc_normal_\n\n\n"
        "@register\nclass Mlp(nn.Module):\n    def __init__(self, dim):\n        super().__init__()\n"
        "        self.fc = nn.Linear(dim, 2 * dim)\n        self.out = nn.Linear(2 * dim, dim)\n\n"
        "    def forward(self, x):\n        return self.out(self.fc(x).relu())\n\n\n"
        "def init_weights(module):\n    if isinstance(module, nn.Linear):\n        trunc_normal_(module.weight, std=0.02)\n"
        "        nn.init.zeros_(module.bias)\n\n\n"
        "def named_apply(fn, module):\n    for child in module.children():\n        named_apply(fn, child)\n"
        "    fn(module)\n\n\n"
        "class Net(nn.Module):\n    def __init__(self, dim=64, depth=2):\n        super().__init__()\n"
        "        self.blocks = nn.Sequential(*[create_block('Mlp', dim) for _ in range(depth)])\n"
        "        named_apply(init_weights, self)\n\n"
        "    def forward(self, x):\n        return self.blocks(x)\n")
    out = tmp_path / "out" / "kit"
    assert main(["convert", str(source), "-o", str(out), "-q"]) == 0
    assert "TorchParameter(module, 'weight')" in (out / "net.py").read_text()

    load = lambda root: _import_module(root, "kit.net")
    torch.manual_seed(0)
    original = load(tmp_path).Net()
    converted = load(tmp_path / "out").Net(rngs=nnx.Rngs(0))
    kernel = np.asarray(converted.blocks[0].fc.kernel[...])
    assert kernel.shape == (64, 128) and abs(kernel.std() - 0.0176) < 0.0015  # normal(0, .02) cut at 2 sigma
    assert not np.asarray(converted.blocks[1].out.bias[...]).any()
    retarget.port_weights(original.state_dict(), converted)
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(converted(x)), original(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_a_registry_factory_lends_its_rngs_to_what_it_creates(tmp_path):
    """timm's `create_model(name, **kwargs)`: the entrypoint comes from a registry (`@register_model`),
    so no `rngs` can be threaded statically. The converted `create_model` takes `rngs` and lends it
    (`@default_rngs`) to the registered entrypoint, which keeps the registry; `kwargs` stay free of it
    (timm stores them on the model, where NNX refuses an `Rngs`)."""
    _registry_package(tmp_path).rename(tmp_path / "zoo")
    out = tmp_path / "out" / "zoo"
    assert main(["convert", str(tmp_path / "zoo"), "-o", str(out), "-q"]) == 0
    load = lambda root: _import_module(root, "zoo._factory")
    torch.manual_seed(0)
    original = load(tmp_path).create_model("net_small", num_classes=3)
    converted = load(tmp_path / "out").create_model("net_small", num_classes=3, rngs=nnx.Rngs(0))
    assert converted._model_args == {"num_classes": 3}
    retarget.port_weights(original.state_dict(), converted)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(converted(x)), original(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="needs rngs=nnx.Rngs"):
        load(tmp_path / "out").create_model("net_small")


def _registry_package(tmp_path: Path) -> Path:
    source = tmp_path / "zoo_source"
    source.mkdir()
    (source / "_registry.py").write_text(
        "_models = {}\n\n\ndef register_model(fn):\n    _models[fn.__name__] = fn\n    return fn\n\n\n"
        "def model_entrypoint(name):\n    return _models[name]\n")
    (source / "_factory.py").write_text(
        "from ._registry import model_entrypoint\n\n\ndef create_model(model_name, pretrained=False, **kwargs):\n"
        "    kwargs = {k: v for k, v in kwargs.items() if v is not None}\n"
        "    create_fn = model_entrypoint(model_name)\n    model = create_fn(pretrained=pretrained, **kwargs)\n"
        "    model._model_args = dict(getattr(model, '_model_args', {}), **kwargs)\n    return model\n")
    (source / "net.py").write_text(
        "import torch.nn as nn\nfrom ._registry import register_model\n\n\n"
        "class Net(nn.Module):\n    def __init__(self, width=4, num_classes=2):\n        super().__init__()\n"
        "        self.fc = nn.Linear(3, width)\n        self.head = nn.Linear(width, num_classes)\n\n"
        "    def forward(self, x):\n        return self.head(self.fc(x))\n\n\n"
        "@register_model\ndef net_small(pretrained=False, **kwargs):\n    return Net(**dict(dict(width=8), **kwargs))\n")
    (source / "__init__.py").write_text("from . import net  # noqa: F401\n")
    return source


def test_a_file_defining_a_helpers_name_calls_the_helper_by_an_alias(tmp_path):
    """timm's `layers/grid.py` defines `ndgrid` and `meshgrid` over `torch.meshgrid`: converted as a package,
    the file imports the helper, binds it as `torch_meshgrid` before its own `meshgrid` shadows the name,
    and both functions compute torch's grids (no RT109); converting the output again changes nothing."""
    src = tmp_path / "grids"
    src.mkdir()
    (src / "__init__.py").write_text("")
    (src / "grid.py").write_text("import torch\n\n\ndef ndgrid(*tensors):\n    return torch.meshgrid(*tensors, indexing='ij')\n"
                                 "\n\ndef meshgrid(*tensors):\n    return torch.meshgrid(*tensors, indexing='xy')\n")
    assert main(["convert", str(src), "-o", str(tmp_path / "out" / "grids"), "-q"]) == 0
    assert main(["convert", str(tmp_path / "out" / "grids"), "-o", str(tmp_path / "again"), "-q"]) == 0
    assert (tmp_path / "again" / "grid.py").read_text() == (tmp_path / "out" / "grids" / "grid.py").read_text()
    sys.path.insert(0, str(tmp_path / "out"))
    try:
        grid = importlib.import_module("grids.grid")
    finally:
        sys.path.remove(str(tmp_path / "out"))
    a, b = torch.arange(2), torch.arange(3)
    for ours, theirs in ((grid.ndgrid, "ij"), (grid.meshgrid, "xy")):
        for got, expected in zip(ours(a.numpy(), b.numpy()), torch.meshgrid(a, b, indexing=theirs)):
            np.testing.assert_array_equal(np.asarray(got), expected.numpy())


NORMS = '''import torch.nn as nn
import torch.nn.functional as F


class GroupNorm(nn.GroupNorm):
    def __init__(self, num_channels, num_groups=32, eps=1e-5, affine=True):
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class GroupNorm1(nn.GroupNorm):
    def __init__(self, num_channels, **kwargs):
        super().__init__(1, num_channels, **kwargs)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = GroupNorm(8, num_groups=4)
        self.b = GroupNorm1(8)

    def forward(self, x):
        return self.b(self.a(x))
'''


def test_a_class_named_like_a_helper_subclasses_the_helper_by_its_alias(tmp_path):
    """timm's `layers/norm.py` defines `class GroupNorm(nn.GroupNorm)` (channels first) and a `GroupNorm1`
    on torch's: the converted base is the helper under its alias, so both build torch's shapes and
    compute torch's numbers."""
    src = tmp_path / "norms"
    src.mkdir()
    (src / "__init__.py").write_text("")
    (src / "norm.py").write_text(NORMS.replace("class GroupNorm1(nn.GroupNorm)", "class GroupNorm1(GroupNorm)")
                                 .replace("super().__init__(1, num_channels", "super().__init__(num_channels, 1"))
    original = _import_module(tmp_path, "norms.norm").Net().eval()  # the torch original
    assert main(["convert", str(src), "-o", str(tmp_path / "out" / "norms"), "-q"]) == 0
    converted = _import_module(tmp_path / "out", "norms.norm").Net(rngs=nnx.Rngs(0))
    with torch.no_grad():
        for p in original.parameters():
            p.copy_(torch.rand(p.shape) + 0.5)
    retarget.port_weights(original.state_dict(), converted)
    x = torch.randn(2, 8, 5, 5)
    np.testing.assert_allclose(np.asarray(converted(x.numpy())), original(x).detach().numpy(), rtol=1e-5, atol=1e-5)


INHERITED_BASE = "import torch\nimport torch.nn as nn\n\n\ndef init_linear(m, std):\n    nn.init.normal_(m.weight, std=std)\n\n\nclass Base(nn.Module):\n    def __init__(self, dim=4):\n        super().__init__()\n        self.fc = nn.Linear(dim, dim)\n        self.init_weights()\n\n    def init_weights(self, mode=''):\n        init_linear(self.fc, 0.5)\n\n    def forward(self, x):\n        return self.fc(x)\n"
INHERITED_SUB = "import torch\nimport torch.nn as nn\nfrom .base import Base\n\n\nclass Sub(Base):\n    def __init__(self, dim=4):\n        super().__init__(dim)\n        self.tok = nn.Parameter(torch.zeros(dim))\n        self.init_weights()\n\n    def init_weights(self, mode=''):\n        if hasattr(self, 'tok'):\n            nn.init.normal_(self.tok, std=0.02)\n        super().init_weights(mode=mode)\n\n    def forward(self, x):\n        return super().forward(x) + self.tok\n\n\nclass Sub2(Base):\n    def __init__(self, dim=4):\n        super().__init__(dim)\n        self.reset()\n\n    def reset(self):\n        self.init_weights()\n"


def test_methods_inherited_from_another_file_get_rngs(tmp_path):
    """timm's DeiT: `super().init_weights(...)` and an inherited `self.init_weights()` reach a base class's
    method in another file that draws random numbers: both calls pass `rngs`, the models build and,
    with torch's weights ported, compute torch's numbers."""
    src = tmp_path / "vt"
    src.mkdir()
    (src / "__init__.py").write_text("")
    (src / "base.py").write_text(INHERITED_BASE)
    (src / "sub.py").write_text(INHERITED_SUB)
    originals = {name: getattr(_import_module(tmp_path, "vt.sub"), name)() for name in ("Sub", "Sub2")}
    assert main(["convert", str(src), "-o", str(tmp_path / "out" / "vt"), "-q"]) == 0
    module = _import_module(tmp_path / "out", "vt.sub")
    x = torch.randn(3, 4)
    for name, original in originals.items():
        converted = getattr(module, name)(rngs=nnx.Rngs(0))
        retarget.port_weights(original.state_dict(), converted)
        np.testing.assert_allclose(np.asarray(converted(x.numpy())), original(x).detach().numpy(), rtol=1e-5, atol=1e-6)
