"""Command line: `retarget convert PATH [-o OUT] [--diff] [--check] [--report HTML] [--report-json JSON]` and
`retarget weights SRC -o OUT --model FILE.py:Class [--args JSON] [--to flax|torch] [--verify]`.

Exit status: the highest that applies, 0 clean, 1 escape hatches left, 2 bad input, 3 internal
error (`EXIT_STATUS`, shown by `retarget convert --help`). stdout only ever carries converted code
or a diff; messages go to stderr.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import TARGETS
from .atomic import atomic_output, permissions
from .diagnostics import INTERNAL, UNREADABLE, ConversionError, Diagnostic
from .isolation import InternalError, input_problem, internal_problem
from .pipeline import convert_source
from .rewrite.support import MODULE, helper_module

EXIT_CLEAN, EXIT_ESCAPES, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
FILE_PROBLEMS = (INTERNAL, UNREADABLE)
EXIT_STATUS = """exit status (the highest that applies):
  0  converted cleanly
  1  converted, with escape hatches left (# RETARGET-TODO(...) markers, listed on stderr);
     with --check: converting would change a file (or, with -o, the existing output)
  2  bad input: a missing path, or a file that cannot be converted (syntax error, not UTF-8,
     not a notebook). A single file: nothing is written. In a directory that file is kept
     unchanged with an RT901 marker line at its top, and every other file is converted.
  3  internal error in retarget (a bug: please report it with the traceback shown). A single
     file: nothing is written. In a directory that file is kept unchanged with an RT900
     marker line at its top, and every other file is converted."""


class UsageError(Exception):
    """Bad command-line input: reported on stderr with exit status 2."""


@dataclass
class Converted:
    source: Path | None
    relative: Path
    original: str
    code: str
    diagnostics: list[Diagnostic]
    verbatim: bool = False  # written as a byte-for-byte copy of `source` (a file that is not UTF-8)
    helpers: frozenset[str] = frozenset()  # what it imports from the helper module


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("retarget")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "(not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retarget", description="Port PyTorch models to JAX / Flax NNX.",
                                     epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert PyTorch source (a file, a directory, or - for stdin)",
                          epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    conv.add_argument("path", nargs="+", help="a .py file, a directory tree, or - to read stdin and write stdout; "
                                               "several PATHs convert each into OUT/<its name> (-o OUT)")
    conv.add_argument("-o", "--output", help="output file or directory (a file input without -o prints to stdout)")
    conv.add_argument("--to", default="flax", choices=TARGETS, help="target framework (default: flax)")
    conv.add_argument("--diff", action="store_true", help="show a unified diff instead of writing")
    conv.add_argument("--report", metavar="HTML", help="write a self-contained HTML report")
    conv.add_argument("--report-json", metavar="JSON", help="write the report as JSON")
    conv.add_argument("--check", action="store_true",
                      help="write no code; exit 1 if converting would change a file (or, with -o, the output)")
    conv.add_argument("--helpers", choices=("inline", "module"),
                      help="where the PyTorch-semantics helpers go: module writes them once, in "
                           "_torch_compat.py beside the output, and files import them (default for a "
                           "directory); inline copies them into each file (default for a file)")
    conv.add_argument("-j", "--jobs", type=int, help="worker processes for a directory (default: all cores)")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress or diagnostics on stderr")
    _weights_parser(sub)
    cover = sub.add_parser("coverage", help="rank the torch APIs and tensor methods of a tree that no rule covers")
    cover.add_argument("path", help="a .py file or a directory tree")
    cover.add_argument("--top", type=int, default=30, help="how many uncovered names to list (default: 30)")
    return parser


def _weights_parser(sub) -> None:
    weights = sub.add_parser("weights", help="convert a checkpoint into a converted model's layout (or back)")
    weights.add_argument("source", help=".safetensors, *.safetensors.index.json, .pt/.pth/.bin/.ckpt or .npz")
    weights.add_argument("-o", "--output", required=True, help="output file")
    weights.add_argument("--model", required=True, help="the converted model: FILE.py:ClassName")
    weights.add_argument("--args", default="{}", help="constructor keyword arguments as JSON (default: {})")
    weights.add_argument("--to", default="flax", choices=("flax", "torch"),
                         help="flax: torch checkpoint -> Flax layout; torch: the reverse")
    weights.add_argument("--format", default="safetensors", choices=("safetensors", "npz", "orbax"),
                         help="output format for --to flax (orbax: a directory, built in memory)")
    weights.add_argument("--select", help="entry of a nested checkpoint holding the state dict (dotted)")
    weights.add_argument("--strip-prefix", help="remove this prefix from every key")
    weights.add_argument("--add-prefix", help="add this prefix to every key")
    weights.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                         help="cast floating tensors (default: keep each tensor's dtype)")
    weights.add_argument("--max-shard-size", type=float, default=5.0,
                         help="GB per safetensors shard; larger outputs get shards plus an index (default: 5)")
    weights.add_argument("--key-map", help="TOML/JSON file of [[map]] entries with explicit transforms")
    weights.add_argument("--match-dict", help="JSON file: checkpoint-key substrings -> model-path substrings")
    weights.add_argument("--verify", action="store_true", help="re-read the output and compare with the source")
    weights.add_argument("-q", "--quiet", action="store_true")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConversionError(f"not UTF-8 text ({exc.reason})", str(path), 1, 1) from None


def _convert_one(source: Path | None, relative: Path, text: str, target: str,
                 helpers_from: str | None = None) -> Converted:
    """One file on its own: a syntax error or an internal error raises (nothing is written)."""
    name = str(source) if source else "<stdin>"
    try:
        if source is not None and source.suffix == ".ipynb":
            from .notebook import convert_notebook
            result = convert_notebook(text, name)
        else:
            result = convert_source(text, name, helpers_from=helpers_from)
    except ConversionError:
        raise
    except Exception as exc:  # a bug in retarget
        raise InternalError(internal_problem(exc, name, consequence="nothing was written")) from exc
    return Converted(source, relative, text, result.code, result.diagnostics, helpers=result.helpers)


def _python_files(root: Path) -> tuple[list[Path], list[Path]]:
    python, other = [], []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not {"__pycache__", ".ipynb_checkpoints"} & set(path.parts):
            (python if path.suffix in (".py", ".ipynb") else other).append(path)
    return python, other


def _convert_tree(root: Path, jobs: int | None, quiet: bool, helpers: str) -> tuple[list[Converted], list[Path]]:
    """A package: cross-file facts first, then every file (in parallel with more than a few); with
    module helpers, the helper module the files import."""
    from .project import convert_files, progress_bar, source_files
    python, other = _python_files(root)
    files = source_files(root, python)
    texts, unreadable = _read_all(files)
    results = convert_files([f for f in files if f.path in texts], texts, jobs=jobs,
                            progress=None if quiet else progress_bar, helpers=helpers)
    converted = [Converted(r.file.path, r.file.relative, r.original, r.conversion.code, r.conversion.diagnostics)
                 for r in results if r.file.relative != Path(f"{MODULE}.py")]
    module = _helper_file(root / f"{MODULE}.py", Path(f"{MODULE}.py"), {n for r in results for n in r.conversion.helpers})
    return sorted([*converted, *unreadable, *module], key=lambda item: item.relative), other


def _helper_file(path: Path, relative: Path, names: set[str]) -> list[Converted]:
    """The helper module the converted files import (none when they need no helper)."""
    if not names:
        return []
    original = path.read_text(encoding="utf-8") if path.is_file() else ""
    return [Converted(path if path.is_file() else None, relative, original, helper_module(names), [])]


def _read_all(files) -> tuple[dict[Path, str], list[Converted]]:
    """The texts of a tree's files; a file that is not UTF-8 is reported and will be copied as it is."""
    texts, unreadable = {}, []
    for file in files:
        try:
            texts[file.path] = _read(file.path)
        except ConversionError as exc:
            original = file.path.read_text(encoding="utf-8", errors="replace")
            unreadable.append(Converted(file.path, file.relative, original, original, [input_problem(exc)], True))
    return texts, unreadable


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, then rename: no half-written output."""
    with atomic_output(path, "w") as (handle, _):
        handle.write(text)


def _write_tree(results: list[Converted], others: list[Path], root: Path, out: Path) -> None:
    """Build the whole output tree in a temporary sibling, then move it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(staging, permissions(directory=True))
    try:
        for item in results:
            (staging / item.relative).parent.mkdir(parents=True, exist_ok=True)
            if item.verbatim:
                shutil.copy2(item.source, staging / item.relative)
            else:
                (staging / item.relative).write_text(item.code, encoding="utf-8")
        for path in others:
            (staging / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staging / path.relative_to(root))
        if out.exists():
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                target = out / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _diff(item: Converted) -> str:
    name = str(item.relative)
    return "".join(difflib.unified_diff(item.original.splitlines(True), item.code.splitlines(True),
                                        f"a/{name}", f"b/{name}"))


def _status(diagnostics: list[Diagnostic]) -> int:
    """The exit status the diagnostics call for: the highest that applies."""
    codes = {d.code for d in diagnostics}
    if INTERNAL in codes:
        return EXIT_INTERNAL
    if UNREADABLE in codes:
        return EXIT_BAD_INPUT
    return EXIT_ESCAPES if codes else EXIT_CLEAN


def _print_diagnostics(diagnostics: list[Diagnostic]) -> None:
    for diag in diagnostics:
        print(str(diag), file=sys.stderr)
        if diag.traceback:
            print(textwrap.indent(diag.traceback, "    "), end="", file=sys.stderr)


def _summary(results: list[Converted], diagnostics: list[Diagnostic]) -> str:
    failed = {code: {d.path for d in diagnostics if d.code == code} for code in FILE_PROBLEMS}
    escapes = [d for d in diagnostics if d.code not in FILE_PROBLEMS]
    text = (f"retarget: {len(results) - len(failed[INTERNAL] | failed[UNREADABLE])} file(s) converted, "
            f"{len(escapes)} escape hatch(es) in {len({d.path for d in escapes})} file(s)")
    if failed[UNREADABLE]:
        text += f"; {len(failed[UNREADABLE])} file(s) cannot be converted ({UNREADABLE}), kept unchanged"
    if failed[INTERNAL]:
        text += (f"; {len(failed[INTERNAL])} file(s) hit an internal error in retarget ({INTERNAL}): "
                 "please report it with the traceback above")
    return text


def _report(results: list[Converted], quiet: bool) -> int:
    diagnostics = [d for item in results for d in item.diagnostics]
    if not quiet:
        _print_diagnostics(diagnostics)
        print(_summary(results, diagnostics), file=sys.stderr)
    return _status(diagnostics)


def _convert_input(args: argparse.Namespace) -> tuple[list[Converted], list[Path], Path | None]:
    """Convert stdin, one file or a tree; nothing is written yet."""
    if args.path == "-":
        return [_convert_one(None, Path("stdin.py"), sys.stdin.read(), args.to)], [], None
    root = Path(args.path)
    if not root.exists():
        raise UsageError(f"{root}: no such file or directory")
    if root.is_dir():
        if not (args.output or args.diff or args.check):
            raise UsageError(f"{root} is a directory: give an output directory with -o")
        results, others = _convert_tree(root, args.jobs, args.quiet, args.helpers or "module")
        return results, others, root
    if args.helpers == "module" and not args.output:
        raise UsageError("--helpers module writes _torch_compat.py beside the output: give an output file with -o")
    one = _convert_one(root, Path(root.name), _read(root), args.to, MODULE if args.helpers == "module" else None)
    target = Path(args.output or ".").parent / f"{MODULE}.py"
    return [one, *_helper_file(target, target, set(one.helpers))], [], root


def _would_change(results: list[Converted], root: Path | None, output: str | None) -> list[Converted]:
    """Files whose conversion differs from what is there: the input itself, or with -o the output
    already written (a committed conversion that is out of date)."""
    def current(item: Converted) -> str | None:
        if output is None:
            return item.original
        if root is not None and root.is_dir():
            path = Path(output) / item.relative
        else:  # the file, or the helper module beside it
            path = Path(output) if item is results[0] else item.relative
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    return [item for item in results if current(item) != item.code]


def _check(results: list[Converted], root: Path | None, args: argparse.Namespace) -> int:
    changed = _would_change(results, root, args.output)
    problems = [d for item in results for d in item.diagnostics if d.code in FILE_PROBLEMS]
    if not args.quiet:
        _print_diagnostics(problems)
        for item in changed:
            print(f"would change: {item.relative}", file=sys.stderr)
        print(f"retarget: {len(changed)} of {len(results)} file(s) would change", file=sys.stderr)
    return max(EXIT_ESCAPES if changed else EXIT_CLEAN, _status(problems))


def _write_reports(results: list[Converted], args: argparse.Namespace) -> None:
    from .report import render_html, report_json
    if args.report_json:
        _write_atomic(Path(args.report_json), report_json(results))
    if args.report:
        _write_atomic(Path(args.report), render_html(results, f"retarget: {args.path}"))


def _run_several(args: argparse.Namespace) -> int:
    """Each PATH converted as if alone, into OUT/<its name>; one that fails costs only itself."""
    if "-" in args.path:
        raise UsageError("- (stdin) converts alone: give it as the only PATH")
    if not (args.output or args.diff or args.check):
        raise UsageError("several PATHs: give an output directory with -o")
    if args.report or args.report_json:
        raise UsageError("--report and --report-json cover one PATH: run once per PATH")
    status = EXIT_CLEAN
    for path in args.path:
        output = str(Path(args.output) / Path(path).name) if args.output else None
        status = max(status, _guarded(_run_convert, argparse.Namespace(**{**vars(args), "path": [path],
                                                                          "output": output})))
    return status


def _run_convert(args: argparse.Namespace) -> int:
    if isinstance(args.path, list):
        if len(args.path) > 1:
            return _run_several(args)
        args.path = args.path[0]
    results, others, root = _convert_input(args)
    _write_reports(results, args)
    if args.check:
        return _check(results, root, args)
    if args.diff:
        sys.stdout.write("".join(_diff(item) for item in results))
    elif root is not None and root.is_dir():
        _write_tree(results, others, root, Path(args.output))
    elif args.output:
        for item in results:  # the file, and with module helpers the helper module beside it
            _write_atomic(Path(args.output) if item is results[0] else item.relative, item.code)
    else:
        sys.stdout.write(results[0].code)
    return _report(results, args.quiet)


def _progress(quiet: bool, total: int):
    """A progress line on stderr (bytes written and MB/s), refreshed at most five times a second."""
    start = last = time.perf_counter()

    def report(done: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if quiet or (now - last < 0.2 and done < total):
            return
        last = now
        print(f"\r{done / 1e6:,.2f} / {total / 1e6:,.2f} MB  {done / max(now - start, 1e-9) / 1e6:,.0f} MB/s",
              end="", file=sys.stderr)
    return report


def _apply_match_dict(source, model, path: Path):
    from .weights.checkpoint import renamed
    from .weights.matching import match_keys
    from .weights.port import plan
    try:
        match_dict = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--match-dict {path}: {exc}") from None
    return renamed(source, match_keys(source.keys(), plan(model)[0], match_dict))


def _open_source(args: argparse.Namespace, model):
    """The input checkpoint; an Orbax directory is read against the model's own state."""
    from .weights.checkpoint import open_checkpoint
    if Path(args.source).is_dir():
        from .weights.orbax_io import read_orbax
        return read_orbax(Path(args.source), model)
    return open_checkpoint(args.source, select=args.select, strip_prefix=args.strip_prefix,
                           add_prefix=args.add_prefix)


def _run_weights(args: argparse.Namespace) -> int:
    import numpy as np
    from flax import nnx

    from .weights.convert import abstract_model, convert_weights, export_torch, load_model_class
    try:
        kwargs = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--args is not JSON: {exc}") from None
    cls = load_model_class(args.model)
    try:
        model = abstract_model(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))
    except Exception as exc:  # the user's model code: report, don't crash
        raise UsageError(f"building {args.model} with --args {args.args} failed: {type(exc).__name__}: {exc}") from None
    source = _open_source(args, model)
    if args.match_dict:
        source = _apply_match_dict(source, model, Path(args.match_dict))
    try:
        if args.key_map:
            from .weights.keymap import convert_with_keymap, load_keymap, plan_jobs
            jobs = plan_jobs(source.keys(), load_keymap(Path(args.key_map)))
            report = convert_with_keymap(source, model, Path(args.output), jobs, fmt=args.format, verify=args.verify)
        elif args.to == "torch":
            from .weights.port import torch_key_order
            order = torch_key_order(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))
            report = export_torch(source, model, Path(args.output), order=order)
        elif args.format == "orbax":
            from .weights.convert import Report
            from .weights.orbax_io import write_orbax
            total = sum(int(np.prod(shape)) * dtype.itemsize for dtype, shape in source.infos.values())
            tensors, nbytes, seconds = write_orbax(source, model, Path(args.output), _progress(args.quiet, total))
            report = Report(tensors, nbytes, seconds, Path(args.output))
        else:
            total = sum(int(np.prod(shape)) * dtype.itemsize for dtype, shape in source.infos.values())
            report = convert_weights(source, model, Path(args.output), fmt=args.format, verify=args.verify,
                                     progress=_progress(args.quiet, total), cast=args.dtype,
                                     max_shard_bytes=int(args.max_shard_size * 1e9))
    finally:
        source.close()
    if not args.quiet:
        print(f"\nretarget: {report.tensors} tensors, {report.bytes / 1e6:,.1f} MB in {report.seconds:.2f}s "
              f"({report.gb_per_s:.2f} GB/s) -> {report.output}" + (" (verified)" if report.verified else ""),
              file=sys.stderr)
    return EXIT_CLEAN


