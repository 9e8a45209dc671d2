"""Orbax checkpoints: the format JAX users restore with `StandardCheckpointer`.

Writing fills a concrete model one tensor at a time (through the rules, like
`port_weights`) and saves `nnx.state(model)`, so it is restored with
`checkpointer.restore(path, nnx.state(nnx.eval_shape(make_model)))` and
`nnx.update` / `nnx.merge`. Unlike the safetensors writer this holds the whole
model in memory. Reading gives a tensor source keyed by variable path, for
the way back to PyTorch.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .checkpoint import TensorSource
from .port import check_fit, plan
from .safetensors_io import CheckpointError


def _checkpointer():
    import orbax.checkpoint as ocp
    return ocp.StandardCheckpointer()


def write_orbax(source: TensorSource, factory: Callable[[], nnx.Module], output: Path) -> tuple[int, int, float]:
    """Fill a model built by `factory` from `source` and save its state as an Orbax checkpoint."""
    output = Path(output).absolute()
    if output.exists():
        raise CheckpointError(f"{output}: already exists (Orbax writes a new directory)")
    model = factory()
    entries, unmapped = plan(model)
    check_fit(entries, {k: shape for k, (_, shape) in source.infos.items()}, unmapped)
    start, nbytes, done = time.perf_counter(), 0, set()
    for e in entries:
        if id(e.variable) in done:
            continue
        value = e.transform.apply(source.read(e.source))
        e.variable[...] = jnp.array(value, dtype=e.variable.dtype, copy=True)
        nbytes += value.nbytes
        done.add(id(e.variable))
    checkpointer = _checkpointer()
    try:
        checkpointer.save(output, nnx.state(model))  # Orbax stages in a temporary directory and renames
        checkpointer.wait_until_finished()
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise
    return len(done), nbytes, time.perf_counter() - start


def read_orbax(path: Path, abstract: nnx.Module) -> TensorSource:
    """An Orbax checkpoint of `abstract`'s state, as a source keyed by variable path."""
    try:
        state = _checkpointer().restore(Path(path).absolute(), nnx.state(abstract))
    except Exception as exc:  # Orbax raises many types for a bad or foreign directory
        raise CheckpointError(f"{path}: cannot restore as this model's Orbax checkpoint ({exc})") from None
    arrays = {".".join(map(str, p)): np.asarray(v.value if hasattr(v, "value") else v)
              for p, v in nnx.to_flat_state(state)}
    infos = {k: (a.dtype, a.shape) for k, a in arrays.items()}
    return TensorSource(infos, lambda key: arrays[key])
