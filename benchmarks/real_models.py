"""Real models from real libraries' own code, converted as packages and run against torch.

    python benchmarks/real_models.py [--suite torchvision|timm|all] [--only REGEX] [--quick]
                                     [--reuse] [--cache DIR] [--json OUT.json]

The pinned wheels (torchvision 0.28.0, the release for torch 2.13, and timm) are fetched with
`pip download --no-deps` into a cache and unpacked; nothing third-party is committed and
torchvision is never installed. torchvision's compiled extension does not load against the CPU
torch here, so the staged tree holds only its Python code (`models`, `ops`, `transforms`, the
utility modules) under an empty `__init__.py`: `extension.py` then finds no `_C` library and
torchvision's pure-Python models import. Each staged package is converted with
`retarget convert DIR -o OUT` exactly as a user would.

Then, per model (built by the library's own factory at a small size): a torch process builds it
(seeded, BatchNorm statistics randomized), records the state dict, the eval outputs, the
parameter gradients of a fixed random projection of the outputs, and the state after one
train-mode forward; a Flax process builds the converted model with the same arguments plus
`rngs`, ports the state dict with `retarget.port_weights`, and compares outputs eagerly and
under `nnx.jit` (rtol = atol = 1e-4) with torch's computed in float64 (torch's float32 CPU
kernels are further from the exact values than the converted model is), the parameter
gradients (also torch's in float64; eagerly; atol scaled by the
gradient's size) and the state after one jitted train-mode forward (BatchNorm statistics, when
torch's own is deterministic). A model that misses a float32 tolerance is run once more with JAX in float64
against torch's float64 reference (tolerance 1e-9): matching there, its verdict is "float32
rounding" (it computes what torch computes; the float32 miss is arithmetic, not conversion), counted
apart from "equal". Every failure is printed with its cause; the totals close the report. Gradients are compared eagerly because XLA's optimised CPU backward of a jitted ResNet-50
drifts ~1% from both torch and eager JAX (exact again with --xla_backend_optimization_level=0).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

WHEELS = {"torchvision": "0.28.0", "timm": "1.0.31"}
TORCHVISION_PARTS = ["models", "ops", "transforms", "utils.py", "_utils.py", "_internally_replaced_utils.py",
                     "extension.py"]
FOR_TIMM = ["datasets", "io", "tv_tensors"]  # timm's data code imports torchvision.datasets
TOL = 1e-4
GRAD_TOL = 1e-3
TOL64 = 1e-9  # float64 against float64: what is left is summation order
IMAGE = (2, 3, 64, 64)
# The initial values are overwritten by torch's ported weights: the original threefry (one compile
# of each 4-d draw ~0.3 s on CPU, against ~1.8 s for JAX's default partitionable one) builds a
# ResNet-18 in 8 s instead of 31. Users' runs keep JAX's default.
PARITY_ENV = {"JAX_THREEFRY_PARTITIONABLE": "0"}


@dataclass
class Spec:
    """One model: `builder` is `module:callable`, called with `args`, `kwargs` (plus `rngs` on the
    Flax side) and fed inputs of `shapes`."""
    suite: str
    name: str
    builder: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    shapes: list = field(default_factory=lambda: [IMAGE])
    quick: bool = False


def _tv(name: str, shape=IMAGE, quick=False, builder=None, **kwargs) -> Spec:
    kwargs.setdefault("num_classes", 10)
    return Spec("torchvision", name, builder or f"torchvision.models:{name}", [], kwargs, [shape], quick)


def _timm(name: str, shape=IMAGE, quick=False, **kwargs) -> Spec:
    return Spec("timm", name, "timm:create_model", [name], {"pretrained": False, "num_classes": 10, **kwargs},
                [shape], quick)


SMALL_VIT = dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
SMALL_SWIN = dict(patch_size=[4, 4], embed_dim=24, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4])
TORCHVISION = [
    _tv("resnet18", quick=True), _tv("resnet50"), _tv("resnext50_32x4d"), _tv("wide_resnet50_2"),
    _tv("vgg11"), _tv("vgg11_bn"), _tv("densenet121"), _tv("mobilenet_v2"),
    _tv("mobilenet_v3_small"), _tv("mobilenet_v3_large"), _tv("efficientnet_b0"),
    _tv("efficientnet_v2_s"), _tv("regnet_x_400mf", quick=True), _tv("regnet_y_400mf"), _tv("shufflenet_v2_x0_5", quick=True),
    _tv("squeezenet1_0"), _tv("squeezenet1_1", quick=True), _tv("mnasnet0_5"), _tv("googlenet", aux_logits=False,
                                                                          init_weights=True),
    # 139 px: Mixed_7 sees 3 x 3 (at 80 px, 1 x 1: train-mode BatchNorm over 2 values amplifies float noise)
    _tv("inception_v3", (2, 3, 139, 139), aux_logits=False, init_weights=True), _tv("convnext_tiny"),
    _tv("vit", (2, 3, 32, 32), quick=True, builder="torchvision.models.vision_transformer:VisionTransformer",
        **SMALL_VIT),
    _tv("swin", (2, 3, 32, 32), quick=True, builder="torchvision.models.swin_transformer:SwinTransformer",
        **SMALL_SWIN),
    _tv("swin_v2", (2, 3, 32, 32), builder="torchvision.models.swin_transformer:SwinTransformer",
        block="torchvision.models.swin_transformer:SwinTransformerBlockV2",
        downsample_layer="torchvision.models.swin_transformer:PatchMergingV2", **SMALL_SWIN),
    _tv("maxvit", (2, 3, 32, 32), builder="torchvision.models.maxvit:MaxVit", input_size=(32, 32), stem_channels=16,
        partition_size=2, block_channels=[16, 32], block_layers=[1, 1], head_dim=8,
        stochastic_depth_prob=0.0),
    _tv("fcn_resnet50", num_classes=3, weights_backbone=None, aux_loss=True),
    _tv("deeplabv3_mobilenet_v3_large", num_classes=3, weights_backbone=None, aux_loss=True),
    _tv("lraspp_mobilenet_v3_large", num_classes=3, weights_backbone=None),
]
for _spec in TORCHVISION:
    if _spec.name.startswith(("fcn", "deeplab", "lraspp")):
        _spec.builder = f"torchvision.models.segmentation:{_spec.name}"

TIMM = [_timm(n) for n in [
    "resnet18", "resnet26d", "resnet50d", "resnext26ts", "seresnet18", "efficientnet_b0", "efficientnet_lite0",
    "tf_efficientnet_b0", "efficientnetv2_rw_t", "mobilenetv3_small_050", "mobilenetv3_large_100",
    "mobilenetv2_050", "convnext_atto", "convnextv2_atto", "regnetx_002", "regnety_002", "rexnet_100",
    "ghostnet_050", "mixnet_s", "mnasnet_small", "fbnetc_100", "spnasnet_100", "lcnet_050", "hrnet_w18_small",
    "dla34", "dpn48b", "cspresnet50", "cspdarknet53", "darknet17", "dm_nfnet_f0", "nf_resnet26", "vovnet39a",
    "ese_vovnet19b_dw", "xception41", "res2net50_14w_8s", "resnest14d",
    "selecsls42b", "hardcorenas_a", "tinynet_e", "repvgg_a0", "densenet121", "vgg11_bn", "gernet_s",
    "poolformer_s12", "poolformerv2_s12", "mobilevit_xxs", "mobilevitv2_050", "edgenext_xx_small",
    "fastvit_t8", "ghostnetv2_100", "repghostnet_050", "mobileone_s0", "tresnet_m",
]] + [  # models whose layers are sized for their input: inputs (or img_size) they accept
    _timm("inception_v3", (2, 3, 139, 139)), _timm("inception_v4", (2, 3, 139, 139)),
    _timm("efficientformer_l1", (2, 3, 224, 224)), _timm("efficientformerv2_s0", img_size=64),
    _timm("levit_128s", (2, 3, 128, 128), img_size=128), _timm("crossvit_tiny_240", (2, 3, 240, 240)),
] + [_timm(n, (2, 3, 32, 32), img_size=32) for n in [
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "beit_base_patch16_224",
    "cait_xxs24_224", "mixer_s16_224", "resmlp_12_224", "gmlp_ti16_224", "coat_lite_tiny",
    "swin_tiny_patch4_window7_224", "swinv2_cr_tiny_224", "pit_ti_224", "tnt_s_patch16_224", "convit_tiny",
    "twins_svt_small", "xcit_nano_12_p16_224", "sequencer2d_s", "eva02_tiny_patch14_224", "deit3_small_patch16_224",
]]
for _name in ("resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "convnext_atto"):
    next(s for s in TIMM if s.name == _name).quick = True


# ---------------------------------------------------------------------------------------------- staging

def fetch(cache: Path, package: str) -> Path:
    """Download (once) and unpack the pinned wheel; its unpacked root."""
    version = WHEELS[package]
    root = cache / f"{package}-{version}"
    if root.exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob(f"{package}-{version}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
                        f"{package}=={version}"], check=True)
        wheels = list(cache.glob(f"{package}-{version}-*.whl"))
    staging = cache / f".{package}-{version}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extractall(staging)
    staging.rename(root)
    return root


def stage(cache: Path, work: Path, package: str, extra: tuple = ()) -> tuple[Path, bool]:
    """The package's Python source under `work/src/<package>` (torchvision without its extension, with
    `extra` parts); whether anything was added."""
    target = work / "src" / package
    unpacked = fetch(cache, package) / package
    if package != "torchvision":
        if not target.exists():
            shutil.copytree(unpacked, target, ignore=shutil.ignore_patterns("__pycache__"))
            return target, True
        return target, False
    missing = [p for p in [*TORCHVISION_PARTS, *extra] if not (target / p).exists()]
    target.mkdir(parents=True, exist_ok=True)
    for part in missing:
        source = unpacked / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / part)
    (target / "__init__.py").write_text("")
    return target, bool(missing)


def stage_subset(cache: Path, work: Path, names: list[str]) -> Path:
    """torchvision reduced to what the models built by `names` (`module:callable`) need (the quick subset): the staged tree with a
    `models/__init__.py` that imports only their modules, then only the files that importing it loads.
    The model code is the library's, unchanged; only the package's import plumbing is smaller."""
    shutil.rmtree(work / "src" / "torchvision", ignore_errors=True)
    target, _ = stage(cache, work, "torchvision")
    files = sorted((target / "models").glob("*.py"))
    modules = {b.partition(":")[0] for b in names if b.partition(":")[0].startswith("torchvision.models.")}
    functions = [b.partition(":")[2] for b in names if b.partition(":")[0] == "torchvision.models"]
    defining = sorted({f.stem for name in functions for f in files if re.search(rf"^def {re.escape(name)}\(", f.read_text(), re.M)}
                      | {m.split(".")[2] for m in modules})
    (target / "models" / "__init__.py").write_text("".join(f"from .{m} import *\n" for m in defining))
    loaded = subprocess.run([sys.executable, "-c", "import sys, torchvision.models\n"
                             "print('\\n'.join(m.__file__ for m in list(sys.modules.values())"
                             " if (getattr(m, '__file__', None) or '').startswith(sys.argv[1])))", str(target)],
                            cwd=work / "src", capture_output=True, text=True, check=True).stdout.split()
    keep = {Path(f).resolve() for f in loaded}
    for path in sorted(target.rglob("*.py")):
        if path.resolve() not in keep:
            path.unlink()
    return target


def convert(source: Path, out: Path, reuse: bool) -> dict:
    """`retarget convert SOURCE -o OUT`: exit status, escape hatches, seconds."""
    if reuse and out.exists():
        return {"package": source.name, "exit": None, "escapes": None, "seconds": 0.0, "reused": True}
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "retarget.cli", "convert", str(source), "-o", str(out)],
                          capture_output=True, text=True)
    escapes = len(re.findall(r": RT\d+ ", done.stderr))
    (out.parent / f"{source.name}.convert.log").write_text(done.stderr)
    return {"package": source.name, "exit": done.returncode, "escapes": escapes,
            "seconds": time.perf_counter() - start, "reused": False}


# ---------------------------------------------------------------------------------------------- shared

def resolve(builder: str):
    """The callable named `module:attr` (a `module:attr` string argument is resolved too)."""
    module, _, attr = builder.partition(":")
    return getattr(importlib.import_module(module), attr)


def flatten(value) -> list:
    """Outputs as a flat list of numpy arrays (tuples, lists, dicts by sorted key)."""
    import numpy as np
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in flatten(v)]
    if isinstance(value, dict):
        return [a for k in sorted(value) for a in flatten(value[k])]
    if value is None:
        return []
    if hasattr(value, "detach"):
        return [value.detach().numpy()]
    return [np.asarray(value)]


def build_kwargs(spec: Spec) -> dict:
    """Keyword arguments, with `module:Class` strings for layer-class arguments resolved."""
    return {k: resolve(v) if isinstance(v, str) and ":" in v else v for k, v in spec.kwargs.items()}


def inputs(spec: Spec) -> list:
    import numpy as np
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for shape in spec.shapes]


# ---------------------------------------------------------------------------------------------- torch side

def randomize_statistics(model) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (fresh ones hide mapping bugs)."""
    import torch
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)


