"""vfl.api.models: the answers' models agree with the service's own states, keep additions, and refuse drift."""

from __future__ import annotations

from typing import get_args

import httpx
import pytest

from vfl.api.models import BatchStateName, JobStateName, JobStatus, TERMINAL_STATES, parse
from vfl.errors import ContractMismatch, PeerRefused
from vfl.orchestrate import Orchestrator, retryable
from vfl.service.lifecycle import FINAL, JobState
from vfl.service.serving.batch import BatchState


def test_the_api_states_are_the_lifecycles_states():
    assert set(get_args(JobStateName)) == {state.value for state in JobState}
    assert TERMINAL_STATES == {state.value for state in FINAL}
    assert set(get_args(BatchStateName)) == set(get_args(BatchState))


def test_a_field_a_newer_service_adds_is_kept_not_refused():
    status = parse(JobStatus, {"job_id": "job-1", "role": "B", "state": "training", "stage": "a-new-stage",
                               "peer_liveness": {"party-a": "up"}}, "GET /v1/jobs/job-1")

    assert status.stage == "a-new-stage"
    assert status.model_extra == {"peer_liveness": {"party-a": "up"}}


def test_an_answer_that_breaks_its_model_names_the_field_and_the_fix():
    with pytest.raises(ContractMismatch) as raised:
        parse(JobStatus, {"job_id": "job-1", "role": "B", "state": "sleeping", "stage": "psi"}, "GET /v1/jobs/job-1")

    assert "state" in str(raised.value) and "not a JobStatus" in str(raised.value)
    assert "docs/api-contract.md" in str(raised.value)
    assert not retryable(raised.value)  # the same answer comes back however often it is asked


def test_the_client_parses_every_answer_and_keeps_the_json_as_sent():
    answers = {
        "/v1/jobs/job-1": {"job_id": "job-1", "role": "B", "state": "succeeded", "stage": "done", "extra": 1},
        "/v1/jobs/job-2": {"job_id": "job-2", "state": "succeeded"},  # no role, no stage: an older or broken API
        "/v1/jobs/job-3": None,
    }

    def service(request: httpx.Request) -> httpx.Response:
        body = answers[request.url.path]
        if body is None:
            return httpx.Response(503, json={"detail": "restarting", "error": "NotReady"})
        return httpx.Response(200, json=body)

    with Orchestrator("http://bank.test", "token", transport=httpx.MockTransport(service)) as bank:
        good = bank.status("job-1")
        with pytest.raises(ContractMismatch) as broken:
            bank.status("job-2")
        with pytest.raises(PeerRefused) as unavailable:
            bank.status("job-3")

    assert good == answers["/v1/jobs/job-1"]
    assert "role" in str(broken.value) and "stage" in str(broken.value)
    assert unavailable.value.status == 503 and unavailable.value.error == "NotReady"
    assert retryable(unavailable.value)
