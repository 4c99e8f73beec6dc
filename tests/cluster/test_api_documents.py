"""The two OpenAPI documents each service serves: the orchestration API and the peer protocol, apart and typed."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from arbiter.app import create_app as create_arbiter_app
from parties.app import create_app as create_party_app
from tests.helpers import NAMES, URLS
from vfl.api import ORCHESTRATION_API_VERSION, PEER_PROTOCOL_VERSION
from vfl.demo.services import write_demo_files
from vfl.service.config import load_config

#: Operations that answer something other than JSON on success.
NOT_JSON = {"/v1/jobs/{job_id}/report", "/v1/jobs/{job_id}/score-batch/{batch_id}/result", "/metrics"}


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("documents")
    write_demo_files(workdir, urls=URLS, tls=False, population=60, key_bits=1024)

    async def fetch():
        out = {}
        for name in NAMES:
            config = load_config(workdir / f"{name}.toml")
            app = (create_arbiter_app if name == "arbiter" else create_party_app)(config)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=URLS[name]) as client:
                out[name] = ((await client.get("/openapi.json")).json(), (await client.get("/peer/openapi.json")).json())
        return out

    return asyncio.run(fetch())


@pytest.mark.parametrize("name", NAMES)
def test_the_orchestration_and_peer_documents_are_apart_and_versioned(documents, name):
    orchestration, peer = documents[name]

    assert orchestration["info"]["version"] == ORCHESTRATION_API_VERSION
    assert orchestration["info"]["x-peer-protocol"] == {"version": PEER_PROTOCOL_VERSION,
                                                        "document": "/peer/openapi.json"}
    assert peer["info"]["version"] == PEER_PROTOCOL_VERSION
    assert orchestration["paths"] and not [p for p in orchestration["paths"] if p.startswith("/v1/peer/")]
    assert peer["paths"] and all(p.startswith("/v1/peer/") for p in peer["paths"])
    assert "/v1/health" in orchestration["paths"] and "/v1/jobs/{job_id}" in orchestration["paths"]
    assert "bearer" in orchestration["components"]["securitySchemes"]
    assert "securitySchemes" not in peer.get("components", {})  # peers are known by their certificates


@pytest.mark.parametrize("name", NAMES)
def test_every_orchestration_answer_is_typed_and_every_error_is_the_error_body(documents, name):
    orchestration, _ = documents[name]
    schemas = orchestration["components"]["schemas"]
    untyped, untyped_errors, unguarded = [], [], []

    for path, item in orchestration["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            answers = operation["responses"]
            for status, answer in answers.items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                if status.startswith("2") and path not in NOT_JSON and "$ref" not in schema:
                    untyped.append(where)
                if status >= "400" and schema.get("$ref") != "#/components/schemas/ErrorBody" and not (
                        path == "/v1/jobs/{job_id}" and method == "delete" and status == "502"):
                    untyped_errors.append(f"{where} {status}")
            if path != "/v1/health" and not {"401", "429"} <= set(answers):
                unguarded.append(where)
            if "security" in operation:
                assert operation["security"] == [{"bearer": []}], where
            assert not [p for p in operation.get("parameters", []) if p["name"].lower() == "authorization"], where

    assert untyped == [] and untyped_errors == [] and unguarded == []
    assert "HTTPValidationError" not in schemas  # every 422 is the error body, not FastAPI's list of dicts
    for model in ("ErrorBody", "Health", "JobStatus") if name == "party-b" else ("ErrorBody", "Health"):
        assert schemas[model].get("examples"), model


def test_party_bs_document_declares_the_submit_and_delete_statuses(documents):
    orchestration, _ = documents["party-b"]
    submit = orchestration["paths"]["/v1/jobs"]["post"]["responses"]
    delete = orchestration["paths"]["/v1/jobs/{job_id}"]["delete"]["responses"]

    assert {"200", "201", "401", "403", "404", "409", "413", "422", "429", "502"} <= set(submit)
    assert "Idempotency-Key" in submit["200"]["description"]
    assert {"200", "409", "502"} <= set(delete)
    assert len(delete["502"]["content"]["application/json"]["schema"]["anyOf"]) == 2  # partial, or unreachable
    operation_ids = {op["operationId"] for item in orchestration["paths"].values() for op in item.values()}
    assert {"submit", "job_status", "list_jobs", "cancel", "resume", "delete", "predict", "score_batch",
            "promote", "health"} <= operation_ids