def projections(outputs: list) -> list:
    """The fixed random weights whose dot product with the outputs is the gradient's loss."""
    import numpy as np
    rng = np.random.default_rng(1)
    return [rng.standard_normal(o.shape).astype(np.float32) for o in outputs]


def torch_record(spec: Spec, work: Path) -> dict:
    """Build, run and differentiate the torch model; save what the Flax side compares with."""
    import copy

    import numpy as np
    import torch
    torch.manual_seed(0)
    model = resolve(spec.builder)(*spec.args, **build_kwargs(spec))
    with torch.no_grad():
        randomize_statistics(model)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    xs = [torch.from_numpy(a) for a in inputs(spec)]
    model.eval()
    with torch.no_grad():
        outputs = [o.numpy().copy() for o in flatten_torch(model(*xs))]
    weights = projections(outputs)
    outputs, grads, exact = _float64_reference(model, xs, weights, copy)
    torch32 = _float32_miss(model, xs, weights, outputs, grads, copy) if exact else {}
    trained, deterministic = _train_forward(model, xs, copy)
    arrays = {**{f"state/{k}": v for k, v in state.items()}, **{f"out/{i}": o for i, o in enumerate(outputs)},
              **{f"proj/{i}": w for i, w in enumerate(weights)}, **{f"grad/{k}": g for k, g in grads.items()},
              **{f"train/{k}": v for k, v in trained.items()}}
    np.savez(work / f"{spec.suite}-{spec.name}.npz", **arrays)
    return {"deterministic": deterministic, "reference64": exact, **torch32,
            "parameters": sum(p.numel() for p in model.parameters())}


