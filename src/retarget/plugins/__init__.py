"""Plugin registry: small pure functions for rewrites a template cannot express.

A rule names its plugin (`plugin = "tensor_to"`); the loader fails at start-up
if no plugin of that name is registered. A plugin receives the call being
rewritten and its bound arguments, and returns the replacement expression or
an `Escape` saying why it cannot convert; it never returns its input
unchanged to mean "could not".
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

REGISTRY: dict[str, Callable] = {}
CONSUMES: dict[str, frozenset[str]] = {}


def register(name: str, consumes: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Register a plugin function under `name` (the name rules refer to). `consumes` lists torch
    arguments the plugin itself turns into code, which no template of its rule mentions."""
    def decorator(func: Callable) -> Callable:
        if name in REGISTRY and REGISTRY[name] is not func:
            raise ValueError(f"plugin {name!r} is registered twice")
        REGISTRY[name] = func
        CONSUMES[name] = frozenset(consumes)
        return func
    return decorator


def load_plugins() -> None:
    """Import every plugin module once so their @register calls run."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
