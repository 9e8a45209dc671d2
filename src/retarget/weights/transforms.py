"""Tensor transforms named in rules: how a torch tensor becomes a Flax variable.

A transform is a short string so rule files stay data: `identity`,
`transpose` (reverse all axes, e.g. Linear (out, in) -> (in, out)) or
`permute:2,3,1,0`. Every transform has an exact inverse, used to verify
conversions and to go back to PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads on first use: converting source (rules only) never needs it
    import numpy as np


@dataclass(frozen=True)
class Transform:
    name: str
    axes: tuple[int, ...] | None = None

    def apply(self, array: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray:
        """The Flax-layout array; a 2-D transpose is written into `buffer` (uint8) when it fits."""
        import numpy as np
        if self.name == "identity":
            return array
        if self.name == "transpose":
            return transpose_2d(array, buffer) if array.ndim == 2 else np.ascontiguousarray(array.T)
        return np.ascontiguousarray(np.transpose(array, self.axes))

    def invert(self, array: np.ndarray) -> np.ndarray:
        if self.name in ("identity", "transpose"):
            return self.apply(array)  # both are their own inverse
        import numpy as np
        return np.ascontiguousarray(np.transpose(array, _inverse(self.axes)))

    def target_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.name == "identity":
            return tuple(shape)
        if self.name == "transpose":
            return tuple(reversed(shape))
        return tuple(shape[a] for a in self.axes)


    def source_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The torch-side shape of a variable of `shape` (the inverse of target_shape)."""
        if self.name == "identity":
            return tuple(shape)
        if self.name == "transpose":
            return tuple(reversed(shape))
        return tuple(shape[a] for a in _inverse(self.axes))


def _inverse(axes: tuple[int, ...]) -> list[int]:
    """The permutation that undoes `axes`."""
    return sorted(range(len(axes)), key=axes.__getitem__)


def transpose_2d(array: np.ndarray, buffer: np.ndarray | None = None, tile: int = 256) -> np.ndarray:
    """A contiguous transpose done in cache-sized tiles (about 3x numpy's strided copy on large matrices)."""
    import numpy as np
    rows, cols = array.shape
    if rows * cols < tile * tile:
        return np.ascontiguousarray(array.T)
    if buffer is not None and buffer.nbytes >= array.nbytes:
        out = buffer[:array.nbytes].view(array.dtype).reshape(cols, rows)
    else:
        out = np.empty((cols, rows), dtype=array.dtype)
    for i in range(0, rows, tile):
        for j in range(0, cols, tile):
            out[j:j + tile, i:i + tile] = array[i:i + tile, j:j + tile].T
    return out


def parse_transform(text: str) -> Transform:
    """Parse a rule's transform string; ValueError names what is accepted."""
    if text in ("identity", "transpose"):
        return Transform(text)
    if text.startswith("permute:"):
        try:
            axes = tuple(int(a) for a in text[len("permute:"):].split(","))
        except ValueError:
            axes = ()
        if sorted(axes) == list(range(len(axes))) and axes:
            return Transform("permute", axes)
    raise ValueError(f"unknown transform {text!r} (expected identity, transpose or permute:AXES)")
