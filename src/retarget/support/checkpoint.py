"""State dicts and checkpoints for converted scripts (and the walker `port_weights` uses).

`TORCH_LAYOUT` says, per converted layer class, which torch key fills each
Flax variable and how (transpose, permutation). It is generated from the
rules when copied into a converted file, so a script loading an original
PyTorch checkpoint maps keys exactly as `retarget weights` does, by
structure, never by guessing from names. Modules of the user's own classes
keep attribute names, so their torch keys are the same dotted paths.
"""
from __future__ import annotations

import os
import re
import urllib.request
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .torch_checkpoint import CheckpointError, TensorRef, TorchCheckpoint, write_torch

TORCH_LAYOUT = {}  # generated from the rules: layer class -> [(flax path, torch key, transform)]


def _children(obj):
    for name, value in vars(obj).items():
        if name.startswith("_") or isinstance(value, (nnx.RngState, nnx.RngStream, nnx.Rngs)):
            continue
        if isinstance(value, (nnx.Variable, nnx.Module)):
            yield name, value


def _layout_key(klass):
    return f"nnx.{klass.__name__}" if klass.__module__.startswith("flax.") else klass.__name__


def layout_of(cls, layout):
    """The layout entry of `cls` or of its nearest base that has one (Flax classes as `nnx.Name`)."""
    for klass in cls.__mro__:
        if _layout_key(klass) in layout:
            return layout[_layout_key(klass)]
    return None


def _pattern(target):
    return re.compile(re.escape(target).replace(r"\{i\}", r"(?P<i>\d+)"))


def _match(params, path):
    for target, source, transform in params:
        found = _pattern(target).fullmatch(path)
        if found:
            return source.format(**found.groupdict()), transform
    return None


def torch_entries(model, layout, src="", dst=""):
    """[(torch key, flax path, variable, transform)] for every variable of `model`, and the
    variables no layout maps."""
    params = layout_of(type(model), layout)
    if params is not None:  # a subclass's own variables (`self.gain` of a Conv2d subclass) keep their names
        own = _layout_key(type(model)) not in layout
        return _layer_entries(model, params, layout, src, dst, "", own)
    entries, unmapped = [], []
    for name, value in _children(model):
        if isinstance(value, nnx.Variable):
            entries.append((src + name, dst + name, value, "identity"))
        else:
            found = torch_entries(value, layout, f"{src}{name}.", f"{dst}{name}.")
            entries += found[0]
            unmapped += found[1]
    return entries, unmapped


def _layer_entries(obj, params, layout, src, dst, rel, own=False):
    entries, unmapped = [], []
    for name, value in _children(obj):
        path = rel + name
        matched = _match(params, path)
        if isinstance(value, nnx.Variable):
            matched = matched or ((path, "identity") if own and not rel else None)
            if matched is None:
                unmapped.append(dst + path)
            else:
                entries.append((src + matched[0], dst + path, value, matched[1]))
            continue
        if matched is not None:
            found = torch_entries(value, layout, f"{src}{matched[0]}.", f"{dst}{path}.")
        elif any(t.startswith(path + ".") or _pattern(t.rsplit(".", 1)[0]).match(path) for t, _, _ in params if "." in t):
            found = _layer_entries(value, params, layout, src, dst, path + ".")
        else:
            found = torch_entries(value, layout, f"{src}{path}.", f"{dst}{path}.")
        entries += found[0]
        unmapped += found[1]
    return entries, unmapped


def to_flax_layout(array, transform):
    """A torch tensor in the Flax layout its rule names: identity, transpose or permute:AXES."""
    if transform == "identity":
        return array
    if transform == "transpose":
        return np.ascontiguousarray(array.T)
    return np.ascontiguousarray(np.transpose(array, [int(a) for a in transform.split(":")[1].split(",")]))


def from_flax_layout(array, transform):
    """The inverse of `to_flax_layout`: a converted variable's value in torch's layout (NumPy or JAX)."""
    if transform == "identity":
        return array
    if transform == "transpose":
        return array.T
    return array.transpose(tuple(np.argsort([int(a) for a in transform.split(":")[1].split(",")])))


