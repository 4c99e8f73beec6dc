"""The orchestration API's contract on the FastAPI side: which statuses each route documents, and the two documents.

Every orchestration route declares its answer's model (:mod:`vfl.api.models`) and,
with :func:`errors`, the error statuses it may answer, each with the one error
body ``{detail, error}``. The service serves two OpenAPI documents
(:func:`install`):

* ``/openapi.json``: the orchestration API, for this party's operators and their
  tooling (and what ``/docs`` shows): every route but ``/v1/peer/...``;
* ``/peer/openapi.json``: the peer protocol, the routes other parties' services
  call over mTLS.

Each has its own version (:data:`vfl.api.ORCHESTRATION_API_VERSION`,
:data:`vfl.api.PEER_PROTOCOL_VERSION`); ``docs/api-contract.md`` says how they move.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.responses import JSONResponse

from vfl.api import ORCHESTRATION_API_VERSION, PEER_PROTOCOL_VERSION
from vfl.api.models import ErrorBody
from vfl.service.http.errors import PEER_PREFIX

#: What each error status means on an orchestration route (the error classes it stands for).
MEANINGS: dict[int, str] = {
    400: "The request does not fit the protocol or the data (ProtocolError, CryptoError, PSIError).",
    401: "No orchestration token, or a wrong one (BadToken); the answer carries WWW-Authenticate: Bearer.",
    403: "The caller may not do this: a dashboard session that reads only, or a write without the same-origin "
         "header (Forbidden).",
    404: "No such job, batch, model name or ID here, or this service does not offer the route "
         "(UnknownJobError, UnknownIDError, NotServedHere).",
    409: "The job or batch is not in a state that allows this (JobError): cancel a job before deleting it, "
         "only a succeeded job predicts, a finished job cannot be cancelled.",
    413: "The request body is larger than this service accepts (BodyTooLarge).",
    422: "The request is invalid: a field is missing or wrong (ValidationError), the spec or a limit refuses it "
         "(ConfigError, DataError, LimitExceeded, IdempotencyKeyReused).",
    429: "Too many wrong tokens from this address, or too many requests (RateLimited): retry later.",
    502: "A peer could not be reached or refused (TransportError, PeerRefused, PeerUnreachable): retry later.",
}

_SCHEMA_REF = "#/components/schemas/"

#: Every authenticated orchestration route: a wrong token, a throttled address, a read-only session.
AUTH = (401, 403, 429)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: each error status with its meaning and the error body's model."""
    return {status: {"model": ErrorBody, "description": MEANINGS[status]} for status in sorted(set(statuses))}


def operation_id(route: APIRoute) -> str:
    """A route's operationId is its function's name (``submit``, ``job_status``): what a generated client calls it.

    Part of the contract: renaming a route's function renames the generated client's function (a break)."""
    return route.name


def _full_document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=ORCHESTRATION_API_VERSION, description=app.description,
                           routes=app.routes, tags=TAGS)
    # FastAPI documents its own list-of-dicts 422 on every route with parameters; this service answers
    # every 422 with the one error body instead (vfl.service.http.errors.invalid_request).
    error_body = {"description": MEANINGS[422],
                  "content": {"application/json": {"schema": {"$ref": f"{_SCHEMA_REF}ErrorBody"}}}}
    for item in document["paths"].values():
        for operation in item.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None and "HTTPValidationError" in str(answer):
                operation["responses"]["422"] = error_body
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                if status >= "400" and content and "application/json" not in content:
                    # A route that answers HTML or a file documents its errors under that media type; every
                    # error is the JSON error body all the same.
                    answer["content"] = {"application/json": next(iter(content.values()))}
            if "401" in operation.get("responses", {}) and not operation.get("security"):
                operation["security"] = [{"bearer": []}]
    document.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "ErrorBody", ErrorBody.model_json_schema(ref_template=_SCHEMA_REF + "{model}"))
    return document


def _split(document: dict[str, Any], *, peer: bool) -> dict[str, Any]:
    """The paths of one side of ``document`` (the peer routes or the others), with only the schemas they use.

    Split after FastAPI wrote the whole document, not by filtering routes: how FastAPI keeps its routes
    (included routers are resolved lazily in newer versions) is its own business.
    """
    paths = {path: item for path, item in document["paths"].items() if path.startswith(PEER_PREFIX) == peer}
    schemas = document.get("components", {}).get("schemas", {})
    used: set[str] = set()
    pending = [paths]
    while pending:  # follow every $ref, through the schemas it names
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
                name = ref[len(_SCHEMA_REF):]
                if name not in used and name in schemas:
                    used.add(name)
                    pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    out = {key: value for key, value in document.items() if key not in ("paths", "components")}
    out["paths"] = paths
    if used:
        out["components"] = {"schemas": {name: schemas[name] for name in sorted(used)}}
    if not peer:  # operators send the orchestration token; peers are known by their client certificate
        out.setdefault("components", {})["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "The service's orchestration token ([service] token_file); /metrics also takes the "
                           "scrape token. The dashboard's session cookie works too, for the dashboard's own calls"}}
    return out


def orchestration_document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = _split(_full_document(app), peer=False)
        document["info"]["x-peer-protocol"] = {"version": PEER_PROTOCOL_VERSION, "document": "/peer/openapi.json"}
        app.openapi_schema = document
    return app.openapi_schema


def peer_document(app: FastAPI) -> dict[str, Any]:
    document = getattr(app.state, "peer_openapi", None)
    if document is None:
        document = _split(_full_document(app), peer=True)
        document["info"] = {
            "title": f"{app.title}: peer protocol", "version": PEER_PROTOCOL_VERSION,
            "description": "The routes other parties' services call, over mutual TLS: each caller is known by its "
                           "client certificate, signed by the federation's CA. Not for operators: see /openapi.json.",
        }
        document.pop("tags", None)
        app.state.peer_openapi = document
    return document


#: The orchestration document's tags, in the order /docs shows them.
TAGS: list[dict[str, str]] = [
    {"name": "orchestration", "description": "Jobs: submit, watch, cancel, resume, delete; predictions and "
                                             "batch scoring at party B; health."},
    {"name": "models", "description": "Model versions, the names that serve them, their parts and scorecards."},
    {"name": "lending", "description": "Multi-lender queries that reveal no applicant's ID."},
    {"name": "monitoring", "description": "Prometheus metrics."},
]


def install(app: FastAPI) -> None:
    """Serve the orchestration document at /openapi.json and the peer protocol's at /peer/openapi.json."""
    app.openapi = lambda: orchestration_document(app)  # type: ignore[method-assign]

    async def peer_openapi() -> JSONResponse:
        return JSONResponse(peer_document(app))

    app.add_api_route("/peer/openapi.json", peer_openapi, include_in_schema=False)


__all__ = ["AUTH", "MEANINGS", "TAGS", "errors", "install", "orchestration_document", "peer_document"]
