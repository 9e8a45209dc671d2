"""Transpile speed on real PyTorch source, against bare LibCST parse + render of the same files.

Downloads timm's pure-Python wheel (`pip download --no-deps`) into .bench-cache/ on first
run (never committed), then converts every file under timm/models and timm/layers. Both
measurements run in this process on the same files; the ratio is what matters.

    python benchmarks/transpile_speed.py [--limit N] [--package timm==1.0.15]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import libcst as cst

import retarget

CACHE = Path(__file__).resolve().parent.parent / ".bench-cache"


def fetch(package: str) -> Path:
    """The unpacked wheel of `package`, downloaded once into the cache."""
    target = CACHE / package.replace("==", "-")
    if target.exists():
        return target
    CACHE.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                    "-d", str(CACHE / "wheels"), package], check=True, capture_output=True)
    wheel = sorted((CACHE / "wheels").glob(f"{package.split('==')[0]}-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def sources(root: Path, limit: int | None) -> list[tuple[Path, str]]:
    files = [p for sub in ("timm/models", "timm/layers") for p in sorted((root / sub).rglob("*.py"))]
    return [(p, p.read_text(encoding="utf-8")) for p in files[:limit]]


def time_baseline(files) -> float:
    start = time.perf_counter()
    for _, text in files:
        cst.parse_module(text).code
    return time.perf_counter() - start


def time_convert(files):
    codes, internal, bad_input = Counter(), [], 0
    start = time.perf_counter()
    for path, text in files:
        try:
            result = retarget.convert(text, path=str(path))
            codes.update(d.code for d in result.diagnostics)
        except retarget.ConversionError:
            bad_input += 1
        except Exception as exc:  # an internal error: counted and shown, never hidden
            internal.append(f"{path.name}: {type(exc).__name__}: {exc}")
    return time.perf_counter() - start, codes, internal, bad_input


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--package", default="timm==1.0.15")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    files = sources(fetch(args.package), args.limit)
    lines = sum(text.count("\n") for _, text in files)
    time_baseline(files[:5])  # warm caches (rules, support library, imports)
    retarget.convert("import torch\n")
    base = time_baseline(files)
    took, codes, internal, bad_input = time_convert(files)
    print(f"corpus: {args.package}, {len(files)} files, {lines} lines")
    print(f"libcst parse+render: {base:.2f}s ({lines / base:,.0f} lines/s)")
    print(f"retarget convert:    {took:.2f}s ({lines / took:,.0f} lines/s)")
    print(f"ratio retarget / libcst time: {took / base:.1f}x")
    print(f"internal errors: {len(internal)}; unparsable inputs: {bad_input}")
    print(f"escape hatches: {sum(codes.values())} ({1000 * sum(codes.values()) / lines:.1f} per 1,000 lines): "
          + ", ".join(f"{c}={n}" for c, n in sorted(codes.items())))
    for line in internal[:20]:
        print("  ", line)
    return 1 if internal else 0


if __name__ == "__main__":
    sys.exit(main())
