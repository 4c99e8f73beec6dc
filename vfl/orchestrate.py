"""A small client for the orchestration API, as Airflow tasks or scripts would use it.

    with Orchestrator("http://bank:8702", token) as bank:
        job = bank.submit({...job spec...})
        final = bank.wait(job["job_id"], progress=ProgressLine().job)   # vfl.progress
        bank.predict(job["job_id"], ["C000017", "C000042"])

Errors come back as :class:`~vfl.errors.PeerRefused` with the service's own
message, or :class:`~vfl.errors.TransportError` when it cannot be reached.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import httpx

from vfl.errors import JobError, PeerRefused, TransportError
from vfl.service.client import error_detail

TERMINAL = {"succeeded", "failed", "cancelled", "damaged"}


class Orchestrator:
    def __init__(self, url: str, token: str, *, timeout: float = 60.0, verify: Any = True) -> None:
        """``verify`` is True (system CAs), a path to the federation's ``ca.pem``, or an SSL context."""
        self.url = url.rstrip("/")
        if isinstance(verify, (str, Path)):
            verify = ssl.create_default_context(cafile=str(verify))
        self._client = httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}, verify=verify
        )

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.url}{path}: {exc}") from exc
        if response.status_code >= 400:
            raise PeerRefused(f"{method} {path} -> {response.status_code}: {error_detail(response)}", response.status_code)
        return response

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self._request(method, path, body).json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/jobs", spec)

    def status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def model(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}/model")

    def predict(self, job_id: str, ids: list[str]) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/predict", {"ids": ids})

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
