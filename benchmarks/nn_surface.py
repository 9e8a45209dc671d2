"""torch.nn's whole public surface against the rules: every layer class (`torch.nn.modules.__all__`)
and every public function of `torch.nn.functional`, each with one status:

- `converts`: a rule exists and a numerical test against torch runs it;
- `rule, untested`: a rule exists, no numerical test runs it yet;
- `not supported (RT101)`: no rule; the converter keeps the call, marks it and reports RT101.

A name counts as tested when torch source that the numerical tests convert and compare with torch
refers to it: the model, script and package files under NUMERICAL_DIRS, and the torch code held in
string literals of NUMERICAL_TESTS (references outside those strings are the torch side's own
reference computations, not conversions). References are resolved through imports by
`retarget.coverage.scan_source`, as `retarget coverage` counts them.

    python benchmarks/nn_surface.py [--write docs/nn_surface.md]
"""
from __future__ import annotations

import argparse
import ast
import inspect
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from retarget.coverage import scan_source
from retarget.rules import RuleSet, default_rules

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
NUMERICAL_DIRS = ("zoo", "training", "constructs", "einops", "package")
NUMERICAL_TESTS = ("test_ops.py", "test_nn_surface.py")
PRELUDE = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
# public names of torch.nn.functional that are not functional ops (typing, torch_function plumbing)
NOT_OPS = {"Optional", "boolean_dispatch", "handle_torch_function", "has_torch_function",
           "has_torch_function_unary", "has_torch_function_variadic", "assert_int_or_pair"}
STATUSES = ("converts", "rule, untested", "not supported (RT101)")


def layer_names() -> list[str]:
    return sorted(torch.nn.modules.__all__)


def function_names() -> list[str]:
    return sorted(name for name in dir(F) if not name.startswith("_") and name not in NOT_OPS
                  and callable(getattr(F, name)) and not inspect.isclass(getattr(F, name)))


