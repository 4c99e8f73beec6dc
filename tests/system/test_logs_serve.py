"""`vfl serve --log-format json`: the real command's output, one JSON object per line (the in-process log tests
are in tests/cluster/test_logs.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from vfl.compute.childproc import ends_with_parent
from vfl.demo.services import write_demo_files


def test_vfl_serve_log_format_json_writes_only_json_lines(tmp_path):
    """The real command: uvicorn's own lines go through the same formatter, one JSON object per line."""
    write_demo_files(tmp_path, population=200, key_bits=1024, tls=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "vfl.cli", "serve", "--config", str(tmp_path / "arbiter.toml"), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=ends_with_parent())
    lines = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Uvicorn running on" in line:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=10)
    lines += rest.splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    assert any(e["logger"] == "uvicorn.error" and "Uvicorn running on" in e["message"] for e in entries), lines
    assert any(e["level"] == "WARNING" and "PLAIN HTTP" in e["message"] for e in entries)
