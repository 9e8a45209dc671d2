"""`retarget convert DIR --report/--report-json/--check`: the report's content, and the HTML page
rendered by headless Chromium (DOM after scripts ran, and a screenshot checked pixel by pixel)."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from retarget.cli import main

PACKAGE = Path(__file__).parent / "package"
ODD = "import torch\n\n\ndef f(x):\n    y = torch.special.i0e(x)\n    return torch.special.i1e(y) + 1\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    src = root / "src"
    shutil.copytree(PACKAGE, src)
    (src / "shop" / "odd.py").write_text(ODD)
    code = main(["convert", str(src), "-o", str(root / "out"), "-q",
                 "--report", str(root / "report.html"), "--report-json", str(root / "report.json")])
    assert code == 1  # escape hatches left
    return root


def test_json_report_lists_files_escapes_and_counts(project):
    data = json.loads((project / "report.json").read_text())
    # 8 files and the helper module they import (written by the conversion: "converted")
    assert data["summary"] == {"files": 9, "converted": 6, "unchanged": 2, "needs_attention": 1, "escapes": 2,
                               "lines": 128}
    assert data["counts"] == {"RT101": 2} and "no rule" in data["codes"]["RT101"]
    odd = next(f for f in data["files"] if f["path"] == "shop/odd.py")
    assert odd["status"] == "needs attention"
    assert [(e["code"], e["line"], e["column"]) for e in odd["escapes"]] == [("RT101", 5, 9), ("RT101", 6, 12)]
    assert {f["path"]: f["status"] for f in data["files"]}["shop/__init__.py"] == "unchanged"


class _Page(HTMLParser):
    """Ids, link targets and classes of an HTML page."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.classes = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.add(attrs.get("id"))
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])
        self.classes.extend((attrs.get("class") or "").split())


def test_html_links_reach_their_lines_and_marks_untranslated_code(project):
    text = (project / "report.html").read_text()
    page = _Page()
    page.feed(text)
    assert {"summary", "counts", "files", "escapes"} <= page.ids
    assert all(link in page.ids for link in page.links), "every link has its target"
    assert "file-6-L5" in page.links and "file-6-L6" in page.links  # the two escapes in shop/odd.py (after _torch_compat.py)
    assert page.classes.count("escape") == 2 and page.classes.count("untranslated") == 4
    assert "<mark>torch.special.i0e(x)</mark>" in text
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched


def test_html_pairs_definitions_lists_helpers_and_hints_each_escape():
    """A converted class sits beside its original method by method (`forward` beside `__call__`, not
    an unrelated constructor), the folded helpers say which they are, and each escape says how to fix it."""
    from retarget.cli import Converted
    from retarget.diagnostics import HINTS
    from retarget.pipeline import convert_source
    from retarget.report import render_html
    source = ("import torch\nimport torch.nn as nn\n\n\nclass A(nn.Module):\n    def __init__(self):\n"
              "        super().__init__()\n        self.fc = nn.Conv2d(2, 2, 1)\n\n    def forward(self, x):\n"
              "        return torch.special.i0e(self.fc(x))\n")
    result = convert_source(source, "a.py")
    text = render_html([Converted(None, Path("a.py"), source, result.code, result.diagnostics)])
    rows = re.findall(r'<tr class="\w+">(.*?)</tr>', text)
    cells = [re.findall(r'<td class="code[^"]*">(.*?)</td>', row) for row in rows]
    paired = {html.unescape(re.sub("<[^>]+>", "", left)).strip(): html.unescape(right).strip()
              for left, right in (c for c in cells if len(c) == 2)}
    assert paired["def forward(self, x):"].startswith("def __call__(self, x")
    assert paired["def __init__(self):"].startswith("def __init__(self")
    assert "How to fix: " + html.escape(HINTS["RT101"]) in text
    assert re.search(r"lines of helpers copied in \([^)]*\bConv2d\b", text)


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={cwd / 'profile'}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs it: apt-get install chromium)")
def test_html_report_renders_in_headless_chromium(project):
    from PIL import Image
    url = (project / "report.html").as_uri()
    dom = _chromium("--dump-dom", url, cwd=project).stdout
    assert 'data-ready="1"' in dom, "the page's script ran"
    assert dom.count('class="escape"') == 2 and "shop/odd.py, line 5" in dom
    shot = project / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2400", url, cwd=project)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colors = image.getcolors(maxcolors=1 << 20)
    counts = {rgb: n for n, rgb in colors}
    assert counts.get((0x24, 0x29, 0x2F), 0) > 1280 * 30, "the header bar is drawn"
    assert counts.get((0xFF, 0xCE, 0xCB), 0) > 500, "untranslated lines are highlighted"
    assert counts.get((0xCF, 0x22, 0x2E), 0) > 50, "the 'needs attention' badge is drawn"
    assert len(colors) > 50, "text was rendered, not a blank page"


def test_check_mode_writes_nothing_and_reports_changes(project, capsys):
    src, out = project / "src", project / "out"
    assert main(["convert", str(src), "--check"]) == 1
    assert "would change: shop/model.py" in capsys.readouterr().err
    assert main(["convert", str(out), "--check", "-q"]) == 0  # converting the output again changes nothing
    assert main(["convert", str(src), "--check", "-o", str(out), "-q"]) == 0  # the output is up to date
    (out / "shop" / "model.py").write_text("# edited by hand\n")
    assert main(["convert", str(src), "--check", "-o", str(out), "-q"]) == 1
    assert (out / "shop" / "model.py").read_text() == "# edited by hand\n"  # --check never writes
