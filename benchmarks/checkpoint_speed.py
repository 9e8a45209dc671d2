"""Checkpoint conversion speed and memory on a large synthetic checkpoint.

Generates a transformer-like PyTorch model file (embedding, a conv stem, blocks of 2-D
Linear weights and LayerNorms) and a matching safetensors checkpoint of about --gb GB
(fp32 or bf16, written as a stream, never held in memory), converts the model source with
retarget, then in a child process converts the checkpoint into the Flax layout. Reports,
from one run: conversion GB/s, raw sequential read GB/s of the same file (the floor), their
ratio, a raw read+write copy for context, and the converting process's own peak RSS
(VmHWM; `getrusage` would also count the parent's size from before exec) against the
largest tensor.

    python benchmarks/checkpoint_speed.py [--gb 4] [--dtype fp32|bf16] [--dim 4096]
"""
from __future__ import annotations

import argparse
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


def raw_copy(path: Path, target: Path) -> float:
    """Read and write the same bytes in 64 MB chunks: the floor once writing is counted too."""
    start = time.perf_counter()
    with path.open("rb", buffering=0) as src, target.open("wb", buffering=0) as dst:
        buffer = bytearray(64 << 20)
        while n := src.readinto(buffer):
            dst.write(memoryview(buffer)[:n])
    seconds = time.perf_counter() - start
    target.unlink()
    return path.stat().st_size / 1e9 / seconds


def raw_read(path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb", buffering=0) as handle:
        buffer = bytearray(64 << 20)
        while handle.readinto(buffer):
            pass
    return path.stat().st_size / 1e9 / (time.perf_counter() - start)


CHILD = '''
import sys, time, resource
from flax import nnx
from retarget.weights.checkpoint import open_checkpoint
from retarget.weights.convert import abstract_model, convert_weights, load_model_class
cls = load_model_class(sys.argv[1])
dim, depth = int(sys.argv[4]), int(sys.argv[5])
model = abstract_model(lambda: cls(dim, depth, rngs=nnx.Rngs(0)))
report = convert_weights(open_checkpoint(sys.argv[2]), model, sys.argv[3])
# VmHWM: this process's own peak RSS (ru_maxrss would include the parent's size from before exec)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(report.bytes, report.seconds, peak_kb)
'''


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--dim", type=int, default=4096)
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
        size = source.stat().st_size
        largest = max(int(np.prod(s)) * np.dtype(d).itemsize for _, d, s in entries)
        read_gbs = raw_read(source)
        copy_gbs = raw_copy(source, tmp / "copy.bin")
        out = subprocess.run([sys.executable, "-c", CHILD, f"{tmp / 'big_flax.py'}:Big", str(source),
                              str(tmp / "out.safetensors"), str(args.dim), str(depth)],
                             check=True, capture_output=True, text=True)
        nbytes, seconds, peak_kb = out.stdout.split()
        peak = int(peak_kb) * 1024
        convert_gbs = int(nbytes) / 1e9 / float(seconds)
    print(f"checkpoint: {size / 1e9:.2f} GB {args.dtype}, {len(entries)} tensors, largest {largest / 1e6:.0f} MB")
    print(f"raw read:   {read_gbs:.2f} GB/s")
    print(f"raw copy:   {copy_gbs:.2f} GB/s (read + write of the same bytes)")
    print(f"conversion: {convert_gbs:.2f} GB/s (ratio to raw read {convert_gbs / read_gbs:.2f}, goal >= 0.7; "
          f"to raw copy {convert_gbs / copy_gbs:.2f})")
    print(f"peak RSS of the converting process: {peak / 1e6:.0f} MB = largest tensor + "
          f"{(peak - largest) / 1e6:.0f} MB (goal <= +300 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
