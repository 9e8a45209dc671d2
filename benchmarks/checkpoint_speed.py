"""Checkpoint conversion speed and memory on a large synthetic checkpoint.

Generates a transformer-like PyTorch model file (embedding, a conv stem, blocks of 2-D
Linear weights and LayerNorms) and a matching safetensors checkpoint of about --gb GB
(fp32 or bf16, written as a stream, never held in memory), converts the model source with
retarget, then in a child process converts the checkpoint into the Flax layout. Reports,
from one run: conversion GB/s, raw sequential read GB/s of the same file (the floor), their
ratio, a raw read+write copy of the same bytes into the same directory (the floor once the
output has to be written too), and the converting process's own peak RSS (VmHWM;
`getrusage` would also count the parent's size from before exec) against the largest tensor.

Virtual machines give noisy I/O (first touches of guest memory, write-back of earlier
writes), so the checkpoint is synced to disk before measuring, every measurement is
repeated `--rounds` times in alternation and the best of each is compared (all are
printed). `--cold` drops the page cache before each measurement (needs root): the
floor is then the disk, as for a freshly downloaded checkpoint.

    python benchmarks/checkpoint_speed.py [--gb 4] [--dtype fp32|bf16] [--dim 4096] [--rounds 2] [--cold]
                                         [--format safetensors|orbax]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np

import retarget
from retarget.weights.safetensors_io import SafetensorsWriter

MODEL = '''
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x):
        return x + self.fc2(self.fc1(self.norm(x)).relu())


class Big(nn.Module):
    def __init__(self, dim, depth, vocab=32000):
        super().__init__()
        self.stem = nn.Conv2d(3, 256, kernel_size=16, stride=16)
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList([Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.blocks[0](self.embed(x)))
'''


def layout(dim: int, depth: int, dtype) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    items = [("stem.weight", (256, 3, 16, 16)), ("stem.bias", (256,)), ("embed.weight", (32000, dim))]
    for i in range(depth):
        items += [(f"blocks.{i}.norm.weight", (dim,)), (f"blocks.{i}.norm.bias", (dim,)),
                  (f"blocks.{i}.fc1.weight", (dim, dim)), (f"blocks.{i}.fc1.bias", (dim,)),
                  (f"blocks.{i}.fc2.weight", (dim, dim)), (f"blocks.{i}.fc2.bias", (dim,))]
    items += [("norm.weight", (dim,)), ("norm.bias", (dim,))]
    return [(name, np.dtype(dtype), shape) for name, shape in items]


def write_checkpoint(path: Path, entries) -> None:
    rng = np.random.default_rng(0)
    block = rng.standard_normal(1 << 20).astype(np.float32)
    with path.open("wb") as handle:
        writer = SafetensorsWriter(handle, entries)
        for name, dtype, shape in entries:
            size = int(np.prod(shape))
            data = np.resize(block, size).astype(dtype).reshape(shape)
            writer.write(name, data)
            del data
        writer.finish()


def drop_page_cache() -> None:
    """Write back dirty pages and forget cached file data (root only), so the next read hits the disk."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def raw_copy(path: Path, target: Path) -> float:
    """Read and write the same bytes in 64 MB chunks: the floor once writing is counted too."""
    start = time.perf_counter()
    with path.open("rb", buffering=0) as src, target.open("wb", buffering=0) as dst:
        buffer = bytearray(64 << 20)
        while n := src.readinto(buffer):
            dst.write(memoryview(buffer)[:n])
    seconds = time.perf_counter() - start
    target.unlink()
    os.sync()
    return path.stat().st_size / 1e9 / seconds


