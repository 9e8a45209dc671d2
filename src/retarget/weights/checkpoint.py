"""Open any supported checkpoint as a lazy tensor source.

A `TensorSource` knows every tensor's name, dtype and shape before any data is
read, and reads one tensor at a time. Supported: `.safetensors`, sharded
safetensors (`*.safetensors.index.json`), zip-format `torch.save` files
(`.pt`/`.pth`/`.bin`/`.ckpt`, zip or legacy, through the restricted unpickler,
nested checkpoints included), `.npz` and Flax `.msgpack`. Keys are normalised for wrappers: a
`module.` (DataParallel/DDP) or `_orig_mod.` (torch.compile) prefix on every
key is removed, and a user prefix can be stripped or added.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .mapped import Release
from .safetensors_io import CheckpointError, SafetensorsReader
from ..support.torch_checkpoint import TensorRef, TorchCheckpoint, tensors_in

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
STATE_DICT_NAMES = ("state_dict", "model_state_dict", "model", "module", "net", "network")


@dataclass
class TensorSource:
    """Tensor names -> (dtype, shape), and a reader for one tensor's data."""
    infos: dict[str, tuple[np.dtype, tuple[int, ...]]]
    reader: Callable[[str], np.ndarray]
    closers: list[Callable[[], None]] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # normalised name -> name in the file
    buffered: bool = False  # reader accepts a reusable buffer
    viewer: Callable[[str, np.ndarray | None], tuple[np.ndarray, Release | None]] | None = None
    prefetcher: Callable[[str], None] | None = None

    def keys(self) -> list[str]:
        return list(self.infos)

    def read(self, key: str, buffer: np.ndarray | None = None) -> np.ndarray:
        """One tensor. Readers that can fill `buffer` (safetensors) do, so streaming reuses memory."""
        name = self.renamed.get(key, key)
        return self.reader(name, buffer) if self.buffered else self.reader(name)

    def view(self, key: str, buffer: np.ndarray | None = None) -> tuple[np.ndarray, Release | None]:
        """One tensor without a copy where the file is memory-mapped, with the release that drops
        copied byte ranges from memory; otherwise `read` (and no release)."""
        if self.viewer is None:
            return self.read(key, buffer), None
        return self.viewer(self.renamed.get(key, key), buffer)

    def prefetch(self, key: str) -> None:
        """Hint that `key` is read next (mapped files start reading it from disk in the background)."""
        if self.prefetcher is not None:
            self.prefetcher(self.renamed.get(key, key))

    def close(self) -> None:
        for close in self.closers:
            close()


def _safetensors(path: Path) -> TensorSource:
    reader = SafetensorsReader(path)
    return TensorSource({k: reader.info(k) for k in reader.keys()}, reader.read, [reader.close], buffered=True,
                        viewer=reader.view, prefetcher=reader.prefetch)


def _sharded(index: Path) -> TensorSource:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index}: not a safetensors index ({exc})") from None
    readers = {name: SafetensorsReader(index.parent / name) for name in sorted(set(weight_map.values()))}
    infos = {}
    for key, shard in weight_map.items():
        if key not in readers[shard].entries:
            raise CheckpointError(f"{index}: {key!r} is mapped to {shard}, which does not contain it")
        infos[key] = readers[shard].info(key)
    return TensorSource(infos, lambda key, buffer=None: readers[weight_map[key]].read(key, buffer),
                        [r.close for r in readers.values()], buffered=True,
                        viewer=lambda key, buffer=None: readers[weight_map[key]].view(key, buffer),
                        prefetcher=lambda key: readers[weight_map[key]].prefetch(key))


