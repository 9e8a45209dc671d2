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
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else permissions(directory=False))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def permissions(directory: bool) -> int:
    """The mode a new file or directory gets from the user's umask (temporary files are created 0600,
    temporary directories 0700: what is moved into place gets what `open`/`mkdir` would have given)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask
