"""Read `torch.save` checkpoints without torch and without running pickled code.

A restricted unpickler accepts only what a checkpoint needs: tensor and
parameter reconstruction, the typed storage classes, OrderedDict and plain
containers. Any other global (`os.system`, `builtins.eval`, ...) is refused
before it can be called. Tensors come back as `TensorRef`s — dtype, shape,
strides and where the bytes live — and their data is read from the zip
archive only when asked for, one storage at a time.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from .safetensors_io import CheckpointError

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class StorageRef:
    key: str
    dtype: np.dtype


@dataclass(frozen=True)
class TensorRef:
    """A tensor in a checkpoint: its storage, dtype, offset, shape and strides (in elements)."""
    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return self.storage.dtype


def _rebuild_tensor(storage, storage_offset, size, stride, *args):
    return TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, *args):
    return data


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


ALLOWED = {
    ("collections", "OrderedDict"): lambda: __import__("collections").OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): lambda: _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: _rebuild_parameter,
    ("_codecs", "encode"): lambda: __import__("codecs").encode,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles checkpoint structure only; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]()
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: a checkpoint only needs tensors "
                                     "and plain containers (this file may run code if loaded with pickle)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return StorageRef(str(pid[2]), pid[1].dtype)


class TorchCheckpoint:
    """A zip-format `torch.save` file: its object tree (with TensorRefs) and lazy tensor data."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not zipfile.is_zipfile(self.path):
            raise CheckpointError(f"{self.path}: not a zip-format torch.save file (the legacy pre-1.6 format "
                                  "is not supported yet; re-save it with a current torch)")
        try:
            self._zip = zipfile.ZipFile(self.path)
            pickles = [n for n in self._zip.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                raise CheckpointError(f"{self.path}: expected one data.pkl in the archive, found {len(pickles)}")
            self._prefix = pickles[0][: -len("data.pkl")]
            self._little = self._read_byteorder()
            with self._zip.open(pickles[0]) as handle:
                self.root = RestrictedUnpickler(handle).load()
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None

    def _read_byteorder(self) -> bool:
        name = self._prefix + "byteorder"
        return name not in self._zip.namelist() or self._zip.read(name).strip() == b"little"

    def read(self, ref: TensorRef) -> np.ndarray:
        """The tensor's data as a fresh contiguous array (dtype kept: bf16 stays bf16)."""
        try:
            raw = self._zip.read(f"{self._prefix}data/{ref.storage.key}")
        except (KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise CheckpointError(f"{self.path}: cannot read storage {ref.storage.key}: {exc}") from None
        dtype = ref.dtype if self._little else ref.dtype.newbyteorder(">")
        flat = np.frombuffer(raw, dtype=dtype)
        needed = ref.offset + sum((s - 1) * st for s, st in zip(ref.shape, ref.stride)) + 1 if all(ref.shape) else 0
        if needed > flat.size:
            raise CheckpointError(f"{self.path}: storage {ref.storage.key} is truncated")
        if not ref.shape:  # as_strided reads an empty shape as "keep the input's shape"
            return flat[ref.offset:ref.offset + 1].reshape(()).astype(ref.dtype)
        view = np.lib.stride_tricks.as_strided(flat[ref.offset:], ref.shape,
                                               tuple(s * flat.itemsize for s in ref.stride), writeable=False)
        return np.ascontiguousarray(view).astype(ref.dtype, copy=False)

    def close(self) -> None:
        self._zip.close()


def tensors_in(tree: Any, prefix: str = "") -> dict[str, TensorRef]:
    """Flatten nested dicts of TensorRefs into dotted keys (non-tensor leaves are skipped)."""
    out: dict[str, TensorRef] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(tensors_in(value, f"{prefix}{key}."))
    elif isinstance(tree, TensorRef):
        out[prefix[:-1]] = tree
    return out
