"""Command line: `retarget convert PATH [-o OUT] [--to flax] [--diff]`.

Exit status: 0 converted cleanly, 1 converted with escape hatches left
(`# RETARGET-TODO(...)` markers, listed on stderr), 2 bad input (syntax error,
missing path, ...) with nothing written. stdout only ever carries converted
code or a diff; messages go to stderr.
"""
from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import TARGETS, convert
from .diagnostics import ConversionError, Diagnostic

EXIT_CLEAN, EXIT_ESCAPES, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad command-line input: reported on stderr with exit status 2."""


@dataclass
class Converted:
    source: Path | None
    relative: Path
    original: str
    code: str
    diagnostics: list[Diagnostic]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retarget", description="Port PyTorch models to JAX / Flax NNX.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert PyTorch source (a file, a directory, or - for stdin)")
    conv.add_argument("path", help="a .py file, a directory tree, or - to read stdin and write stdout")
    conv.add_argument("-o", "--output", help="output file or directory (a file input without -o prints to stdout)")
    conv.add_argument("--to", default="flax", choices=TARGETS, help="target framework (default: flax)")
    conv.add_argument("--diff", action="store_true", help="show a unified diff instead of writing")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress or diagnostics on stderr")
    return parser


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConversionError(f"not UTF-8 text ({exc.reason})", str(path), 1, 1) from None


def _convert_one(source: Path | None, relative: Path, text: str, target: str) -> Converted:
    name = str(source) if source else "<stdin>"
    result = convert(text, target=target, path=name)
    return Converted(source, relative, text, result.code, result.diagnostics)


def _python_files(root: Path) -> tuple[list[Path], list[Path]]:
    python, other = [], []
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            (python if path.suffix == ".py" else other).append(path)
    return python, other


def _convert_tree(root: Path, target: str, quiet: bool) -> tuple[list[Converted], list[Path]]:
    python, other = _python_files(root)
    results = []
    for i, path in enumerate(python, 1):
        if not quiet:
            print(f"[{i}/{len(python)}] {path.relative_to(root)}", file=sys.stderr)
        results.append(_convert_one(path, path.relative_to(root), _read(path), target))
    return results, other


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, then rename: no half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_tree(results: list[Converted], others: list[Path], root: Path, out: Path) -> None:
    """Build the whole output tree in a temporary sibling, then move it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for item in results:
            (staging / item.relative).parent.mkdir(parents=True, exist_ok=True)
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


def _report(results: list[Converted], quiet: bool) -> int:
    diagnostics = [d for item in results for d in item.diagnostics]
    if not quiet:
        for diag in diagnostics:
            print(str(diag), file=sys.stderr)
        files = sum(1 for item in results if item.diagnostics)
        print(f"retarget: {len(results)} file(s) converted, {len(diagnostics)} escape hatch(es) "
              f"in {files} file(s)", file=sys.stderr)
    return EXIT_ESCAPES if diagnostics else EXIT_CLEAN


def _run_convert(args: argparse.Namespace) -> int:
    if args.path == "-":
        results = [_convert_one(None, Path("stdin.py"), sys.stdin.read(), args.to)]
        sys.stdout.write(_diff(results[0]) if args.diff else results[0].code)
        return _report(results, args.quiet)
    root = Path(args.path)
    if not root.exists():
        raise UsageError(f"{root}: no such file or directory")
    if root.is_dir():
        if not args.output and not args.diff:
            raise UsageError(f"{root} is a directory: give an output directory with -o")
        results, others = _convert_tree(root, args.to, args.quiet)
    else:
        results, others = [_convert_one(root, Path(root.name), _read(root), args.to)], []
    if args.diff:
        sys.stdout.write("".join(_diff(item) for item in results))
    elif root.is_dir():
        _write_tree(results, others, root, Path(args.output))
    elif args.output:
        _write_atomic(Path(args.output), results[0].code)
    else:
        sys.stdout.write(results[0].code)
    return _report(results, args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run_convert(args)
    except (ConversionError, UsageError) as exc:
        print(f"retarget: error: {exc}", file=sys.stderr)
        if isinstance(exc, ConversionError):
            print("retarget: nothing was written; fix the input and run again", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
