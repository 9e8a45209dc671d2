"""The Flax side of Hugging Face's `from_pretrained`: a model directory's checkpoint into a converted model.

`save_pretrained` writes `config.json` and the weights as `model.safetensors` (or shards with a
`model.safetensors.index.json`), leaving out the keys a model ties to others (`lm_head.weight` is the
input embedding's, per the class's `_tied_weights_keys`), and under the names of earlier releases
where transformers renamed a model's layers (ViT's `encoder.layer.0.attention.attention.query` is
`layers.0.attention.q_proj` in the module). `load_pretrained` reads that checkpoint one tensor at a
time through the same lazy readers as `retarget weights`, renames keys as transformers' own loader
does (its renaming table, read from the installed transformers when it can be imported, as on any
machine that wrote the folder), fills each tied key from its source, and checks the fit as
`port_weights` does: every variable filled, every tensor used. Checkpoints that need transformers'
tensor conversions (experts merged into one tensor) are not converted yet: the misfit lists them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .checkpoint import TensorSource, open_checkpoint, renamed
from .convert import _groups
from .port import _converted_values, check_fit, plan
from .safetensors_io import CheckpointError

CHECKPOINT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin")


def checkpoint_file(directory: Path) -> Path:
    """The weights file of a model directory, or a CheckpointError naming what it holds."""
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a model directory (expected the folder `save_pretrained` wrote)")
    for name in CHECKPOINT_FILES:
        if (directory / name).exists():
            return directory / name
    held = sorted(p.name for p in directory.iterdir())[:10]
    raise CheckpointError(f"{directory}: no {', '.join(CHECKPOINT_FILES)} (it holds {held})")


def with_tied(source: TensorSource, tied: dict[str, str], needed: set[str]) -> TensorSource:
    """`source` where each key the checkpoint left out as tied reads the tensor it is tied to."""
    aliases = {target: origin for target, origin in tied.items()
               if target in needed and target not in source.infos and origin in source.infos}
    if not aliases:
        return source
    infos = {**source.infos, **{t: source.infos[o] for t, o in aliases.items()}}
    renamed = {**source.renamed, **{t: source.renamed.get(o, o) for t, o in aliases.items()}}
    return dataclasses.replace(source, infos=infos, renamed=renamed)


def renamings(model: nnx.Module) -> list:
    """transformers' key renamings for `model` (its own loader's, per sub-model, then the legacy ones),
    or none where transformers' loading code cannot be imported."""
    try:
        from transformers import conversion_mapping
        from transformers.core_model_loading import WeightRenaming
    except ImportError:
        return []
    found, seen = [], set()
    prefix = getattr(model, "base_model_prefix", "") or ""
    for path, sub in nnx.iter_modules(model):
        config = getattr(sub, "config", None)
        names = [n for n in (type(sub).__name__, getattr(config, "model_type", None)) if n and n not in seen]
        mappings = (conversion_mapping.get_checkpoint_conversion_mapping(n) for n in names)
        mapping = next((m for m in mappings if m), None) if config is not None else None
        if mapping is None:
            continue
        seen.update(names)
        for transform in mapping if path else ():
            transform.scope_prefix = ".".join(map(str, path)).removeprefix(prefix).removeprefix(".")
            transform.base_model_prefix = prefix
        found.extend(mapping)
    found.extend(conversion_mapping.get_checkpoint_conversion_mapping("legacy") or [])
    return [t for t in found if isinstance(t, WeightRenaming)]


def renamed_keys(source: TensorSource, transforms: list, needed: set[str]) -> TensorSource:
    """`source` under the names transformers' loader gives its keys (only keys the model does not
    already have by their own name)."""
    mapping = {}
    for key in source.infos:
        name = key
        for transform in transforms if key not in needed else ():
            name = transform.rename_source_key(name)[0]
        if name != key:
            mapping[key] = name
    return renamed(source, mapping) if mapping else source


def load_pretrained(directory: str | Path, model: nnx.Module) -> nnx.Module:
    """Fill `model` (a converted transformers model, built from the directory's config) in place from
    the directory's checkpoint, and return it. WeightsError lists whatever does not fit."""
    source = open_checkpoint(checkpoint_file(Path(directory)))
    try:
        entries, unmapped = plan(model)
        source = renamed_keys(source, renamings(model), {e.source for e in entries})
        source = with_tied(source, dict(getattr(model, "_tied_weights_keys", None) or {}), {e.source for e in entries})
        check_fit(entries, {key: info[1] for key, info in source.infos.items()}, unmapped)
        for group in _groups(entries).values():
            variable = group[0].variable
            value = _converted_values(group, {e.source: source.read(e.source) for e in group})[id(variable)]
            variable[...] = jnp.asarray(np.array(value, dtype=variable.dtype))
    finally:
        source.close()
    return model
