"""Before/after fixtures in tests/cases/*.case, auto-discovered.

A case file has sections `=== before ===`, `=== after ===` (or `=== unchanged ===`
for code that must come out byte-identical), optionally `=== diagnostics ===`
(one `CODE LINE` per line) and `=== helpers ===` (support helpers the output
must define, space-separated). Copied-in helper definitions are left out of
the comparison; they are checked by name and tested on their own.
"""
import re
from pathlib import Path

import libcst as cst
import pytest

import retarget
from retarget.rewrite.support import BEGIN, END, SUPPORT, _defined_name

CASES = sorted((Path(__file__).parent / "cases").glob("*.case"))
SECTION = re.compile(r"^=== (\w+) ===$", re.M)


def parse_case(path: Path) -> dict[str, str]:
    parts = SECTION.split(path.read_text())
    return {parts[i]: parts[i + 1].strip("\n") + "\n" for i in range(1, len(parts), 2)}


def split_helpers(code: str) -> tuple[str, list[str]]:
    """The converted code without copied-in helpers, and the helper names."""
    module = cst.parse_module(code)
    helpers, body = [], []
    for stmt in module.body:
        name = _defined_name(stmt)
        if name in SUPPORT.definitions and (
                helpers or any(line.comment and line.comment.value == BEGIN for line in stmt.leading_lines)):
            helpers.append(name)
        else:
            body.append(stmt)
    if helpers and len(body) > 0:
        index = next(i for i, s in enumerate(module.body) if s not in body) if helpers else 0
        if index < len(body):
            lines = body[index].leading_lines
            end = next(i for i, line in enumerate(lines) if line.comment and line.comment.value == END)
            body[index] = body[index].with_changes(leading_lines=lines[end + 1:])
    return module.with_changes(body=body).code, helpers


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_case(path):
    case = parse_case(path)
    before = case.get("before", case.get("unchanged"))
    result = retarget.convert(before, path=path.name)
    code, helpers = split_helpers(result.code)
    assert code == case.get("after", case.get("unchanged"))
    expected = [tuple(line.split()) for line in case.get("diagnostics", "").splitlines() if line.strip()]
    assert [(d.code, str(d.line)) for d in result.diagnostics] == expected
    assert sorted(helpers) == sorted(case.get("helpers", "").split()) or "helpers" not in case


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_conversion_is_idempotent(path):
    """Converting converted code again changes nothing."""
    case = parse_case(path)
    once = retarget.convert(case.get("before", case.get("unchanged"))).code
    assert retarget.convert(once).code == once
