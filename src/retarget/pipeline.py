"""The whole conversion of one source file, in order:

parse -> resolve names -> analyse (structural facts, training steps) -> transform (structural
passes and rule rewrites, one bottom-up traversal) -> support helpers ->
imports -> checks -> render.
"""
from __future__ import annotations

import ast
import functools

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from .diagnostics import FILE_MARKER, ConversionError, Diagnostic, Escape
from .rewrite.context import Context
from .rewrite.facts import Analysis, External
from .rewrite.imports import absolute_beyond_root, fix_imports, names_used
from .rewrite.names import dotted, is_torch_name, torch_names
from .rewrite.chains import split_inplace_chains
from .rewrite.shadowing import PREFIX, alias_statements, own_definitions, rename_helpers
from .rewrite.support import BEGIN, SUPPORT, drop_helper_import, helper_import, is_helper_import
from .rewrite.training import plan_training
from .rewrite.transformer import Converter, Prepass
from .rules import RuleSet, default_rules


@dataclass
class Conversion:
    """The converted source and what could not be converted."""
    code: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    helpers: frozenset[str] = frozenset()  # support helpers the file imports from the package's module

    @property
    def clean(self) -> bool:
        return not self.diagnostics


def parse(source: str, path: str) -> cst.Module:
    """Parse, reporting syntax errors as CPython does (its line and message are the precise ones)."""
    try:
        ast.parse(source)
    except SyntaxError as exc:
        raise ConversionError(f"syntax error: {exc.msg}", path, exc.lineno or 0, exc.offset or 0) from None
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise ConversionError(f"syntax error: {exc.message}", path, exc.raw_line, exc.raw_column + 1) from None


def _helper_names(module: cst.Module, requested: set[str], ctx: Context, used: set[str]) -> frozenset[str]:
    """Support helpers to copy in: those the file does not define yet (a re-conversion already has
    them, after the marker line). A definition of the user's own with a helper's name is reported."""
    copied, in_block = set(), False
    for stmt in module.body:
        if not isinstance(stmt, (cst.ClassDef, cst.FunctionDef)):
            in_block = False
            continue
        in_block = in_block or any(line.comment and line.comment.value == BEGIN for line in stmt.leading_lines)
        if stmt.name.value in requested:
            if in_block:
                copied.add(stmt.name.value)
            elif not (stmt.name.value in ctx.own_definitions and PREFIX + stmt.name.value in used):  # aliased
                original = ctx.analysis.collector.classes.get(stmt.name.value) or getattr(
                    ctx.facts.functions.get(stmt.name.value), "node", stmt)
                ctx.report(original, Escape("RT109", f"this file defines `{stmt.name.value}`, the name of a helper "
                                                 "the conversion needs; rename it"))
    return frozenset(requested - copied)


def report_imported_helpers(module: cst.Module, helpers: frozenset[str], ctx: Context) -> None:
    """A name the file imports from another library (`from einops import pack`) that a helper the
    conversion copies in would shadow: reported, like a definition of the user's own (RT109)."""
    for stmt in module.body:
        for small in stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ():
            if not isinstance(small, cst.ImportFrom) or is_torch_name(dotted(small.module) if small.module else None) \
                    or is_helper_import(small):
                continue
            for alias in small.names if not isinstance(small.names, cst.ImportStar) else ():
                name = dotted(alias.asname.name if alias.asname else alias.name)
                if name in helpers and name not in ctx.facts.external.torch_aliases:  # those imports go
                    ctx.report(small, Escape("RT109", f"this file imports `{name}`, the name of a helper the "
                                                      "conversion needs; import it under another name"))


def drop_file_markers(module: cst.Module) -> cst.Module:
    """A marker an earlier run put at the top of a file it could not convert (RT900, RT901) is
    stale once the file converts: it goes."""
    header = [line for line in module.header if not (line.comment and FILE_MARKER.match(line.comment.value))]
    return module.with_changes(header=header) if len(header) != len(module.header) else module


def library_only(qualnames: dict, facts) -> bool:
    """A file that names only a library's runtime (transformers' configuration and tokenizer files:
    `from transformers.utils import auto_docstring`) and has no module class holds no torch code to
    convert: it stays as written (its imports made absolute where they left the tree)."""
    return bool(qualnames) and not facts.classes and all(
        not q.startswith(("torch", "einops")) for q in qualnames.values())


def check(code: str, path: str) -> None:
    """The output must parse; anything else is a bug in retarget, reported as such."""
    try:
        ast.parse(code)
    except SyntaxError as exc:  # pragma: no cover - internal error guard
        raise RuntimeError(f"{path}: retarget produced code that does not parse: {exc.msg} "
                           f"(output line {exc.lineno})") from None


def convert_source(source: str, path: str = "<string>", rules: RuleSet | None = None,
                   external: External | None = None, helpers_from: str | None = None) -> Conversion:
    """Convert one file; `external` carries what the rest of its package says about its imports.
    The support helpers it needs are copied in, or with `helpers_from` (`.._torch_compat`) imported
    from the package's helper module, which the caller writes (`helper_module`)."""
    rules = rules or default_rules()
    module = parse(source, path)
    if external is not None and external.root.split(".")[0] == "transformers":  # its torch-free runtime
        module = absolute_beyond_root(module, external.package, external.root)
    module = split_inplace_chains(module, source)
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)  # the tree is ours alone
    qualnames = torch_names(wrapper.module, external.torch_names if external else None,
                            external.torch_aliases if external else None)
    prepass = Prepass()
    wrapper.module.visit(prepass)
    analysis = Analysis(wrapper.module, qualnames, rules, external)
    positions = functools.cache(lambda: wrapper.resolve(PositionProvider))  # only files with diagnostics pay
    facts = analysis.run()
    if library_only(qualnames, facts):
        return Conversion(drop_file_markers(wrapper.module).code)
    training = plan_training(wrapper.module, qualnames, analysis.module_call_test(facts))
    ctx = Context(path, rules, qualnames, positions, analysis, facts,
                  isinstance_refs=prepass.isinstance_refs, annotation_refs=prepass.annotation_refs,
                  stores=prepass.stores, lone_targets=prepass.lone_targets,
                  writes_param_groups=prepass.param_groups, training=training,
                  own_definitions=own_definitions(wrapper.module, BEGIN))
    converted, imported = drop_helper_import(wrapper.module.visit(Converter(ctx, prepass)))
    used, _ = names_used(converted)  # a rule's helpers that its chosen variant does not call stay out
    helpers = _helper_names(converted, (ctx.support | imported) & (used | ctx.aliases), ctx, used)
    report_imported_helpers(wrapper.module, helpers, ctx)
    aliases = alias_statements(ctx.aliases & helpers - (ctx.own_definitions if helpers_from is None else set()))
    if helpers_from is None:  # copied in: a helper the file's own definition would replace is defined as its alias
        rendered = rename_helpers(SUPPORT.render(set(helpers)), set(helpers) & ctx.own_definitions & ctx.aliases)
        rendered, usage = rendered + aliases, SUPPORT.usage(helpers)
    else:
        rendered, usage = helper_import(helpers_from, helpers) + aliases, (set(), set(helpers))
    converted = drop_file_markers(fix_imports(converted, rendered, usage,
                                              set(external.torch_aliases) if external else set(),
                                              marked=helpers_from is None))
    check(converted.code, path)
    diagnostics = sorted(ctx.diagnostics, key=lambda d: (d.line, d.column, d.code))
    return Conversion(converted.code, diagnostics, helpers if helpers_from is not None else frozenset())