def raw_read(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb", buffering=0) as handle:
        buffer = bytearray(64 << 20)
        while handle.readinto(buffer):
            pass
    return path.stat().st_size / 1e9 / (time.perf_counter() - start)


CHILD = '''
import sys, time
from flax import nnx
from retarget.weights.checkpoint import open_checkpoint
from retarget.weights.convert import abstract_model, convert_weights, load_model_class
from retarget.weights.orbax_io import write_orbax
cls = load_model_class(sys.argv[1])
dim, depth, fmt = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
model = abstract_model(lambda: cls(dim, depth, rngs=nnx.Rngs(0)))
if fmt == "orbax":
    _, nbytes, seconds = write_orbax(open_checkpoint(sys.argv[2]), model, sys.argv[3])
else:
    report = convert_weights(open_checkpoint(sys.argv[2]), model, sys.argv[3])
    nbytes, seconds = report.bytes, report.seconds
# VmHWM: this process's own peak RSS (ru_maxrss would include the parent's size from before exec)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(nbytes, seconds, peak_kb)
'''


def convert_in_child(tmp: Path, source: Path, dim: int, depth: int, fmt: str) -> tuple[float, int]:
    """(conversion GB/s, peak RSS bytes) of a fresh process converting `source`."""
    target = tmp / ("out_orbax" if fmt == "orbax" else "out.safetensors")
    out = subprocess.run([sys.executable, "-c", CHILD, f"{tmp / 'big_flax.py'}:Big", str(source),
                          str(target), str(dim), str(depth), fmt],
                         check=True, capture_output=True, text=True)
    nbytes, seconds, peak_kb = out.stdout.split()
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    os.sync()
    return int(nbytes) / 1e9 / float(seconds), int(peak_kb) * 1024


def measure(tmp: Path, source: Path, dim: int, depth: int, args) -> dict[str, list[float]]:
    """Each measurement `rounds` times, in alternation (so slow phases of the machine hit all)."""
    results: dict[str, list[float]] = {"read": [], "copy": [], "convert": [], "peak": []}
    for _ in range(args.rounds):
        for name in ("read", "copy", "convert"):
            if args.cold:
                drop_page_cache()
            if name == "read":
                results["read"].append(raw_read(source))
            elif name == "copy":
                results["copy"].append(raw_copy(source, tmp / "copy.bin"))
            else:
                gbs, peak = convert_in_child(tmp, source, dim, depth, args.format)
                results["convert"].append(gbs)
                results["peak"].append(peak)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each measurement (root)")
    parser.add_argument("--format", choices=("safetensors", "orbax"), default="safetensors",
                        help="the output written by the conversion")
    parser.add_argument("--dir", default=None, help="where to put the temporary files (default: system temp)")
    args = parser.parse_args()
    dtype = np.float32 if args.dtype == "fp32" else ml_dtypes.bfloat16
    per_block = 2 * args.dim * args.dim * np.dtype(dtype).itemsize
    depth = max(1, int(args.gb * 1e9 / per_block))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        (tmp / "big_flax.py").write_text(retarget.convert(MODEL).code)
        entries = layout(args.dim, depth, dtype)
        source = tmp / "big.safetensors"
        write_checkpoint(source, entries)
        os.sync()
        size = source.stat().st_size
        largest = max(int(np.prod(s)) * np.dtype(d).itemsize for _, d, s in entries)
        results = measure(tmp, source, args.dim, depth, args)
    report(results, size, len(entries), largest, args)
    return 0


def report(results: dict[str, list[float]], size: int, count: int, largest: int, args) -> None:
    read, copy, convert = (max(results[k]) for k in ("read", "copy", "convert"))
    peak = max(results["peak"])
    runs = lambda key: ", ".join(f"{v:.2f}" for v in results[key])  # noqa: E731
    cache = "cold page cache (dropped before each)" if args.cold else "file in the page cache"
    print(f"checkpoint: {size / 1e9:.2f} GB {args.dtype}, {count} tensors, largest {largest / 1e6:.0f} MB; {cache}")
    print(f"raw read:   {read:.2f} GB/s (runs: {runs('read')})")
    print(f"raw copy:   {copy:.2f} GB/s (read + write of the same bytes; runs: {runs('copy')})")
    print(f"conversion to {args.format}: {convert:.2f} GB/s (runs: {runs('convert')})")
    print(f"ratio to raw read {convert / read:.2f} (goal >= 0.7); to raw copy {convert / copy:.2f}")
    print(f"peak RSS of the converting process: {peak / 1e6:.0f} MB = largest tensor + "
          f"{(peak - largest) / 1e6:.0f} MB (goal <= +300 MB)")


if __name__ == "__main__":
    sys.exit(main())