def _string_sources(path: Path) -> list[str]:
    return [PRELUDE + node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def tested_apis(tests: Path = TESTS) -> set[str]:
    """Torch APIs that the numerical tests convert and run against torch."""
    sources = [p.read_text() for d in NUMERICAL_DIRS for p in sorted((tests / d).rglob("*.py"))]
    sources += [s for name in NUMERICAL_TESTS if (tests / name).exists() for s in _string_sources(tests / name)]
    found: set[str] = set()
    for source in sources:
        found.update(scan_source(source).apis)
    return found


def status(qual: str, rules: RuleSet, tested: set[str]) -> str:
    if not any(rules.get(kind, qual) for kind in ("module", "function", "attribute")):
        return STATUSES[2]
    return STATUSES[0] if qual in tested else STATUSES[1]


def surface(rules: RuleSet | None = None, tests: Path = TESTS) -> dict[str, dict[str, str]]:
    """{"torch.nn": {name: status}, "torch.nn.functional": {name: status}}."""
    rules, tested = rules or default_rules(), tested_apis(tests)
    return {"torch.nn": {n: status(f"torch.nn.{n}", rules, tested) for n in layer_names()},
            "torch.nn.functional": {n: status(f"torch.nn.functional.{n}", rules, tested) for n in function_names()}}


NATIVE = ("nnx.", "jax.", "jnp.", "optax.")


def _head(text: str) -> str | None:
    """The callable a target template names: `nnx.Linear` of `nnx.Linear(...)`, `f` of `partial(f, ...)`."""
    try:
        node = ast.parse(text.replace("{", "").replace("}", "").replace("!", ""), mode="eval").body
    except SyntaxError:
        return None
    while isinstance(node, ast.Call):
        is_partial = isinstance(node.func, ast.Name) and node.func.id == "partial" and node.args
        node = node.args[0] if is_partial else node.func
    return ast.unparse(node) if isinstance(node, (ast.Name, ast.Attribute)) else None


def target(qual: str, rules: RuleSet) -> str:
    """What a layer becomes: native Flax/JAX names, then retarget's helpers (with torch's layout or
    semantics), from the rule's templates; "" without a rule."""
    rule = rules.get("module", qual)
    if rule is None:
        return ""
    heads = [h for h in dict.fromkeys(_head(t.text) for t in reversed(rule.templates)) if h]
    heads = heads or ([rule.flax] if rule.flax else [])
    native = [f"`{h}`" for h in heads if h.startswith(NATIVE)]
    helpers = [f"`{h}`" for h in heads if not h.startswith(NATIVE)]
    return "; ".join(filter(None, [", ".join(native) and f"native {', '.join(native)}",
                                   ", ".join(helpers) and f"helper {', '.join(helpers)}"]))


def totals(statuses: dict[str, str]) -> str:
    return ", ".join(f"{sum(s == status for s in statuses.values())} {status}" for status in STATUSES)


HEADER = """# torch.nn surface

Every layer class in `torch.nn` (`torch.nn.modules.__all__`) and every public function of
`torch.nn.functional`, against torch {version}. Generated by `python benchmarks/nn_surface.py --write
docs/nn_surface.md`; `tests/test_coverage.py` checks that this page claims no more than is true.

- `converts`: a rule converts it and a numerical test runs it against torch (`tests/test_nn_surface.py`:
  values and gradients; `tests/test_ops.py`, the model zoo, training scripts, packages, einops models);
- `rule, untested`: a rule converts it, no numerical test runs it yet;
- `not supported (RT101)`: no rule; the call is kept as written, marked with
  `# RETARGET-TODO(RT101)` and reported.
"""


NATIVE_NOTES = """## Native Flax or a helper

A layer becomes native Flax/JAX code (`nnx.Linear`, `nnx.LayerNorm`, `nnx.Embed`, `nnx.Dropout`,
`jax.nn.*` activations) where that code computes what torch computes *and starts from torch's
initial values*; otherwise a small helper from the output's support module (`_torch_compat.py`, or
the inline block of a single file), whose parameters have torch's names and layout. Checked by
`tests/test_ops.py` and `tests/test_nn_surface.py` (outputs and gradients against torch) and
`tests/test_default_init.py` (initial distributions against torch's, over large layers).

- `nn.Linear` -> `nnx.Linear` with `kernel_init=torch_kernel_init, bias_init=torch_bias_init(in)`:
  Flax's defaults are lecun-normal weights and zero bias; torch's are uniform in +-1/sqrt(in) for both.
- `nn.LayerNorm(int)` -> `nnx.LayerNorm(..., use_fast_variance=False)`: Flax's default variance,
  E[x^2] - E[x]^2, loses digits when the mean is large against the spread (inputs offset by 30: 3.5e-4
  from torch; two-pass: 4e-6). A list/tuple shape normalizes several trailing dims: `TorchLayerNorm`.
- `nn.Embedding` -> `nnx.Embed(..., embedding_init=nnx.initializers.normal(1.0))` (Flax: variance
  scaling); with `padding_idx`, `TorchEmbedding` (the padding row starts at zero and gets no gradient).
- `nn.Dropout*` -> `nnx.Dropout` (`broadcast_dims` for the channel-wise 1d/2d/3d forms): the same
  distribution; the masks come from JAX's generator, not torch's.
- Convolutions (`Conv*`, `ConvTranspose*`), pools, `BatchNorm*`, `GroupNorm`, `InstanceNorm*`: helpers.
  Flax's layers are channels-last with (*kernel, in, out) kernels; torch's code is channels-first, and
  its reshapes, `cat(dim=1)`, `mean((2, 3))` and checkpoints assume it, so a native layer would need
  every tensor op of the model rewritten for the other layout (a `--layout nhwc` pass; not built yet).
  `nnx.BatchNorm` also differs in training: its `momentum` weighs the old running value (torch's the
  new one) and it stores the biased batch variance (torch the unbiased one), so the running statistics
  drift from torch's from the first step. The helpers normalize as torch's CPU kernel does
  (`x * alpha + beta`, `alpha = weight / sqrt(var + eps)`).
- `nn.MultiheadAttention`, `nn.Transformer*`, recurrent layers: helpers with torch's packed parameter
  layouts (`in_proj_weight`, `weight_ih_l0`), so checkpoints port unchanged.
""".rstrip("\n")


def markdown(table: dict[str, dict[str, str]], rules: RuleSet | None = None) -> str:
    rules = rules or default_rules()
    lines = [HEADER.format(version=torch.__version__.split("+")[0])]
    for module, statuses in table.items():
        short, layers = ("nn", True) if module == "torch.nn" else ("F", False)
        lines += [f"## {module}", "", f"{len(statuses)} names: {totals(statuses)}.", ""]
        if layers:
            targets = {n: target(f"torch.nn.{n}", rules) for n in statuses}
            count = sum(t.startswith("native") for t in targets.values())
            lines += [f"{count} layers become native Flax/JAX code (see *Native Flax or a helper* below).", "",
                      "| name | status | becomes |", "|------|--------|---------|"]
            lines += [f"| `nn.{name}` | {status} | {targets[name]} |" for name, status in statuses.items()]
        else:
            lines += ["| name | status |", "|------|--------|"]
            lines += [f"| `{short}.{name}` | {status} |" for name, status in statuses.items()]
        lines.append("")
    return "\n".join(lines + [NATIVE_NOTES, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the Markdown table here (default: print it)")
    args = parser.parse_args(argv)
    table = surface()
    text = markdown(table)
    if args.write:
        args.write.write_text(text)
    else:
        print(text)
    for module, statuses in table.items():
        print(f"{module}: {totals(statuses)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
