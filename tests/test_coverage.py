"""The coverage scanner: which torch references a file makes, and which have no rule."""
from __future__ import annotations

from retarget.cli import main
from retarget.coverage import covered_share, scan_source, uncovered
from retarget.rules import default_rules

SOURCE = '''
import torch
import torch.nn as nn
from torch.nn import functional as F
from torch import special as sp
import numpy as np


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.stride = 2

    def forward(self, x):
        y = F.relu(self.fc(x)).view(-1) + torch.special.i0e(x) + sp.i1e(x)
        n = x.shape[0] + self.stride
        z = x.masked_scatter(x > 0, y).exotic()
        d = {"a": 1}.items()
        return np.mean(z), nn.init.zeros_
'''


def test_references_are_resolved_through_imports():
    usage = scan_source(SOURCE)
    assert usage.apis["torch.nn.Linear"] == 1 and usage.apis["torch.nn.functional.relu"] == 1
    assert usage.apis["torch.special.i0e"] == 1 and usage.apis["torch.special.i1e"] == 1
    assert usage.apis["torch.nn.init.zeros_"] == 1 and usage.apis["torch.nn.Module"] == 1
    assert usage.methods == {"view": 1, "shape": 1, "masked_scatter": 1}  # not self.stride, .items, .exotic
    apis, methods = uncovered(usage)
    assert set(apis) == {"torch.special.i0e", "torch.special.i1e"} and set(methods) == {"masked_scatter"}
    total = sum(usage.apis.values()) + sum(usage.methods.values())
    assert abs(covered_share(usage) - (1 - 3 / total)) < 1e-12


def test_files_without_torch_or_valid_syntax_count_nothing():
    assert not scan_source("import numpy as np\nx = np.zeros(3).view()\n").methods
    assert not scan_source("def broken(:\n").apis


def test_cli_ranks_uncovered_names(tmp_path, capsys):
    (tmp_path / "m.py").write_text(SOURCE)
    (tmp_path / "n.py").write_text("import torch\n\ntorch.special.i0e(1)\n")
    assert main(["coverage", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "covered by rules" in lines[0]
    assert lines[1].split() == ["2", "torch.special.i0e"]
    assert {"torch.special.i1e", ".masked_scatter()"} <= {line.split()[1] for line in lines[2:]}
    assert main(["coverage", str(tmp_path / "nope")]) == 2


def test_nn_surface_page_lists_every_unsupported_name_and_overclaims_nothing():
    """docs/nn_surface.md (benchmarks/nn_surface.py's table): every torch.nn layer class and
    torch.nn.functional function is there; none is claimed to convert that does not convert with a
    numerical test, none without a rule is missing from the unsupported list."""
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "benchmarks"))
    import nn_surface
    rows = [line.strip("|").split("|") for line in (root / "docs" / "nn_surface.md").read_text().splitlines()
            if line.startswith("| `")]
    documented = {row[0].strip().strip("`"): row[1].strip() for row in rows}
    becomes = {row[0].strip().strip("`"): row[2].strip() for row in rows if len(row) > 2}
    rank = {status: i for i, status in enumerate(nn_surface.STATUSES)}
    rules = default_rules()
    for module, statuses in nn_surface.surface().items():
        short = "nn" if module == "torch.nn" else "F"
        for name, status in statuses.items():
            claimed = documented.get(f"{short}.{name}")
            assert claimed is not None and rank[claimed] >= rank[status], (name, claimed, status)
            if short == "nn":  # what each layer becomes (native Flax or a helper) is the rules' current word
                assert becomes[f"nn.{name}"] == nn_surface.target(f"torch.nn.{name}", rules), name
