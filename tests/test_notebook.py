"""Notebooks convert cell by cell and the converted cells, run in order, give torch's numbers.

tests/notebooks/classifier.ipynb: markdown, imports with a line magic, a model class, a training
function, a data cell, a training cell with a shell line, a `%%bash` cell, an evaluation cell under
`torch.no_grad()`. The test runs both notebooks' code cells in order as a kernel would (IPython
lines skipped); after the data/model cell it gives the converted side torch's data and weights.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import retarget
from harness import imports_torch
from retarget.cli import main
from retarget.diagnostics import ConversionError
from retarget.notebook import convert_notebook

NOTEBOOK = Path(__file__).parent / "notebooks" / "classifier.ipynb"


def _code_cells(notebook: dict) -> list[str]:
    """Python of each code cell, as a kernel would run it: IPython lines and cell magics left out."""
    cells = []
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and not source.startswith("%%"):
            cells.append("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    return cells


def _run_cells(cells: list[str], after_cell=None) -> list[dict]:
    """Run the cells in one namespace; the value of each cell's last expression is kept, like Out[n]."""
    namespace, outs = {"__name__": "__notebook__"}, []
    for index, source in enumerate(cells):
        *body, last = source.rstrip().split("\n")
        try:
            compile(last, "<cell>", "eval")
            body, final = "\n".join(body), last
        except SyntaxError:
            body, final = source, None
        exec(compile(body, f"<cell {index}>", "exec"), namespace)  # the test's kernel, not generated code
        outs.append(eval(final, namespace) if final else None)
        if after_cell:
            after_cell(index, namespace)
    return outs


@pytest.fixture(scope="module")
def converted():
    result = convert_notebook(NOTEBOOK.read_text(), str(NOTEBOOK))
    assert result.clean, [str(d) for d in result.diagnostics]
    return json.loads(result.code)


def test_structure_is_kept_outputs_cleared_magics_restored(converted):
    original = json.loads(NOTEBOOK.read_text())
    assert [c["cell_type"] for c in converted["cells"]] == [c["cell_type"] for c in original["cells"]]
    assert converted["metadata"] == original["metadata"]
    for before, after in zip(original["cells"], converted["cells"]):
        if before["cell_type"] == "markdown" or "".join(before["source"]).startswith("%%"):
            assert after["source"] == before["source"]
        else:
            assert after["outputs"] == [] and after["execution_count"] is None
    sources = ["".join(c["source"]) for c in converted["cells"]]
    assert sources[1].startswith("%matplotlib inline\n") and "from flax import nnx" in sources[1]
    assert sources[6].startswith("!echo training\n")
    assert not imports_torch("".join(sources)) and "torch.manual_seed" not in sources[5]
    assert "class Classifier(nnx.Module):" in sources[2] and "@nnx.jit" in sources[4]


def test_converted_cells_run_in_order_and_match_torch(converted):
    torch_cells = _code_cells(json.loads(NOTEBOOK.read_text()))
    reference = {}

    def keep(index, namespace):
        if "model" in namespace and "model" not in reference:
            reference.update(model=namespace["model"], xs=namespace["xs"].numpy(), ys=namespace["ys"].numpy())
            reference["state"] = {k: v.clone() for k, v in namespace["model"].state_dict().items()}

    torch_outs = _run_cells(torch_cells, keep)

    def same_start(index, namespace):  # the data/model cell: torch's data and initial weights
        if "model" in namespace and not namespace.get("_ported"):
            namespace.update(xs=reference["xs"], ys=reference["ys"], _ported=True)
            retarget.port_weights(reference["state"], namespace["model"])

    flax_outs = _run_cells(_code_cells(converted), same_start)
    losses_t, losses_f = torch_outs[4], flax_outs[4]
    assert len(losses_t) == 4
    np.testing.assert_allclose(losses_f, losses_t, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(flax_outs[-1]), torch_outs[-1].numpy(), rtol=1e-5)


def test_diagnostics_name_the_cell_and_line(tmp_path, capsys):
    notebook = json.loads(NOTEBOOK.read_text())
    notebook["cells"][7]["source"] = ["y = torch.special.i0e(xs)\n"]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook))
    assert main(["convert", str(path), "-o", str(tmp_path / "out.ipynb")]) == 1
    assert f"{path}:cell 8:1:5: RT101" in capsys.readouterr().err
    out = json.loads((tmp_path / "out.ipynb").read_text())
    assert "RETARGET-TODO(RT101)" in "".join(out["cells"][7]["source"])


def test_bad_notebooks_exit_2_with_cell_and_line(tmp_path, capsys):
    notebook = json.loads(NOTEBOOK.read_text())
    notebook["cells"][4]["source"] = ["def broken(:\n"]
    (tmp_path / "syntax.ipynb").write_text(json.dumps(notebook))
    assert main(["convert", str(tmp_path / "syntax.ipynb"), "-o", str(tmp_path / "o.ipynb")]) == 2
    assert "cell 5: syntax error" in capsys.readouterr().err and not (tmp_path / "o.ipynb").exists()
    (tmp_path / "json.ipynb").write_text("{not json")
    with pytest.raises(ConversionError, match="invalid JSON"):
        convert_notebook((tmp_path / "json.ipynb").read_text(), "json.ipynb")


def test_notebook_in_a_package_uses_its_classes(tmp_path):
    """A notebook beside a package imports its model: cross-file facts reach notebooks too."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "nets.py").write_text("import torch.nn as nn\n\n\nclass Tiny(nn.Module):\n    def __init__(self):\n"
                                 "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n\n"
                                 "    def forward(self, x):\n        return self.fc(x)\n")
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
            "source": ["from nets import Tiny\n", "model = Tiny()"]}
    (src / "use.ipynb").write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert main(["convert", str(src), "-o", str(tmp_path / "out"), "-q"]) == 0
    out = json.loads((tmp_path / "out" / "use.ipynb").read_text())
    assert "".join(out["cells"][0]["source"]).endswith("model = Tiny(rngs=nnx.Rngs(0))")


def test_report_shows_notebook_cells_and_links_escapes(tmp_path):
    notebook = json.loads(NOTEBOOK.read_text())
    notebook["cells"][7]["source"] = ["y = torch.special.i0e(xs)\n"]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "nb.ipynb").write_text(json.dumps(notebook))
    assert main(["convert", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "-q",
                 "--report", str(tmp_path / "r.html")]) == 1
    page = (tmp_path / "r.html").read_text()
    assert "# [cell 8]" in page and "nb.ipynb, cell 8, line 1" in page
    link = re.search(r'href="#(file-0-L\d+)"', page)[1]
    row = re.search(rf'id="{link}">\d+</td><td class="([^"]+)">(.*?)</td>', page)
    assert "untranslated" in row[1] and "torch.special.i0e(xs)" in row[2]
