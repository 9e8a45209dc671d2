"""The fast subset of benchmarks/real_models.py: torchvision's own model code, converted as a
package with `retarget convert DIR -o OUT`, built with the same arguments, weights ported, and
compared with torch eagerly, under jit, in gradients and in train-mode statistics.

The torchvision wheel (the release for torch 2.13) is downloaded once into the cache
($RETARGET_CORPUS, default ~/.cache/retarget/corpus); without network access the test is skipped.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import real_models  # noqa: E402


@pytest.fixture(scope="module")
def cache() -> Path:
    root = Path(os.environ.get("RETARGET_CORPUS", Path.home() / ".cache/retarget/corpus"))
    try:
        real_models.fetch(root, "torchvision")
    except (subprocess.CalledProcessError, OSError) as exc:  # no package index reachable
        pytest.skip(f"torchvision {real_models.WHEELS['torchvision']} wheel unavailable: {exc}")
    return root


def test_torchvision_models_match_torch(cache, tmp_path):
    specs = real_models.select_specs("torchvision", None, quick=True)
    assert len(specs) >= 6
    conversion, records = real_models.run_suite("torchvision", specs, cache, tmp_path, reuse=False, timeout=600)
    assert conversion["exit"] in (0, 1), (tmp_path / "out" / "torchvision.convert.log").read_text()[-2000:]
    failures = [f"{r['name']}: {r['verdict']} {r.get('error', '')} "
                f"eager={r.get('eager')} jit={r.get('jit')} grad={r.get('grad')} train={r.get('train')}"
                for r in records if r["verdict"] != "equal"]
    assert not failures, "\n".join(failures)
