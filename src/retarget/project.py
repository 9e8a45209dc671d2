"""Packages: knowledge that crosses files, computed over the whole tree before any file converts.

A class defined in `layers/blocks.py` and instantiated in `model.py` must get `rngs` there; a helper
that builds layers in one file and is called from another must receive it. Each file's own
analysis (the one `convert` runs) decides what its top-level classes and functions are; this
module runs those analyses over every file, feeding each one what the files it imports export,
until nothing changes (a least fixed point, so the result does not depend on file order). Then the
files convert independently, in parallel, each with the facts about its own imports. A file that
cannot be converted, or that retarget fails on, in either phase, costs only itself (`isolation`).
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, TypeVar

import libcst as cst
from libcst.metadata import MetadataWrapper

from .diagnostics import INTERNAL, UNREADABLE, ConversionError, Diagnostic
from .isolation import guarded, internal_problem, with_problem
from .notebook import convert_notebook, notebook_python
from .package_imports import ModuleImports, SourceFile, _package, _root_package, module_imports, package_bindings
from .package_imports import import_bindings, source_files  # noqa: F401 - part of this module's interface
from .pipeline import Conversion, convert_source, parse
from .rewrite.names import is_torch_name, torch_names
from .rewrite.facts import Analysis, External
from .rewrite.support import MODULE
from .rules import RuleSet, default_rules

T = TypeVar("T")
PARALLEL_MIN_FILES = 8  # below this, starting worker processes costs more than it saves


@dataclass
class ProjectFacts:
    """What the package's files export: module classes (with their torch layer base), functions
    that build layers, and the names files re-export (`from .blocks import ConvBlock`)."""
    module_classes: dict[str, str | None] = field(default_factory=dict)
    rngs_functions: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)
    class_args: dict[str, set[str]] = field(default_factory=dict)  # function -> params given layer classes
    class_functions: set[str] = field(default_factory=set)  # functions returning layer classes
    dynamic: bool = False  # some file builds layers its analysis cannot follow (`Facts.dynamic`)
    written_args: dict[str, set[str]] = field(default_factory=dict)  # function -> arguments it fills in place
    _member_index: tuple[int, dict] = field(default=(-1, {}), repr=False, compare=False)

    def size(self) -> int:
        return (len(self.module_classes) + len(self.rngs_functions) + len(self.aliases)
                + sum(len(v) for v in self.class_args.values()) + len(self.class_functions) + self.dynamic
                + sum(len(v) for v in self.written_args.values()))

    def resolve(self, name: str) -> str:
        """Follow re-exports to the defining module: `pkg.layers.ConvBlock` -> `pkg.layers.blocks.ConvBlock`."""
        for _ in range(32):  # re-export chains are short; a cycle must not hang
            if (name in self.module_classes or name in self.rngs_functions or name in self.class_functions
                    or name in self.written_args):
                return name  # a definition
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                head = ".".join(parts[:cut])
                target = self.aliases.get(head, head)
                # `pkg.ops.stochastic_depth` names the function the package imports from its submodule of
                # that name; `pkg.ops.stochastic_depth.StochasticDepth` is still the submodule's class
                if target != head and not (cut < len(parts) and target.startswith(head + ".")):
                    name = ".".join([target, *parts[cut:]])
                    break
            else:
                return name
        return name

    def external_for(self, bindings: dict[str, str]) -> External:
        """The facts about one file's imports, keyed by the local dotted names the file uses."""
        members = self._members()
        external = External()
        external.dynamic = self.dynamic
        for local, target in bindings.items():
            resolved = self.resolve(target)
            self._note(external, local, resolved)
            for member in members.get(resolved, ()):
                self._note(external, f"{local}.{member}", f"{resolved}.{member}")
        return external

    def class_args_of(self, module: str) -> dict[str, set[str]]:
        """The class arguments other files pass to the functions of `module`, by function name."""
        prefix = module + "."
        return {name[len(prefix):]: markers for name, markers in self.class_args.items()
                if name.startswith(prefix) and "." not in name[len(prefix):]}

    def note_class_args(self, bindings: dict[str, str], found: list[tuple[str, str]]) -> None:
        """Record `f(LayerClass, ...)` calls to functions other files define (by their full names)."""
        for name, marker in found:
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                head = ".".join(parts[:cut])
                if head in bindings:
                    full = self.resolve(".".join([bindings[head], *parts[cut:]]))
                    self.class_args.setdefault(full, set()).add(marker)
                    break

    def _note(self, external: External, local: str, name: str) -> None:
        if is_torch_name(name):  # torch's, or a library runtime that rules cover (transformers')
            external.torch_aliases[local] = name
        if name in self.module_classes:
            external.modules[local] = self.module_classes[name]
        if name in self.rngs_functions:
            external.rngs_functions.add(local)
        if name in self.class_functions:
            external.class_functions.add(local)
        if name in self.written_args:
            external.written_args[local] = self.written_args[name]

    def _members(self) -> dict[str, list[str]]:
        """Exported names by parent module; rebuilt only when the facts grew (they never shrink)."""
        if self._member_index[0] == self.size():
            return self._member_index[1]
        members: dict[str, list[str]] = defaultdict(list)
        reexported = [k for k in self.aliases if self.resolve(k).split(".")[0] == "torch"]
        for name in (*self.module_classes, *self.rngs_functions, *self.class_functions, *self.written_args,
                     *reexported):
            parent, _, member = name.rpartition(".")
            members[parent].append(member)
        self._member_index = (self.size(), members)
        return members