def _torch_variable(layer, name):
    """(the converted variable holding torch's `layer.<name>`, its transform); None where torch has None."""
    for target, source, transform in layout_of(type(layer), TORCH_LAYOUT) or [(name, name, "identity")]:
        if source == name:
            variable = layer
            for part in target.split("."):
                variable = getattr(variable, part)
            return variable, transform
    raise AttributeError(f"{type(layer).__name__} has no torch parameter {name!r}")


def torch_param(layer, name):
    """`layer.<name>` read where the layer's class is known only at run time (`self.norm1.weight` of a
    `norm_layer(dim)`): the converted variable's value in torch's layout (None where torch has None)."""
    variable, transform = _torch_variable(layer, name)
    return None if variable is None else from_flax_layout(variable[...], transform)


def init_torch_(layer, name, init):
    """`nn.init.*_(layer.<name>)` where the layer's class is known only at run time: `init` gets the
    current value in torch's layout (so fans are torch's) and its result is stored in the converted
    layer's own layout, through the same table as checkpoints (TORCH_LAYOUT)."""
    variable, transform = _torch_variable(layer, name)
    value = init(jnp.asarray(from_flax_layout(np.asarray(variable[...]), transform)))
    variable[...] = jnp.asarray(to_flax_layout(np.asarray(value), transform), variable.dtype)
    return layer


class TorchParameter:
    """`layer.<name>` as torch sees it, for code that fills a parameter in place through a function of its
    own (timm's `trunc_normal_(m.weight, std=.02)`): it reads as an array in torch's layout (`shape`,
    arithmetic, `jnp` functions), and `p[...] = value` stores `value` in the layer's own layout."""

    def __init__(self, layer, name):
        self.variable, self.transform = _torch_variable(layer, name)

    @classmethod
    def of(cls, variable, transform):
        """The view of a variable found through the layout table (`torch_parameters`)."""
        view = cls.__new__(cls)
        view.variable, view.transform = variable, transform
        return view

    def __jax_array__(self):
        return from_flax_layout(self.variable[...], self.transform)

    shape = property(lambda self: self.__jax_array__().shape)
    dtype = property(lambda self: self.variable.dtype)
    ndim = property(lambda self: len(self.variable.shape))

    def __getitem__(self, index):
        return self.__jax_array__()[index]

    def __setitem__(self, index, value):
        whole = jnp.broadcast_to(jnp.asarray(value, self.dtype), self.shape) if index is Ellipsis else (
            self.__jax_array__().at[index].set(value))
        self.variable[...] = jnp.asarray(to_flax_layout(np.asarray(whole), self.transform), self.dtype)

    def __mul__(self, other):
        return self.__jax_array__() * other

    def __add__(self, other):
        return self.__jax_array__() + other

    def __sub__(self, other):
        return self.__jax_array__() - other

    def __truediv__(self, other):
        return self.__jax_array__() / other

    def __neg__(self):
        return -self.__jax_array__()

    __rmul__, __radd__ = __mul__, __add__


def torch_named_parameters(module):
    """`module.named_parameters()` for a loop filling them in place (`nn.init.uniform_(p, -s, s)`): torch's
    names in its order, each parameter once, as a view in torch's layout that writes the variable."""
    entries, seen = torch_entries(module, TORCH_LAYOUT)[0], set()
    views = []
    for key, _, variable, transform in entries:
        if isinstance(variable, nnx.Param) and id(variable) not in seen:
            seen.add(id(variable))
            views.append((key, TorchParameter.of(variable, transform)))
    return views


def torch_parameters(module):
    """`module.parameters()` for a loop filling them in place: see `torch_named_parameters`."""
    return [view for _, view in torch_named_parameters(module)]


def _flat(tree, prefix=""):
    """Nested dicts / NNX State -> {"a/b/c": leaf}."""
    if isinstance(tree, nnx.State):
        tree = tree.to_pure_dict()
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}/"))
        return out
    return {prefix[:-1]: np.asarray(tree)}


def _nested(flat):
    root = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = root
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value if value.ndim else value[()]
    return root


def _plain(obj):
    """NNX states as nested dicts, JAX arrays as NumPy ones, containers kept."""
    if isinstance(obj, nnx.State):
        obj = obj.to_pure_dict()
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(value) for value in obj)
    return np.asarray(obj) if isinstance(obj, jax.Array) else obj


