"""safetensors, read lazily and written as a stream, with every header field checked.

Format: an 8-byte little-endian header length, a JSON header mapping names to
{dtype, shape, data_offsets} (offsets relative to the data section), then the
data. The reader validates the header before any tensor is read (size limit,
known dtypes, offsets inside the file, no overlaps, byte length = shape x item
size); a tensor is read only when asked for. The writer takes the names,
dtypes and shapes first, then receives tensors one at a time, so memory stays
near the largest single tensor.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO, Iterable

import ml_dtypes
import numpy as np

from ..support.torch_checkpoint import CheckpointError  # noqa: F401  (re-exported)
from .mapped import MappedFile, Release
from .transforms import CHUNK_BYTES

MAX_HEADER = 100 * 1024 * 1024
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
    "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
}
CODES = {dtype: code for code, dtype in DTYPES.items()}



def _fail(path: Path, message: str) -> CheckpointError:
    return CheckpointError(f"{path}: {message}")


class SafetensorsReader:
    """Lazy reader of one .safetensors file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: BinaryIO = self.path.open("rb", buffering=0)  # large reads go straight to the kernel
        self._mapped: MappedFile | bool | None = None  # created on the first view
        self.entries, self.metadata, self._data_start = self._read_header()

    def _read_header(self):
        size = self.path.stat().st_size
        raw = self._file.read(8)
        if len(raw) < 8:
            raise _fail(self.path, "truncated: no header length")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER:
            raise _fail(self.path, f"header of {length} bytes is larger than the {MAX_HEADER} allowed")
        if 8 + length > size:
            raise _fail(self.path, "truncated: header runs past the end of the file")
        try:
            header = json.loads(self._file.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _fail(self.path, f"bad header: {exc}") from None
        if not isinstance(header, dict):
            raise _fail(self.path, "bad header: not a JSON object")
        metadata = header.pop("__metadata__", {}) or {}
        entries = {name: self._entry(name, spec) for name, spec in header.items()}
        self._check_layout(entries, size - 8 - length)
        return entries, metadata, 8 + length

    def _entry(self, name: str, spec) -> tuple[np.dtype, tuple[int, ...], int, int]:
        try:
            dtype = DTYPES[spec["dtype"]]
            shape = tuple(int(d) for d in spec["shape"])
            begin, end = (int(o) for o in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise _fail(self.path, f"bad header entry for {name!r}: {spec!r}") from None
        if any(d < 0 for d in shape) or end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise _fail(self.path, f"{name!r}: offsets {begin}..{end} do not hold shape {shape} of {spec['dtype']}")
        return dtype, shape, begin, end

    def _check_layout(self, entries: dict, data_size: int) -> None:
        spans = sorted((begin, end, name) for name, (_, _, begin, end) in entries.items())
        previous_end, previous = 0, None
        for begin, end, name in spans:
            if begin < previous_end:
                raise _fail(self.path, f"{name!r} overlaps {previous!r} in the data section")
            if end > data_size:
                raise _fail(self.path, f"truncated: {name!r} ends at {end}, past the data ({data_size} bytes)")
            previous_end, previous = end, name

    def keys(self) -> list[str]:
        return list(self.entries)

    def info(self, key: str) -> tuple[np.dtype, tuple[int, ...]]:
        dtype, shape, _, _ = self.entries[key]
        return dtype, shape

    def read(self, key: str, buffer: np.ndarray | None = None) -> np.ndarray:
        """The tensor's data; read into `buffer` (uint8, reused across calls) when one is given."""
        dtype, shape, begin, end = self.entries[key]
        self._file.seek(self._data_start + begin)  # (the mapping, if any, is left alone)
        if buffer is not None and buffer.nbytes >= end - begin:
            out = buffer[:end - begin].view(dtype).reshape(shape)
        else:
            out = np.empty(shape, dtype=dtype)
        if self._file.readinto(memoryview(out.reshape(-1).view(np.uint8))) != end - begin:
            raise _fail(self.path, f"truncated while reading {key!r}")
        return out

    def view(self, key: str, buffer: np.ndarray | None = None) -> tuple[np.ndarray, Release | None]:
        """The tensor as a read-only view of the memory-mapped file (no copy), and a release that
        drops a copied byte range from this process's memory; a plain read where mapping fails."""
        dtype, shape, begin, end = self.entries[key]
        if self._mapped is None:
            self._mapped = MappedFile.open(self._file.fileno(), writable=False) or False
        if not self._mapped or end == begin:
            return self.read(key, buffer), None
        start = self._data_start + begin
        array = self._mapped.array(start, dtype, shape)
        return array, lambda lo, hi: self._mapped.release(start + lo, start + hi)

    def prefetch(self, key: str) -> None:
        """Ask the kernel to start reading `key` from disk now (a hint; returns at once)."""
        if self._mapped:
            _, _, begin, end = self.entries[key]
            self._mapped.prefetch(self._data_start + begin, self._data_start + end)

    def close(self) -> None:
        if self._mapped:
            self._mapped.close()
        self._file.close()


def _aligned(length: int) -> int:
    return length + (-length) % 8


def encode_header(layout: Iterable[tuple[str, np.dtype, tuple[int, ...]]], metadata: dict[str, str] | None
                  ) -> tuple[bytes, list[tuple[str, np.dtype, tuple[int, ...], int]]]:
    """The header bytes (length prefix, JSON padded to 8 bytes) and each tensor's data offset."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset, spans = 0, []
    for name, dtype, shape in layout:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": CODES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        spans.append((name, np.dtype(dtype), tuple(shape), offset))
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (_aligned(len(encoded)) - len(encoded))
    return struct.pack("<Q", len(encoded)) + encoded, spans


class SafetensorsWriter:
    """Write a .safetensors file tensor by tensor, in the declared order."""

    def __init__(self, handle: BinaryIO, layout: Iterable[tuple[str, np.dtype, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None):
        header, spans = encode_header(layout, metadata)
        self._expected = [(name, dtype, shape) for name, dtype, shape, _ in spans]
        handle.write(header)
        self._handle, self._next = handle, 0

    def write(self, name: str, array: np.ndarray, release: Release | None = None) -> None:
        """Append the next tensor; `release` is told each byte range of `array` once written."""
        expected = self._expected[self._next]
        if (name, array.dtype, array.shape) != expected:
            raise ValueError(f"expected {expected}, got {(name, array.dtype, array.shape)}")
        data = np.ascontiguousarray(array)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        write_chunks(self._handle, data, release)
        self._next += 1

    def finish(self) -> None:
        if self._next != len(self._expected):
            raise ValueError(f"{len(self._expected) - self._next} tensor(s) declared but not written")


def write_chunks(handle: BinaryIO, array: np.ndarray, release: Release | None = None) -> None:
    """Write a contiguous array without an intermediate copy, in chunks released once written
    (a memory-mapped source then never has more than one chunk resident)."""
    raw = memoryview(array.reshape(-1).view(np.uint8))
    for start in range(0, len(raw), CHUNK_BYTES):
        handle.write(raw[start:start + CHUNK_BYTES])
        if release:
            release(start, min(start + CHUNK_BYTES, len(raw)))


def shard_layout(layout: list[tuple[str, np.dtype, tuple[int, ...]]], max_bytes: int) -> list[list]:
    """Split a layout into consecutive shards of at most `max_bytes` (a larger tensor gets its own)."""
    shards, current, size = [], [], 0
    for item in layout:
        nbytes = int(np.prod(item[2], dtype=np.int64)) * np.dtype(item[1]).itemsize
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(item)
        size += nbytes
    return shards + ([current] if current else [])
