"""Stream a checkpoint into the layout of a converted Flax model, one tensor at a time.

The target model is built abstractly (`nnx.eval_shape`: shapes and dtypes, no
memory for weights) and mapped through the same rules as `port_weights`. The
whole mapping is checked from names and shapes before any data is read; then
each tensor is read, transformed and written, so peak memory stays near the
largest tensor. dtypes are kept (bf16 stays bf16). The output goes to a
temporary file renamed into place only when everything succeeded.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ml_dtypes
import numpy as np
from flax import nnx

from ..atomic import atomic_output
from .checkpoint import TensorSource, open_checkpoint
from .port import Entry, WeightsError, check_fit, plan
from .mapped import Release
from .safetensors_io import CheckpointError, SafetensorsReader, SafetensorsWriter, shard_layout, write_chunks
from .torch_writer import TorchZipWriter

FORMATS = ("safetensors", "npz")


@dataclass
class Report:
    tensors: int
    bytes: int
    seconds: float
    output: Path
    verified: bool = False

    @property
    def gb_per_s(self) -> float:
        return self.bytes / 1e9 / max(self.seconds, 1e-9)


def load_model_class(spec: str):
    """`path/to/converted.py:ClassName` -> the class (the file is imported as a module)."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise CheckpointError(f"--model {spec!r}: expected FILE.py:ClassName")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if module_spec is None or not Path(path).exists():
        raise CheckpointError(f"--model {spec!r}: no such file {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules.setdefault(module_spec.name, module)
    module_spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise CheckpointError(f"--model {spec!r}: {path} defines no {name}")
    return getattr(module, name)


def abstract_model(factory: Callable[[], nnx.Module]) -> nnx.Module:
    """The model with shape/dtype placeholders instead of weights."""
    return nnx.eval_shape(factory)


def _unique_targets(entries: list[Entry]) -> list[Entry]:
    """The first entry of each target variable (tied weights: the one that gets written)."""
    return [group[0] for group in _groups(entries).values()]


class _NpzWriter:
    """Streams arrays into a .npz (a zip of .npy members), one at a time."""

    def __init__(self, handle):
        self._zip = zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True)

    def write(self, name: str, array: np.ndarray, release: Release | None = None) -> None:
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as member:
            array = np.ascontiguousarray(array)
            np.lib.format.write_array_header_2_0(member, np.lib.format.header_data_from_array_1_0(array))
            write_chunks(member, array, release)

    def finish(self) -> None:
        self._zip.close()


def _writer(fmt: str, handle, layout):
    if fmt == "safetensors":
        return SafetensorsWriter(handle, layout, {"format": "flax-nnx", "producer": "retarget"})
    return _NpzWriter(handle)


def _buffers(source: TensorSource, entries: list[Entry], layout) -> tuple[np.ndarray, np.ndarray]:
    """Reusable buffers (their pages cost memory only once touched): one to read sources that
    cannot be mapped, one for the tensors that must be rearranged or cast before writing."""
    def nbytes(dtype, shape) -> int:
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    read = max((nbytes(*source.infos[e.source]) for e in entries), default=0) if source.buffered else 0
    work = max((nbytes(d, s) for (_, d, s), e in zip(layout, _unique_targets(entries))
                if _rearranged(e, source.infos[e.source][0], d)), default=0)
    return np.empty(read, np.uint8), np.empty(work, np.uint8)


def _rearranged(entry: Entry, source_dtype: np.dtype, target_dtype: np.dtype) -> bool:
    return entry.transform.name != "identity" or np.dtype(source_dtype) != np.dtype(target_dtype)


def _stream(source: TensorSource, entries: list[Entry], layout, writer, progress) -> int:
    """Write each tensor in `layout` order (the next one prefetched): as it is in the file where
    only its name changes, else transformed/cast into the work buffer first. Tied weights are
    written once and must agree."""
    written, (read_buffer, work_buffer) = 0, _buffers(source, entries, layout)
    groups = list(_groups(entries).values())
    for index, ((name, dtype, shape), group) in enumerate(zip(layout, groups)):
        if index + 1 < len(groups):
            source.prefetch(groups[index + 1][0].source)
        array, release = source.view(group[0].source, read_buffer)
        if _rearranged(group[0], array.dtype, dtype):
            out = work_buffer[:int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize]
            out = out.view(dtype).reshape(shape)
            group[0].transform.fill(array, out, release)
            array, release = out, None
        if len(group) > 1:
            check_tied(source, group, array)
        writer.write(name, array, release)
        written += array.nbytes
        del array
        if progress:
            progress(written)
    return written


