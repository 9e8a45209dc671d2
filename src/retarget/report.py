"""The conversion report: what was converted and what needs a person, for a whole tree.

`report_data` is the JSON form (`--report-json`): per-file status, every escape hatch with its
code, message and position (and for an internal error, RT900, a short traceback), counts by code. `render_html` turns it, with the sources, into one
self-contained HTML page (`--report`): summary, counts, a file table, the escape list linking to
the line, and a side-by-side view of original and converted code with untranslated spans marked.
"""
from __future__ import annotations

import difflib
import html
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Protocol, Sequence

from .diagnostics import CODES, HINTS, MARKER, Diagnostic
from .notebook import cells_text
from .rewrite.support import BEGIN, END

class ConvertedFile(Protocol):
    relative: object
    original: str
    code: str
    diagnostics: list[Diagnostic]


STATUS_ORDER = {"needs attention": 0, "converted": 1, "unchanged": 2}


def _status(item: ConvertedFile) -> str:
    if item.diagnostics:
        return "needs attention"
    return "unchanged" if item.code == item.original else "converted"


def _escape_entry(diag: Diagnostic) -> dict:
    entry = {"code": diag.code, "line": diag.line, "column": diag.column, "message": diag.message}
    cell = getattr(diag, "cell", None)
    if cell is not None:
        entry["cell"] = cell
    if getattr(diag, "traceback", None):
        entry["traceback"] = diag.traceback  # RT900: where retarget failed, for the bug report
    return entry


def report_data(results: Sequence[ConvertedFile]) -> dict:
    """The report as plain data (what `--report-json` writes)."""
    files = [{"path": str(item.relative), "status": _status(item), "lines": len(item.original.splitlines()),
              "escapes": [_escape_entry(d) for d in item.diagnostics]} for item in results]
    counts = Counter(e["code"] for f in files for e in f["escapes"])
    statuses = Counter(f["status"] for f in files)
    summary = {"files": len(files), "converted": statuses["converted"], "unchanged": statuses["unchanged"],
               "needs_attention": statuses["needs attention"], "escapes": sum(counts.values()),
               "lines": sum(f["lines"] for f in files)}
    return {"tool": "retarget", "summary": summary, "counts": dict(sorted(counts.items())),
            "codes": {code: CODES[code] for code in sorted(counts)},
            "hints": {code: HINTS[code] for code in sorted(counts) if code in HINTS}, "files": files}


def report_json(results: Sequence[ConvertedFile]) -> str:
    return json.dumps(report_data(results), indent=2) + "\n"


