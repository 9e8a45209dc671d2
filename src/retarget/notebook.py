"""Jupyter notebooks: the code cells convert together, as the one program they form.

Cells are joined into one module with a marker comment before each, so names defined in one cell
are known in the next (a model class in cell 2, its training loop in cell 5); the converted module
is split back at the markers. IPython syntax (`%magic`, `!shell`, `%%cell` magics) is not Python:
line magics are masked during conversion and restored, cell-magic cells are kept as they are.
Markdown cells are kept, code-cell outputs cleared. Diagnostics say which cell and line.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from .diagnostics import FILE_MARKER, ConversionError
from .pipeline import Conversion, convert_source
from .rewrite.facts import External

CELL = "# RETARGET-CELL {}"
CELL_LINE = re.compile(r"^# RETARGET-CELL (\d+)$", re.M)
MAGIC = "# RETARGET-MAGIC "
IPYTHON_LINE = re.compile(r"^(\s*)([%!].*|.*\?\??)$")  # `%timeit f()`, `!pip install x`, `obj?`


@dataclass(frozen=True)
class _Span:
    """Where one code cell lies in the joined module (1-based lines)."""
    cell: int
    first_line: int
    lines: int


def load(text: str, path: str) -> dict:
    """A notebook's JSON, checked enough that conversion can rely on its shape."""
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversionError(f"not a notebook: invalid JSON ({exc.msg})", path, exc.lineno, exc.colno) from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ConversionError("not a notebook: no `cells` list (nbformat 4 expected)", path, 1, 1)
    return notebook


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _is_python(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and not _source(cell).lstrip().startswith("%%")


def _mask_magics(source: str) -> str:
    return "\n".join(IPYTHON_LINE.sub(lambda m: f"{m[1]}{MAGIC}{m[2]}", line)
                     if IPYTHON_LINE.match(line) and not line.lstrip().startswith("#") else line
                     for line in source.split("\n"))


def _unmask_magics(source: str) -> str:
    return re.sub(rf"^(\s*){re.escape(MAGIC)}", r"\1", source, flags=re.M)


def joined_source(notebook: dict) -> tuple[str, list[_Span]]:
    """The code cells as one module, and where each cell lies in it."""
    parts, spans, line = [], [], 1
    for index, cell in enumerate(notebook["cells"], 1):
        if not _is_python(cell):
            continue
        body = _mask_magics(_source(cell)).rstrip("\n")
        parts.append(f"{CELL.format(index)}\n{body}\n")
        spans.append(_Span(index, line + 1, body.count("\n") + 1))
        line += body.count("\n") + 2
    return "".join(parts), spans


def _locate(line: int, spans: list[_Span]) -> tuple[int, int]:
    """(cell number, line in that cell) of a line of the joined module."""
    for span in reversed(spans):
        if line >= span.first_line:
            return span.cell, line - span.first_line + 1
    return (spans[0].cell, 1) if spans else (0, line)


def _split(code: str, path: str) -> dict[int, str]:
    """Converted code per cell; what lands before the first marker (new imports) joins the first cell."""
    pieces = CELL_LINE.split(code)
    cells = {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces), 2)}
    if not cells:
        return {}
    first = min(cells)
    cells[first] = pieces[0] + cells[first]
    if list(cells) != sorted(cells) or len(cells) != len(pieces) // 2:  # pragma: no cover - internal guard
        raise RuntimeError(f"{path}: cell markers came out of order")
    return {k: _unmask_magics(v.strip("\n")) for k, v in cells.items()}


def _cell_source(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def convert_notebook(text: str, path: str = "<notebook>", external: External | None = None) -> Conversion:
    """Convert the code cells of a notebook; the result's `code` is the converted notebook (JSON)."""
    notebook = load(text, path)
    joined, spans = joined_source(notebook)
    try:
        result = convert_source(joined, path, external=external)
    except ConversionError as exc:
        cell, line = _locate(exc.line, spans)
        raise ConversionError(f"cell {cell}: {exc.message}", path, line, exc.column) from None
    converted = _split(result.code, path)
    if sorted(converted) != [span.cell for span in spans]:  # pragma: no cover - internal error guard
        raise RuntimeError(f"{path}: a cell marker was lost in conversion")
    for index, cell in enumerate(notebook["cells"], 1):
        if cell.get("cell_type") == "code":
            if index in converted:
                cell["source"] = _cell_source(converted[index])
            cell["outputs"], cell["execution_count"] = [], None
    diagnostics = []
    for diag in result.diagnostics:
        cell, line = _locate(diag.line, spans)
        diagnostics.append(replace(diag, line=line, cell=cell))
    return Conversion(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", diagnostics)


def cells_text(text: str) -> tuple[str, dict[int, int]]:
    """A notebook's code cells as one text under `# [cell N]` headers (for reading, as in the
    report), and the line where each cell's code starts."""
    try:
        cells = load(text, "<notebook>")["cells"]
    except ConversionError:
        return text, {}
    parts, starts, line = [], {}, 1
    for index, cell in enumerate(cells, 1):
        if cell.get("cell_type") == "code":
            body = _source(cell).rstrip("\n")
            parts.append(f"# [cell {index}]\n{body}\n\n")
            starts[index] = line + 1
            line += body.count("\n") + 3
    return "".join(parts), starts


def mark_notebook(text: str, path: str, comment: str) -> str:
    """The notebook with `comment` as the first line of its first Python cell (replacing an earlier
    whole-file marker there); unchanged when it is not a notebook or has no such cell."""
    try:
        notebook = load(text, path)
    except ConversionError:
        return text
    cell = next((c for c in notebook["cells"] if _is_python(c)), None)
    if cell is None:
        return text
    lines = _cell_source(_source(cell))
    cell["source"] = [f"{comment}\n", *lines[1:]] if lines and FILE_MARKER.match(lines[0]) else [f"{comment}\n", *lines]
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def notebook_python(text: str, path: str) -> str:
    """The joined code of a notebook, for package-wide analysis."""
    return joined_source(load(text, path))[0]

