"""Every answer an in-process service sends to an orchestration call is checked against its OpenAPI document.

:class:`~tests.helpers.Router` (the transport of every test in tests/cluster)
hands each answer to :func:`check_answer`: the route's operation must declare the
status, and a JSON answer must validate against the schema the document gives
for it. So every cluster test is also a contract test of the routes it calls,
and a route that drifts from its declared model fails the test that called it.
Peer routes (``/v1/peer/...``) are the peer protocol's document and not checked
here; neither are the dashboard's pages, nor answers the gate gives before a route
runs (401 and 413 on any path).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema_rs  # Schemathesis' validator (test extra): in Rust, so checking every answer costs little

#: Routes outside the orchestration document (the dashboard, /docs, static files, the documents themselves).
UNCHECKED = re.compile(r"^/(ui|docs|static|openapi\.json|peer/openapi\.json)(/|$)|^/v1/peer/")


class ContractViolation(AssertionError):
    """A service answered what its OpenAPI document does not declare."""


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


class _Compiled:
    """One document's operations by path pattern, and a validator per answer schema (built once, on first use)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document  # held, so that its id() stays its own
        # Fixed paths before templated ones: /v1/lending-query is not /v1/lending/{x}.
        paths = sorted(document["paths"].items(), key=lambda item: item[0].count("{"))
        self.operations = [(_template(path), method.upper(), operation)
                           for path, item in paths for method, operation in item.items()]
        self.validators: dict[str, Any] = {}

    def validator(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        if key not in self.validators:
            self.validators[key] = jsonschema_rs.Draft202012Validator(
                {**schema, "components": self.document.get("components", {})})
        return self.validators[key]


_COMPILED: dict[int, _Compiled] = {}


def _compiled(document: dict[str, Any]) -> _Compiled:
    found = _COMPILED.get(id(document))
    if found is None or found.document is not document:
        found = _COMPILED[id(document)] = _Compiled(document)
    return found


def check_answer(document: dict[str, Any], request: httpx.Request, status: int, content_type: str,
                 body: bytes) -> None:
    """Raise :class:`ContractViolation` when an answer breaks the operation's declared statuses or schema."""
    path, method = request.url.path, request.method
    if UNCHECKED.match(path):
        return
    compiled = _compiled(document)
    operation = next((op for pattern, verb, op in compiled.operations
                      if verb == method and pattern.match(path)), None)
    if operation is None:
        if status in (404, 405):  # no such route: the framework's answer, not a route's
            return
        raise ContractViolation(f"{method} {path} answered {status}, but the document has no such operation")
    declared = operation.get("responses", {})
    answer = declared.get(str(status))
    if answer is None:
        raise ContractViolation(f"{method} {path} answered {status}, which its operation does not declare "
                                f"(declared: {sorted(declared)}): {body[:300]!r}")
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    if schema is None or not content_type.startswith("application/json"):
        return
    validator = compiled.validator(schema)
    answer_json = json.loads(body)
    if validator.is_valid(answer_json):
        return
    errors = list(validator.iter_errors(answer_json))
    if errors:
        problems = "; ".join(f"{'/'.join(str(p) for p in e.instance_path) or 'body'}: {e.message[:200]}"
                             for e in errors[:5])
        raise ContractViolation(f"{method} {path} answered {status} that breaks its declared schema: {problems}")


__all__ = ["ContractViolation", "check_answer"]