def _select(tree, select: str | None, path: Path):
    """The state dict inside a nested checkpoint: `select` (dotted), else the obvious one."""
    if select:
        for part in select.split("."):
            if not isinstance(tree, dict) or part not in tree:
                raise CheckpointError(f"{path}: no entry {select!r} (top-level keys: {list(tree)[:20]})")
            tree = tree[part]
        return tree
    if isinstance(tree, dict) and any(isinstance(v, TensorRef) for v in tree.values()):
        return tree
    candidates = [k for k in STATE_DICT_NAMES if isinstance(tree, dict) and isinstance(tree.get(k), dict)
                  and tensors_in(tree[k])]
    if len(candidates) == 1:
        return tree[candidates[0]]
    keys = list(tree)[:20] if isinstance(tree, dict) else type(tree).__name__
    raise CheckpointError(f"{path}: cannot tell which entry holds the weights ({keys}); choose one with --select")


def _torch(path: Path, select: str | None) -> TensorSource:
    checkpoint = TorchCheckpoint(path)
    refs = tensors_in(_select(checkpoint.root, select, path))
    infos = {k: (r.dtype, r.shape) for k, r in refs.items()}
    return TensorSource(infos, lambda key: checkpoint.read(refs[key]), [checkpoint.close])


def _npz(path: Path) -> TensorSource:
    try:
        archive = np.load(path, allow_pickle=False)
        infos = {}
        for key in archive.files:
            with archive.zip.open(f"{key}.npy") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(handle)
            infos[key] = (np.dtype(dtype), tuple(shape))
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable .npz ({exc})") from None
    return TensorSource(infos, lambda key: archive[key], [archive.close])


def _msgpack(path: Path) -> TensorSource:
    """A Flax msgpack checkpoint (`flax.serialization.to_bytes`); msgpack runs no code, but the
    format is not lazy: the file is read whole."""
    from flax import serialization
    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise CheckpointError(f"{path}: not a Flax msgpack checkpoint ({exc})") from None
    arrays = {}

    def flatten(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                flatten(value, f"{prefix}{key}.")
        elif node is not None:
            arrays[prefix[:-1].removesuffix(".value")] = np.asarray(node)

    flatten(tree, "")
    return TensorSource({k: (a.dtype, a.shape) for k, a in arrays.items()}, lambda key: arrays[key])


def _normalise(source: TensorSource, strip_prefix: str | None, add_prefix: str | None) -> TensorSource:
    names = {k: k for k in source.infos}
    prefixes = [p for p in WRAPPER_PREFIXES] + ([strip_prefix] if strip_prefix else [])
    for prefix in prefixes:
        if names and all(n.startswith(prefix) for n in names):
            names = {n[len(prefix):]: original for n, original in names.items()}
        elif prefix == strip_prefix:
            missing = [n for n in names if not n.startswith(prefix)][:5]
            raise CheckpointError(f"--strip-prefix {prefix!r}: keys without it, e.g. {missing}")
    if add_prefix:
        names = {add_prefix + n: original for n, original in names.items()}
    infos = {n: source.infos[original] for n, original in names.items()}
    return dataclasses.replace(source, infos=infos, renamed=names)


def open_checkpoint(path: str | Path, *, select: str | None = None, strip_prefix: str | None = None,
                    add_prefix: str | None = None) -> TensorSource:
    """Open `path` lazily; CheckpointError names the file and what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    name = path.name
    if name.endswith(".safetensors.index.json"):
        source = _sharded(path)
    elif name.endswith(".safetensors"):
        source = _safetensors(path)
    elif name.endswith(".npz"):
        source = _npz(path)
    elif name.endswith(".msgpack"):
        source = _msgpack(path)
    elif path.suffix in (".pt", ".pth", ".bin", ".ckpt", ".tar"):
        source = _torch(path, select)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint format (expected .safetensors, "
                              ".safetensors.index.json, .pt/.pth/.bin/.ckpt, .npz or .msgpack)")
    return _normalise(source, strip_prefix, add_prefix)


def renamed(source: TensorSource, mapping: dict[str, str]) -> TensorSource:
    """The same tensors under new names (`mapping`: current name -> new name)."""
    infos = {mapping.get(k, k): info for k, info in source.infos.items()}
    names = {mapping.get(k, k): source.renamed.get(k, k) for k in source.infos}
    return dataclasses.replace(source, infos=infos, renamed=names)
