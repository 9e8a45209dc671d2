"""Explicit key maps: checkpoint keys -> model variables, with the transforms spelled out.

For checkpoints whose layout no rule knows (a fused qkv matrix feeding three
projections, a conv kernel stored flat). A key-map file (TOML or JSON) holds
`[[map]]` entries:

    [[map]]
    from = "encoder.{i}.qkv.weight"                  # a checkpoint key pattern
    to = ["blocks.{i}.q.kernel", "blocks.{i}.k.kernel", "blocks.{i}.v.kernel"]
    transform = ["split:0:3", "transpose"]           # applied left to right

`{i}` (any `{name}`) matches a run of digits and carries over to `to`. `from`
may list several keys whose tensors are joined by `concat:AXIS`. Transforms:
transpose, permute:A,B,..., squeeze[:AXIS], flatten, reshape:D1,D2,..., split:AXIS:N,
concat:AXIS, cast:DTYPE. Every shape is checked against the model before any
data is read; every checkpoint key must be used once and every variable filled
once.
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from .safetensors_io import CheckpointError

PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Job:
    """Some checkpoint keys, the transforms, and the model variables they fill."""
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    transforms: tuple[str, ...]


def _regex(pattern: str) -> re.Pattern:
    parts = PLACEHOLDER.split(pattern)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>\\d+)" for i, p in enumerate(parts)))


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def load_keymap(path: Path) -> list[dict]:
    try:
        text = Path(path).read_text()
        data = json.loads(text) if str(path).endswith(".json") else tomllib.loads(text)
        entries = data["map"]
        for entry in entries:
            _as_list(entry["from"]), _as_list(entry["to"])
    except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise CheckpointError(f"{path}: not a key map ({exc}); expected [[map]] entries with `from` and `to`") from None
    return entries


def plan_jobs(keys: list[str], entries: list[dict]) -> list[Job]:
    """Expand the map over the checkpoint's keys; unmatched or reused keys are errors."""
    jobs, used, problems = [], set(), []
    for entry in entries:
        froms, tos = _as_list(entry["from"]), _as_list(entry["to"])
        first = _regex(froms[0])
        for key in keys:
            found = first.fullmatch(key)
            if not found:
                continue
            names = found.groupdict()
            sources = tuple(f.format(**names) for f in froms)
            missing = [s for s in sources if s not in keys]
            if missing:
                problems.append(f"{key}: the map also needs {missing}, which the checkpoint lacks")
                continue
            jobs.append(Job(sources, tuple(t.format(**names) for t in tos), tuple(_as_list(entry.get("transform", [])))))
    for job in jobs:
        for source in job.sources:
            (problems.append(f"{source} is used by two map entries") if source in used else used.add(source))
    unmapped = [k for k in keys if k not in used]
    if unmapped:
        problems.append(f"checkpoint keys no map entry uses: {unmapped[:10]}")
    if problems:
        raise CheckpointError("key map: " + "; ".join(problems))
    return jobs


def _op(step: str) -> tuple[str, list[str]]:
    name, *args = step.split(":")
    return name, args


def apply_steps(arrays: list, steps: tuple[str, ...]) -> list:
    """Run transforms over a list of arrays (or of shapes: `ShapeOnly`), left to right."""
    for step in steps:
        name, args = _op(step)
        if name == "concat":
            arrays = [_concat(arrays, int(args[0]))]
        elif name == "split":
            arrays = [piece for a in arrays for piece in _split(a, int(args[0]), int(args[1]))]
        else:
            arrays = [_unary(a, name, args) for a in arrays]
    return arrays


