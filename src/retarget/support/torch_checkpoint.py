"""Read `torch.save` checkpoints (zip and legacy formats) without torch and without running pickled code.

Used by `retarget weights` and copied into converted scripts that load torch
checkpoints (so they need neither torch nor retarget).

A restricted unpickler accepts only what a checkpoint needs: tensor and
parameter reconstruction, the typed storage classes, OrderedDict and plain
containers. Any other global (`os.system`, `builtins.eval`, ...) is refused
before it can be called. Tensors come back as `TensorRef`s — dtype, shape,
strides and where the bytes live — and their data is read from the zip
archive only when asked for, one storage at a time.
"""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np



class CheckpointError(Exception):
    """A checkpoint file is unreadable or unsafe: names the file and the problem."""

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

    def __init__(self, handle, seen: dict[str, StorageRef] | None = None):
        super().__init__(handle)
        self.seen = {} if seen is None else seen  # storages met, by key (legacy files need their dtypes)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("legacy storage views are not supported; re-save with a current torch")
        ref = StorageRef(str(pid[2]), pid[1].dtype)
        self.seen[ref.key] = ref
        return ref


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class TorchCheckpoint:
    """A `torch.save` file (zip format, or the legacy pre-1.6 stream): its object tree (with
    TensorRefs) and lazy tensor data."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._zip, self._legacy, self._little = None, None, True
        self._refs: dict[str, StorageRef] = {}
        try:
            if zipfile.is_zipfile(self.path):
                self.root = self._open_zip()
            else:
                self.root = self._open_legacy()
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, KeyError, TypeError,
                OverflowError) as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None

    def _unpickler(self, handle) -> RestrictedUnpickler:
        return RestrictedUnpickler(handle, self._refs)

    def _open_zip(self):
        self._zip = zipfile.ZipFile(self.path)
        pickles = [n for n in self._zip.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{self.path}: expected one data.pkl in the archive, found {len(pickles)}")
        self._prefix = pickles[0][: -len("data.pkl")]
        name = self._prefix + "byteorder"
        self._little = name not in self._zip.namelist() or self._zip.read(name).strip() == b"little"
        with self._zip.open(pickles[0]) as handle:
            return self._unpickler(handle).load()

    def _open_legacy(self):
        """Pre-1.6 stream: magic, protocol, sys_info, the object, storage keys, then each storage's
        8-byte element count and raw bytes (their offsets are recorded; nothing is read yet)."""
        self._legacy = self.path.open("rb")
        header = RestrictedUnpickler(self._legacy)
        if header.load() != LEGACY_MAGIC:
            raise CheckpointError(f"{self.path}: not a torch.save file (neither zip nor legacy magic number)")
        header.load()
        info = header.load()
        self._little = info.get("little_endian", True) if isinstance(info, dict) else True
        root = self._unpickler(self._legacy).load()
        keys = RestrictedUnpickler(self._legacy).load()
        self._offsets = {}
        for key in keys:
            count = int.from_bytes(self._legacy.read(8), "little")
            self._offsets[str(key)] = (self._legacy.tell(), count)
            self._legacy.seek(count * self._refs[str(key)].dtype.itemsize, 1)
        if self._legacy.tell() > self.path.stat().st_size:
            raise CheckpointError(f"{self.path}: truncated (storages run past the end of the file)")
        return root

    def _storage_bytes(self, key: str) -> bytes:
        if self._zip is not None:
            try:
                return self._zip.read(f"{self._prefix}data/{key}")
            except (KeyError, zipfile.BadZipFile, EOFError) as exc:
                raise CheckpointError(f"{self.path}: cannot read storage {key}: {exc}") from None
        offset, count = self._offsets[key]
        self._legacy.seek(offset)
        return self._legacy.read(count * self._refs[key].dtype.itemsize)

    def read(self, ref: TensorRef) -> np.ndarray:
        """The tensor's data as a fresh contiguous array (dtype kept: bf16 stays bf16)."""
        raw = self._storage_bytes(ref.storage.key)
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
        for handle in (self._zip, self._legacy):
            if handle is not None:
                handle.close()