@dataclass
class _Indexed:
    file: SourceFile
    tree: cst.Module
    imports: ModuleImports
    wrapper: MetadataWrapper | None  # until the torch names are resolved (its metadata is large)
    qualnames: dict = field(default_factory=dict)
    bindings: dict[str, str] = field(default_factory=dict)  # with star imports expanded
    collector: object = None  # the file's classes and functions, collected once for every round


@dataclass
class ProjectIndex:
    """The facts the files export, each file's import bindings, and the files whose analysis
    failed inside retarget (they export nothing; their conversion reports it)."""
    facts: ProjectFacts = field(default_factory=ProjectFacts)
    bindings: dict[Path, dict[str, str]] = field(default_factory=dict)
    failures: dict[Path, Diagnostic] = field(default_factory=dict)
    torch_names: dict[Path, dict[str, str]] = field(default_factory=dict)  # star-bound names that are torch's

    def bind(self, items: list[_Indexed]) -> None:
        """Each file's bindings, the names the files re-export (`pkg.layers.ConvBlock`), and the torch
        names star imports bring (`nn` from `from .parts import *` when parts.py imports torch.nn)."""
        imports = package_bindings([item.imports for item in items])
        for item in items:
            item.bindings = self.bindings[item.file.path] = imports[item.file.path].bindings
            for local, target in item.bindings.items():
                self.facts.aliases[f"{item.file.module}.{local}"] = target
        for item in items:
            resolved = {name: self.facts.resolve(item.bindings[name]) for name in imports[item.file.path].starred}
            self.torch_names[item.file.path] = {n: r for n, r in resolved.items() if r.split(".")[0] == "torch"}

    def external(self, file: SourceFile) -> External:
        external = self.facts.external_for(self.bindings.get(file.path, {}))
        external.torch_names = self.torch_names.get(file.path, {})
        external.class_args = self.facts.class_args_of(file.module)
        external.package = ".".join(_package(file))
        external.root = ".".join(_root_package(file))
        return external


def _export(item: _Indexed, facts: ProjectFacts, rules: RuleSet) -> None:
    """Record what one file exports, given what is known so far about its imports."""
    external = facts.external_for(item.bindings)
    external.class_args = facts.class_args_of(item.file.module)
    analysis = Analysis(item.tree, item.qualnames, rules, external, item.collector)
    item.collector = analysis.collector
    found = analysis.run()
    facts.note_class_args(item.bindings, analysis.class_args(found))
    facts.dynamic |= found.dynamic
    prefix = item.file.module
    for stmt in item.tree.body:
        if isinstance(stmt, cst.ClassDef) and stmt.name.value in found.classes:
            facts.module_classes[f"{prefix}.{stmt.name.value}"] = found.classes[stmt.name.value].layer_base
            facts.rngs_functions.update(f"{prefix}.{key}" for key in found.rngs_functions
                                        if key.startswith(stmt.name.value + "."))  # methods subclasses call
        elif isinstance(stmt, cst.FunctionDef) and stmt.name.value in found.rngs_functions:
            facts.rngs_functions.add(f"{prefix}.{stmt.name.value}")
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value in found.class_functions:
            facts.class_functions.add(f"{prefix}.{stmt.name.value}")
        func = found.functions.get(stmt.name.value) if isinstance(stmt, cst.FunctionDef) else None
        if func is not None and func.written:
            facts.written_args[f"{prefix}.{stmt.name.value}"] = func.markers(func.written)


def _attempt(index: ProjectIndex, file: SourceFile, step: Callable[[], T]) -> T | None:
    """One step of the package analysis for one file; None when the file cannot be parsed (its
    conversion reports why) or retarget fails on it (noted: the file exports no more)."""
    try:
        return step()
    except ConversionError:
        return None
    except Exception as exc:  # a bug in retarget: it costs this file only
        index.failures.setdefault(file.path, internal_problem(
            exc, str(file.path), "indexing this file for its package", "other files do not know the classes it defines"))
        return None


def _parse(file: SourceFile, text: str) -> _Indexed:
    wrapper = MetadataWrapper(parse(_python_text(file, text), str(file.path)), unsafe_skip_copy=True)
    return _Indexed(file, wrapper.module, module_imports(wrapper.module, file), wrapper)