def _float32_miss(model, xs, weights, outputs64, grads64, copy) -> dict:
    """How far torch's own float32 outputs and gradients are from its float64 ones, in the same
    multiples of the tolerances the converted model is held to: the float32 error the original has."""
    import torch
    twin = copy.deepcopy(model).eval()
    result = flatten_torch(twin(*xs))
    sum((o * torch.from_numpy(w)).sum() for o, w in zip(result, weights)).backward()
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy() for k, p in twin.named_parameters(remove_duplicate=False)}
    return {"torch_eager32": compare([o.detach().numpy() for o in result], outputs64),
            "torch_grad32": compare([grads[k] for k in sorted(grads)], [grads64[k] for k in sorted(grads)], scaled=True)}


def _float64_reference(model, xs, weights, copy) -> tuple[list, dict, bool]:
    """torch's eval outputs and the parameter gradients of the projected outputs, computed in float64
    (and stored so): the exact values both float32 computations approximate; whether they are float64. torch's own float32
    backward on this CPU is off by up to 1.3% of a gradient's largest value (VGG-11-BN's first
    convolution), its forward by 7e-4 on FCN's logits: more than the converted JAX model is."""
    import torch
    twin, exact = copy.deepcopy(model).double().eval(), True
    try:
        result = flatten_torch(twin(*[x.double() if x.is_floating_point() else x for x in xs]))
    except (RuntimeError, TypeError):  # an op without a float64 kernel: torch's float32 is the reference
        twin, exact = copy.deepcopy(model).eval(), False
        result = flatten_torch(twin(*xs))
    sum((o * torch.from_numpy(w).double()).sum() for o, w in zip(result, weights)).backward()
    outputs = [o.detach().numpy() for o in result]
    return outputs, {k: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy()
                     for k, p in twin.named_parameters(remove_duplicate=False)}, exact


