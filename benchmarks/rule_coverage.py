"""Share of real-world torch API and Tensor-method references that the rules cover.

Reads the usage counts in ../shared/data (483 files from 16 projects) and prints the
covered share, overall and balanced per project, and the most-used uncovered names.

    python benchmarks/rule_coverage.py [DATA_DIR]
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from retarget.rules import default_rules

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# attributes JAX arrays have with the same meaning: no rewrite needed
NATIVE = {"shape", "dtype", "ndim", "T"}


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def main() -> int:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    rules = default_rules()
    apis = {name for kind in ("function", "module", "attribute") for name in rules.by_kind[kind]}
    rows = _rows(data / "torch_api_usage.tsv")
    total = sum(int(r["count"]) for r in rows)
    covered = sum(int(r["count"]) for r in rows if r["api"] in apis)
    balanced = sum(float(r["balanced_share"]) for r in rows if r["api"] in apis) / sum(
        float(r["balanced_share"]) for r in rows)
    print(f"torch APIs: {len(apis)} rules; {covered}/{total} references covered ({covered / total:.1%}), "
          f"balanced by project {balanced:.1%}")
    missing = sorted((r for r in rows if r["api"] not in apis), key=lambda r: -int(r["count"]))
    print("  most used without a rule:", ", ".join(f"{r['api']} ({r['count']})" for r in missing[:25]))

    methods = set(rules.by_kind["method"]) | set(rules.by_kind["property"]) | NATIVE
    mrows = _rows(data / "tensor_method_usage.tsv")
    name = lambda r: r["method"].split(" ")[0].lstrip(".")  # noqa: E731  ".shape (attr)" -> "shape"
    mtotal = sum(int(r["count"]) for r in mrows)
    mcovered = sum(int(r["count"]) for r in mrows if name(r) in methods)
    print(f"Tensor/Module methods: {mcovered}/{mtotal} references covered ({mcovered / mtotal:.1%})")
    mmissing = [r for r in mrows if name(r) not in methods]
    print("  most used without a rule:", ", ".join(f"{r['method']} ({r['count']})" for r in mmissing[:25]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
