"""Imports between the files of a package: what each top-level name a file imports refers to.

`from .blocks import ConvBlock` in `pkg/model.py` binds `ConvBlock` to `pkg.blocks.ConvBlock`.
`from .parts import *` binds every public name of `pkg/parts.py`: the names in its `__all__` when
that is a literal list or tuple of strings, otherwise every name it defines or imports (its own
star imports included) that does not start with `_`. An absolute import written as if the file's
directory, or the tree's root, were on `sys.path` (`from parts import DoubleConv` beside
`parts.py`) names the package's own file. All of this is read from the import statements alone;
what the names are (module classes, layer builders) is the package index's business.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import libcst as cst


@dataclass(frozen=True)
class SourceFile:
    """One Python file of the tree: where it is and the module name other files import it by."""
    path: Path
    relative: Path
    module: str
    is_package: bool


def source_files(root: Path, paths: Iterable[Path]) -> list[SourceFile]:
    """Module names relative to `root`; a root with `__init__.py` is itself a package, named with the
    packages around it (`transformers/models/llama` is `transformers.models.llama`), so imports
    reaching above the root (`from ...activations import ACT2FN`) resolve to their library's names."""
    prefix = enclosing_packages(root)
    found = []
    for path in sorted(paths):
        relative = path.relative_to(root)
        parts = [*prefix, *relative.with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        found.append(SourceFile(path, relative, ".".join(parts[:-1] if is_package else parts), is_package))
    return found


def enclosing_packages(directory: Path) -> list[str]:
    """The dotted package a directory is, counting the packages (`__init__.py`) above it; [] if it is none."""
    parts, here = [], directory.resolve()
    while (here / "__init__.py").exists() and here.name:
        parts.insert(0, here.name)
        here = here.parent
    return parts


def _package(file: SourceFile) -> list[str]:
    """The package a file is in (for `__init__.py`, the package it defines)."""
    parts = file.module.split(".")
    return parts if file.is_package else parts[:-1]


def _root_package(file: SourceFile) -> list[str]:
    """The tree's root as a package: its name when the root has `__init__.py`, otherwise nothing."""
    depth = len(file.relative.parts) - 1
    package = _package(file)
    return package[:len(package) - depth]


def _absolute(file: SourceFile, level: int, name: str) -> str:
    """The absolute module of `from <level dots><name> import ...` written in `file`."""
    return ".".join(relative_target(_package(file), level, name)) if level else name


def relative_target(package: list[str], level: int, name: str) -> list[str]:
    """The parts of the module `from <level dots><name> import ...` names, written in `package`."""
    base = package[:len(package) - (level - 1)] if level > 1 else package
    return [*base, *name.split(".")] if name else base


def _source(node: cst.ImportFrom, file: SourceFile) -> str:
    return _absolute(file, len(node.relative), cst.helpers.get_full_name_for_node(node.module) if node.module else "")


def import_bindings(module: cst.Module, file: SourceFile) -> dict[str, str]:
    """Local name -> absolute dotted target, for every import statement of the file (star imports
    aside: `package_bindings` expands them, knowing the other files)."""
    bindings: dict[str, str] = {}

    class _Imports(cst.CSTVisitor):
        def visit_Import(self, node: cst.Import) -> None:
            for alias in node.names:
                target = cst.helpers.get_full_name_for_node(alias.name) or ""
                if alias.asname:
                    bindings[alias.asname.name.value] = target
                else:
                    bindings.setdefault(target.split(".")[0], target.split(".")[0])

        def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
            if isinstance(node.names, cst.ImportStar):
                return
            source = _source(node, file)
            for alias in node.names:
                name = alias.name.value if isinstance(alias.name, cst.Name) else ""
                local = alias.asname.name.value if alias.asname else name
                bindings[local] = f"{source}.{name}" if source else name

    module.visit(_Imports())
    return bindings


@dataclass
class ModuleImports:
    """What one file's own statements say: its imports, the modules it star-imports, the names it
    defines at top level, and its `__all__` when that is a literal."""
    file: SourceFile
    explicit: dict[str, str]
    stars: list[str]
    defined: set[str]
    all_names: tuple[str, ...] | None


def module_imports(module: cst.Module, file: SourceFile) -> ModuleImports:
    stars = [_source(small, file) for small in _top_level(module)
             if isinstance(small, cst.ImportFrom) and isinstance(small.names, cst.ImportStar)]
    return ModuleImports(file, import_bindings(module, file), stars, _defined(module), _literal_all(module))


def _top_level(module: cst.Module) -> list[cst.CSTNode]:
    """The module's top-level statements, with simple statement lines split into their parts."""
    found = []
    for stmt in module.body:
        found.extend(stmt.body if isinstance(stmt, cst.SimpleStatementLine) else [stmt])
    return found


def _defined(module: cst.Module) -> set[str]:
    names = set()
    for node in _top_level(module):
        if isinstance(node, (cst.ClassDef, cst.FunctionDef)):
            names.add(node.name.value)
        elif isinstance(node, cst.Assign):
            names.update(t.target.value for t in node.targets if isinstance(t.target, cst.Name))
        elif isinstance(node, cst.AnnAssign) and isinstance(node.target, cst.Name):
            names.add(node.target.value)
    return names


def _literal_all(module: cst.Module) -> tuple[str, ...] | None:
    """`__all__` when it is assigned a literal list or tuple of strings (and nothing else)."""
    found = None
    for node in _top_level(module):
        targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else (
            [node.target] if isinstance(node, (cst.AugAssign, cst.AnnAssign)) else [])
        if any(isinstance(t, cst.Name) and t.value == "__all__" for t in targets):
            found = _strings(node.value) if isinstance(node, cst.Assign) else None
            if found is None:
                return None
    return found


def _strings(node: cst.BaseExpression) -> tuple[str, ...] | None:
    try:
        value = ast.literal_eval(cst.Module([]).code_for_node(node))
    except (ValueError, SyntaxError):
        return None
    ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return tuple(value) if ok else None


@dataclass(frozen=True)
class FileImports:
    """A file's bindings (local name -> absolute dotted target) and the names its star imports bound."""
    bindings: dict[str, str]
    starred: frozenset[str]


def package_bindings(modules: list[ModuleImports]) -> dict[Path, FileImports]:
    """Every file's bindings, star imports expanded until no file binds anything new (a star import
    of a file that star-imports another gets that file's names too)."""
    known = {m.file.module for m in modules}
    modules = [_localized(m, known) for m in modules]
    by_module = {m.file.module: m for m in modules}
    bindings = {m.file.path: dict(m.explicit) for m in modules}
    changed = True
    while changed:
        changed = False
        for m in modules:
            expanded = _with_stars(m, bindings, by_module)
            changed = changed or expanded != bindings[m.file.path]
            bindings[m.file.path] = expanded
    return {m.file.path: FileImports(bindings[m.file.path], frozenset(bindings[m.file.path]) - set(m.explicit))
            for m in modules}


def _exports(m: ModuleImports, bindings: dict[Path, dict[str, str]]) -> set[str]:
    """The names `from <m> import *` binds."""
    if m.all_names is not None:
        return set(m.all_names)
    return {name for name in (*m.defined, *bindings[m.file.path]) if not name.startswith("_")}


def _with_stars(m: ModuleImports, bindings: dict[Path, dict[str, str]],
                by_module: dict[str, ModuleImports]) -> dict[str, str]:
    """The file's explicit bindings and what its star imports of package files bind (a later star
    import wins; the file's own imports and definitions win over any star import)."""
    expanded = dict(m.explicit)
    for source in m.stars:
        if source in by_module:
            for name in sorted(_exports(by_module[source], bindings) - m.defined - set(m.explicit)):
                expanded[name] = f"{source}.{name}"
    return expanded


def _localized(m: ModuleImports, known: set[str]) -> ModuleImports:
    """The file's imports with absolute imports of the tree's own modules made package-absolute."""
    tops = {module.split(".")[0] for module in known}
    explicit = {local: _local_module(target, m.file, known, tops) for local, target in m.explicit.items()}
    stars = [_local_module(source, m.file, known, tops) for source in m.stars]
    return ModuleImports(m.file, explicit, stars, m.defined, m.all_names)


def _local_module(target: str, file: SourceFile, known: set[str], tops: set[str]) -> str:
    """`parts.DoubleConv` imported in pkg/model.py as if pkg/ were on sys.path: `pkg.parts.DoubleConv`,
    when pkg/parts.py exists and no top-level module of the tree is called `parts`. The file's own
    directory is tried first, then the tree's root."""
    head = target.split(".")[0]
    if not head or head in tops:
        return target
    for base in (_package(file), _root_package(file)):
        if ".".join([*base, head]) in known:
            return ".".join([*base, target])
    return target
