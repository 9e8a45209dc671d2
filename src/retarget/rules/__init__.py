"""Declarative API mapping rules: loading and validation.

Each `*.toml` file in this folder holds one op family. A rule says how one
torch API maps to JAX/Flax: the torch signature (`sig`), one or more target
templates (`to`), arguments that carry no meaning in JAX (`drop`), a plugin
for structural cases (`plugin`), support helpers it needs (`support`) and,
for layers, how each parameter and buffer converts (`params`) and how
attribute reads map (`attrs`). The same rule drives the code rewrite and
`port_weights`, so the two cannot disagree.

Everything is checked at load time: unknown fields, templates that do not
parse, plugins or support helpers that do not exist, unknown transforms.
"""
from __future__ import annotations

import ast
import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..rewrite.template import Template, TemplateError
from ..weights.transforms import parse_transform

TENSOR_METHOD_NAMES = frozenset(  # every method of torch.Tensor
    line.strip() for line in (Path(__file__).parent / "tensor_method_names.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#"))

RULES_DIR = Path(__file__).parent
KINDS = ("function", "module", "method", "attribute", "property")
FIELDS = {"sig", "to", "drop", "plugin", "support", "params", "attrs", "flax", "ambiguous", "receiver", "as_class", "as_value", "note",
          "base"}
RECEIVERS = ("tensor", "module", "any")


class RuleError(Exception):
    """A rule file is malformed; raised at load time, never mid-conversion."""


@dataclass(frozen=True)
class Signature:
    """A torch signature: ordered names, defaults as source text, varargs name."""
    names: tuple[str, ...]
    defaults: dict[str, str]
    varargs: str | None = None
    kwonly: frozenset[str] = frozenset()
    varkw: str | None = None  # `**axes_lengths`: other keywords, spliced into a template as `{**axes_lengths}`

    @classmethod
    def parse(cls, text: str) -> "Signature":
        args = ast.parse(f"def f({text}): pass").body[0].args
        positional = [a.arg for a in args.posonlyargs + args.args]
        defaults = dict(zip(positional[len(positional) - len(args.defaults):],
                            (ast.unparse(d) for d in args.defaults)))
        for a, d in zip(args.kwonlyargs, args.kw_defaults):
            if d is not None:
                defaults[a.arg] = ast.unparse(d)
        kwonly = frozenset(a.arg for a in args.kwonlyargs)
        return cls(tuple(positional) + tuple(sorted(kwonly, key=[a.arg for a in args.kwonlyargs].index)),
                   defaults, args.vararg.arg if args.vararg else None, kwonly, args.kwarg.arg if args.kwarg else None)


@dataclass(frozen=True)
class ParamRule:
    """How one torch parameter/buffer (a name pattern like `weight_ih_l{i}`) maps to a Flax variable."""
    source: str
    target: str
    transform: str = "identity"


@dataclass(frozen=True)
class Rule:
    kind: str
    name: str
    sig: Signature
    templates: tuple[Template, ...] = ()
    drop: frozenset[str] = frozenset()
    plugin: str | None = None
    support: tuple[str, ...] = ()
    params: tuple[ParamRule, ...] = ()
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)
    flax: str | None = None
    ambiguous: bool = False
    receiver: str = "tensor"
    as_class: str | None = None
    as_value: str | None = None  # a function's drop-in with torch's own signature (for values, `*args` calls);
    # a support helper, copied in only where the function is used that way
    origin: str = ""
    note: str = ""  # what a reader (or a report) should know about the mapping
    base: bool = False  # a class deriving from the name is a module class (as from torch.nn.Module)

    @property
    def needs_rngs(self) -> bool:
        return any("rngs" in t.placeholders for t in self.templates)


@dataclass
class RuleSet:
    """All rules, indexed by kind and torch name."""
    by_kind: dict[str, dict[str, Rule]]

    def get(self, kind: str, name: str) -> Rule | None:
        return self.by_kind[kind].get(name)

    def layer_for_flax(self, flax_name: str) -> Rule | None:
        return self._by_flax().get(flax_name)

    @functools.cache
    def _by_flax(self) -> dict[str, Rule]:
        return {r.flax: r for r in self.by_kind["module"].values() if r.flax and r.params}

    @functools.cache
    def torch_layout(self) -> dict[str, list[tuple[str, str, str]]]:
        """Per converted layer class (`nnx.Linear`, support classes by name): (Flax path pattern,
        torch key pattern, transform) for each parameter. Data for `port_weights` and for the
        `TORCH_LAYOUT` table copied into converted scripts."""
        return {flax: [(p.target, p.source, p.transform) for p in rule.params]
                for flax, rule in self._by_flax().items() if flax.startswith("nnx.") or rule.support}

    @functools.cache
    def renamed_variables(self) -> frozenset[str]:
        """Torch parameter/buffer names some converted layer keeps under another name (`weight` -> `kernel`)."""
        return frozenset(attr for rule in self.by_kind["module"].values() for attr, spec in rule.attrs.items()
                         if isinstance(spec, dict) and spec.get("var", attr) != attr)

    @functools.cache
    def namespaces(self) -> frozenset[str]:
        """Modules whose members rules name (`torch`, `torch.nn`, `torch.nn.functional`, ...)."""
        return frozenset(name.rsplit(".", i)[0] for rules in self.by_kind.values() for name in rules
                         for i in range(1, name.count(".") + 1))

    def __hash__(self) -> int:
        return id(self)


