"""Whole-file failures: in a tree, a file retarget cannot convert never costs the other files.

Such a file is kept as it was, with one marker line at its top, and reported as a diagnostic:
RT901 when the input cannot be converted at all (a syntax error, not UTF-8, not a notebook),
RT900 when retarget itself failed on it (a bug: the diagnostic carries a short traceback to
report). The other files convert as usual; the exit status says what happened (3, 2).
"""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable

from .diagnostics import FILE_MARKER, INTERNAL, UNREADABLE, ConversionError, Diagnostic
from .notebook import mark_notebook
from .pipeline import Conversion

TRACEBACK_TAIL = 4  # frames kept from the end of a traceback, beside retarget's own
PACKAGE_DIR = str(Path(__file__).parent)


class InternalError(Exception):
    """retarget failed on a file it was asked to convert alone: nothing is written (exit status 3)."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(f"{diagnostic.path}: {diagnostic.message}")
        self.diagnostic = diagnostic


def guarded(convert: Callable[[], Conversion], text: str, path: str) -> Conversion:
    """`convert()`; when it raises, the file kept unchanged with its marker, and the failure reported."""
    try:
        return convert()
    except ConversionError as exc:
        return failed(text, path, input_problem(exc))
    except Exception as exc:  # a bug in retarget: it costs this file only
        return failed(text, path, internal_problem(exc, path))


def failed(text: str, path: str, diagnostic: Diagnostic) -> Conversion:
    return Conversion(mark(text, path, diagnostic.comment), [diagnostic])


def input_problem(exc: ConversionError) -> Diagnostic:
    return Diagnostic(exc.line, exc.column, UNREADABLE, f"{exc.message}; the file was kept unchanged", exc.path)


def internal_problem(exc: Exception, path: str, during: str = "converting this file",
                     consequence: str = "it was kept unchanged") -> Diagnostic:
    """RT900: the exception in one line, what it means for the file, and a short traceback."""
    summary = (str(exc).strip().splitlines() or [""])[0][:200]
    error = f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__
    message = f"internal error while {during}: {error}; {consequence}: please report it"
    return Diagnostic(1, 1, INTERNAL, message, path, traceback=short_traceback(exc))


def with_problem(conversion: Conversion, path: str, diagnostic: Diagnostic) -> Conversion:
    """A converted file that also carries a whole-file problem (found while indexing its package)."""
    return Conversion(mark(conversion.code, path, diagnostic.comment), [diagnostic, *conversion.diagnostics])


def mark(text: str, path: str, comment: str) -> str:
    """`comment` as the file's first line (after a shebang, an encoding line and a BOM, which must
    stay first), replacing a whole-file marker an earlier run put there."""
    if path.endswith(".ipynb"):
        return mark_notebook(text, path, comment)
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    lines = text[len(bom):].splitlines(keepends=True)
    start = _prelude(lines)
    end = start + 1 if start < len(lines) and FILE_MARKER.match(lines[start]) else start
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    return bom + "".join([*lines[:start], comment + newline, *lines[end:]])


def _prelude(lines: list[str]) -> int:
    """How many first lines are a shebang (line 1) or an encoding declaration (line 1 or 2)."""
    count = 0
    while count < min(2, len(lines)) and (
            (count == 0 and lines[0].startswith("#!")) or _is_coding(lines[count])):
        count += 1
    return count


def _is_coding(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("#") and ("coding:" in stripped or "coding=" in stripped)


def short_traceback(exc: BaseException) -> str:
    """retarget's own frames (each once: a recursion repeats them) and the last few frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    seen, kept = set(), []
    for i, frame in enumerate(frames):
        key = (frame.filename, frame.lineno, frame.name)
        own = frame.filename.startswith(PACKAGE_DIR) and frame.filename != __file__
        if i >= len(frames) - TRACEBACK_TAIL or (own and key not in seen):
            kept.append(frame)
        seen.add(key)
    head = f"Traceback ({len(kept)} of {len(frames)} frames: retarget's own and the last ones):\n"
    return "".join([head, *traceback.format_list(kept), *traceback.format_exception_only(type(exc), exc)])
