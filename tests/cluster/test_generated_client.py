"""A client generated from party B's live /openapi.json (openapi-python-client) drives a whole job and its errors.

The document is fetched from the running service, the client generated from it
into the test's folder, imported, and pointed at the three in-process services:
submit (201, and 200 on an idempotent replay), watch, list, read the model,
predict, score a batch, promote, resume a running job, cancel one, delete it,
and every error class an operator meets (401, 403, 404, 409, 422, 429, 502),
each parsed by the generated client into the declared model.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.helpers import URLS, demo_job, start_cluster

pytest.importorskip("openapi_python_client", reason="openapi-python-client is in the test extra: "
                                                    "pip install -e '.[test]'")

PACKAGE = "vfl_generated_client"


def generate(document: str, folder: Path) -> Any:
    """Generate a client package from ``document`` (JSON text) in ``folder`` and import it."""
    source = folder / "openapi.json"
    source.write_text(document)
    config = folder / "generator.yaml"
    config.write_text(f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n")
    done = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate", "--path", str(source),
                           "--config", str(config), "--meta", "none", "--output-path", str(folder / PACKAGE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(folder))
    try:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))


def api(name: str) -> Any:
    """One operation module of the generated client (``orchestration.submit``, ``models.promote``...)."""
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def shared_ids(workdir: Path, count: int) -> list[str]:
    bank = pd.read_csv(workdir / "party-b" / "bank.csv", dtype=str)["customer_id"].tolist()
    shop = set(pd.read_csv(workdir / "party-a" / "shop.csv", dtype=str)["customer_id"])
    return [i for i in bank if i in shop][:count]


def test_a_generated_client_runs_a_job_end_to_end_with_every_error_class(tmp_path, run):
    scoring = '[scoring]\nbatch_inputs = "."\nbatch_outputs = "."\n'
    generated = tmp_path / "generated"
    generated.mkdir()

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        cluster = await start_cluster(tmp_path / "fed", extra={"party-b": scoring},
                                      limits={"party-b": {"auth_failures_per_minute": 4}},
                                      **demo_job(epochs=2))
        workdir = cluster.workdir
        spec = {k: v for k, v in cluster.setup["job"].items() if k != "job_id"}
        try:
            async with cluster.client() as raw:
                document = (await raw.get("/openapi.json")).text
            client_module = generate(document, generated)
            models = importlib.import_module(f"{PACKAGE}.models")
            auth = {"Authorization": f"Bearer {cluster.token}"}
            bank = client_module.AuthenticatedClient(base_url=URLS["party-b"], token=cluster.token)
            bank.set_async_httpx_client(httpx.AsyncClient(transport=cluster.router, base_url=URLS["party-b"],
                                                          headers=auth, timeout=120))
            submit, status, jobs = api("orchestration.submit"), api("orchestration.job_status"), api(
                "orchestration.list_jobs")

            async def watch(job_id: str) -> Any:
                while True:
                    answer = await status.asyncio(job_id, client=bank)
                    if answer.state.value in ("succeeded", "failed", "cancelled", "damaged"):
                        return answer
                    await asyncio.sleep(0.05)

            # Arrange: a job, submitted twice with the same key.
            body = models.JobSpec.from_dict(spec)
            seen["health"] = await api("orchestration.health").asyncio(client=bank)
            seen["submitted"] = await submit.asyncio_detailed(client=bank, body=body, idempotency_key="contract-1")
            seen["replayed"] = await submit.asyncio_detailed(client=bank, body=body, idempotency_key="contract-1")
            job_id = seen["submitted"].parsed.job_id
            seen["final"] = await watch(job_id)
            seen["listed"] = await jobs.asyncio(client=bank)
            seen["model"] = await api("orchestration.model").asyncio(job_id, client=bank)
            ids = shared_ids(workdir, 5)
            seen["predicted"] = await api("orchestration.predict").asyncio(
                job_id, client=bank, body=models.PredictQuery.from_dict({"ids": [*ids, "NOBODY"]}))
            pd.DataFrame({"id": ids}).to_csv(workdir / "party-b" / "ids.csv", index=False)
            request = models.BatchRequest.from_dict({"input": {"path": str(workdir / "party-b" / "ids.csv")},
                                                     "output": {"path": str(workdir / "party-b" / "out.csv")}})
            batch = await api("orchestration.score_batch").asyncio(job_id, client=bank, body=request)
            while batch.state.value in ("queued", "running"):
                await asyncio.sleep(0.05)
                batch = await api("orchestration.batch_status").asyncio(job_id, batch.batch_id, client=bank)
            seen["batch"] = batch
            seen["promoted"] = await api("models.promote").asyncio(
                "risk", client=bank, body=models.PromoteRequest(job_id=job_id))
            seen["registry"] = await api("models.models").asyncio(client=bank)

            # A second job: resumed while it runs, then cancelled and deleted.
            longer = models.JobSpec.from_dict({**spec, "training": {**spec["training"], "epochs": 6}})
            second = (await submit.asyncio(client=bank, body=longer)).job_id
            while (await status.asyncio(second, client=bank)).epoch < 1:
                await asyncio.sleep(0.02)
            seen["resumed"] = await api("orchestration.resume").asyncio_detailed(second, client=bank)
            seen["cancelled"] = await api("orchestration.cancel").asyncio_detailed(second, client=bank)
            seen["cancelled_final"] = await watch(second)
            seen["deleted"] = await api("models.delete").asyncio_detailed(second, client=bank)

            # Every error class, each parsed as the declared error body.
            seen["404"] = await status.asyncio_detailed("job-nosuchjob", client=bank)
            seen["409_cancel"] = await api("orchestration.cancel").asyncio_detailed(job_id, client=bank)
            seen["409_delete"] = await api("models.delete").asyncio_detailed(job_id, client=bank)
            bad = models.JobSpec.from_dict({**spec, "training": {**spec["training"], "epochs": 3}})
            seen["422_key"] = await submit.asyncio_detailed(client=bank, body=bad, idempotency_key="contract-1")
            seen["422_body"] = await api("orchestration.predict").asyncio_detailed(
                job_id, client=bank, body=models.PredictQuery.from_dict({"ids": ["C1", ""]}))
            shop_app = cluster.router.apps.pop("party-a.test")  # party A is down: B cannot register a job there
            seen["502"] = await submit.asyncio_detailed(client=bank, body=body)
            cluster.router.apps["party-a.test"] = shop_app
            async with httpx.AsyncClient(transport=cluster.router, base_url=URLS["party-a"]) as shop:
                login = await shop.post("/ui/login", data={"token": cluster.setup["tokens"]["party-a"]})
            session = client_module.Client(base_url=URLS["party-a"], cookies=dict(login.cookies),
                                           headers={"X-VFL-UI": "1", "Origin": URLS["party-a"]})
            session.set_async_httpx_client(httpx.AsyncClient(
                transport=cluster.router, base_url=URLS["party-a"], cookies=dict(login.cookies),
                headers={"X-VFL-UI": "1", "Origin": URLS["party-a"]}))
            seen["403"] = await api("orchestration.cancel").asyncio_detailed(job_id, client=session)
            intruder = client_module.AuthenticatedClient(base_url=URLS["party-b"], token="wrong-token")
            intruder.set_async_httpx_client(httpx.AsyncClient(
                transport=cluster.router, base_url=URLS["party-b"], headers={"Authorization": "Bearer wrong"}))
            seen["401"] = await jobs.asyncio_detailed(client=intruder)
            for _ in range(4):  # limits.auth_failures_per_minute = 4 at party B: then the address is throttled
                seen["429"] = await jobs.asyncio_detailed(client=intruder)
            return seen
        finally:
            await cluster.stop()

    seen = run(scenario())
    models = importlib.import_module(f"{PACKAGE}.models")

    assert seen["health"].status == "ok" and seen["health"].role == "B"
    assert seen["submitted"].status_code == 201 and isinstance(seen["submitted"].parsed, models.JobStatus)
    assert seen["replayed"].status_code == 200
    assert seen["replayed"].parsed.job_id == seen["submitted"].parsed.job_id
    assert seen["final"].state.value == "succeeded", seen["final"].error
    assert seen["final"].metrics is not None and "auc" in seen["final"].metrics.additional_properties["train"]
    assert seen["final"].job_id in [job.job_id for job in seen["listed"].jobs]
    assert seen["model"].weights and seen["model"].model == "logistic"
    predictions = seen["predicted"].predictions
    assert [p.status for p in predictions[:5]] == ["ok"] * 5 and all(0 <= p.score <= 1 for p in predictions[:5])
    assert predictions[5].score is None and predictions[5].status != "ok"
    assert seen["batch"].state.value == "succeeded" and seen["batch"].rows_done == 5
    assert seen["promoted"].job_id == seen["final"].job_id and seen["promoted"].name == "risk"
    assert seen["registry"].served.additional_properties["risk"].job_id == seen["final"].job_id
    assert seen["resumed"].status_code == 200 and isinstance(seen["resumed"].parsed, models.JobStatus)
    assert seen["cancelled"].status_code == 200 and seen["cancelled_final"].state.value == "cancelled"
    assert seen["deleted"].status_code == 200 and seen["deleted"].parsed.status.value == "deleted"
    expected = {"404": (404, "UnknownJobError"), "409_cancel": (409, "JobError"), "409_delete": (409, "ModelServed"),
                "422_key": (422, "IdempotencyKeyReused"), "422_body": (422, "ValidationError"),
                "502": (502, None), "403": (403, "Forbidden"), "401": (401, "BadToken"), "429": (429, "RateLimited")}
    for name, (code, error) in expected.items():
        answer = seen[name]
        assert answer.status_code == code, (name, answer.status_code, answer.content)
        assert isinstance(answer.parsed, models.ErrorBody), (name, answer.parsed)
        assert answer.parsed.detail
        assert error is None or answer.parsed.error == error, (name, answer.parsed.error)
    assert "party-a" in seen["502"].parsed.detail
