"""The demo output the README and the quick start quote is what `vfl demo` prints.

The docs quote `make demo` (2048-bit keys). The demo's data, split and batches are seeded and the
protocol's arithmetic is exact, so a 1024-bit run prints the same metrics, faster: this test runs
that, as three real `vfl serve` processes, and compares every line of the quoted block.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUOTED_IN = (ROOT / "README.md", ROOT / "docs" / "quick-start.md")


def quoted(path: Path) -> list[str]:
    match = re.search(r"<!-- output of: vfl demo[^>]*-->\n```text\n(.*?)```", path.read_text(), re.S)
    assert match, f"{path.name}: no demo output block after '<!-- output of: vfl demo ... -->'"
    return match.group(1).strip("\n").splitlines()


def test_the_quoted_demo_output_is_what_the_demo_prints(tmp_path):
    # Arrange / Act: the demo as `make demo` runs it, with 1024-bit keys.
    done = subprocess.run(
        [sys.executable, "-m", "vfl.cli", "demo", "--workdir", str(tmp_path / "work"), "--key-bits", "1024"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )

    # Assert
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line.rstrip() for line in done.stdout.strip("\n").splitlines()]
    for path in QUOTED_IN:
        lines = quoted(path)
        assert lines[0] in printed, f"{path.name}: the headline is not what the demo prints"
        start = printed.index(lines[0])
        assert printed[start:start + len(lines)] == [line.rstrip() for line in lines], (
            f"{path.name} quotes a stale demo output; run `vfl demo` and paste its output")
