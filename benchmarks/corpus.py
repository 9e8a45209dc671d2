"""Convert a real corpus and check three properties: no internal error, every output parses,
converting an output again changes nothing.

    python benchmarks/corpus.py [--sample quick|default|all|scripts] [--jobs N] [--cache DIR]

Two groups of pinned packages, fetched with `pip download --no-deps` into a cache (default
~/.cache/retarget/corpus, or $RETARGET_CORPUS) and unpacked there (wheels, or source archives
for packages that ship none); no third-party code is committed.

- models: the model files of timm, torchvision and transformers. `default` takes every
  model/layer/op file of timm and torchvision and every 12th transformers model; `all` every
  transformers model too; `quick` a small slice for a smoke run.
- scripts (`--sample scripts`): training scripts, RL code and examples: cleanrl's single-file RL
  agents (PPO, DQN, SAC, TD3, C51, PPG, RND), labml-nn's experiments (GANs, DDPM and stable
  diffusion, PPO/DQN, transformers and optimizers with their training loops), lightning-bolts'
  GAN/VAE/RL/self-supervised modules, denoising-diffusion-pytorch with its trainer, and the
  algorithms of stable-baselines3 (policies, rollout buffers, `train()` loops).

Each file converts with what the rest of its package says about its imports (module classes,
layer builders, re-exports), as `retarget convert DIR` converts it: a package analysis runs first.
Prints files, lines, internal errors, unparsable outputs, non-idempotent outputs (all three must
be 0; the exit status is 1 otherwise), rule coverage of torch references, escape hatches per
1,000 lines (and the most frequent codes) and lines/second, then the failures and the most used
uncovered names.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

WHEELS = {"timm": "1.0.31", "torchvision": "0.29.2", "transformers": "5.23.0", "labml-nn": "0.5.1",
          "lightning-bolts": "0.7.0", "stable-baselines3": "2.9.2"}
SDISTS = {"cleanrl": "0.4.8", "denoising-diffusion-pytorch": "2.3.4"}  # source archives: no wheel has the scripts
TREES = {  # package -> globs of the files a user would convert
    "timm": ["timm/models/**/*.py", "timm/layers/**/*.py"],
    "torchvision": ["torchvision/models/**/*.py", "torchvision/ops/**/*.py"],
    "transformers": ["transformers/models/*/modeling_*.py"],
    "cleanrl": ["cleanrl/**/*.py"],
    "labml-nn": ["labml_nn/**/*.py"],
    "lightning-bolts": ["pl_bolts/**/*.py"],
    "denoising-diffusion-pytorch": ["denoising_diffusion_pytorch/*.py"],
    "stable-baselines3": ["stable_baselines3/**/*.py"],
}
GROUPS = {"models": ("timm", "torchvision", "transformers"),
          "scripts": ("cleanrl", "labml-nn", "lightning-bolts", "denoising-diffusion-pytorch", "stable-baselines3")}


def _download(cache: Path, name: str, version: str) -> Path:
    """The pinned wheel or source archive of `name` in the cache, downloaded once."""
    sdist = name in SDISTS
    stem = f"{name.replace('-', '_')}-{version}"
    pattern = f"{stem}.tar.gz" if sdist else f"{stem}-*.whl"
    found = list(cache.glob(pattern))
    if not found:
        form = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", *form, "-d", str(cache),
                        f"{name}=={version}"], check=True)
        found = list(cache.glob(pattern))
    return found[0]


def _unpack(archive: Path, staging: Path) -> Path:
    """Unpack a wheel (the packages at its top) or an sdist (one `name-version/` folder at its top);
    the folder that holds the packages."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            wheel.extractall(staging)
        return staging
    with tarfile.open(archive) as sdist:
        sdist.extractall(staging, filter="data")
    (top,) = staging.iterdir()
    return top


