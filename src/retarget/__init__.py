"""retarget: port PyTorch models to JAX / Flax NNX, code and weights together.

Public API:
- `convert(source, target="flax") -> Conversion` (`.code`, `.diagnostics`)
- `port_weights(state_dict, model)` copies a PyTorch state dict into a converted model
- `load_pretrained(directory, model)` fills a converted transformers model from a `save_pretrained` folder
"""
from __future__ import annotations

from .diagnostics import ConversionError, Diagnostic
from .pipeline import Conversion, convert_source

__all__ = ["convert", "port_weights", "load_pretrained", "Conversion", "Diagnostic", "ConversionError", "WeightsError"]
TARGETS = ("flax",)


def convert(source: str, *, target: str = "flax", path: str = "<string>") -> Conversion:
    """Convert PyTorch source code to `target` (only "flax" for now)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; supported: {', '.join(TARGETS)}")
    return convert_source(source, path)


def __getattr__(name: str):
    """`port_weights` and `WeightsError` load JAX and Flax: imported on first use, so converting
    source (the CLI, each parallel worker) does not pay for them."""
    if name in ("port_weights", "WeightsError"):
        from .weights import port
        return getattr(port, name)
    if name == "load_pretrained":
        from .weights.pretrained import load_pretrained
        return load_pretrained
    raise AttributeError(f"module 'retarget' has no attribute {name!r}")
