"""The index of the support helpers (`retarget/support/*.py`), read with Python's own parser.

Which top-level names the helper files define, in source order; which other definitions each one
needs; where its text is. Python's `ast` reads all of them in a tenth of a second; `_index.json` stores what it
finds (with the digest of the files, so an edited file is read again), so the rule
loader validates against this index at start-up and the rewriter parses a definition with LibCST
only when it copies it into an output. Nothing here imports LibCST or the rewriter: the rules
depend on this module, the rewriter depends on both.

A definition using `@default_rngs` (or a method drawing from `building_rngs`) has two forms: the
`scoped` one as written, and the static one without them (output that builds every layer with
an explicit `rngs` needs neither); each form has its own dependencies.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SUPPORT_DIR = Path(__file__).resolve().parent / "support"
SUPPORT_FILES = ("functional.py", "layers.py", "attention.py", "transformer.py", "recurrent.py", "activations.py",
                 "optim.py", "data.py", "torch_checkpoint.py", "checkpoint.py", "einops_layers.py",
                 "distributions.py", "transformers_runtime.py")
INDEX_FILE = SUPPORT_DIR / "_index.json"  # names and line ranges, with the digest of the files they come from
SCOPED = "default_rngs"  # the decorator of constructors whose `rngs` defaults to their builder's
BUILDING = "building_rngs"  # what methods that draw from the layer being built call


@dataclass(frozen=True)
class Definition:
    """One top-level helper: its file and its lines (with the comments and blank lines above it)."""
    name: str
    file: str
    start: int
    end: int


def defined_name(stmt: ast.stmt) -> str | None:
    """The name a top-level function, class or constant (`NAME = ...`) defines."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    return targets[0].id if len(targets) == 1 and isinstance(targets[0], ast.Name) else None


def _mentions(stmts: list[ast.stmt], name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for s in stmts for n in ast.walk(s))


def _dropped(node: ast.AST) -> bool:
    """A function the static form removes: it draws from the layer being built."""
    return isinstance(node, ast.FunctionDef) and node.name != BUILDING and _mentions(node.body, BUILDING)


def _scoped_decorator(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == SCOPED


def _children(node: ast.AST, static: bool):
    for child in ast.iter_child_nodes(node):
        if static and (_dropped(child) or (isinstance(node, ast.FunctionDef) and _scoped_decorator(child)
                                           and child in node.decorator_list)):
            continue
        yield child


def _bound(node: ast.AST) -> set[str]:
    """The names one node writes or reads (attribute and keyword names are strings in `ast`: none)."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.arg):
        return {node.arg}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.alias):
        return {(node.asname or node.name).split(".")[0]}
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return set(node.names)
    return {node.module.split(".")[0]} if isinstance(node, ast.ImportFrom) and node.module else set()


def names_in(node: ast.AST, static: bool) -> set[str]:
    """Every name a definition uses, in its static form (`static`) or as written."""
    if not static:
        return set().union(*map(_bound, ast.walk(node)))
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        found |= _bound(current)
        stack.extend(_children(current, static))
    return found


def _has_scoped_form(node: ast.AST) -> bool:
    return any(_dropped(n) or (isinstance(n, ast.FunctionDef) and any(map(_scoped_decorator, n.decorator_list)))
               for n in ast.walk(node))


class HelperIndex:
    """Every helper definition, in source order (a name defined twice keeps its first place and its
    last text, as Python would bind it). What a definition needs is worked out when first asked."""

    def __init__(self, files: tuple[str, ...] = SUPPORT_FILES):
        self.files = files
        stored = _stored_index(files, self.digest())
        self.definitions: dict[str, Definition] = stored if stored is not None else self.scan()

    def digest(self) -> str:
        """What the index was built from: the helper files' names and bytes."""
        found = hashlib.sha256()
        for file in self.files:
            found.update(file.encode() + b"\0" + "".join(self.lines(file)).encode() + b"\0")
        return found.hexdigest()

    def scan(self) -> dict[str, Definition]:
        """Every definition, read with `ast` from the files (what `_index.json` stores)."""
        found: dict[str, Definition] = {}
        for file in self.files:
            previous_end = 0
            for stmt in ast.parse("".join(self.lines(file))).body:
                if name := defined_name(stmt):
                    found[name] = Definition(name, file, previous_end + 1, stmt.end_lineno)
                previous_end = stmt.end_lineno
        return found

    def write(self, path: Path = INDEX_FILE) -> None:
        """Store the index (`python -m retarget.helper_index` after editing a helper file)."""
        rows = [[d.name, d.file, d.start, d.end] for d in self.scan().values()]
        lines = ",\n".join(json.dumps(row) for row in rows)
        path.write_text(f'{{"digest": "{self.digest()}",\n "definitions": [\n{lines}\n]}}\n')

    @functools.cache
    def stmt(self, name: str) -> ast.stmt:
        """The statement of one definition, parsed on its own."""
        return ast.parse(self.text(name)).body[0]

    def __contains__(self, name: str) -> bool:
        return name in self.definitions

    @functools.cache
    def _names(self, name: str) -> tuple[frozenset[str], frozenset[str], bool]:
        """The definitions the static form and the written form need, and whether the forms differ
        (only a definition that mentions `default_rngs` or `building_rngs` can have two)."""
        stmt, known = self.stmt(name), set(self.definitions) - {name}
        written = frozenset(names_in(stmt, False) & (known | {SCOPED, BUILDING}))
        if not {SCOPED, BUILDING} & written:
            return written, written, False
        return frozenset(names_in(stmt, True) & known), written & known, _has_scoped_form(stmt)

    def deps(self, name: str, scoped: bool = False) -> frozenset[str]:
        """The other definitions `name` needs, in its scoped form or its static one."""
        return self._names(name)[1 if scoped else 0]

    def scoped(self, name: str) -> bool:
        """Whether `name` has a scoped form different from its static one."""
        return self._names(name)[2]

    @functools.cache
    def lines(self, file: str) -> list[str]:
        return (SUPPORT_DIR / file).read_text().splitlines(keepends=True)

    def text(self, name: str) -> str:
        """The source of one definition, with the comments and blank lines above it."""
        found = self.definitions[name]
        return "".join(self.lines(found.file)[found.start - 1:found.end])


def _stored_index(files: tuple[str, ...], digest: str) -> dict[str, Definition] | None:
    """The stored index, where it was built from these very files (else None: they are read again)."""
    try:
        stored = json.loads(INDEX_FILE.read_text())
    except (OSError, ValueError):
        return None
    if files != SUPPORT_FILES or stored.get("digest") != digest:
        return None
    return {row[0]: Definition(*row) for row in stored["definitions"]}


@functools.cache
def helper_index() -> HelperIndex:
    return HelperIndex()


if __name__ == "__main__":
    HelperIndex().write()
