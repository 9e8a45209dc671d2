"""Orbax checkpoints: the format JAX users restore, written as a stream.

Each tensor is converted through the rules (as in `port_weights`) and the
results are saved in batches of about `BATCH_BYTES` with Orbax's partial
saving: every batch is added to a staging directory `OUTPUT.partial_save`,
and one atomic rename publishes `OUTPUT` at the end, so memory stays near one
batch (and the copy Orbax makes of the array it is writing) whatever the model
size, and a failed conversion leaves nothing behind.
The checkpoint holds the model's weights, that is its state without RNG
streams (`nnx.state(model, WEIGHTS)`), in Orbax's layout under `OUTPUT/state`:

    weights = nnx.state(model, nnx.Not(nnx.RngState))
    nnx.update(model, ocp.StandardCheckpointer().restore(OUTPUT / "state", weights))

Orbax reshards on restore: abstract arrays carrying a `NamedSharding` restore
each device's shard only. Reading gives a tensor source keyed by variable
path, for the way back to PyTorch.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
from flax import nnx

from .checkpoint import TensorSource
from .port import Entry, check_fit, plan
from .safetensors_io import CheckpointError

WEIGHTS = nnx.Not(nnx.RngState)
BATCH_BYTES = 128 << 20
STAGING_SUFFIX = ".partial_save"  # Orbax's name for a partial save in progress


def _checkpointer():
    import orbax.checkpoint as ocp
    return ocp.StandardCheckpointer()


def _staging(output: Path) -> Path:
    return output.parent / (output.name + STAGING_SUFFIX)


def write_orbax(source: TensorSource, model: nnx.Module, output: Path,
                progress: Callable[[int], None] | None = None) -> tuple[int, int, float]:
    """Convert `source` into `model`'s weights (the model may be abstract: `nnx.eval_shape`)
    and save them as an Orbax checkpoint at `output`; (tensors, bytes, seconds)."""
    from orbax.checkpoint.experimental.v1 import partial
    output = Path(output).absolute()
    for existing in (output, _staging(output)):
        if existing.exists():
            raise CheckpointError(f"{existing}: already exists (remove it; Orbax writes a new directory)")
    entries, unmapped = plan(model)
    check_fit(entries, {k: shape for k, (_, shape) in source.infos.items()}, unmapped)
    start = time.perf_counter()
    try:
        count, nbytes = 0, 0
        for batch in _batches(source, entries, nnx.to_flat_state(nnx.state(model, WEIGHTS))):
            partial.save(output, nnx.from_flat_state(batch))
            count += len(batch)
            nbytes += sum(var.get_value().nbytes for _, var in batch)
            del batch  # before the next one is built: at most one batch alive
            if progress:
                progress(nbytes)
        partial.finalize(output)
    except BaseException:
        shutil.rmtree(_staging(output), ignore_errors=True)
        raise
    return count, nbytes, time.perf_counter() - start


def _batches(source: TensorSource, entries: list[Entry], flat_state):
    """Lists of (path, variable with its converted value), about BATCH_BYTES each."""
    from .convert import check_tied
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.target, []).append(e)
    batch, size = [], 0
    for path, variable in flat_state:
        group = groups[".".join(map(str, path))]
        value = np.asarray(group[0].transform.apply(source.read(group[0].source))).astype(variable.dtype, copy=False)
        if len(group) > 1:
            check_tied(source, group, value)
        batch.append((path, variable.replace(value=value)))
        size += value.nbytes
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def read_orbax(path: Path, abstract: nnx.Module) -> TensorSource:
    """An Orbax checkpoint of `abstract`'s weights (written by retarget, or a user's own save of
    `nnx.state(model)`), as a source keyed by variable path."""
    path = Path(path).absolute()
    root = path / "state" if (path / "state").is_dir() else path
    state = None
    for target in (nnx.state(abstract, WEIGHTS), nnx.state(abstract)):
        try:
            state = _checkpointer().restore(root, target)
            break
        except Exception as exc:  # Orbax raises many types for a bad or foreign directory
            problem = exc
    if state is None:
        raise CheckpointError(f"{path}: cannot restore as this model's Orbax checkpoint ({problem})")
    arrays = {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)
              if not isinstance(v, nnx.RngState)}
    infos = {k: (a.dtype, a.shape) for k, a in arrays.items()}
    return TensorSource(infos, lambda key: arrays[key])
