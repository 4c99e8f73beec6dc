"""`vfl jobs submit | list | status | cancel | resume | predict | report | watch` and `vfl --version`.

The job commands run against the demo's three services as real `vfl serve`
processes with mutual TLS (started once for the module), the way an operator
types them; one test checks the Idempotency-Key header on a recording server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from vfl.cli import main
from vfl.demo.services import running_services, wait_healthy, write_demo_files
from vfl.orchestrate import Orchestrator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("jobs-cli")
    setup = write_demo_files(workdir, population=600, key_bits=1024, training={"epochs": 3})
    with running_services(workdir) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, workdir, verify=setup["verify"])
        yield workdir, setup


@pytest.fixture
def jobs(federation, monkeypatch, capsys):
    """Run `vfl jobs ...` against party B (token from $VFL_TOKEN); returns (exit code, stdout, stderr)."""
    workdir, setup = federation
    monkeypatch.setenv("VFL_TOKEN", setup["token"])
    monkeypatch.delenv("VFL_URL", raising=False)
    monkeypatch.delenv("VFL_CA", raising=False)
    capsys.readouterr()

    def call(action: str, *args: str, connect: bool = True) -> tuple[int, str, str]:
        where = ["--url", setup["urls"]["party-b"], "--ca", str(setup["verify"])] if connect else []
        code = main(["jobs", action, *args, *where])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def shared_ids(workdir: Path, count: int) -> list[str]:
    bank = pd.read_csv(workdir / "party-b" / "bank.csv", dtype=str)["customer_id"]
    shop = set(pd.read_csv(workdir / "party-a" / "shop.csv", dtype=str)["customer_id"])
    return [i for i in bank if i in shop][:count]


def test_version_is_the_package_version():
    done = subprocess.run([sys.executable, "-m", "vfl.cli", "--version"], capture_output=True, text=True, timeout=60)

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done.returncode == 0 and done.stdout.strip() == f"vfl {version}"


def test_submit_sends_the_idempotency_key_header_and_prints_the_job_id(tmp_path, monkeypatch, capsys):
    seen: list[dict] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
            # A job status as a service sends it (the client parses answers through vfl.api.models.JobStatus).
            answer = json.dumps({"job_id": body.get("job_id", "j-1"), "role": "B", "state": "pending",
                                 "stage": "registered"}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"party_b": {"dataset": "credit"}}))
    monkeypatch.setenv("VFL_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("VFL_TOKEN", "secret-token")
    try:
        keyed = main(["jobs", "submit", str(spec), "--idempotency-key", "nightly-2026-11-03", "--job-id", "j-7"])
        keyed_out = capsys.readouterr().out
        plain = main(["jobs", "submit", str(spec)])
    finally:
        server.shutdown()
        server.server_close()

    assert keyed == plain == 0
    assert keyed_out.strip() == "j-7"  # only the id on stdout: JOB=$(vfl jobs submit ...)
    assert seen[0]["path"] == "/v1/jobs" and seen[0]["body"]["job_id"] == "j-7"
    assert seen[0]["headers"]["Idempotency-Key"] == "nightly-2026-11-03"
    assert seen[0]["headers"]["Authorization"] == "Bearer secret-token"
    assert "Idempotency-Key" not in seen[1]["headers"]


def test_submit_watch_status_list_predict_report_and_resume_refused(federation, jobs, tmp_path, capsys):
    workdir, setup = federation

    code, out, err = jobs("submit", str(workdir / "job.json"), "--job-id", "cli-job", "--idempotency-key", "k-1",
                          "--watch", "--interval", "0.2")
    assert code == 0, err
    assert out.splitlines()[0] == "cli-job"
    assert "succeeded" in err and "epoch 3/3" in err and "validation: auc" in out

    code, out, err = jobs("status", "cli-job")
    assert code == 0, err
    assert "state      succeeded" in out and "epoch      3/3" in out and "validation" in out and "auc" in out
    # where the time went, at every party
    assert "time A     party-a: " in out and "time C     arbiter: " in out and "training " in out
    code, out, _ = jobs("status", "cli-job", "--json")
    assert json.loads(out)["metrics"]["validation"]["auc"] > 0.6

    code, out, err = jobs("list")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["JOB", "STATE", "STAGE", "EPOCH", "CREATED"]
    assert any(row.split()[:2] == ["cli-job", "succeeded"] for row in rows)
    code, out, _ = jobs("list", "--json")
    assert "cli-job" in [j["job_id"] for j in json.loads(out)]

    ids = shared_ids(workdir, 2)
    code, out, err = jobs("predict", "cli-job", *ids, "NOBODY-1")
    assert code == 0, err
    table = [line.split() for line in out.splitlines()]
    assert table[0] == ["ID", "SCORE", "LABEL", "STATUS"]
    assert [row[0] for row in table[1:]] == [*ids, "NOBODY-1"]
    assert table[1][3] == table[2][3] == "ok" and 0 <= float(table[1][1]) <= 1
    assert table[3][1:] == ["unknown", "id"]
    code, out, _ = jobs("predict", "cli-job", ids[0], "--json")
    assert json.loads(out)["predictions"][0]["status"] == "ok"

    report = tmp_path / "report.html"
    code, _, err = jobs("report", "cli-job", "--out", str(report))
    assert code == 0, err
    assert report.read_text().lstrip().lower().startswith("<!doctype html") and "cli-job" in report.read_text()

    code, _, err = jobs("resume", "cli-job")
    assert code == 1 and "409" in err and "nothing to resume" in err

    # The older form `vfl jobs watch URL JOB_ID` (before --url) still works.
    code = main(["jobs", "watch", setup["urls"]["party-b"], "cli-job", "--ca", str(setup["verify"])])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "succeeded" in err and out.startswith("validation: auc")


def test_cancel_and_resume_a_running_job(federation, jobs, tmp_path):
    workdir, setup = federation
    spec = tmp_path / "long.json"
    job = json.loads((workdir / "job.json").read_text())
    job["training"].update(epochs=300, tol=0)
    spec.write_text(json.dumps(job))

    code, out, err = jobs("submit", str(spec), "--idempotency-key", "long-job-1")
    assert code == 0, err
    job_id = out.strip()
    code, out, err = jobs("submit", str(spec), "--idempotency-key", "long-job-1")  # a retry: the same job
    assert code == 0 and out.strip() == job_id, err
    assert f"already submitted under this key: {job_id} (" in err and "submitted job" not in err
    with Orchestrator(setup["urls"]["party-b"], setup["token"], verify=setup["verify"]) as bank:
        deadline = time.monotonic() + 60
        while bank.status(job_id)["epoch"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        code, out, err = jobs("resume", job_id)
        assert code == 0, err
        assert out.startswith(f"job {job_id}: resuming")
        while bank.status(job_id)["resumes"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        resumed = bank.status(job_id)

        code, out, err = jobs("cancel", job_id)
        assert code == 0, err
        assert out.strip() == f"job {job_id}: cancelled"
        final = bank.status(job_id)

    assert resumed["resumes"] == 1 and resumed["state"] in ("aligning", "training")
    assert final["state"] == "cancelled"
    code, out, _ = jobs("status", job_id)
    assert "state      cancelled" in out


def test_errors_name_the_problem(federation, jobs, monkeypatch, capsys):
    workdir, setup = federation

    code, _, err = jobs("status", "no-such-job")
    assert code == 1 and "404" in err and "no-such-job" in err and err.startswith("vfl jobs status:")

    code, _, err = jobs("list", connect=False)
    assert code == 2 and "--url" in err and "VFL_URL" in err

    monkeypatch.delenv("VFL_TOKEN")
    code, _, err = jobs("list")
    assert code == 2 and "--token" in err and "VFL_TOKEN" in err

    monkeypatch.setenv("VFL_TOKEN", setup["token"])
    code = main(["jobs", "list", "--url", setup["urls"]["party-b"]])  # https, but no --ca
    assert code == 1 and "give it with --ca" in capsys.readouterr().err

    code, _, err = jobs("list", "--token", "wrong")
    # The service the user talks to refused: said so, not labelled as a peer's error class.
    assert code == 1 and err.startswith("vfl jobs list: refused (401): GET /v1/jobs: ") and "PeerRefused" not in err

    code, _, err = jobs("predict", "no-such-job")
    assert code == 2 and "IDs to score" in err


@pytest.fixture(scope="module")
def two_jobs(federation):
    """Two succeeded jobs at party B (for the registry and scoring), submitted through the client."""
    workdir, setup = federation
    spec = json.loads((workdir / "job.json").read_text())
    with Orchestrator(setup["urls"]["party-b"], setup["token"], verify=setup["verify"]) as bank:
        made = [bank.submit({**spec, "job_id": f"registry-{i}"})["job_id"] for i in (1, 2)]
        for job_id in made:
            bank.wait(job_id, interval=0.2)
    return made


def test_models_list_promote_show_and_rollback(federation, two_jobs, jobs, monkeypatch, capsys):
    # Arrange
    workdir, setup = federation
    first, second = two_jobs
    monkeypatch.setenv("VFL_URL", setup["urls"]["party-b"])
    monkeypatch.setenv("VFL_CA", str(setup["verify"]))  # $VFL_CA, like every vfl jobs command

    def models(*args: str) -> tuple[int, str, str]:
        code = main(["models", *args])
        out, err = capsys.readouterr()
        return code, out, err

    # Act
    promoted = [models("promote", "credit-risk", job_id) for job_id in (first, second)]
    shown = models("show", "credit-risk")
    listed = models("list")
    rolled = models("rollback", "credit-risk")
    listed_json = models("list", "--json")
    nothing_earlier = models("rollback", "credit-risk")

    # Assert
    assert [code for code, _, _ in promoted] == [0, 0], promoted
    assert promoted[1][1].strip() == f"model credit-risk now serves job {second}; before it: {first}"
    assert shown[0] == 0 and shown[1].startswith(f"model credit-risk serves job {second}; before it: {first}")
    assert "dataset" in shown[1] and "parties" in shown[1]
    header, *rows = listed[1].split("\n\n")[0].splitlines()
    assert header.split() == ["JOB", "MODEL", "DATASET", "TRAINED", "AUC", "NAMES"]
    assert any(row.split()[0] == second and row.split()[-1] == "credit-risk" for row in rows)
    assert "NAME" in listed[1] and f"credit-risk  {second}  {first}" in listed[1]
    assert rolled[0] == 0 and rolled[1].strip() == f"model credit-risk rolled back: it serves job {first}; no earlier version"
    assert json.loads(listed_json[1])["served"]["credit-risk"] == {"job_id": first, "history": []}
    assert nothing_earlier[0] == 1 and nothing_earlier[2].startswith("vfl models rollback: refused (409): ")
    assert "no earlier version" in nothing_earlier[2]


def test_score_honours_vfl_ca_and_hints_at_it_without(federation, two_jobs, tmp_path, monkeypatch, capsys):
    # Arrange
    workdir, setup = federation
    ids = tmp_path / "ids.csv"
    pd.DataFrame({"id": shared_ids(workdir, 5)}).to_csv(ids, index=False)
    monkeypatch.setenv("VFL_URL", setup["urls"]["party-b"])
    monkeypatch.setenv("VFL_TOKEN", setup["token"])
    argv = ["score", "--job", two_jobs[0], "--input", str(ids), "--out", str(tmp_path / "scores.csv")]

    # Act
    monkeypatch.delenv("VFL_CA", raising=False)
    without = main(argv)
    without_err = capsys.readouterr().err
    monkeypatch.setenv("VFL_CA", str(setup["verify"]))
    with_ca = main(argv)
    with_err = capsys.readouterr().err

    # Assert
    assert without == 1 and "give it with --ca ca.pem or set VFL_CA" in without_err
    assert with_ca == 0, with_err
    assert pd.read_csv(tmp_path / "scores.csv", dtype=str)["id"].tolist() == shared_ids(workdir, 5)


def test_models_delete_refuses_a_served_version_and_a_name_and_deletes_an_unserved_one(federation, monkeypatch,
                                                                                        capsys):
    # Arrange: two jobs of its own (the other tests keep theirs), the first served under a name
    workdir, setup = federation
    spec = json.loads((workdir / "job.json").read_text())
    with Orchestrator(setup["urls"]["party-b"], setup["token"], verify=setup["verify"]) as bank:
        first, second = (bank.submit({**spec, "job_id": f"deletable-{i}"})["job_id"] for i in (1, 2))
        for job_id in (first, second):
            bank.wait(job_id, interval=0.2)
    monkeypatch.setenv("VFL_URL", setup["urls"]["party-b"])
    monkeypatch.setenv("VFL_TOKEN", setup["token"])
    monkeypatch.setenv("VFL_CA", str(setup["verify"]))

    def models(*args: str) -> tuple[int, str, str]:
        code = main(["models", *args])
        out, err = capsys.readouterr()
        return code, out, err

    assert models("promote", "scratch", first)[0] == 0

    # Act
    served = models("delete", first)
    by_name = models("delete", "scratch")
    models("promote", "scratch", second)
    deleted = models("delete", first)
    listed = json.loads(models("list", "--json")[1])
    at_a = main(["models", "delete", second, "--url", setup["urls"]["party-a"], "--token", setup["tokens"]["party-a"]])
    at_a_err = capsys.readouterr().err

    # Assert
    assert served[0] == 1 and served[2].startswith(f"vfl models delete: refused (409): DELETE /v1/jobs/{first}: ")
    assert (f"job {first} is the version model 'scratch' serves; promote another version "
            "(vfl models promote scratch JOB_ID) or roll back (vfl models rollback scratch) first") in served[2]
    assert by_name[0] == 1 and by_name[2].startswith("vfl models delete: refused (404): ")
    assert "'scratch' is a model name, not a job" in by_name[2] and f"serves job {first}" in by_name[2]
    assert deleted[0] == 0, deleted[2]
    assert deleted[1].startswith(f"deleted job {first} at ")
    assert set(deleted[1].strip().removeprefix(f"deleted job {first} at ").split(", ")) == {
        "party-a", "arbiter", "party-b"}
    assert first not in {m["job_id"] for m in listed["models"]}
    assert listed["served"]["scratch"] == {"job_id": second, "history": []}  # the deleted version left the history
    assert at_a == 1 and "delete at party B" in at_a_err