def _parse_params(raw: dict, origin: str) -> tuple[ParamRule, ...]:
    out = []
    for source, spec in raw.items():
        spec = {"to": spec} if isinstance(spec, str) else spec
        try:
            parse_transform(spec.get("transform", "identity"))
        except ValueError as exc:
            raise RuleError(f"{origin}: parameter {source!r}: {exc}") from None
        out.append(ParamRule(source, spec["to"], spec.get("transform", "identity")))
    return tuple(out)


def _template(spec: str | dict) -> Template:
    """A target template; a table `{ to = "...", needs = [args] }` is a variant that applies only
    when the call passes one of `needs` (e.g. torch's L2 weight decay needs a different optimizer),
    `when = { arg = "sequence" }` one that applies only when `arg` is written as a list or tuple."""
    if isinstance(spec, str):
        return Template(spec)
    unknown = set(spec) - {"to", "needs", "when"}
    if unknown or "to" not in spec:
        raise TemplateError(f"variant {spec!r}: expected fields `to` and optionally `needs`, `when`")
    return Template(spec["to"], needs=spec.get("needs", ()), when=spec.get("when", {}))


def _build_rule(kind: str, name: str, raw: dict, origin: str) -> Rule:
    unknown = set(raw) - FIELDS
    if unknown:
        raise RuleError(f"{origin}: rule {name!r} has unknown field(s) {sorted(unknown)}")
    try:
        sig = Signature.parse(raw.get("sig", ""))
        to = raw.get("to", [])
        templates = tuple(_template(t) for t in ([to] if isinstance(to, (str, dict)) else to))
    except (SyntaxError, TemplateError) as exc:
        raise RuleError(f"{origin}: rule {name!r}: {exc}") from None
    if not templates and not raw.get("plugin"):
        raise RuleError(f"{origin}: rule {name!r} needs `to` or `plugin`")
    support = raw.get("support", [])
    if raw.get("receiver", "tensor") not in RECEIVERS:
        raise RuleError(f"{origin}: rule {name!r}: receiver must be one of {RECEIVERS}")
    return Rule(kind, name, sig, templates, frozenset(raw.get("drop", ())), raw.get("plugin"),
                tuple([support] if isinstance(support, str) else support),
                _parse_params(raw.get("params", {}), f"{origin}: {name}"),
                {k: ({"read": v} if isinstance(v, str) else v) for k, v in raw.get("attrs", {}).items()},
                raw.get("flax"), bool(raw.get("ambiguous", False)), raw.get("receiver", "tensor"),
                raw.get("as_class") or (raw.get("flax") if support else None), raw.get("as_value"), origin,
                raw.get("note", ""), bool(raw.get("base", False)))


def _validate(rules: RuleSet) -> None:
    from ..plugins import REGISTRY, load_plugins
    from ..helper_index import helper_index
    helpers = helper_index()
    load_plugins()
    for kind in KINDS:
        for rule in rules.by_kind[kind].values():
            if rule.plugin and rule.plugin not in REGISTRY:
                raise RuleError(f"{rule.origin}: rule {rule.name!r} names plugin {rule.plugin!r}, "
                                f"which is not registered (known: {', '.join(sorted(REGISTRY))})")
            if rule.as_class and not rule.as_class.startswith("nnx.") and rule.as_class not in helpers:
                raise RuleError(f"{rule.origin}: rule {rule.name!r}: as_class {rule.as_class!r} is not a support class")
            if rule.as_value and rule.as_value not in helpers:
                raise RuleError(f"{rule.origin}: rule {rule.name!r}: as_value {rule.as_value!r} is not a support helper")
            for helper in rule.support:
                if helper not in helpers:
                    raise RuleError(f"{rule.origin}: rule {rule.name!r} needs support helper {helper!r}, "
                                    "which retarget/support does not define")


def load_rules(directory: Path = RULES_DIR) -> RuleSet:
    """Read and validate every rule file in `directory`."""
    by_kind: dict[str, dict[str, Rule]] = {k: {} for k in KINDS}
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise RuleError(f"{path.name}: {exc}") from None
        for kind, entries in data.items():
            if kind not in KINDS:
                raise RuleError(f"{path.name}: unknown section [{kind}] (expected one of {KINDS})")
            for name, raw in entries.items():
                if name in by_kind[kind]:
                    raise RuleError(f"{path.name}: {kind} rule {name!r} is already defined in "
                                    f"{by_kind[kind][name].origin}")
                by_kind[kind][name] = _build_rule(kind, name, raw, path.name)
    rules = RuleSet(by_kind)
    _validate(rules)
    return rules


@functools.cache
def default_rules() -> RuleSet:
    """The bundled rules, loaded once per process."""
    return load_rules()