def flatten_torch(value) -> list:
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in flatten_torch(v)]
    if isinstance(value, dict):
        return [a for k in sorted(value) for a in flatten_torch(value[k])]
    return [] if value is None else [value]


def _train_forward(model, xs, copy) -> tuple[dict, bool]:
    """The state after one train-mode forward (BatchNorm statistics), and whether that state is
    deterministic (dropout only after the last norm layer leaves it so): only then can it be compared."""
    import torch
    twin = copy.deepcopy(model)
    model.train()
    twin.train()
    with torch.no_grad():
        model(*xs)
        twin(*xs)
    params = {k for k, _ in model.named_parameters()}
    state, other = model.state_dict(), twin.state_dict()
    same = all(torch.equal(state[k], other[k]) for k in state)
    return {k: v.detach().numpy().copy() for k, v in state.items() if k not in params}, bool(same)


def torch_worker(specs: list[Spec], work: Path) -> None:
    for spec in specs:
        start = time.perf_counter()
        try:
            result = {"torch": "ok", **torch_record(spec, work)}
        except Exception as exc:  # noqa: BLE001 - the library's own model failed: report and go on
            result = {"torch": f"{type(exc).__name__}: {exc}"[:300]}
        result["torch_seconds"] = time.perf_counter() - start
        _append(work / f"{spec.suite}-torch.jsonl", {"name": spec.name, "suite": spec.suite, **result})


