"""`vfl score` against the trained folder's services run as `vfl serve` processes (tests/cluster/test_batch_scoring.py
has the in-process batch tests on the same trained folder)."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow.parquet as pq

from tests.cluster.test_batch_scoring import JOB, audit_scored, trained, workdir, write_ids  # noqa: F401 - fixtures
from tests.helpers import NAMES, URLS


def test_the_cli_scores_locally_and_resumes_after_an_interrupted_run(workdir, monkeypatch, capsys):
    from vfl.cli import main
    from vfl.demo.services import running_services, wait_healthy
    from vfl.orchestrate import Orchestrator

    # The trained folder's services, now as `vfl serve` processes on loopback ports.
    urls = {}
    for name in NAMES:
        text = (workdir / f"{name}.toml").read_text()
        listen = next(line.split('"')[1] for line in text.splitlines() if line.startswith("listen"))
        urls[name] = f"http://{listen}"
    for name in NAMES:
        path = workdir / f"{name}.toml"
        text = path.read_text()
        for other in NAMES:
            text = text.replace(URLS[other], urls[other])
        path.write_text(text)
    path, ids, _, _, _ = write_ids(workdir)
    keep = [i for i in ids if not i.startswith("NOBODY")]  # the CLI's predict is party B's route, as it is
    pd.DataFrame({"id": keep}).to_csv(path, index=False)
    out = workdir / "local.csv"
    token = (workdir / "party-b" / "token").read_text().strip()
    argv = ["score", urls["party-b"], "--job", JOB, "--input", str(path), "--out", str(out), "--token", token,
            "--chunk-rows", "6"]
    original = Orchestrator.predict
    calls = []
    audit_before = audit_scored(workdir)

    def interrupted(self, job_id, chunk):
        calls.append(chunk)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, job_id, chunk)

    with running_services(workdir) as processes:
        wait_healthy(urls, token, {n: processes[n] for n in NAMES}, workdir)
        monkeypatch.setattr(Orchestrator, "predict", interrupted)
        first = main(argv)
        partial_exists = bool(list(workdir.glob("local.csv.*.partial")))
        published_early = out.exists()
        monkeypatch.setattr(Orchestrator, "predict", original)
        calls_before = len(calls)
        second = main(argv)
        err = capsys.readouterr().err
        audit_local = audit_scored(workdir) - audit_before
        remote_out = workdir / "remote.parquet"
        remote = main(["score", urls["party-b"], "--job", JOB, "--input", str(path), "--out", str(remote_out),
                       "--token", token, "--chunk-rows", "10", "--remote", "--interval", "0.05"])
        remote_err = capsys.readouterr().err

    chunks = math.ceil(len(keep) / 6)
    assert first == 130 and partial_exists and not published_early
    assert second == 0, err
    assert "resuming after 2 chunks" in err
    result = pd.read_csv(out, dtype={"id": str})
    assert result["id"].tolist() == keep
    assert set(result["status"]) <= {"ok", "not available at party-a"} and (result["status"] == "ok").sum() > 0
    assert not (workdir / "local.csv.progress.json").exists() and not list(workdir.glob("local.csv.*.partial"))
    assert remote == 0, remote_err
    assert pq.read_table(remote_out).column("id").to_pylist() == keep  # --remote: party B wrote it on its host
    assert calls_before == 3 and audit_local == chunks  # the two chunks done were not scored again
