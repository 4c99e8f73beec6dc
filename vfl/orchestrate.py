"""A small client for the orchestration API, as Airflow tasks or scripts would use it.

    with Orchestrator("http://bank:8702", token) as bank:
        job = bank.submit({...job spec...})
        final = bank.wait(job["job_id"], progress=print_progress)
        bank.predict(job["job_id"], ["C000017", "C000042"])

Errors come back as :class:`~vfl.errors.PeerRefused` with the service's own
message, or :class:`~vfl.errors.TransportError` when it cannot be reached.
"""

from __future__ import annotations

import ssl
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import httpx

from vfl.errors import JobError, PeerRefused, TransportError
from vfl.service.client import error_detail

TERMINAL = {"succeeded", "failed", "cancelled"}


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

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.url}{path}: {exc}") from exc
        if response.status_code >= 400:
            raise PeerRefused(f"{method} {path} -> {response.status_code}: {error_detail(response)}", response.status_code)
        return response.json()

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


def progress_line(status: dict[str, Any]) -> str:
    """One human line for a job status: state, stage, epoch and latest loss."""
    loss = status.get("loss_history") or []
    parts = [f"{status['job_id']}: {status['state']}", f"stage {status.get('stage')}"]
    if status.get("state") == "training" or status.get("epoch"):
        parts.append(f"epoch {status.get('epoch', 0)}/{status.get('max_epochs', '?')}")
    if loss:
        parts.append(f"loss {loss[-1]:.5f}")
    return "  ".join(parts)


def print_progress(status: dict[str, Any], stream: Any = sys.stderr) -> None:
    """Rewrite one status line in place on a terminal; one line per change otherwise."""
    line = progress_line(status)
    if getattr(stream, "isatty", lambda: False)():
        stream.write("\r\033[K" + line)
        if status["state"] in TERMINAL:
            stream.write("\n")
    elif line != getattr(print_progress, "_last", None):
        stream.write(line + "\n")
    print_progress._last = line  # type: ignore[attr-defined]
    stream.flush()
