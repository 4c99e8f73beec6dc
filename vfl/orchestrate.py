"""A small client for the orchestration API, as Airflow tasks or scripts would use it.

    with Orchestrator("http://bank:8702", token) as bank:
        job = bank.submit({...job spec...})
        final = bank.wait(job["job_id"], progress=ProgressLine().job)   # vfl.report.progress
        bank.predict(job["job_id"], ["C000017", "C000042"])

Errors come back as :class:`~vfl.errors.PeerRefused` with the service's own
message, its HTTP ``status`` and its error class (``error``), or
:class:`~vfl.errors.TransportError` when it cannot be reached.

Every answer is parsed through the model the service declares for it
(:mod:`vfl.api.models`, the same models the routes answer with), so a client
and a service that disagree on the API fail here, by name, not later on a
missing key. The methods still return the answers' JSON as dicts (with any
field a newer service added); the ``vfl`` CLI reads them through this client.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import httpx

from pydantic import BaseModel

from vfl.api import models as api
from vfl.errors import ContractMismatch, JobError, PeerRefused, TransportError, error_detail

TERMINAL = set(api.TERMINAL_STATES)
#: Statuses worth retrying later: a peer (or this service's proxy) could not answer now.
RETRYABLE = frozenset({502, 503, 504})


def _refused(method: str, path: str, response: httpx.Response) -> PeerRefused:
    """The service's refusal: its status, its error class and its own message, after the request it refused."""
    error = None
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        pass
    return PeerRefused(f"{method} {path}: {error_detail(response)}", response.status_code, error)


