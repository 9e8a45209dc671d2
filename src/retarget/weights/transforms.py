"""Tensor transforms named in rules: how a torch tensor becomes a Flax variable.

A transform is a short string so rule files stay data: `identity`,
`transpose` (reverse all axes, e.g. Linear (out, in) -> (in, out)) or
`permute:2,3,1,0`. Every transform has an exact inverse, used to verify
conversions and to go back to PyTorch.

`fill` writes a transform straight into its destination (a memory-mapped
region of the output file, or a reusable buffer) in chunks of source rows, so
a memory-mapped source can drop each chunk's pages as soon as it is copied.
Large 2-D transposes run in bands of source rows, one cache line wide, spread
over a few threads (numpy releases the GIL while copying): about 10x numpy's
strided `a.T` copy on 4096x4096 float32 with 2 cores.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # numpy loads on first use: converting source (rules only) never needs it
    import numpy as np

CHUNK_BYTES = 32 << 20  # source bytes copied between two page releases
PARALLEL_BYTES = 4 << 20  # below this a transpose is one numpy call
Release = Callable[[int, int], None]  # (first byte, end byte) of the source tensor now copied


@dataclass(frozen=True)
class Transform:
    name: str
    axes: tuple[int, ...] | None = None

    def apply(self, array: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray:
        """The Flax-layout array (contiguous); written into `buffer` (uint8) when it is large enough."""
        import numpy as np
        if self.name == "identity":
            return array
        shape = self.target_shape(array.shape)
        if buffer is not None and buffer.nbytes >= array.nbytes:
            out = buffer[:array.nbytes].view(array.dtype).reshape(shape)
        else:
            out = np.empty(shape, dtype=array.dtype)
        self.fill(array, out)
        return out

    def fill(self, array: np.ndarray, out: np.ndarray, release: Release | None = None) -> None:
        """Write the transformed `array` into `out` (its shape is the target shape; a different
        dtype casts). `release` is told each byte range of `array` once it has been copied."""
        import numpy as np
        if self.name == "identity" or array.ndim < 2:
            _copy_rows(array.reshape(-1), out.reshape(-1), release)
        elif self.name == "transpose" and array.ndim == 2:
            _transpose_rows(array, out, release)
        else:
            np.copyto(out, np.transpose(array, self.axes), casting="unsafe")
            if release:
                release(0, array.nbytes)

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


def _copy_rows(flat: np.ndarray, out: np.ndarray, release: Release | None) -> None:
    """Copy (or cast) a 1-D array chunk by chunk, releasing each chunk after it is copied."""
    import numpy as np
    step = max(1, CHUNK_BYTES // max(flat.itemsize, 1))
    for start in range(0, flat.size, step):
        np.copyto(out[start:start + step], flat[start:start + step], casting="unsafe")
        if release:
            release(start * flat.itemsize, min(start + step, flat.size) * flat.itemsize)


def _transpose_rows(array: np.ndarray, out: np.ndarray, release: Release | None) -> None:
    """`out[...] = array.T` for a 2-D array: chunks of source rows, each spread over threads."""
    import numpy as np
    rows, cols = array.shape
    if array.nbytes < PARALLEL_BYTES:
        np.copyto(out, array.T, casting="unsafe")
        if release:
            release(0, array.nbytes)
        return
    if array.dtype == out.dtype:  # pure data movement: unsigned views copy fastest (bf16 included)
        raw = np.dtype(f"u{array.itemsize}") if array.itemsize in (1, 2, 4, 8) else array.dtype
        array, out = array.view(raw), out.view(raw)
    band = max(1, 64 // array.itemsize)  # one cache line of each source row per step
    step = max(band, CHUNK_BYTES // max(cols * array.itemsize, 1) // band * band)
    workers = _pool()._max_workers
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        share = -(-(stop - start) // workers // band) * band or band
        spans = [(lo, min(lo + share, stop)) for lo in range(start, stop, share)]
        list(_pool().map(lambda span: _bands(array, out, *span, band), spans))
        if release:
            release(start * cols * array.itemsize, stop * cols * array.itemsize)


def _bands(array: np.ndarray, out: np.ndarray, first: int, stop: int, band: int) -> None:
    for i in range(first, stop, band):
        out[:, i:i + band] = array[i:min(i + band, stop), :].T


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="retarget-copy")


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
