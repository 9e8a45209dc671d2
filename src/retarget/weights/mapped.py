"""Memory-mapped checkpoint files: tensors read and written in place, without staging copies.

Reading a tensor through a mapping costs no copy and no buffer: the transform
reads the page cache directly. Writing through a mapping of the (pre-sized)
output lets the transform write each converted tensor straight into the file.
Mapped pages count towards the process's resident memory until released, so
every range is released (`MADV_DONTNEED`) as soon as it has been copied: peak
memory stays near one tensor whatever the checkpoint size. Dirty pages of the
output survive the release; the kernel writes them back as usual.
"""
from __future__ import annotations

import mmap

import numpy as np

from .transforms import Release

__all__ = ["MappedFile", "Release"]


class MappedFile:
    """A whole file mapped once; arrays are views of it, ranges are released after use."""

    def __init__(self, mapping: mmap.mmap):
        self._map = mapping

    @classmethod
    def open(cls, fileno: int, writable: bool, size: int = 0) -> MappedFile | None:
        """A mapping of the open file, or None where the file system cannot map it."""
        try:
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            return cls(mmap.mmap(fileno, size, access=access))
        except (OSError, ValueError):
            return None

    def array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=offset).reshape(shape)

    def release(self, begin: int, end: int) -> None:
        """Drop [begin, end) from this process's resident pages (whole pages inside it, plus the
        page holding `begin`: a neighbour's page only costs a cheap refault if touched again)."""
        self._advise(getattr(mmap, "MADV_DONTNEED", None), begin, end)

    def prefetch(self, begin: int, end: int) -> None:
        """Start reading [begin, end) from disk in the background."""
        self._advise(getattr(mmap, "MADV_WILLNEED", None), begin, end)

    def _advise(self, option: int | None, begin: int, end: int) -> None:
        if option is None or end <= begin:
            return
        start = begin - begin % mmap.PAGESIZE
        self._map.madvise(option, start, min(end, len(self._map)) - start)

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:  # a caller still holds a view: the mapping goes when that view does
            pass