def tensors_in(tree, prefix=""):
    """Flatten nested dicts of TensorRefs into dotted keys (non-tensor leaves are skipped)."""
    out = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(tensors_in(value, f"{prefix}{key}."))
    elif isinstance(tree, TensorRef):
        out[prefix[:-1]] = tree
    return out


# ---------------------------------------------------------------------------------------------- writing
# torch's zip format, written without torch: the pickle is written opcode by opcode, naming exactly
# the globals torch's `weights_only` loader accepts (`torch._utils._rebuild_tensor_v2`, the typed
# storage classes, `collections.OrderedDict`), so `torch.load(path, weights_only=True)` reads it.
STORAGE_NAMES = {np.dtype(dtype): name for name, dtype in STORAGE_DTYPES.items()}
ARCHIVE = "archive"


def _global(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _unicode(text):
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _int(value):
    return pickle.LONG1 + bytes([len(raw := int(value).to_bytes(8, "little", signed=True))]) + raw


def _tuple(items):
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def _tensor(key, dtype, shape):
    """`_rebuild_tensor_v2(storage, 0, shape, contiguous strides, False, OrderedDict())`."""
    strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
    storage = _tuple([_unicode("storage"), _global("torch", STORAGE_NAMES[np.dtype(dtype)]), _unicode(key),
                      _unicode("cpu"), _int(int(np.prod(shape, dtype=np.int64)))]) + pickle.BINPERSID
    hooks = _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
    args = _tuple([storage, _int(0), _tuple([_int(d) for d in shape]), _tuple([_int(s) for s in strides]),
                   pickle.NEWFALSE, hooks])
    return _global("torch._utils", "_rebuild_tensor_v2") + args + pickle.REDUCE


def _pickled(value, arrays):
    """The opcodes of `value` (dicts, lists, tuples, numbers, strings, arrays); arrays are appended to
    `arrays`, each the storage named by its index."""
    if isinstance(value, dict):
        items = b"".join(_pickled(k, arrays) + _pickled(v, arrays) for k, v in value.items())
        return pickle.EMPTY_DICT + (pickle.MARK + items + pickle.SETITEMS if value else b"")
    if isinstance(value, (list, tuple)):
        items = [_pickled(v, arrays) for v in value]
        return _tuple(items) if isinstance(value, tuple) else pickle.EMPTY_LIST + (
            pickle.MARK + b"".join(items) + pickle.APPENDS if items else b"")
    if value is None or isinstance(value, bool):
        return {None: pickle.NONE, True: pickle.NEWTRUE, False: pickle.NEWFALSE}[value]
    if isinstance(value, (int, np.integer)):
        return _int(value)
    if isinstance(value, (float, np.floating)):
        return pickle.BINFLOAT + struct.pack(">d", float(value))
    if isinstance(value, str):
        return _unicode(value)
    array = np.asarray(value)  # (np.ascontiguousarray would make a 0-d array 1-d)
    if array.dtype not in STORAGE_NAMES:
        raise TypeError(f"torch.save: cannot write a value of type {type(value).__name__} ({array.dtype}); "
                        "save arrays, numbers, strings and containers of them")
    arrays.append(array)
    return _tensor(str(len(arrays) - 1), array.dtype, array.shape)


def write_torch(obj, f):
    """`torch.save(obj, f)` in torch's zip format, atomically; `obj` holds dicts, lists, tuples,
    numbers, strings and arrays (JAX or NumPy), which torch reads back as tensors."""
    arrays = []
    data = pickle.PROTO + b"\x02" + _pickled(obj, arrays) + pickle.STOP
    tmp = f"{f}.tmp{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(f"{ARCHIVE}/data.pkl", data)
        archive.writestr(f"{ARCHIVE}/byteorder", "little")
        for i, array in enumerate(arrays):
            archive.writestr(f"{ARCHIVE}/data/{i}", np.ascontiguousarray(array).reshape(-1).view(np.uint8).tobytes())
        archive.writestr(f"{ARCHIVE}/version", "3\n")
    os.replace(tmp, f)