def check_tied(source: TensorSource, group: list[Entry], written: np.ndarray) -> None:
    """Every other key of a tied variable must convert to the bytes written for the first."""
    digest = hashlib.sha256(memoryview(written.reshape(-1).view(np.uint8))).digest()
    for other in group[1:]:
        again = np.ascontiguousarray(other.transform.apply(source.read(other.source)), dtype=written.dtype)
        if hashlib.sha256(memoryview(again.reshape(-1).view(np.uint8))).digest() != digest:
            raise WeightsError(conflicting=[other.source])


FLOATING = {np.dtype(t) for t in (np.float16, np.float32, np.float64, ml_dtypes.bfloat16)}


def _cast(dtype: np.dtype, cast: np.dtype | None) -> np.dtype:
    """Floating tensors take the requested dtype; integers and bools never change."""
    return np.dtype(cast) if cast is not None and np.dtype(dtype) in FLOATING else np.dtype(dtype)


class _ShardedWriter:
    """safetensors shards `<stem>-0000K-of-0000N.safetensors` plus `<stem>.safetensors.index.json`,
    all staged as temporary files and renamed into place together by `commit`."""

    def __init__(self, output: Path, shards: list[list]):
        self.output, self.shards, self._index, self._writer = output, shards, 0, None
        stem = output.name[: -len(".safetensors")] if output.name.endswith(".safetensors") else output.name
        self.names = [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        self.index_path = output.with_name(f"{stem}.safetensors.index.json")
        self._staged: list[tuple[Path, Path]] = []
        self._handle = None

    def _open_next(self) -> None:
        if self._handle:
            self._handle.close()
        final = self.output.parent / self.names[self._index]
        tmp = final.with_name(f".{final.name}.tmp")
        self._staged.append((tmp, final))
        self._handle = tmp.open("wb")
        self._writer = SafetensorsWriter(self._handle, self.shards[self._index], {"format": "flax-nnx"})
        self._remaining = len(self.shards[self._index])
        self._index += 1

    def write(self, name: str, array: np.ndarray, release: Release | None = None) -> None:
        if self._writer is None or self._remaining == 0:
            self._open_next()
        self._writer.write(name, array, release)
        self._remaining -= 1

    def finish(self) -> None:
        self._handle.close()
        weight_map = {name: self.names[i] for i, shard in enumerate(self.shards) for name, _, _ in shard}
        tmp = self.index_path.with_name(f".{self.index_path.name}.tmp")
        tmp.write_text(json.dumps({"metadata": {"total_size": sum(
            int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize for sh in self.shards for _, d, s in sh)},
            "weight_map": weight_map}, indent=1))
        self._staged.append((tmp, self.index_path))

    def staged_shards(self) -> list[tuple[Path, Path]]:
        return [(tmp, final) for tmp, final in self._staged if final != self.index_path]

    def commit(self) -> None:
        for tmp, final in self._staged:
            os.replace(tmp, final)

    def abort(self) -> None:
        if self._handle:
            self._handle.close()
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)


def _sharded(source, entries, layout, output: Path, max_bytes: int, progress, verify: bool, cast) -> Report:
    writer = _ShardedWriter(output, shard_layout(layout, max_bytes))
    start = time.perf_counter()
    try:
        nbytes = _stream(source, entries, layout, writer, progress)
        writer.finish()
        report = Report(len(layout), nbytes, time.perf_counter() - start, writer.index_path)
        if verify:
            readers = {final.name: SafetensorsReader(tmp) for tmp, final in writer.staged_shards()}
            shard_of = {name: writer.names[i] for i, shard in enumerate(writer.shards) for name, _, _ in shard}
            try:
                verify_output(source, entries, lambda key: readers[shard_of[key]].read(key), cast)
            finally:
                for reader in readers.values():
                    reader.close()
            report.verified = True
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return report


