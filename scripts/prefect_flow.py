"""A Prefect flow that trains a vfl model at party B and publishes it: submit, wait, promote, with retries.

    pip install -e '.[orchestrate]'            # Prefect 3
    VFL_TOKEN=... python scripts/prefect_flow.py --url https://bank:8702 --ca ca.pem --spec job.json --name risk

Each step is a Prefect task that calls party B's orchestration API through
:class:`vfl.orchestrate.Orchestrator`, which parses every answer through the
API's typed models (:mod:`vfl.api.models`). A step that meets an answer worth
repeating later (502, 503 or 504: a peer or party B itself could not answer
now; or no connection at all) is retried by Prefect; any other refusal (401,
404, 409, 422...) fails the flow at once with the service's own message,
because repeating it would get the same answer.

The submit carries an Idempotency-Key (by default the flow run's id), so a
retried submit whose first answer was lost returns the first job instead of
starting a second one. Waiting is a task of its own, so a status poll that
fails for a moment is retried without submitting again. See docs/orchestrators.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from vfl.orchestrate import Orchestrator, retryable

#: How often, and how long apart, a step is tried again after a 502/503/504 or a lost connection.
RETRIES = 5
RETRY_DELAY_SECONDS = 10.0


def retry_when_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry only what may succeed later (vfl.orchestrate.retryable)."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, raised again by the failed state
        return retryable(exc)
    return False


def _client(url: str, token: str, ca: str | None) -> Orchestrator:
    return Orchestrator(url, token, verify=ca if ca else True)


@task(name="submit", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_when_unavailable)
def submit(url: str, token: str, ca: str | None, spec: dict[str, Any], idempotency_key: str) -> str:
    """Submit the job at party B; a repeat with the same key returns the first job."""
    with _client(url, token, ca) as bank:
        job = bank.submit(spec, idempotency_key=idempotency_key)
    get_run_logger().info("job %s submitted (state %s)", job["job_id"], job["state"])
    return job["job_id"]


@task(name="wait", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_when_unavailable)
def wait(url: str, token: str, ca: str | None, job_id: str, timeout: float, interval: float) -> dict[str, Any]:
    """Poll the job until it ends; a failed or cancelled job fails the task (JobError: not retried)."""
    logger = get_run_logger()
    seen: list[tuple[str, int]] = []

    def progress(status: dict[str, Any]) -> None:
        step = (status["stage"], status.get("epoch") or 0)
        if not seen or seen[-1] != step:
            seen.append(step)
            logger.info("job %s: %s, epoch %s of %s", job_id, status["stage"], status.get("epoch"),
                        status.get("max_epochs"))

    with _client(url, token, ca) as bank:
        return bank.wait(job_id, progress=progress, timeout=timeout, interval=interval)


@task(name="publish", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_when_unavailable)
def publish(url: str, token: str, ca: str | None, name: str, job_id: str) -> dict[str, Any]:
    """Serve the job's model under ``name`` (the version it served before goes on its history)."""
    with _client(url, token, ca) as bank:
        promoted = bank.promote(name, job_id)
    get_run_logger().info("model %r now serves job %s (history %s)", name, job_id, promoted["history"])
    return promoted


@flow(name="vfl-train-and-publish")
def train_and_publish(url: str, token: str, spec: dict[str, Any], name: str, ca: str | None = None,
                      idempotency_key: str | None = None, timeout: float = 24 * 3600, interval: float = 2.0,
                      retry_delay_seconds: float = RETRY_DELAY_SECONDS) -> dict[str, Any]:
    """Train a model with ``spec`` at party B (``url``) and serve it under ``name``; returns the final status
    and the promotion."""
    key = idempotency_key or f"prefect-{flow_run.get_id()}"
    retrying = {"retry_delay_seconds": retry_delay_seconds}
    job_id = submit.with_options(**retrying)(url, token, ca, spec, key)
    final = wait.with_options(**retrying)(url, token, ca, job_id, timeout, interval)
    promoted = publish.with_options(**retrying)(url, token, ca, name, job_id)
    return {"job": final, "model": promoted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="party B's service, say https://bank:8702")
    parser.add_argument("--spec", required=True, type=Path, help="the job spec (JSON), as POST /v1/jobs takes it")
    parser.add_argument("--name", required=True, help="the model name to serve the trained job under")
    parser.add_argument("--ca", help="the federation's ca.pem (default: the system's CAs)")
    parser.add_argument("--idempotency-key", help="default: the flow run's id")
    args = parser.parse_args(argv)
    token = os.environ.get("VFL_TOKEN")
    if not token:
        print("set VFL_TOKEN to party B's orchestration token", file=sys.stderr)
        return 2
    result = train_and_publish(args.url, token, json.loads(args.spec.read_text()), args.name, ca=args.ca,
                               idempotency_key=args.idempotency_key)
    print(json.dumps({"job_id": result["job"]["job_id"], "model": result["model"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
