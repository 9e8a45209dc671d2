"""One bad file never costs the rest of a tree.

In a directory, a file retarget fails on (RT900, exit 3) or that cannot be converted (RT901,
exit 2) is kept unchanged with one marker line at its top and reported; every other file is
converted and written. Alone, such a file writes nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import nnx

import retarget
import retarget.pipeline as pipeline
import retarget.project as project
from harness import import_source
from retarget.cli import main
from retarget.isolation import mark

MODEL = ("import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
         "        self.fc = nn.Linear(2, 3)\n\n    def forward(self, x):\n        return self.fc(x)\n")
USER = "import torch\n\nfrom .model import M\n\n\ndef build():\n    return M()\n"
BROKEN = "import torch\n\ndef f(:\n"
# A genuine crash: libcst's scope analysis recurses once per operand and runs out of stack
# (generated code has expressions like this one).
DEEP = "import torch\n\n\ndef total(x):\n    return " + " + ".join(["x"] * 1000) + "\n"


def _tree(root: Path, **files: str) -> Path:
    src = root / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    for name, text in {"model": MODEL, "user": USER, **files}.items():
        (src / "pkg" / f"{name}.py").write_text(text)
    return src


def _crash_on(monkeypatch, name: str, error=IndexError("list index out of range")):
    """Make the last step of one file's conversion fail, as a bug in a rewrite would."""
    real = pipeline.check

    def check(code: str, path: str) -> None:
        if path.endswith(name):
            raise error
        real(code, path)
    monkeypatch.setattr(pipeline, "check", check)


def _marker(text: str) -> str:
    return text.splitlines()[0]


def test_a_crash_in_one_file_costs_only_that_file(tmp_path, monkeypatch, capsys):
    src = _tree(tmp_path, train="import torch\n\nx = torch.zeros(3)\n")
    _crash_on(monkeypatch, "train.py")
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert main(["convert", str(src), "-o", str(out), "-j", "1", "--report-json", str(report)]) == 3
    err = capsys.readouterr().err
    assert (f"{src / 'pkg' / 'train.py'}:1:1: RT900 internal error while converting this file: IndexError: list "
            "index out of range; it was kept unchanged: please report it") in err
    assert "Traceback" in err and "in check" in err and "hit an internal error in retarget (RT900)" in err
    crashed = (out / "pkg" / "train.py").read_text()
    assert _marker(crashed).startswith("# RETARGET-TODO(RT900): internal error while converting this file")
    assert crashed.split("\n", 1)[1] == "import torch\n\nx = torch.zeros(3)\n"
    monkeypatch.syspath_prepend(str(next(out.rglob("_torch_compat.py")).parent))  # the package's helper module
    flax_model = import_source((out / "pkg" / "model.py").read_text(), "isolation_model").M(rngs=nnx.Rngs(0))
    assert np.asarray(flax_model(np.ones((1, 2), np.float32))).shape == (1, 3)
    assert "return M(rngs=rngs)" in (out / "pkg" / "user.py").read_text()
    entry = next(f for f in json.loads(report.read_text())["files"] if f["path"] == "pkg/train.py")
    assert entry["status"] == "needs attention" and entry["escapes"][0]["code"] == "RT900"
    assert "IndexError: list index out of range" in entry["escapes"][0]["traceback"]


def test_a_crash_in_a_worker_process_costs_only_that_file(tmp_path, monkeypatch, capsys):
    """The parallel path, with an input that genuinely crashes (in the index and in the worker)."""
    monkeypatch.setattr(project, "PARALLEL_MIN_FILES", 2)
    used = []
    real = project.ProcessPoolExecutor
    monkeypatch.setattr(project, "ProcessPoolExecutor", lambda *a, **k: used.append(a) or real(*a, **k))
    src = _tree(tmp_path, deep=DEEP)
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out), "-j", "2"]) == 3
    assert used == [(2,)]
    err = capsys.readouterr().err
    assert f"{src / 'pkg' / 'deep.py'}:1:1: RT900 internal error while converting this file: RecursionError" in err
    assert (out / "pkg" / "deep.py").read_text().split("\n", 1)[1] == DEEP
    assert "self.fc = nnx.Linear(2, 3, kernel_init=torch_kernel_init, bias_init=torch_bias_init(2), rngs=rngs)" in (out / "pkg" / "model.py").read_text()
    assert "return M(rngs=rngs)" in (out / "pkg" / "user.py").read_text()


def test_a_crash_while_indexing_the_package_is_reported_and_the_file_still_converts(tmp_path, monkeypatch, capsys):
    real = project._export

    def export(item, facts, rules):
        if item.file.path.name == "model.py":
            raise KeyError("layer_base")
        real(item, facts, rules)
    monkeypatch.setattr(project, "_export", export)
    src = _tree(tmp_path)
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out), "-q"]) == 3
    model = (out / "pkg" / "model.py").read_text()
    assert _marker(model) == ("# RETARGET-TODO(RT900): internal error while indexing this file for its package: "
                              "KeyError: 'layer_base'; other files do not know the classes it defines: please report it")
    assert "self.fc = nnx.Linear(2, 3, kernel_init=torch_kernel_init, bias_init=torch_bias_init(2), rngs=rngs)" in model
    assert "return M()" in (out / "pkg" / "user.py").read_text()  # nothing said M is a module