def convert_weights(source: TensorSource, model: nnx.Module, output: Path, *, fmt: str = "safetensors",
                    verify: bool = False, progress: Callable[[int], None] | None = None,
                    cast: str | None = None, max_shard_bytes: int | None = None) -> Report:
    """Write `source` in `model`'s layout to `output` (atomically); optionally re-read and check it.

    `cast` ("float32", "bfloat16", "float16") converts floating tensors on request only; a
    safetensors output larger than `max_shard_bytes` is written as shards plus an index."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    cast_dtype = np.dtype(ml_dtypes.bfloat16 if cast == "bfloat16" else cast) if cast else None
    entries, unmapped = plan(model)
    check_fit(entries, {k: shape for k, (_, shape) in source.infos.items()}, unmapped)
    layout = [(e.target, _cast(source.infos[e.source][0], cast_dtype),
               e.transform.target_shape(source.infos[e.source][1]))
              for e in _unique_targets(entries)]
    total = sum(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize for _, d, s in layout)
    if fmt == "safetensors" and max_shard_bytes and total > max_shard_bytes:
        return _sharded(source, entries, layout, Path(output), max_shard_bytes, progress, verify, cast_dtype)
    start = time.perf_counter()
    with atomic_output(Path(output)) as (handle, tmp):
        writer = _writer(fmt, handle, layout)
        nbytes = _stream(source, entries, layout, writer, progress)
        writer.finish()
        handle.flush()
        report = Report(len(layout), nbytes, time.perf_counter() - start, Path(output))
        if verify:
            read, close = _file_reader(tmp, fmt)
            try:
                verify_output(source, entries, read, cast_dtype)
            finally:
                close()
            report.verified = True
    return report


def verify_output(source: TensorSource, entries: list[Entry], read_written: Callable[[str], np.ndarray],
                  cast: np.dtype | None = None) -> None:
    """Re-read every written tensor, undo its transform, and compare bytes with the source
    (cast the same way when a dtype cast was requested)."""
    owner = {id(e.variable): e.target for e in _unique_targets(entries)}
    for e in entries:
        back = e.transform.invert(np.asarray(read_written(owner[id(e.variable)])))
        original = source.read(e.source)
        original = original.astype(_cast(original.dtype, cast), copy=False)
        if back.dtype != original.dtype or back.shape != original.shape or back.tobytes() != original.tobytes():
            raise CheckpointError(f"verification failed: {owner[id(e.variable)]} does not reproduce {e.source}")


def _file_reader(path: Path, fmt: str) -> tuple[Callable[[str], np.ndarray], Callable[[], None]]:
    """A key -> array reader over a just-written (still temporary) file, and its close."""
    if fmt == "safetensors":
        reader = SafetensorsReader(path)
        return reader.read, reader.close
    archive = np.load(path, allow_pickle=False)
    return (lambda key: archive[key]), archive.close


def _groups(entries: list[Entry]) -> dict[int, list[Entry]]:
    """Entries by target variable (tied weights: one variable, several entries)."""
    groups: dict[int, list[Entry]] = {}
    for e in entries:
        groups.setdefault(id(e.variable), []).append(e)
    return groups


def load_converted(path: str | Path, model: nnx.Module) -> nnx.Module:
    """Fill `model` from a file written by `convert_weights` (keys are the model's variable paths)."""
    source = open_checkpoint(path)
    try:
        entries, _ = plan(model)
        missing, found = [], []
        for group in _groups(entries).values():
            name = next((e.target for e in group if e.target in source.infos), None)
            (found.append((group[0].variable, name)) if name else missing.append(group[0].target))
        known = {e.target for e in entries}
        unexpected = sorted(k for k in source.infos if k not in known)
        if missing or unexpected:
            raise WeightsError(missing=missing, unexpected=unexpected)
        for variable, name in found:
            variable[...] = np.asarray(source.read(name)).astype(variable.dtype, copy=False)
    finally:
        source.close()
    return model


def export_torch(source: TensorSource, model: nnx.Module, output: Path, *, verify: bool = False,
                 order: list[str] | None = None) -> Report:
    """The reverse direction: a converted-layout file back to torch state-dict names and layouts,
    as safetensors or (for a .pt/.pth/.bin output) torch's zip format, loadable with
    `torch.load(path, weights_only=True)`. Tied weights are written under each torch name, as
    torch's state_dict holds them; `order` (see `port.torch_key_order`) gives torch's key order."""
    entries, _ = plan(model)
    owner = {id(e.variable): e.target for e in _unique_targets(entries)}  # the name a tied variable was saved as
    if order:
        rank = {key: i for i, key in enumerate(order)}
        entries.sort(key=lambda e: rank.get(e.source, len(rank)))
    missing = sorted({owner[id(e.variable)] for e in entries} - set(source.infos))
    if missing:
        raise WeightsError(missing=missing)
    layout = [(e.source, *_torch_side(e, source.infos[owner[id(e.variable)]])) for e in entries]
    start, nbytes = time.perf_counter(), 0
    torch_zip = Path(output).suffix in (".pt", ".pth", ".bin")
    with atomic_output(Path(output)) as (handle, _):
        writer = TorchZipWriter(handle, layout) if torch_zip else SafetensorsWriter(
            handle, layout, {"format": "pt", "producer": "retarget"})
        for e in entries:
            value = e.transform.invert(np.asarray(source.read(owner[id(e.variable)])))
            writer.write(e.source, value)
            nbytes += value.nbytes
        writer.finish()
    return Report(len(layout), nbytes, time.perf_counter() - start, Path(output), verify)


def _torch_side(entry: Entry, info: tuple[np.dtype, tuple[int, ...]]) -> tuple[np.dtype, tuple[int, ...]]:
    dtype, shape = info
    return dtype, entry.transform.source_shape(shape)