# ---------------------------------------------------------------------------------------------- flax side

def compare(actual: list, expected: list, scaled: bool = False, tol: float = TOL, grad_tol: float = GRAD_TOL) -> float:
    """The largest error relative to the tolerance: <= 1 passes (inf on a structure mismatch). Scaled
    (gradients, statistics): atol = GRAD_TOL x the tensor's largest magnitude, since float32 sums over
    batch and space of a deep network's backward cancel (Wide ResNet-50: 6e-4 of the largest value,
    torch and JAX alike; a mapping bug is off by O(1))."""
    import numpy as np
    if len(actual) != len(expected):
        return float("inf")
    worst = 0.0
    for a, e in zip(actual, expected):
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        if a.shape != e.shape:
            return float("inf")
        atol = grad_tol * max(1.0, float(np.abs(e).max(initial=0.0))) if scaled else tol
        worst = max(worst, float((np.abs(a - e) / (atol + tol * np.abs(e))).max(initial=0.0)))
    return worst


def _state_leaves(state) -> dict:
    from flax import nnx
    return {"/".join(map(str, path)): v for path, v in nnx.to_flat_state(state)}


def _expected(model, saved: dict, prefix: str, kind):
    """The Flax state that `prefix/` entries of the torch record port into (a clone of the model)."""
    import retarget
    from flax import nnx
    clone = nnx.clone(model)
    merged = {k: saved[f"state/{k}"] for k in _keys(saved, "state")}
    merged.update({k: saved[f"{prefix}/{k}"] for k in _keys(saved, prefix)})
    retarget.port_weights(merged, clone)
    return _state_leaves(nnx.state(clone, kind))


def _keys(saved, prefix: str) -> list[str]:
    return [k[len(prefix) + 1:] for k in saved if k.startswith(prefix + "/")]


def _compare_states(actual, expected: dict, **tolerances) -> float:
    actual = _state_leaves(actual)
    if set(actual) != set(expected):
        return float("inf")
    return compare([_value(actual[k]) for k in sorted(actual)],
                   [_value(expected[k]) for k in sorted(actual)], scaled=True, **tolerances)


def _value(leaf):
    """A state leaf's array: a Variable's value, or an array the module keeps as plain data."""
    return leaf.get_value() if hasattr(leaf, "get_value") else leaf


def flax_check(spec: Spec, work: Path, deterministic: bool, result: dict) -> None:
    """Build the converted model, port the torch state, compare; each stage's outcome in `result`."""
    import jax.numpy as jnp
    import numpy as np
    import retarget
    from flax import nnx
    saved = dict(np.load(work / f"{spec.suite}-{spec.name}.npz"))
    result["stage"] = "build"
    model = resolve(spec.builder)(*spec.args, **build_kwargs(spec), rngs=nnx.Rngs(0))
    result["stage"] = "port"
    retarget.port_weights({k: saved[f"state/{k}"] for k in _keys(saved, "state")}, model)
    expected = [saved[f"out/{i}"] for i in range(len(_keys(saved, "out")))]
    xs = [jnp.asarray(a) for a in inputs(spec)]
    model.eval()
    result["stage"] = "eager"
    result["eager"] = compare(flatten(model(*xs)), expected)
    result["stage"] = "jit"
    result["jit"] = compare(flatten(nnx.jit(lambda m, *a: m(*a))(model, *xs)), expected)
    result["stage"] = "grad"
    result["grad"] = _grad_error(model, xs, saved)
    result["stage"] = "train"
    result["train"] = _train_error(model, xs, saved) if deterministic else None
    result["stage"] = "done"