def _run_coverage(args: argparse.Namespace) -> int:
    """Print the covered share of torch references and the uncovered names, most used first."""
    from .coverage import PROPERTIES, Usage, covered_share, scan_source, uncovered
    root = Path(args.path)
    if not root.exists():
        raise UsageError(f"{root}: no such file or directory")
    usage = Usage()
    for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
        usage += scan_source(path.read_text(encoding="utf-8", errors="replace"))
    apis, methods = uncovered(usage)
    total = sum(usage.apis.values()) + sum(usage.methods.values())
    print(f"{total} torch references, {covered_share(usage):.1%} covered by rules")
    ranked = sorted([*((n, k) for k, n in apis.items()), *((n, f".{k}" + ("" if k in PROPERTIES else "()")) for k, n in methods.items())],
                    key=lambda item: (-item[0], item[1]))
    for count, name in ranked[:args.top]:
        print(f"{count:6}  {name}")
    return EXIT_CLEAN


def _checkpoint_errors(command: str) -> tuple[type[Exception], ...]:
    """The errors of bad checkpoints, for the command that reads them: importing them loads JAX, which
    `convert` must not wait for."""
    if command != "weights":
        return ()
    from .weights.port import WeightsError
    from .weights.safetensors_io import CheckpointError
    return CheckpointError, WeightsError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runners = {"weights": _run_weights, "convert": _run_convert, "coverage": _run_coverage}
    return _guarded(runners[args.command], args)


def _guarded(run, args: argparse.Namespace) -> int:
    """Run one command; bad input and internal errors become messages and exit statuses."""
    try:
        return run(args)
    except _checkpoint_errors(args.command) as exc:
        print(f"{'' if getattr(args, 'quiet', False) else chr(10)}retarget: error: {exc}", file=sys.stderr)
        print("retarget: nothing was written", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ConversionError, UsageError) as exc:
        print(f"retarget: error: {exc}", file=sys.stderr)
        if isinstance(exc, ConversionError):
            print("retarget: nothing was written; fix the input and run again", file=sys.stderr)
        return EXIT_BAD_INPUT
    except InternalError as exc:
        print(f"retarget: error: {exc}", file=sys.stderr)
        print(exc.diagnostic.traceback, end="", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