# -- HTML ---------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
header{background:#24292f;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
main{padding:16px 24px}h2{font-size:17px;margin:28px 0 8px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:22px}table{border-collapse:collapse}
.list td,.list th{border-bottom:1px solid #d0d7de;padding:4px 10px;text-align:left}
.badge{border-radius:10px;padding:1px 8px;font-size:12px;color:#fff}
.badge.converted{background:#1a7f37}.badge.unchanged{background:#6e7781}.badge.needs{background:#cf222e}
.sbs{width:100%;table-layout:fixed;font:12px/1.4 ui-monospace,monospace;border:1px solid #d0d7de}
.sbs td{vertical-align:top;white-space:pre-wrap;word-break:break-all;padding:0 6px}
.sbs td.ln{width:3.5em;color:#6e7781;text-align:right;background:#f6f8fa;user-select:none}
.sbs tr.changed td.code{background:#fff8c5}.sbs tr.added td.dst{background:#dafbe1}
.sbs tr.removed td.src{background:#ffebe9}
.sbs td.untranslated{background:#ffcecb !important}mark{background:#ff8182;color:#000}
.fold td{background:#ddf4ff;cursor:pointer;color:#0969da;font-family:system-ui}
.hint{color:#57606a;font-size:13px;margin:2px 0 6px 1em}
"""

SCRIPT = """
document.body.dataset.ready = "1";
document.querySelectorAll('tr.fold').forEach(function (row) {
  row.addEventListener('click', function () {
    var body = document.getElementById(row.dataset.target);
    body.hidden = !body.hidden;
  });
});
"""


def _badge(status: str) -> str:
    return f'<span class="badge {status.split()[0]}">{status}</span>'


def _summary(data: dict) -> str:
    s = data["summary"]
    cards = [("files", s["files"]), ("converted", s["converted"]), ("unchanged", s["unchanged"]),
             ("need attention", s["needs_attention"]), ("escape hatches", s["escapes"]), ("lines", s["lines"])]
    return '<div class="cards" id="summary">' + "".join(
        f'<div class="card"><b>{value:,}</b>{label}</div>' for label, value in cards) + "</div>"


def _counts(data: dict) -> str:
    rows = "".join(f'<tr><td><code>{code}</code></td><td>{html.escape(data["codes"][code])}</td><td>{n}</td></tr>'
                   for code, n in data["counts"].items())
    return ('<h2>Escape hatches by code</h2><table class="list" id="counts"><tr><th>code</th><th>meaning</th>'
            f'<th>count</th></tr>{rows or "<tr><td colspan=3>none</td></tr>"}</table>')


def _files(data: dict) -> str:
    rows = "".join(f'<tr><td><a href="#file-{i}">{html.escape(f["path"])}</a></td><td>{_badge(f["status"])}</td>'
                   f'<td>{f["lines"]}</td><td>{len(f["escapes"])}</td></tr>' for i, f in enumerate(data["files"]))
    return ('<h2>Files</h2><table class="list" id="files"><tr><th>file</th><th>status</th><th>lines</th>'
            f'<th>escape hatches</th></tr>{rows}</table>')


def _where(entry: dict) -> str:
    cell = f'cell {entry["cell"]}, ' if "cell" in entry else ""
    return f'{cell}line {entry["line"]}'


def _escapes(data: dict, views: list["_View"]) -> str:
    items = "".join(
        f'<li class="escape"><code>{e["code"]}</code> <a href="#file-{i}-L{views[i].line_of(e)}">'
        f'{html.escape(f["path"])}, {_where(e)}</a>: {html.escape(e["message"])}'
        f'{_hint(data, e["code"])}</li>'
        for i, f in enumerate(data["files"]) for e in f["escapes"])
    return f'<h2>Escape hatches</h2><ul id="escapes">{items or "<li>none: everything converted</li>"}</ul>'


def _hint(data: dict, code: str) -> str:
    hint = data.get("hints", {}).get(code)
    return f'<div class="hint">How to fix: {html.escape(hint)}</div>' if hint else ""


def _cell(text: str, number: int | None, side: str, file_id: int, flagged: dict[int, int]) -> str:
    if number is None:
        return '<td class="ln"></td><td class="code"></td>'
    body = html.escape(text)
    classes = f"code {side}"
    anchor = ""
    if side == "src" and number in flagged:
        col = max(flagged[number] - 1, 0)
        body = html.escape(text[:col]) + f"<mark>{html.escape(text[col:]) or ' '}</mark>"
        classes += " untranslated"
        anchor = f' id="file-{file_id}-L{number}"'
    elif side == "dst" and MARKER in text:
        classes += " untranslated"
    return f'<td class="ln"{anchor}>{number}</td><td class="{classes}">{body}</td>'


def _row(kind: str, left: tuple, right: tuple, file_id: int, flagged: dict[int, int]) -> str:
    return (f'<tr class="{kind}">{_cell(*left, "src", file_id, flagged)}'
            f'{_cell(*right, "dst", file_id, flagged)}</tr>')


DEFINITION = re.compile(r"^(\s*)(?:async\s+)?(?:def|class)\s+(\w+)")
SAME_ROLE = {"forward": "__call__"}  # a converted module's forward is its __call__


def _blocks(lines: list[tuple[str, int]]) -> list[tuple[tuple, list[tuple[str, int]]]]:
    """The lines cut at each class and function (with its decorators), keyed by indentation and name."""
    blocks, current, key = [], [], ("", "")
    for text, number in lines:
        found = DEFINITION.match(text)
        if found:
            decorators = []
            while current and current[-1][0].lstrip().startswith("@"):
                decorators.insert(0, current.pop())
            blocks.append((key, current))
            current, key = decorators, (len(found[1]), SAME_ROLE.get(found[2], found[2]))
        current.append((text, number))
    blocks.append((key, current))
    return blocks


def _line_rows(old: list[tuple[str, int]], new: list[tuple[str, int]]):
    matcher = difflib.SequenceMatcher(None, [t for t, _ in old], [t for t, _ in new], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        kind = {"equal": "same", "replace": "changed", "delete": "removed", "insert": "added"}[tag]
        for k in range(max(i2 - i1, j2 - j1)):
            yield kind, old[i1 + k] if i1 + k < i2 else ("", None), new[j1 + k] if j1 + k < j2 else ("", None)


def _aligned_rows(old: list[str], new: list[tuple[str, int]]):
    """(kind, (text, line) or ("", None), same for the converted side) rows pairing the lines: classes
    and functions with their converted selves first (`forward` with `__call__`), then lines within."""
    before, after = _blocks([(text, i + 1) for i, text in enumerate(old)]), _blocks(new)
    matcher = difflib.SequenceMatcher(None, [k for k, _ in before], [k for k, _ in after], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for (_, left), (_, right) in zip(before[i1:i2], after[j1:j2]):
                yield from _line_rows(left, right)
        else:
            yield from _line_rows([line for _, b in before[i1:i2] for line in b], [line for _, b in after[j1:j2] for line in b])


def _helper_span(lines: list[str]) -> range:
    """Converted lines (0-based) holding the copied helpers, from the opening marker to the closing one."""
    begin = next((i for i, line in enumerate(lines) if line == BEGIN), None)
    if begin is None:
        return range(0)
    end = next((i for i in range(begin, len(lines)) if lines[i] == END), len(lines) - 1)
    return range(begin, end + 1)


def _folded(file_id: int, rows: list[str], label: str) -> str:
    target = f"fold-{file_id}"
    return (f'<tbody><tr class="fold" data-target="{target}"><td colspan="4">{label}: click to show</td></tr>'
            f'</tbody><tbody id="{target}" hidden>{"".join(rows)}</tbody>')


@dataclass
class _View:
    """The texts shown side by side: the files, or for a notebook its code cells under headers."""
    original: str
    code: str
    cell_starts: dict[int, int]  # notebook cell -> line of its first code line in the view

    def line_of(self, escape: dict) -> int:
        cell = escape.get("cell")
        return escape["line"] if cell is None else self.cell_starts.get(cell, 1) + escape["line"] - 1


def _view(item: ConvertedFile) -> _View:
    if not str(item.relative).endswith(".ipynb"):
        return _View(item.original, item.code, {})
    original, starts = cells_text(item.original)
    return _View(original, cells_text(item.code)[0], starts)


def _side_by_side(file_id: int, item: ConvertedFile, view: _View) -> str:
    """Original and converted code aligned line by line; the copied helpers in one folded block."""
    flagged: dict[int, int] = {}
    for diag in item.diagnostics:
        line = view.line_of(_escape_entry(diag))
        flagged[line] = min(diag.column, flagged.get(line, diag.column))
    lines = view.code.splitlines()
    helpers = _helper_span(lines)
    numbered = [(text, i + 1) for i, text in enumerate(lines) if i not in helpers]
    helper_rows = [_row("added", ("", None), (lines[i], i + 1), file_id, flagged) for i in helpers]
    rows, pending = [], bool(helper_rows)
    names = [m[1] or m[2] for i in helpers if (m := re.match(r"(?:def|class) (\w+)|(\w+) =", lines[i]))]
    label = f"{len(helpers)} lines of helpers copied in ({', '.join(names)})"
    for kind, left, right in _aligned_rows(view.original.splitlines(), numbered):
        if pending and right[1] is not None and right[1] > helpers.start:
            rows.append(_folded(file_id, helper_rows, label))
            pending = False
        rows.append(f"<tbody>{_row(kind, left, right, file_id, flagged)}</tbody>")
    if pending:
        rows.append(_folded(file_id, helper_rows, label))
    return (f'<table class="sbs"><colgroup><col style="width:3.5em"><col><col style="width:3.5em"><col>'
            f'</colgroup>{"".join(rows)}</table>')


def render_html(results: Sequence[ConvertedFile], title: str = "retarget conversion report") -> str:
    """One self-contained page (inline style and script, no external resources)."""
    data = report_data(results)
    views = [_view(item) for item in results]
    order = sorted(range(len(results)), key=lambda i: STATUS_ORDER[data["files"][i]["status"]])  # work first
    sections = "".join(
        f'<section class="file" id="file-{i}"><h2>{html.escape(str(results[i].relative))} '
        f'{_badge(data["files"][i]["status"])}</h2>{_side_by_side(i, results[i], views[i])}</section>' for i in order)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style></head><body><header><h1>{html.escape(title)}</h1></header><main>'
            f'{_summary(data)}{_counts(data)}{_files(data)}{_escapes(data, views)}<h2>Side by side (files that need attention first)</h2>{sections}'
            f'</main><script>{SCRIPT}</script></body></html>\n')