def fetch(cache: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Download (once) and unpack the pinned packages; the unpacked roots by package."""
    cache.mkdir(parents=True, exist_ok=True)
    roots = {}
    for name in names:
        version = WHEELS.get(name) or SDISTS[name]
        root = cache / f"{name}-{version}"
        if not root.exists():
            staging = cache / f".{name}-{version}.tmp"
            shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
            _unpack(_download(cache, name, version), staging).rename(root)
            shutil.rmtree(staging, ignore_errors=True)  # an sdist's emptied top
        roots[name] = root
    return roots


def packages(sample: str) -> tuple[str, ...]:
    return GROUPS["scripts" if sample == "scripts" else "models"]


def select(roots: dict[str, Path], sample: str) -> dict[str, list[Path]]:
    """The files to convert, by package."""
    chosen = {}
    for name in packages(sample):
        found = sorted({p for g in TREES[name] for p in roots[name].glob(g) if "__pycache__" not in p.parts})
        if name == "transformers" and sample != "all":
            found = found[::12]
        if sample == "quick":
            found = found[::10]
        chosen[name] = found
    return chosen


def package_jobs(roots: dict[str, Path], chosen: dict[str, list[Path]]) -> tuple[list[tuple], float]:
    """Each file with what the rest of its package says about its imports (module classes, layer
    builders, re-exports), as `retarget convert DIR` converts it; and the seconds the analysis took.
    A file retarget fails on while analysing its package carries that failure."""
    from retarget.project import index_project, source_files
    jobs, start = [], time.perf_counter()
    for name, paths in chosen.items():
        print(f"analysing {name} as a package ({len(paths)} files)", file=sys.stderr, flush=True)
        files = source_files(roots[name], paths)
        index = index_project(files, {f.path: f.path.read_text(encoding="utf-8") for f in files})
        failures = {path: diagnostic.message for path, diagnostic in index.failures.items()}
        jobs += [(str(f.path), index.external(f), failures.get(f.path)) for f in files]
    return jobs, time.perf_counter() - start


def check_file(job: tuple) -> dict:
    """Convert one file (with its package's facts), then its output again: the outcome, escapes,
    lines and seconds."""
    import ast

    from retarget.diagnostics import ConversionError
    from retarget.pipeline import convert_source
    path, external, index_failure = job
    text = Path(path).read_text(encoding="utf-8")
    result = {"path": path, "lines": text.count("\n") + 1, "escapes": 0, "status": "ok", "detail": ""}
    if index_failure:
        return {**result, "status": "internal error", "detail": index_failure}
    start = time.perf_counter()
    try:
        first = convert_source(text, path, external=external)
        result["seconds"] = time.perf_counter() - start
        result["escapes"] = len(first.diagnostics)
        result["codes"] = Counter(d.code for d in first.diagnostics)
        try:
            ast.parse(first.code)
        except SyntaxError as exc:
            return {**result, "status": "unparsable", "detail": f"output line {exc.lineno}: {exc.msg}"}
        if convert_source(first.code, path, external=external).code != first.code:
            return {**result, "status": "non-idempotent"}
    except ConversionError as exc:
        return {**result, "status": "bad input", "detail": str(exc), "seconds": time.perf_counter() - start}
    except Exception as exc:  # noqa: BLE001 - counting internal errors is the point
        status = "unparsable" if "does not parse" in str(exc) else "internal error"
        detail = f"{type(exc).__name__}: {exc} | {traceback.format_exc().splitlines()[-3].strip()}"
        return {**result, "status": status, "detail": detail, "seconds": time.perf_counter() - start}
    return result


def _coverage(files: list[Path]):
    from retarget.coverage import Usage, covered_share, scan_source, uncovered
    usage = Usage()
    for path in files:
        usage += scan_source(path.read_text(encoding="utf-8"))
    return covered_share(usage), *uncovered(usage)


def _run(work: list[tuple], jobs: int) -> tuple[list[dict], float]:
    start = time.perf_counter()
    results = []
    with ProcessPoolExecutor(jobs) as pool:
        for i, result in enumerate(pool.map(check_file, work, chunksize=1), 1):
            results.append(result)
            print(f"\r{i}/{len(work)} files", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results, time.perf_counter() - start


def report(results: list[dict], wall: float, files: list[Path], analysis: float) -> int:
    statuses = Counter(r["status"] for r in results)
    lines = sum(r["lines"] for r in results)
    share, missing_apis, missing_methods = _coverage(files)
    cpu = sum(r.get("seconds", 0.0) for r in results)
    print(f"files:                    {len(results)}")
    print(f"lines:                    {lines:,}")
    print(f"internal errors:          {statuses['internal error']}")
    print(f"outputs that do not parse: {statuses['unparsable']}")
    print(f"non-idempotent outputs:   {statuses['non-idempotent']}")
    print(f"bad input (not Python 3): {statuses['bad input']}")
    print(f"torch references covered by rules: {share:.1%}")
    print(f"escape hatches per 1,000 lines: {1000 * sum(r['escapes'] for r in results) / max(lines, 1):.1f} ("
          + ", ".join(f"{c} {n}" for c, n in sum((r.get("codes", Counter()) for r in results), Counter()).most_common())
          + ")")
    print(f"lines/second (first conversion, per core): {lines / max(cpu, 1e-9):,.0f}; wall incl. re-conversion "
          f"{lines / wall:,.0f} on {os.cpu_count()} cores; package analysis before it {analysis:,.0f} s")
    for r in [r for r in results if r["status"] not in ("ok", "bad input")][:15]:
        print(f"  {r['status']}: {r['path']}: {r['detail'][:300]}")
    print("most used uncovered torch APIs:", ", ".join(f"{k} ({n})" for k, n in missing_apis.most_common(20)))
    print("most used uncovered tensor methods:", ", ".join(f"{k} ({n})" for k, n in missing_methods.most_common(20)))
    bad = statuses["internal error"] + statuses["unparsable"] + statuses["non-idempotent"]
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", choices=("quick", "default", "all", "scripts"), default="default")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("RETARGET_CORPUS", Path.home() / ".cache/retarget/corpus")))
    args = parser.parse_args()
    roots = fetch(args.cache, packages(args.sample))
    chosen = select(roots, args.sample)
    work, analysis = package_jobs(roots, chosen)
    results, wall = _run(work, args.jobs)
    return report(results, wall, [p for paths in chosen.values() for p in paths], analysis)


if __name__ == "__main__":
    sys.exit(main())
