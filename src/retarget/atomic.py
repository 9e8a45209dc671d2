"""Atomic output: write to a temporary file beside the target, rename into place on success."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_output(path: Path, mode: str = "wb") -> Iterator[tuple[BinaryIO, Path]]:
    """Yield (handle, temporary path); the file appears at `path` only if the block succeeds.

    The temporary path is yielded so a caller can re-read what it wrote (verification) before
    the rename. On any error the temporary file is removed and nothing is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle, Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
