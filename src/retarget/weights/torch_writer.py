"""Write a `torch.save`-compatible state dict (zip format) without torch.

The pickle is written opcode by opcode, naming exactly the globals torch's own
`weights_only` loader accepts (`collections.OrderedDict`,
`torch._utils._rebuild_tensor_v2`, the typed storage classes), so
`torch.load(path, weights_only=True)` reads it. Each tensor's bytes are a zip
member of their own, written as they arrive: one tensor in memory at a time.
"""
from __future__ import annotations

import pickle
import zipfile
from typing import BinaryIO

import numpy as np

from ..support.torch_checkpoint import ARCHIVE, _global, _tensor, _unicode

def state_dict_pickle(layout: list[tuple[str, np.dtype, tuple[int, ...]]]) -> bytes:
    """The data.pkl of a state dict whose i-th tensor lives in storage `i`."""
    items = b"".join(_unicode(name) + _tensor(str(i), dtype, shape) for i, (name, dtype, shape) in enumerate(layout))
    return (pickle.PROTO + b"\x02" + _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
            + pickle.MARK + items + pickle.SETITEMS + pickle.STOP)


class TorchZipWriter:
    """A state dict in torch's zip format; tensors are written one at a time, in layout order."""

    def __init__(self, handle: BinaryIO, layout: list[tuple[str, np.dtype, tuple[int, ...]]]):
        self._zip = zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._zip.writestr(f"{ARCHIVE}/data.pkl", state_dict_pickle(layout))
        self._zip.writestr(f"{ARCHIVE}/byteorder", "little")
        self._layout, self._next = layout, 0

    def write(self, name: str, array: np.ndarray) -> None:
        expected = self._layout[self._next]
        if (name, np.dtype(array.dtype), tuple(array.shape)) != (expected[0], np.dtype(expected[1]), expected[2]):
            raise ValueError(f"expected {expected}, got {(name, array.dtype, array.shape)}")
        data = np.ascontiguousarray(array)
        with self._zip.open(f"{ARCHIVE}/data/{self._next}", "w", force_zip64=True) as member:
            member.write(memoryview(data.reshape(-1).view(np.uint8)))
        self._next += 1

    def finish(self) -> None:
        self._zip.writestr(f"{ARCHIVE}/version", "3\n")
        self._zip.close()