class ShapeOnly:
    """A (dtype, shape) stand-in so every step can be checked before data is read."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]):
        self.dtype, self.shape = np.dtype(dtype), tuple(shape)
        self.ndim = len(self.shape)


def _concat(arrays: list, axis: int):
    if isinstance(arrays[0], ShapeOnly):
        shape = list(arrays[0].shape)
        shape[axis] = sum(a.shape[axis] for a in arrays)
        return ShapeOnly(arrays[0].dtype, tuple(shape))
    return np.concatenate(arrays, axis=axis)


def _split(array, axis: int, parts: int) -> list:
    if array.shape[axis] % parts:
        raise CheckpointError(f"split:{axis}:{parts}: axis {axis} of {array.shape} does not divide by {parts}")
    if isinstance(array, ShapeOnly):
        shape = list(array.shape)
        shape[axis] //= parts
        return [ShapeOnly(array.dtype, tuple(shape)) for _ in range(parts)]
    return [np.ascontiguousarray(p) for p in np.split(array, parts, axis=axis)]


def _unary(array, name: str, args: list[str]):
    shape_only = isinstance(array, ShapeOnly)
    probe = np.empty(array.shape, dtype=np.uint8) if shape_only else array
    if name == "transpose":
        out = probe.T
    elif name == "permute":
        out = np.transpose(probe, [int(a) for a in args[0].split(",")])
    elif name == "squeeze":
        out = np.squeeze(probe, int(args[0])) if args else np.squeeze(probe)
    elif name == "flatten":
        out = probe.reshape(-1)
    elif name == "reshape":
        out = probe.reshape([int(a) for a in args[0].split(",")])
    elif name == "cast":
        dtype = np.dtype(ml_dtypes.bfloat16 if args[0] == "bfloat16" else args[0])
        return ShapeOnly(dtype, array.shape) if shape_only else array.astype(dtype)
    else:
        raise CheckpointError(f"unknown key-map transform {name!r}")
    return ShapeOnly(array.dtype, out.shape) if shape_only else np.ascontiguousarray(out)


def _variables(model) -> dict[str, object]:
    from .port import plan
    entries, _ = plan(model)
    return {e.target: e.variable for e in entries}


def check_jobs(jobs: list[Job], infos: dict, model) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """Every output's shape against its variable, every variable filled once; the write layout."""
    variables, filled, layout, problems = _variables(model), {}, [], []
    for job in jobs:
        outputs = apply_steps([ShapeOnly(*infos[s]) for s in job.sources], job.transforms)
        if len(outputs) != len(job.targets):
            problems.append(f"{job.sources}: transforms give {len(outputs)} tensors for {len(job.targets)} targets")
            continue
        for target, out in zip(job.targets, outputs):
            variable = variables.get(target)
            if variable is None:
                problems.append(f"{target}: the model has no such variable")
            elif tuple(variable.shape) != out.shape:
                problems.append(f"{target}: map gives {out.shape}, the model needs {tuple(variable.shape)}")
            elif id(variable) in filled:
                problems.append(f"{target}: already filled by {filled[id(variable)]}")
            else:
                filled[id(variable)] = target
                layout.append((target, out.dtype, out.shape))
    empty = sorted({t for t, v in variables.items() if id(v) not in filled})
    if empty:
        problems.append(f"model variables the map leaves empty: {empty[:10]}")
    if problems:
        raise CheckpointError("key map: " + "; ".join(problems))
    return layout


def convert_with_keymap(source, model, output: Path, jobs: list[Job], *, fmt: str = "safetensors",
                        verify: bool = False):
    """Stream `source` through the key map into `output` (atomic); verify recomputes and compares."""
    import time

    from ..atomic import atomic_output
    from .convert import Report, _file_reader, _writer
    layout = check_jobs(jobs, source.infos, model)
    start, nbytes = time.perf_counter(), 0
    with atomic_output(Path(output)) as (handle, tmp):
        writer = _writer(fmt, handle, layout)
        for job in jobs:
            for target, value in zip(job.targets, apply_steps([source.read(s) for s in job.sources], job.transforms)):
                writer.write(target, value)
                nbytes += value.nbytes
        writer.finish()
        handle.flush()
        if verify:
            read, close = _file_reader(tmp, fmt)
            try:
                for job in jobs:
                    expected = apply_steps([source.read(s) for s in job.sources], job.transforms)
                    for target, value in zip(job.targets, expected):
                        if np.asarray(read(target)).tobytes() != value.tobytes():
                            raise CheckpointError(f"verification failed: {target}")
            finally:
                close()
    return Report(len(layout), nbytes, time.perf_counter() - start, Path(output), verify)
