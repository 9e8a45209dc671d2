"""Command to first output: `retarget convert` on a small file, as a user runs it.

    python benchmarks/startup.py [--runs 5]

Each run is a fresh process (`retarget convert FILE -o OUT -q`), timed from start to exit; the
median of the runs is the figure (goal: under 1 s). The baselines, measured in the same run on
the same machine: a bare `python -c pass` and `python -c "import libcst"` (the parser every
conversion needs), so the ratio says what retarget itself adds. `convert` never imports JAX,
Flax, torch or NumPy (tests/test_cli.py guards the import list).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = '''import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.fc(x.mean(dim=(2, 3)))
'''


def timed(command: list[str], runs: int) -> float:
    """Median seconds of `runs` fresh processes running `command`."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "net.py"
        source.write_text(SMALL)
        python = timed([sys.executable, "-c", "pass"], args.runs)
        parser_only = timed([sys.executable, "-c", "import libcst"], args.runs)
        convert = timed([sys.executable, "-m", "retarget.cli", "convert", str(source), "-o",
                         str(Path(tmp) / "out.py"), "-q"], args.runs)
    print(f"python start-up            {python:6.3f} s")
    print(f"python + import libcst     {parser_only:6.3f} s")
    print(f"retarget convert (small)   {convert:6.3f} s  (median of {args.runs}; "
          f"{convert / parser_only:.1f}x importing the parser; goal < 1 s: {'met' if convert < 1 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
