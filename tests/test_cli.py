"""The command line: exit codes, file/dir/stdin modes, --diff, atomic output."""
import io
import sys

import pytest

from retarget.cli import main

CLEAN = "import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2, 2)\n\n    def forward(self, x):\n        return self.fc(x)\n"
ESCAPE = "import torch\n\n\ndef f(x):\n    return torch.special.i0e(x)\n"
BROKEN = "import torch\n\ndef f(:\n"


def test_file_to_stdout_clean_exit_0(tmp_path, capsys):
    (tmp_path / "m.py").write_text(CLEAN)
    assert main(["convert", str(tmp_path / "m.py")]) == 0
    out = capsys.readouterr()
    assert "class M(nnx.Module):" in out.out and "0 escape hatch(es)" in out.err


def test_escape_hatches_exit_1_and_are_listed(tmp_path, capsys):
    (tmp_path / "e.py").write_text(ESCAPE)
    assert main(["convert", str(tmp_path / "e.py"), "-o", str(tmp_path / "out.py")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'e.py'}:5:12: RT101" in err
    assert "RETARGET-TODO(RT101)" in (tmp_path / "out.py").read_text()


def test_syntax_error_exit_2_writes_nothing(tmp_path, capsys):
    (tmp_path / "b.py").write_text(BROKEN)
    assert main(["convert", str(tmp_path / "b.py"), "-o", str(tmp_path / "out.py")]) == 2
    assert not (tmp_path / "out.py").exists()
    assert "b.py:3" in capsys.readouterr().err


def test_directory_is_mirrored_and_a_broken_file_costs_only_itself(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "model.py").write_text(CLEAN)
    (src / "README.txt").write_text("notes")
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out)]) == 0
    assert "nnx.Module" in (out / "pkg" / "model.py").read_text()
    assert (out / "README.txt").read_text() == "notes"
    assert "1/1 pkg/model.py" in capsys.readouterr().err

    (src / "pkg" / "broken.py").write_text(BROKEN)
    out2 = tmp_path / "out2"
    assert main(["convert", str(src), "-o", str(out2)]) == 2
    assert f"{src / 'pkg' / 'broken.py'}:3:7: RT901 syntax error: invalid syntax" in capsys.readouterr().err
    assert "nnx.Module" in (out2 / "pkg" / "model.py").read_text()
    assert (out2 / "pkg" / "broken.py").read_text() == (
        "# RETARGET-TODO(RT901): syntax error: invalid syntax; the file was kept unchanged\n" + BROKEN)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out2")]


def test_directory_needs_output(tmp_path):
    assert main(["convert", str(tmp_path)]) == 2


def test_missing_path_exit_2(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope.py")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_stdin_to_stdout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(CLEAN))
    assert main(["convert", "-", "-q"]) == 0
    out = capsys.readouterr()
    assert "nnx.Linear(2, 2, kernel_init=torch_kernel_init, bias_init=torch_bias_init(2), rngs=rngs)" in out.out and out.err == ""


def test_diff_shows_changes_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "m.py").write_text(CLEAN)
    assert main(["convert", str(tmp_path / "m.py"), "--diff", "-o", str(tmp_path / "o.py")]) == 0
    out = capsys.readouterr().out
    assert "-        self.fc = nn.Linear(2, 2)" in out and "+        self.fc = nnx.Linear(2, 2, kernel_init=torch_kernel_init, bias_init=torch_bias_init(2), rngs=rngs)" in out
    assert not (tmp_path / "o.py").exists()


def test_bad_target_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["convert", "x.py", "--to", "mlx"])
    assert info.value.code == 2


@pytest.mark.parametrize("args", [["convert", "--help"], ["--help"]])
def test_help_lists_every_exit_status(capsys, args):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(f"\n  {status}  " in out for status in range(4)) and "RT900" in out and "RT901" in out


def test_version(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"retarget {version('retarget')}\n"


def test_convert_does_not_load_jax_flax_torch_or_numpy(tmp_path):
    """`retarget convert` starts in about a second: none of the heavy libraries is imported on its path
    (JAX alone takes seconds); only `retarget weights` needs them."""
    import subprocess
    source = tmp_path / "m.py"
    source.write_text("import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
                      "        super().__init__()\n        self.fc = nn.Linear(2, 3)\n\n"
                      "    def forward(self, x):\n        return self.fc(x).relu()\n")
    probe = ("import sys\nfrom retarget.cli import main\n"
             f"code = main(['convert', {str(source)!r}, '-o', {str(tmp_path / 'out.py')!r}, '-q'])\n"
             "print(code, sorted(m for m in ('jax', 'flax', 'torch', 'numpy', 'optax') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[-2] == "0 []", done.stdout + done.stderr
    assert "nnx.Linear" in (tmp_path / "out.py").read_text()


def test_output_gets_the_users_umask(tmp_path):
    """Files 0666 and directories 0777 less the umask, as any tool writes them (the temporary files
    and directory they are staged in are private)."""
    import os
    import stat
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("import torch.nn as nn\nlayer = nn.ReLU()\n")
    old = os.umask(0o027)
    try:
        assert main(["convert", str(package), "-o", str(tmp_path / "out"), "-q"]) == 0
        assert main(["convert", str(package / "m.py"), "-o", str(tmp_path / "one.py"), "-q"]) == 0
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    assert (mode(tmp_path / "out"), mode(tmp_path / "out" / "m.py"), mode(tmp_path / "one.py")) == (0o750, 0o640, 0o640)


def test_several_paths_convert_each_into_the_output_directory(tmp_path, capsys):
    """`retarget convert a.py pkg missing.py -o OUT`: each PATH as if alone, into OUT/<its name>; the
    missing one is reported (exit 2) and costs nothing else."""
    (tmp_path / "pkg").mkdir()
    model = "import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n" \
            "        self.c = nn.Conv2d(1, 2, 3)\n\n    def forward(self, x):\n        return self.c(x)\n"
    (tmp_path / "a.py").write_text(model)
    (tmp_path / "pkg" / "net.py").write_text(model)
    out = tmp_path / "out"
    code = main(["convert", str(tmp_path / "a.py"), str(tmp_path / "pkg"), str(tmp_path / "missing.py"), "-o", str(out), "-q"])
    assert code == 2 and "missing.py: no such file or directory" in capsys.readouterr().err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.py")) == ["a.py", "pkg/_torch_compat.py", "pkg/net.py"]
    assert "nnx.Module" in (out / "a.py").read_text() and "from ._torch_compat import" not in (out / "a.py").read_text()
    assert main(["convert", str(tmp_path / "a.py"), str(tmp_path / "pkg")]) == 2
    assert "give an output directory with -o" in capsys.readouterr().err