def flax_check64(spec: Spec, work: Path, result: dict) -> None:
    """The same model, ported weights and inputs in float64 (JAX with x64), against torch's float64: a
    model that misses the float32 tolerances but matches here to TOL64 computes what torch computes;
    what it missed by is float32 rounding, not the conversion."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import retarget
    from flax import nnx
    saved = dict(np.load(work / f"{spec.suite}-{spec.name}.npz"))
    model = resolve(spec.builder)(*spec.args, **build_kwargs(spec), rngs=nnx.Rngs(0))
    retarget.port_weights({k: saved[f"state/{k}"] for k in _keys(saved, "state")}, model)
    wide = lambda v: v.astype(jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v
    nnx.update(model, jax.tree.map(wide, nnx.state(model)))
    xs = [wide(jnp.asarray(a)) for a in inputs(spec)]
    model.eval()
    expected = [saved[f"out/{i}"] for i in range(len(_keys(saved, "out")))]
    result["eager64"] = compare(flatten(model(*xs)), expected, tol=TOL64)
    result["grad64"] = _grad_error(model, xs, saved, tol=TOL64, grad_tol=TOL64)


def _grad_error(model, xs, saved, **tolerances) -> float:
    import jax.numpy as jnp
    from flax import nnx
    weights = [jnp.asarray(saved[f"proj/{i}"]) for i in range(len(_keys(saved, "proj")))]

    def loss(m):
        return sum(jnp.sum(o * w) for o, w in zip(flatten_jax(m(*xs)), weights))
    grads = nnx.grad(loss)(model)  # eagerly: XLA CPU's optimised backward drifts ~1% on deep ResNets
    return _compare_states(grads, _expected(model, saved, "grad", nnx.Param), **tolerances)


def flatten_jax(value) -> list:
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in flatten_jax(v)]
    if isinstance(value, dict):
        return [a for k in sorted(value) for a in flatten_jax(value[k])]
    return [] if value is None else [value]


def _train_error(model, xs, saved) -> float:
    from flax import nnx
    trained = nnx.clone(model)
    trained.train()
    nnx.jit(lambda m, *a: m(*a))(trained, *xs)
    stats = nnx.Not(nnx.Any(nnx.Param, nnx.RngState))
    return _compare_states(nnx.state(trained, stats), _expected(model, saved, "train", stats))


def flax_worker(specs: list[Spec], work: Path) -> None:
    recorded = {r["name"]: r for s in {s.suite for s in specs}
                for r in _read_jsonl(work / f"{s}-torch.jsonl") if r.get("torch") == "ok"}
    for spec in specs:
        start, result = time.perf_counter(), {}
        if spec.name not in recorded:
            _append(work / f"{spec.suite}-flax.jsonl", {"name": spec.name, "suite": spec.suite})
            continue
        try:
            flax_check(spec, work, recorded[spec.name]["deterministic"], result)
        except Exception as exc:  # noqa: BLE001 - the converted model failed: that is the finding
            result.update(_failure(exc))
        result["flax_seconds"] = time.perf_counter() - start
        _append(work / f"{spec.suite}-flax.jsonl", {"name": spec.name, "suite": spec.suite, **result})


def flax64_worker(specs: list[Spec], work: Path) -> None:
    import jax
    jax.config.update("jax_enable_x64", True)
    for spec in specs:
        result = {}
        try:
            flax_check64(spec, work, result)
        except Exception as exc:  # noqa: BLE001 - reported beside the float32 finding
            result["error64"] = _failure(exc)["error"]
        _append(work / f"{spec.suite}-flax64.jsonl", {"name": spec.name, "suite": spec.suite, **result})


def imports_worker(package: str, work: Path) -> None:
    """Import every module of the converted package: a file that converted (exit 0 or 1) must also run."""
    root = work / "out" / package
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            importlib.import_module(name)
            error = None
        except Exception as exc:  # noqa: BLE001 - what breaks is the finding
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        _append(work / f"{package}-imports.jsonl", {"module": name, "error": error})


def _failure(exc: Exception) -> dict:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/out/" in f.filename]
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} `{frames[-1].line}`" if frames else ""
    return {"error": f"{type(exc).__name__}: {str(exc)[:240]}{where}"}


# ---------------------------------------------------------------------------------------------- driver

def _append(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run_worker(side: str, specs: list[Spec], work: Path, root: Path, timeout: float) -> None:
    """Run a worker process over `specs`; after a crash or a timeout, go on with the next model."""
    log = work / f"{specs[0].suite}-{side}.jsonl"
    remaining = list(specs)
    while remaining:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
               **PARITY_ENV}
        names = ",".join(s.name for s in remaining)
        try:
            subprocess.run([sys.executable, __file__, "--worker", side, "--work", str(work), "--names", names,
                            "--suite", remaining[0].suite], env=env, timeout=timeout * len(remaining),
                           cwd=work, stdout=subprocess.DEVNULL, stderr=(work / f"{side}.log").open("a"))
        except subprocess.TimeoutExpired:
            pass
        done = {r["name"] for r in _read_jsonl(log)}
        if remaining[0].name not in done:
            _append(log, {"name": remaining[0].name, "suite": remaining[0].suite,
                          **({"torch": "crashed or timed out"} if side == "torch" else
                             {"error64": "crashed or timed out"} if side == "flax64" else {"error": "crashed or timed out"})})
        remaining = [s for s in remaining if s.name not in done | {remaining[0].name}]


def _import_check(package: str, work: Path, timeout: float) -> list[dict]:
    """The converted package's modules that fail to import, with their errors."""
    log = work / f"{package}-imports.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work / "out"), os.environ.get("PYTHONPATH", "")])}
    try:
        subprocess.run([sys.executable, __file__, "--worker", "imports", "--work", str(work), "--suite", package],
                       env=env, timeout=timeout, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pass
    records = _read_jsonl(log)
    return [r for r in records if r["error"]] + ([] if records else [{"module": package, "error": "no module imported"}])


def verdict(record: dict) -> str:
    """`equal` when eager, jit and gradients (and train-mode state, when comparable) pass."""
    if record.get("torch", "ok") != "ok":
        return "torch failed"
    if "error" in record:
        return f"failed at {record.get('stage', 'build')}"
    checks = [record.get(k) for k in ("eager", "jit", "grad")] + ([record["train"]] if record.get("train") is not None else [])
    if all(c is not None and c <= 1.0 for c in checks):
        return "equal"
    exact = [record.get(k) for k in ("eager64", "grad64")]
    return "float32 rounding" if all(c is not None and c <= 1.0 for c in exact) else "different"


def run_suite(suite: str, specs: list[Spec], cache: Path, work: Path, reuse: bool, timeout: float,
              workers: int = 1) -> tuple[dict, list]:
    """Stage, convert, record torch, check Flax: the conversion summary and one record per model."""
    if suite == "timm":  # timm imports torchvision (ops, datasets): its conversion must be there
        source, added = stage(cache, work, "torchvision", tuple(FOR_TIMM))
        convert(source, work / "out" / "torchvision", not added)
    if suite == "torchvision" and all(s.quick for s in specs):
        source, added = stage_subset(cache, work, [s.builder for s in specs]), True
    else:
        source, added = stage(cache, work, suite)
    conversion = convert(source, work / "out" / suite, reuse and not added)
    for side in ("torch", "flax", "flax64"):
        (work / f"{suite}-{side}.jsonl").unlink(missing_ok=True)
    _run_worker("torch", specs, work, work / "src", timeout)
    chunks = [specs[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:  # the Flax side (compilation) dominates: split it
        list(pool.map(lambda chunk: _run_worker("flax", chunk, work, work / "out", timeout), chunks))
    conversion["import_failures"] = _import_check(suite, work, timeout)
    torch_side = {r["name"]: r for r in _read_jsonl(work / f"{suite}-torch.jsonl")}
    flax_side = {r["name"]: r for r in _read_jsonl(work / f"{suite}-flax.jsonl")}
    records = [{**torch_side.get(s.name, {}), **flax_side.get(s.name, {}), "name": s.name, "suite": suite}
               for s in specs]
    _check_float64(suite, specs, records, work, timeout)
    for record in records:
        record["verdict"] = verdict(record)
    for npz in work.glob(f"{suite}-*.npz"):
        npz.unlink()
    return conversion, records


def _check_float64(suite: str, specs: list[Spec], records: list[dict], work: Path, timeout: float) -> None:
    """Models that ran but missed a float32 tolerance, against torch's float64 reference, again in
    float64: their `eager64` / `grad64`."""
    missed = {r["name"] for r in records if verdict(r) == "different" and r.get("reference64")}
    if missed:
        _run_worker("flax64", [s for s in specs if s.name in missed], work, work / "out", timeout)
        found = {r["name"]: r for r in _read_jsonl(work / f"{suite}-flax64.jsonl")}
        for record in records:
            record.update(found.get(record["name"], {}) if record["name"] in missed else {})


def _fmt(value) -> str:
    """An error as a multiple of its tolerance (<= 1 passes)."""
    return "-" if value is None else ("inf" if value == float("inf") else f"{value:.2g}")


def report(conversions: list[dict], records: list[dict]) -> None:
    for c in conversions:
        print(f"convert {c['package']}: exit {c['exit']}, {c['escapes']} escape hatch(es), {c['seconds']:.0f}s"
              + (" (reused)" if c["reused"] else ""))
        failures = c.get("import_failures", [])
        print(f"  converted modules that fail to import: {len(failures)}")
        for failure in failures[:15]:
            print(f"    {failure['module']}: {failure['error']}")
    print("errors as multiples of their tolerance (<= 1 passes; outputs 1e-4, gradients and statistics 1e-3 of "
          "the tensor's largest value)")
    print(f"{'model':40} {'verdict':18} {'eager':>8} {'jit':>8} {'grad':>8} {'train':>8} {'s':>5}")
    for r in records:
        seconds = r.get("torch_seconds", 0) + r.get("flax_seconds", 0)
        print(f"{r['suite'] + ':' + r['name']:40} {r['verdict']:18} {_fmt(r.get('eager')):>8} "
              f"{_fmt(r.get('jit')):>8} {_fmt(r.get('grad')):>8} {_fmt(r.get('train')):>8} {seconds:5.0f}")
        if r["verdict"] == "float32 rounding":
            print(f"    cause: float32 rounding: in float64 it computes torch's float64 values (eager "
                  f"{_fmt(r['eager64'])}, grad {_fmt(r['grad64'])} x {TOL64:g}); torch's own float32 misses "
                  f"by eager {_fmt(r.get('torch_eager32'))}, grad {_fmt(r.get('torch_grad32'))}")
        elif r["verdict"] != "equal":
            print(f"    cause: {r.get('error') or r.get('torch') or 'numbers differ (errors above, x tolerance)'}"
                  + (f"; in float64: eager {_fmt(r.get('eager64'))}, grad {_fmt(r.get('grad64'))} x {TOL64:g}"
                     if "eager64" in r or "grad64" in r else "") + (f"; float64 check: {r['error64']}" if "error64" in r else ""))
    totals(records)


def totals(records: list[dict]) -> None:
    """The closing numbers: equal in all checks, and per check, over the models torch could build."""
    usable = [r for r in records if r["verdict"] != "torch failed"]
    count = len(usable) or 1
    passed = {k: sum(1 for r in usable if r.get(k) is not None and r[k] <= 1.0) for k in ("eager", "jit", "grad")}
    equal = sum(1 for r in usable if r["verdict"] == "equal")
    rounding = sum(1 for r in usable if r["verdict"] == "float32 rounding")
    as_torch = sum(1 for r in usable if r["verdict"] == "float32 rounding" and _within_torch32(r))
    print(f"\nTOTAL {len(usable)} models: equal (eager+jit+grad+train) {equal} ({equal / count:.0%}); "
          f"float32 rounding only (equal in float64) {rounding}, of which no further from float64 than "
          f"torch's own float32 {as_torch}; "
          + ", ".join(f"{k} {v} ({v / count:.0%})" for k, v in passed.items())
          + f"; built {sum(1 for r in usable if r.get('stage') not in (None, 'build'))}")


def _within_torch32(record: dict) -> bool:
    """The converted model's float32 misses are no larger than torch's own (outputs and gradients)."""
    pairs = [("eager", "torch_eager32"), ("jit", "torch_eager32"), ("grad", "torch_grad32")]
    return all(record.get(k) is not None and record.get(t) is not None and record[k] <= max(1.0, record[t])
               for k, t in pairs)


def select_specs(suite: str, only: str | None, quick: bool) -> list[Spec]:
    specs = [s for s in TORCHVISION + TIMM if suite in ("all", s.suite)]
    if only:
        specs = [s for s in specs if re.search(only, s.name)]
    return [s for s in specs if s.quick] if quick else specs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("torchvision", "timm", "all"), default="all")
    parser.add_argument("--only", help="regular expression on model names")
    parser.add_argument("--quick", action="store_true", help="the small subset the test suite runs")
    parser.add_argument("--reuse", action="store_true", help="keep an existing conversion in the work directory")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("RETARGET_CORPUS",
                                                                          Path.home() / ".cache/retarget/corpus")))
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache/retarget/real_models")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per model and side")
    parser.add_argument("--json", type=Path, help="write every record here")
    parser.add_argument("--workers", type=int, default=1, help="Flax-side processes (default 1)")
    parser.add_argument("--worker", choices=("torch", "flax", "flax64", "imports"), help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "imports":
        imports_worker(args.suite, args.work)
        return 0
    if args.worker:
        return _worker(args)
    conversions, records = [], []
    for suite in ("torchvision", "timm"):
        specs = select_specs(suite, args.only, args.quick) if args.suite in ("all", suite) else []
        if specs:
            conversion, found = run_suite(suite, specs, args.cache, args.work, args.reuse, args.timeout,
                                          args.workers)
            conversions.append(conversion)
            records += found
    report(conversions, records)
    if args.json:
        args.json.write_text(json.dumps({"conversions": conversions, "models": records}, indent=1))
    return 0


def _worker(args) -> int:
    wanted = args.names.split(",")
    specs = sorted((s for s in TORCHVISION + TIMM if s.suite == args.suite and s.name in wanted),
                   key=lambda s: wanted.index(s.name))
    {"torch": torch_worker, "flax": flax_worker, "flax64": flax64_worker}[args.worker](specs, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