def test_a_syntax_error_in_one_file_costs_only_that_file(tmp_path, capsys):
    src = _tree(tmp_path, broken=BROKEN)
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src / 'pkg' / 'broken.py'}:3:7: RT901 syntax error: invalid syntax; the file was kept unchanged" in err
    assert (out / "pkg" / "broken.py").read_text() == (
        "# RETARGET-TODO(RT901): syntax error: invalid syntax; the file was kept unchanged\n" + BROKEN)
    assert "return M(rngs=rngs)" in (out / "pkg" / "user.py").read_text()


def test_a_file_that_is_not_utf8_is_copied_byte_for_byte(tmp_path, capsys):
    data = "# caf\xe9\nx = 1\n".encode("latin-1")
    src = _tree(tmp_path)
    (src / "pkg" / "legacy.py").write_bytes(data)
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out)]) == 2
    assert "legacy.py:1:1: RT901 not UTF-8 text" in capsys.readouterr().err
    assert (out / "pkg" / "legacy.py").read_bytes() == data
    assert "return M(rngs=rngs)" in (out / "pkg" / "user.py").read_text()


def test_internal_error_takes_precedence_and_the_html_report_shows_both(tmp_path, monkeypatch):
    src = _tree(tmp_path, broken=BROKEN, train="x = 1\n")
    _crash_on(monkeypatch, "train.py", RuntimeError("boom"))
    html = tmp_path / "report.html"
    assert main(["convert", str(src), "-o", str(tmp_path / "out"), "-q", "--report", str(html)]) == 3
    page = html.read_text()
    assert "RT900" in page and "RT901" in page and "please report it" in page
    assert main(["convert", str(src), "--check", "-q"]) == 3


def test_a_single_file_that_crashes_writes_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "m.py").write_text(MODEL)
    _crash_on(monkeypatch, "m.py")
    assert main(["convert", str(tmp_path / "m.py"), "-o", str(tmp_path / "out.py")]) == 3
    err = capsys.readouterr().err
    assert "internal error while converting this file: IndexError: list index out of range; nothing was written" in err
    assert "Traceback" in err
    assert not (tmp_path / "out.py").exists()


def test_converting_the_output_again_changes_nothing_and_a_fixed_file_drops_its_marker(tmp_path, monkeypatch):
    src = _tree(tmp_path, train="import torch\n\nx = torch.zeros(3)\n")
    out, again = tmp_path / "out", tmp_path / "again"
    with monkeypatch.context() as patch:
        _crash_on(patch, "train.py")
        assert main(["convert", str(src), "-o", str(out), "-q"]) == 3
        assert main(["convert", str(out), "-o", str(again), "-q"]) == 3
        assert (again / "pkg" / "train.py").read_text() == (out / "pkg" / "train.py").read_text()
    assert main(["convert", str(out), "-o", str(again), "-q"]) == 0  # the bug is fixed: the file converts
    assert (again / "pkg" / "train.py").read_text() == "import jax.numpy as jnp\n\nx = jnp.zeros(3)\n"


def test_the_marker_goes_after_a_shebang_an_encoding_line_and_a_bom():
    comment = "# RETARGET-TODO(RT900): internal error"
    text = "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\nx = 1\n"
    assert mark(text, "a.py", comment) == f"#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n{comment}\nx = 1\n"
    assert mark("\ufeffx = 1\r\n", "a.py", comment) == f"\ufeff{comment}\r\nx = 1\r\n"
    assert mark(mark("x = 1\n", "a.py", "# RETARGET-TODO(RT901): old"), "a.py", comment) == f"{comment}\nx = 1\n"


def test_a_notebook_gets_its_marker_in_its_first_python_cell():
    notebook = {"cells": [{"cell_type": "markdown", "source": ["# Title"]},
                          {"cell_type": "code", "source": ["%%bash\n", "ls"], "outputs": []},
                          {"cell_type": "code", "source": ["x = 1\n", "y = 2"], "outputs": []}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    marked = json.loads(mark(json.dumps(notebook), "nb.ipynb", "# RETARGET-TODO(RT900): internal error"))
    assert marked["cells"][2]["source"] == ["# RETARGET-TODO(RT900): internal error\n", "x = 1\n", "y = 2"]
    assert marked["cells"][:2] == notebook["cells"][:2]
    assert mark("{not json", "nb.ipynb", "# RETARGET-TODO(RT901): x") == "{not json"


def test_the_library_still_raises():
    """`retarget.convert` is for callers that handle errors themselves: nothing is swallowed."""
    try:
        retarget.convert(BROKEN, path="b.py")
    except retarget.ConversionError as exc:
        assert exc.line == 3
    else:
        raise AssertionError("a syntax error must raise")