class Orchestrator:
    def __init__(self, url: str, token: str, *, timeout: float = 60.0, verify: Any = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``verify`` is True (system CAs), a path to the federation's ``ca.pem``, or an SSL context;
        ``transport`` replaces the network (tests)."""
        self.url = url.rstrip("/")
        if isinstance(verify, (str, Path)):
            verify = ssl.create_default_context(cafile=str(verify))
        replaced = {} if transport is None else {"transport": transport}
        self._client = httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}, verify=verify, **replaced
        )

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = self._client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.url}{path}: {exc}") from exc
        if response.status_code >= 400:
            raise _refused(method, path, response)
        return response

    def _call(self, method: str, path: str, model: type[BaseModel], body: Any = None,
              headers: dict[str, str] | None = None) -> Any:
        """The answer's JSON, once it parsed as ``model`` (what the route declares it answers)."""
        data = self._request(method, path, body, headers).json()
        api.parse(model, data, f"{method} {self.url}{path}")
        return data

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health", api.Health)

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Party B: submit a job. With ``idempotency_key`` the request carries an ``Idempotency-Key`` header, so
        a retried submit (after a lost answer) can be recognised by the service instead of starting a second job."""
        return self.submit_or_replay(spec, idempotency_key=idempotency_key)[0]

    def submit_or_replay(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> tuple[dict[str, Any], bool]:
        """:meth:`submit`, and whether the service answered with the job an earlier submit under the same
        ``idempotency_key`` made (its ``Idempotent-Replayed`` header) rather than a new one."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._request("POST", "/v1/jobs", spec, headers)
        job = response.json()
        api.parse(api.JobStatus, job, f"POST {self.url}/v1/jobs")
        return job, response.headers.get("Idempotent-Replayed") == "true"

    def jobs(self) -> list[dict[str, Any]]:
        """Every job this service knows."""
        return self._call("GET", "/v1/jobs", api.JobList)["jobs"]

    def status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}", api.JobStatus)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel", api.JobStatus)

    def resume(self, job_id: str) -> dict[str, Any]:
        """Party B: continue a running or failed job from the newest checkpoint every party holds."""
        return self._call("POST", f"/v1/jobs/{job_id}/resume", api.JobStatus)

    def model(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}/model", api.ModelPart)

    def predict(self, job_id: str, ids: list[str], features: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Party B: scores for ``ids``; ``features`` (ID → B's columns) scores applicants B has not stored."""
        body: dict[str, Any] = {"ids": ids}
        if features:
            body["features"] = features
        return self._call("POST", f"/v1/jobs/{job_id}/predict", api.Predictions, body)

    def lending_query(self, ids: list[str], answer: str = "lenders", lenders: list[str] | None = None) -> dict[str, Any]:
        """Ask the federation's lenders about ``ids`` without revealing them (this service must list lenders):
        per ID the lenders that hold it (``answer="lenders"``) or only how many (``"count"``)."""
        body: dict[str, Any] = {"ids": ids, "answer": answer}
        if lenders:
            body["lenders"] = lenders
        return self._call("POST", "/v1/lending-query", api.LendingAnswer, body)

    def report(self, job_id: str) -> str:
        """The finished job's HTML report (party B serves it)."""
        return self._request("GET", f"/v1/jobs/{job_id}/report").text

    def wait(
        self,
        job_id: str,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 24 * 3600,
        interval: float = 0.5,
    ) -> dict[str, Any]:
        """Poll until the job ends; return its final status. A failed job raises JobError."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if progress is not None:
                progress(status)
            if status["state"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise JobError(f"job {job_id} did not finish within {timeout:g}s (state {status['state']})")
            time.sleep(interval)
        if status["state"] != "succeeded":
            raise JobError(f"job {job_id} {status['state']}: {status.get('error')}")
        return status

    # -- models as versions: list, promote under a name, roll back, delete, read ----------------------

    def models(self) -> dict[str, Any]:
        """Every model version the service holds (``models``), and at party B the names it serves (``served``)."""
        return self._call("GET", "/v1/models", api.ModelList)

    def promote(self, name: str, job_id: str) -> dict[str, Any]:
        """Party B: serve ``job_id`` under ``name``; returns ``{name, job_id, history}``."""
        return self._call("POST", f"/v1/models/{name}/promote", api.Promotion, {"job_id": job_id})

    def rollback(self, name: str) -> dict[str, Any]:
        """Party B: serve the version promoted before the current one under ``name`` again."""
        return self._call("POST", f"/v1/models/{name}/rollback", api.Promotion)

    def served_model(self, name: str) -> dict[str, Any]:
        """Party B: the job ``name`` serves, its history, and that version."""
        return self._call("GET", f"/v1/models/{name}", api.ServedModel)

    def predict_model(self, name: str, ids: list[str]) -> dict[str, Any]:
        """Party B: predictions from the version ``name`` serves now."""
        return self._call("POST", f"/v1/models/{name}/predict", api.Predictions, {"ids": ids})

    def scorecard(self, job_id: str) -> dict[str, Any]:
        """This service's own part of the job's model as plain numbers."""
        return self._call("GET", f"/v1/jobs/{job_id}/scorecard", api.Scorecard)

    def stability(self, job_id: str) -> dict[str, Any]:
        """A scorecard job's stability at this service: party B's score PSI, this party's characteristics' CSI."""
        return self._call("GET", f"/v1/jobs/{job_id}/stability", api.Stability)

    def delete(self, job_id: str) -> dict[str, Any]:
        """Party B: delete a finished job at every party.

        A peer that could not delete it yet raises :class:`~vfl.errors.PeerRefused`
        (status 502) naming the parties left; call again to retry only those.
        """
        return self._call("DELETE", f"/v1/jobs/{job_id}", api.Deletion)

    # -- batch scoring at party B (vfl.service.serving.batch) ---------------------------------------------------

    def score_batch(self, job_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Start (or resume, or look up) a background batch: ``{"input": {...}, "output": {"path"}, "chunk_rows"}``."""
        return self._call("POST", f"/v1/jobs/{job_id}/score-batch", api.BatchStatus, request)

    def batches(self, job_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/jobs/{job_id}/score-batch", api.BatchList)["batches"]

    def batch(self, job_id: str, batch_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}/score-batch/{batch_id}", api.BatchStatus)

    def cancel_batch(self, job_id: str, batch_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/score-batch/{batch_id}/cancel", api.BatchStatus)

    def wait_batch(
        self, job_id: str, batch_id: str, *, progress: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 24 * 3600, interval: float = 0.5,
    ) -> dict[str, Any]:
        """Poll until the batch ends; return its final status. A failed or cancelled batch raises JobError."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.batch(job_id, batch_id)
            if progress is not None:
                progress(status)
            if status["state"] not in ("queued", "running"):
                break
            if time.monotonic() > deadline:
                raise JobError(f"batch {batch_id} did not finish within {timeout:g}s ({status['rows_done']} rows done)")
            time.sleep(interval)
        if status["state"] != "succeeded":
            raise JobError(f"batch {batch_id} {status['state']}: {status.get('error')}")
        return status

    def download_batch(self, job_id: str, batch_id: str, path: str | Path) -> Path:
        """Stream a finished batch's output to ``path`` (written aside, then renamed into place)."""
        path = Path(path)
        partial = path.with_name(f"{path.name}.download")
        url = f"/v1/jobs/{job_id}/score-batch/{batch_id}/result"
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refused("GET", url, response)
                with open(partial, "wb") as handle:
                    for block in response.iter_bytes(1 << 20):
                        handle.write(block)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise TransportError(f"cannot download {self.url}{url}: {exc}") from exc
        partial.replace(path)
        return path


def retryable(exc: BaseException) -> bool:
    """Whether a call that raised ``exc`` is worth repeating later: the service or a peer of it could not answer
    now (502, 503, 504, or no connection at all), as opposed to a refusal that repeats the same way."""
    if isinstance(exc, PeerRefused):
        return exc.status in RETRYABLE
    return isinstance(exc, TransportError) and not isinstance(exc, ContractMismatch)