def save(obj, f):
    """torch.save for converted scripts: torch's own zip format, written without torch (no pickled
    code: only the tensor and container opcodes torch's `weights_only` loader accepts), atomically.
    A `state_dict(model)` saved so loads into the original torch model."""
    write_torch(_plain(obj), f)


def state_dict(module):
    """module.state_dict() for converted scripts: torch's keys and layouts (TORCH_LAYOUT, the table
    `load_state_dict` reads with), so what `save` writes loads into the torch model. A model with
    variables no layout maps keeps its NNX state (`load_state_dict` restores that path by path)."""
    entries, unmapped = torch_entries(module, TORCH_LAYOUT)
    if unmapped:
        return nnx.state(module, nnx.Not(nnx.RngState))
    return {key: from_flax_layout(np.asarray(variable[...]), transform) for key, _, variable, transform in entries}


def load(f, map_location=None, weights_only=True):
    """torch.load for converted scripts: an original PyTorch checkpoint (read without torch and
    without running pickled code; tensors become NumPy arrays under their torch keys) or a file
    written by `save`."""
    if zipfile.is_zipfile(f) and any(n.endswith("data.pkl") for n in zipfile.ZipFile(f).namelist()):
        return _read_torch(f)
    try:
        with np.load(f, allow_pickle=False) as archive:
            return _nested({key: archive[key] for key in archive.files})
    except (ValueError, OSError):
        return _read_torch(f)  # legacy torch.save format


def load_state_dict_from_url(url, model_dir=None, map_location=None, progress=True, check_hash=False,
                             file_name=None, weights_only=True):
    """torch.hub.load_state_dict_from_url for converted code: download once into torch's cache
    directory ($TORCH_HOME/hub/checkpoints), then read it like `load` (no torch, no pickled code)."""
    home = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    model_dir = model_dir or os.path.join(home, "hub", "checkpoints")
    os.makedirs(model_dir, exist_ok=True)
    target = os.path.join(model_dir, file_name or os.path.basename(url.split("?")[0]))
    if not os.path.exists(target):
        tmp = f"{target}.part{os.getpid()}"
        with urllib.request.urlopen(url) as response, open(tmp, "wb") as handle:
            while chunk := response.read(1 << 20):
                handle.write(chunk)
        os.replace(tmp, target)
    return load(target)


def _read_torch(f):
    checkpoint = TorchCheckpoint(f)
    try:
        return _materialize(checkpoint, checkpoint.root)
    finally:
        checkpoint.close()


def _materialize(checkpoint, tree):
    if isinstance(tree, dict):
        return {key: _materialize(checkpoint, value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_materialize(checkpoint, value) for value in tree)
    return checkpoint.read(tree) if isinstance(tree, TensorRef) else tree


def load_state_dict(module, state, strict=True):
    """module.load_state_dict(sd): a torch state dict (dotted torch keys) is mapped through
    TORCH_LAYOUT; a state saved by the converted script (`nnx.state`) is restored path by path.
    Missing, unexpected or mis-shaped entries raise, listing every one (unless strict=False)."""
    flat = _flat(state)
    if any("." in key and "/" not in key for key in flat):
        entries, unmapped = torch_entries(module, TORCH_LAYOUT)
        targets = [(source, variable, transform) for source, _, variable, transform in entries]
    else:
        unmapped = []
        targets = [("/".join(map(str, path)), variable, "identity")
                   for path, variable in nnx.to_flat_state(nnx.state(module, nnx.Not(nnx.RngState)))]
    problems = [f"missing {k}" for k, _, _ in targets if k not in flat] + [f"unmapped {k}" for k in unmapped]
    problems += [f"unexpected {k}" for k in sorted(set(flat) - {k for k, _, _ in targets})]
    values = {}
    for key, variable, transform in targets:
        if key in flat:
            value = to_flax_layout(flat[key], transform)
            if value.shape != tuple(variable.shape):
                problems.append(f"shape of {key}: {value.shape} for {tuple(variable.shape)}")
            values[id(variable)] = (variable, value)
    if problems and strict:
        raise CheckpointError("state dict does not fit the model: " + "; ".join(problems))
    for variable, value in values.values():
        variable[...] = np.array(value, dtype=variable.dtype)
    return problems
