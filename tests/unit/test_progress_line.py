"""The CLI's progress line: a step that runs long keeps saying so, and stops once it is over."""

from __future__ import annotations

import io
import time

from vfl.report import progress as progress_module
from vfl.report.progress import ProgressLine


def test_a_long_step_keeps_saying_it_still_runs_until_the_next_one(monkeypatch):
    monkeypatch.setattr(progress_module, "TICK_LOG", 0.2)
    stream = io.StringIO()
    line = ProgressLine(stream)

    line.stage("aligning: RSA PSI between party B (10 IDs) and 1 feature party (10 IDs)")
    time.sleep(1.5)
    line.epoch(0, 3, 0.69, None)
    time.sleep(1.5)
    line.close()
    said_before_close = stream.getvalue()
    time.sleep(1.2)

    lines = said_before_close.splitlines()
    assert lines[0].startswith("aligning: RSA PSI")
    assert any(text.startswith("  still aligning (") for text in lines[1:3])
    epoch_at = next(n for n, text in enumerate(lines) if "epoch 1/3" in text)
    assert any(text.startswith("  still training epoch 2/3 (") for text in lines[epoch_at:])
    assert stream.getvalue() == said_before_close  # closed: silent


def test_a_run_that_announced_no_step_gets_no_still_lines(monkeypatch):
    monkeypatch.setattr(progress_module, "TICK_LOG", 0.2)
    stream = io.StringIO()
    line = ProgressLine(stream)

    line.epoch(0, 3, 0.69, None)
    time.sleep(1.2)

    assert "still" not in stream.getvalue()
