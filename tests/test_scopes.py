"""The scope pass that resolves torch names, against LibCST's own scope analysis
(QualifiedNameProvider, which it replaces because it costs more than the rest of a conversion):
the same `node -> torch name` map on every file of the test suite, on the scoping corner cases
below, and on the real libraries' files when their wheels are in the cache."""
import os
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, QualifiedNameProvider, QualifiedNameSource

from retarget.pipeline import parse
from retarget.rewrite.names import dotted, is_torch_name, torch_names

TESTS = Path(__file__).resolve().parent
CORPUS = Path(os.environ.get("RETARGET_CORPUS", Path.home() / ".cache/retarget/corpus"))


class LibcstTorchNames(cst.CSTVisitor):
    """The resolver as it was, on LibCST's scope analysis: the reference."""
    METADATA_DEPENDENCIES = (QualifiedNameProvider,)

    def __init__(self, star_names=None, aliases=None):
        super().__init__()
        self.qualnames, self.star_names, self.aliases = {}, star_names or {}, aliases or {}
        self._not_references = set()

    def visit_Arg(self, node):
        if node.keyword is not None:
            self._not_references.add(id(node.keyword))

    def visit_Import(self, node):
        return False

    def visit_ImportFrom(self, node):
        return False

    def visit_Attribute(self, node):
        self._not_references.add(id(node.attr))
        if dotted(node) is None or (name := self._qualified(node)) is None:
            return True
        self.qualnames[node] = name
        return False

    def visit_Name(self, node):
        name = self._qualified(node) if id(node) not in self._not_references else None
        if name is not None:
            self.qualnames[node] = name

    def _qualified(self, node):
        names = self.get_metadata(QualifiedNameProvider, node, set())
        if not names:
            head, _, rest = (dotted(node) or "").partition(".")
            first = node
            while isinstance(first, cst.Attribute):
                first = first.value
            if head not in self.star_names or self.get_metadata(QualifiedNameProvider, first, set()):
                return None
            return f"{self.star_names[head]}.{rest}" if rest else self.star_names[head]
        found = sorted(q.name for q in names if is_torch_name(q.name))
        if not found and self.aliases and any(q.source is QualifiedNameSource.IMPORT for q in names):
            return self.aliases.get(dotted(node) or "")
        return found[0] if found else None


def _both(source: str, star=None, aliases=None):
    module = parse(source, "m.py")
    reference = LibcstTorchNames(star, aliases)
    MetadataWrapper(module, unsafe_skip_copy=True).visit(reference)
    ours = torch_names(module, star, aliases)
    show = lambda found: sorted((cst.Module([]).code_for_node(n), q) for n, q in found.items())
    return show(ours), show(reference.qualnames)


CORNERS = {
    "shadowed_by_parameter": "import torch.nn as nn\ndef f(nn):\n    return nn.Linear\nx = nn.Linear\n",
    "local_import": "def f():\n    import torch as th\n    return th.zeros(1)\ny = th.ones\n",
    "class_scope_not_enclosing": "import torch\nclass A:\n    torch = 1\n    def f(self):\n        return torch.ones(1)\n"
                                 "    z = torch\n",
    "global_and_nonlocal": "import torch.nn.functional as F\ndef f():\n    global F\n    F = None\n    return F.relu\n"
                           "def g():\n    F = 1\n    def h():\n        nonlocal F\n        return F\n    return h\n",
    "comprehension_first_iter": "import torch\nclass A:\n    xs = [torch.ones(i) for i in torch.arange(3)]\n"
                                "ys = {k: torch.zeros(v) for k, v in d.items()}\n",
    "try_except": "try:\n    import torch\nexcept ImportError:\n    pass\nprint(torch.cuda, torch)\n",
    "defaults_in_enclosing": "import torch.nn as nn\ndef f(nn=nn.ReLU, *, act: nn.Module = nn.GELU) -> nn.Module:\n"
                             "    return nn\n",
    "lambda_and_walrus": "import torch\nf = lambda torch: torch.x\nif (n := torch.ones(1)) is not None:\n    pass\n",
    "from_imports": "from torch import nn\nfrom torch.nn import functional as F, Linear\nfrom . import torch\n"
                    "a = nn.Conv2d, F.relu, Linear, torch.zeros\n",
    "dotted_import": "import torch.nn\nimport torch.nn.functional as F\nx = torch.nn.Linear, torch.cuda.is_available(), F\n",
    "with_except_for": "import torch\nwith open(f) as t:\n    pass\nfor nn in []:\n    nn.Linear\ntry:\n    pass\n"
                       "except torch.E as e:\n    pass\n",
    "keywords_and_attributes": "import torch\nf(torch=1).torch\nx.torch.ones\ntorch.tril(x).view(1)\n",
    "decorators_and_bases": "import torch\n@torch.no_grad()\ndef f():\n    pass\nclass M(torch.nn.Module, metaclass=torch.M):\n"
                            "    pass\n",
}


@pytest.mark.parametrize("name", sorted(CORNERS))
def test_scoping_corner_cases_resolve_as_libcst_resolves_them(name):
    ours, reference = _both(CORNERS[name])
    assert ours == reference


def test_a_name_that_is_assigned_is_not_a_torch_reference():
    """LibCST names an assignment target after the import it rebinds (`torch = None` as `torch`);
    a target is not a reference, and nothing rewrites it."""
    ours, reference = _both("try:\n    import torch\nexcept ImportError:\n    torch = None\n"
                            "with open(f) as torch:\n    pass\nx = torch.cuda\n")
    assert ours == [("torch.cuda", "torch.cuda")]  # read after both bindings: still torch's (one may be the import)
    assert reference == [("torch", "torch"), ("torch", "torch"), ("torch.cuda", "torch.cuda")]


def test_star_names_and_package_aliases_resolve_as_before():
    source = ("from .parts import *\nfrom .layers import Linear as L, thing\nimport len\n"
              "class M(nn.Module):\n    def f(self, x, nn=None):\n        return F.relu(x), nn.Linear, L, thing.x, len\n")
    ours, reference = _both(source, {"nn": "torch.nn", "F": "torch.nn.functional", "len": "torch.len"},
                            {"L": "torch.nn.Linear", "thing.x": "torch.x"})
    assert ours == reference and len(ours) == 4


def _files():
    """The test zoo and inputs, the helpers, and a few real library files (the whole of both
    libraries agrees too: benchmarks/real_models.py converts them with this resolver)."""
    found = [p for p in sorted(TESTS.rglob("*.py")) if not p.name.startswith(("test_", "conftest"))]
    found += [TESTS.parent / "src/retarget/support/layers.py"]
    for library in ("torchvision-0.28.0/torchvision/models", "timm-1.0.31/timm/layers"):
        found += sorted((CORPUS / library).rglob("*.py"))[:4]
    return found


def test_every_file_resolves_as_libcst_resolves_it():
    mismatched = []
    for path in _files():
        try:
            ours, reference = _both(path.read_text())
        except (cst.ParserSyntaxError, UnicodeDecodeError):
            continue
        if ours != reference:
            mismatched.append(f"{path}: only ours {sorted(set(ours) - set(reference))[:3]}, "
                              f"only LibCST's {sorted(set(reference) - set(ours))[:3]}")
    assert not mismatched, "\n".join(mismatched)
