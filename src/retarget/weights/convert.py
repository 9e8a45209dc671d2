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
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from flax import nnx

from ..atomic import atomic_output
from .checkpoint import TensorSource, open_checkpoint
from .port import Entry, WeightsError, check_fit, plan
from .safetensors_io import CheckpointError, SafetensorsWriter

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
    seen, out = set(), []
    for e in entries:
        if id(e.variable) not in seen:
            seen.add(id(e.variable))
            out.append(e)
    return out


class _NpzWriter:
    """Streams arrays into a .npz (a zip of .npy members), one at a time."""

    def __init__(self, handle):
        self._zip = zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True)

    def write(self, name: str, array: np.ndarray) -> None:
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)

    def finish(self) -> None:
        self._zip.close()


def _writer(fmt: str, handle, layout):
    if fmt == "safetensors":
        return SafetensorsWriter(handle, layout, {"format": "flax-nnx", "producer": "retarget"})
    return _NpzWriter(handle)


def _buffers(source: TensorSource, entries: list[Entry]) -> tuple[np.ndarray, np.ndarray]:
    """Two reusable byte buffers: one for reading (largest tensor), one for transposing (largest
    transposed tensor). Reusing them spares a page-faulting allocation per tensor."""
    def size(e: Entry) -> int:
        dtype, shape = source.infos[e.source]
        return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    read = max((size(e) for e in entries), default=0)
    work = max((size(e) for e in entries if e.transform.name != "identity"), default=0)
    return np.empty(read if source.buffered else 0, np.uint8), np.empty(work, np.uint8)


def _stream(source: TensorSource, entries: list[Entry], writer, progress) -> int:
    """Read, transform and write one tensor at a time; tied weights are written once and must agree."""
    written = 0
    read_buffer, work_buffer = _buffers(source, entries)
    for group in _groups(entries).values():
        first = group[0]
        value = first.transform.apply(source.read(first.source, read_buffer), work_buffer)
        writer.write(first.target, value)
        written += value.nbytes
        if len(group) > 1:  # hash only what must be compared
            digest = hashlib.sha256(memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8))).digest()
            for other in group[1:]:
                again = np.ascontiguousarray(other.transform.apply(source.read(other.source)))
                if hashlib.sha256(memoryview(again.reshape(-1).view(np.uint8))).digest() != digest:
                    raise WeightsError(conflicting=[other.source])
        del value
        if progress:
            progress(written)
    return written


def convert_weights(source: TensorSource, model: nnx.Module, output: Path, *, fmt: str = "safetensors",
                    verify: bool = False, progress: Callable[[int], None] | None = None) -> Report:
    """Write `source` in `model`'s layout to `output` (atomically); optionally re-read and check it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    entries, unmapped = plan(model)
    check_fit(entries, {k: shape for k, (_, shape) in source.infos.items()}, unmapped)
    layout = [(e.target, source.infos[e.source][0], e.transform.target_shape(source.infos[e.source][1]))
              for e in (group[0] for group in _groups(entries).values())]
    start = time.perf_counter()
    with atomic_output(Path(output)) as (handle, tmp):
        writer = _writer(fmt, handle, layout)
        nbytes = _stream(source, entries, writer, progress)
        writer.finish()
        handle.flush()
        report = Report(len(layout), nbytes, time.perf_counter() - start, Path(output))
        if verify:
            verify_output(source, entries, tmp, fmt)
            report.verified = True
    return report


def verify_output(source: TensorSource, entries: list[Entry], path: Path, fmt: str) -> None:
    """Re-read every written tensor, undo its transform, and compare bytes with the source."""
    suffix = ".safetensors" if fmt == "safetensors" else ".npz"
    link = path.with_name(path.name + suffix)
    os.link(path, link)
    try:
        written = open_checkpoint(link)
        owner = {id(e.variable): e.target for e in _unique_targets(entries)}
        try:
            for e in entries:
                back = e.transform.invert(np.asarray(written.read(owner[id(e.variable)])))
                original = source.read(e.source)
                if back.dtype != original.dtype or back.shape != original.shape or back.tobytes() != original.tobytes():
                    raise CheckpointError(f"verification failed: {e.target} does not reproduce {e.source}")
        finally:
            written.close()
    finally:
        link.unlink()


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


def export_torch(source: TensorSource, model: nnx.Module, output: Path, *, verify: bool = False) -> Report:
    """The reverse direction: a converted-layout file back to torch state-dict names and layouts
    (safetensors, loadable with `safetensors.torch.load_file` + `load_state_dict`). Tied weights
    are written under each torch name, as torch's state_dict holds them."""
    entries, _ = plan(model)
    owner = {id(e.variable): e.target for e in _unique_targets(entries)}
    missing = sorted({owner[id(e.variable)] for e in entries} - set(source.infos))
    if missing:
        raise WeightsError(missing=missing)
    layout = [(e.source, *_torch_side(e, source.infos[owner[id(e.variable)]])) for e in entries]
    start, nbytes = time.perf_counter(), 0
    with atomic_output(Path(output)) as (handle, _):
        writer = SafetensorsWriter(handle, layout, {"format": "pt", "producer": "retarget"})
        for e in entries:
            value = e.transform.invert(np.asarray(source.read(owner[id(e.variable)])))
            writer.write(e.source, value)
            nbytes += value.nbytes
        writer.finish()
    return Report(len(layout), nbytes, time.perf_counter() - start, Path(output), verify)


def _torch_side(entry: Entry, info: tuple[np.dtype, tuple[int, ...]]) -> tuple[np.dtype, tuple[int, ...]]:
    dtype, shape = info
    return dtype, entry.transform.source_shape(shape)
