"""tests/contract.py, which every cluster test's transport runs: it catches an undeclared status and a drifted answer."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.contract import ContractViolation, check_answer

DOCUMENT = {
    "paths": {
        "/v1/jobs/{job_id}": {"get": {"responses": {
            "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
            "404": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
        }}},
        "/v1/jobs/{job_id}/report": {"get": {"responses": {"200": {"content": {"text/html": {}}}}}},
    },
    "components": {"schemas": {
        "Job": {"type": "object", "required": ["job_id", "state"],
                "properties": {"job_id": {"type": "string"}, "state": {"enum": ["pending", "succeeded"]}}},
        "ErrorBody": {"type": "object", "required": ["detail", "error"]},
    }},
}


def answer(path: str, status: int, body: object, content_type: str = "application/json") -> None:
    check_answer(DOCUMENT, httpx.Request("GET", f"http://b.test{path}"), status, content_type,
                 json.dumps(body).encode() if content_type == "application/json" else str(body).encode())


def test_declared_answers_pass_and_additions_are_allowed():
    answer("/v1/jobs/job-1", 200, {"job_id": "job-1", "state": "pending", "peer_liveness": {}})
    answer("/v1/jobs/job-1", 404, {"detail": "no job", "error": "UnknownJobError"})
    answer("/v1/jobs/job-1/report", 200, "<html></html>", "text/html")
    answer("/v1/peer/jobs/job-1/state", 500, {"anything": 1})  # the peer protocol has its own document


def test_an_undeclared_status_fails():
    with pytest.raises(ContractViolation, match="answered 409, which its operation does not declare"):
        answer("/v1/jobs/job-1", 409, {"detail": "x", "error": "JobError"})


def test_an_answer_that_breaks_its_schema_fails_naming_the_field():
    with pytest.raises(ContractViolation, match="state"):
        answer("/v1/jobs/job-1", 200, {"job_id": "job-1", "state": "sleeping"})
    with pytest.raises(ContractViolation, match="detail"):
        answer("/v1/jobs/job-1", 404, {"error": "UnknownJobError"})
