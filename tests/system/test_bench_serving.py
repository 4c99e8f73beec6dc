"""scripts/bench_serving.py end to end, with small counts: it runs and reports sane figures (`slow`: make test-system)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_serving.py"
FIGURES = ("roundtrip_p50_ms", "roundtrip_p99_ms", "single_p50_ms", "single_p99_ms", "batch_rows_per_s",
           "single_p99_over_roundtrip_p99")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_serving_reports_positive_figures(tmp_path: Path) -> None:
    workdir = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--population", "1500", "--epochs", "2", "--requests", "30",
         "--warmup", "5", "--batch-ids", "300", "--batches", "2", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    for name in FIGURES:
        assert isinstance(report[name], (int, float)) and report[name] > 0, (name, report[name])
    assert set(report["goals"]) == {"single_p99_over_roundtrip_p99", "batch_rows_per_s"}
    assert all(isinstance(goal["pass"], bool) for goal in report["goals"].values())
    assert report["detail"]["single"]["n"] == 30 and report["detail"]["batch"]["requests"] == 2
    setup = report["setup"]
    assert setup["key_bits"] == 1024 and setup["requests"] == 30 and setup["aligned_ids"] > 0
    assert setup["raised_limits_at_feature_parties"]["score_requests_per_minute"] > 600
    assert report["machine"]["cores"] >= 1 and report["machine"]["python"]
    # Every service it started has stopped: none still holds its config.
    running = subprocess.run(["pgrep", "-f", f"{workdir}/.*toml"], capture_output=True, text=True)
    assert running.stdout.strip() == ""