def _qualify(item: _Indexed, index: ProjectIndex) -> _Indexed:
    item.qualnames = torch_names(item.wrapper.module, index.torch_names[item.file.path],
                                 index.facts.external_for(item.bindings).torch_aliases)
    item.wrapper = None
    return item


def index_project(files: list[SourceFile], texts: dict[Path, str], rules: RuleSet | None = None) -> ProjectIndex:
    """Cross-file facts, and each file's import bindings: every file's analysis repeated until no
    file exports anything new. A file retarget fails on drops out; the others go on."""
    rules = rules or default_rules()
    index = ProjectIndex()
    parsed = [item for f in files if (item := _attempt(index, f, lambda f=f: _parse(f, texts[f.path])))]
    index.bind(parsed)
    indexed = [item for item in parsed if _attempt(index, item.file, lambda item=item: _qualify(item, index))]
    while True:
        before = index.facts.size()
        indexed = [item for item in indexed
                   if _attempt(index, item.file, lambda item=item: _export(item, index.facts, rules) or item)]
        if index.facts.size() == before:
            return index


@dataclass
class FileResult:
    """One converted file of a tree."""
    file: SourceFile
    original: str
    conversion: Conversion


def _python_text(file: SourceFile, text: str) -> str:
    """What the package analysis reads: the file, or a notebook's code cells joined."""
    return notebook_python(text, str(file.path)) if file.path.suffix == ".ipynb" else text


def _convert(text: str, path: str, external: External, helpers_from: str | None) -> Conversion:
    if path.endswith(".ipynb"):
        return convert_notebook(text, path, external)
    return convert_source(text, path, external=external, helpers_from=helpers_from)


def _convert_job(job: tuple[str, str, External, str | None]) -> Conversion:
    """Runs in a worker: whatever goes wrong stays with this file (kept unchanged and reported)."""
    text, path, external, helpers_from = job
    return guarded(lambda: _convert(text, path, external, helpers_from), text, path)


def helpers_import_path(file: SourceFile) -> str | None:
    """Where a file of the tree imports the package's helper module from (`.._torch_compat` in a
    package, `_torch_compat` beside scripts and in the packages of a tree that is not one), or None
    where no import reaches it (a folder of scripts without `__init__.py`): its helpers are copied in."""
    root = Path(*file.path.parts[:len(file.path.parts) - len(file.relative.parts)])
    folders = file.relative.parts[:-1]
    if file.path.suffix != ".py" or not all((root.joinpath(*folders[:i + 1]) / "__init__.py").exists()
                                             for i in range(len(folders))):
        return None
    return "." * (len(folders) + 1) + MODULE if (root / "__init__.py").exists() else MODULE


def convert_files(files: list[SourceFile], texts: dict[Path, str], *, jobs: int | None = None,
                  progress: Callable[[int, int, SourceFile], None] | None = None,
                  helpers: str = "inline") -> list[FileResult]:
    """Index the package, then convert every file with the facts about its imports, in parallel
    when there are enough files. Results come back in `files` order: the output is deterministic.
    A file retarget cannot convert is kept unchanged and reported; the others convert. With
    `helpers="module"` the files import their helpers from the package's helper module (each
    result says which), which the caller writes with `helper_module`."""
    index = index_project(files, texts)
    work = [(texts[f.path], str(f.path), index.external(f), helpers_import_path(f) if helpers == "module" else None)
            for f in files]
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    if jobs > 1 and len(files) >= PARALLEL_MIN_FILES:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            conversions = pool.map(_convert_job, work, chunksize=max(1, len(work) // (jobs * 8)))
            return _collect(files, texts, conversions, progress, index.failures)
    return _collect(files, texts, map(_convert_job, work), progress, index.failures)


def _collect(files, texts, conversions, progress, failures: dict[Path, Diagnostic]) -> list[FileResult]:
    results = []
    for i, (file, conversion) in enumerate(zip(files, conversions), 1):
        results.append(FileResult(file, texts[file.path], _with_index_failure(file, conversion, failures)))
        if progress:
            progress(i, len(files), file)
    return results


def _with_index_failure(file: SourceFile, conversion: Conversion, failures: dict[Path, Diagnostic]) -> Conversion:
    """A file the package analysis failed on but that converted: the failure is still reported (what
    it defines was unknown to the other files)."""
    if file.path not in failures or any(d.code in (INTERNAL, UNREADABLE) for d in conversion.diagnostics):
        return conversion
    return with_problem(conversion, str(file.path), failures[file.path])


def progress_bar(done: int, total: int, file: SourceFile) -> None:
    """`[#######.......] 12/40 pkg/model.py` on stderr, rewritten in place (only the last one when
    stderr is not a terminal, so logs stay readable)."""
    if done < total and not sys.stderr.isatty():
        return
    width = 24
    filled = width * done // total
    line = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {file.relative}"
    print(line[:120].ljust(80), end="\n" if done == total else "", file=sys.stderr, flush=True)
