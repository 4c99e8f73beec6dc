"""Schemathesis fuzzes party B's orchestration API, as real `vfl serve` processes with TLS, with its token.

Every operation of ``/openapi.json`` gets property-based requests (valid and
invalid bodies, parameters and IDs), bounded to a few examples each so the
whole run stays under a minute. The goals of issue 31: no 500, no answer that
breaks its declared schema or content type, no status the operation does not
declare. One trained job is there before the fuzzing starts, so the routes of a
succeeded job (model, predict, batch) answer something other than 404 too.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from vfl.demo.services import running_services, wait_healthy, write_demo_files
from vfl.orchestrate import Orchestrator

schemathesis = pytest.importorskip("schemathesis", reason="Schemathesis is in the test extra: pip install -e '.[test]'")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402  (Schemathesis brings Hypothesis)
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Examples per operation: about 25 operations x this many requests, each a few milliseconds.
MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Any:
    workdir = tmp_path_factory.mktemp("fuzz")
    setup = write_demo_files(workdir, population=300, key_bits=1024, training={"epochs": 2})
    with running_services(workdir) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, workdir, verify=setup["verify"])
        with Orchestrator(setup["urls"]["party-b"], setup["token"], verify=setup["verify"]) as bank:
            bank.wait(bank.submit(setup["job"])["job_id"], timeout=240)
        yield setup


def test_fuzzed_orchestration_calls_get_declared_answers(federation: Any) -> None:
    # Arrange: the live document, every operation in it (driven by hand: Schemathesis' pytest plugin does not
    # support pytest 9 yet).
    url = federation["urls"]["party-b"]
    context = ssl.create_default_context(cafile=str(federation["verify"]))
    document = httpx.get(f"{url}/openapi.json", verify=context, timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=url)
    headers = {"Authorization": f"Bearer {federation['token']}"}
    failures: dict[str, str] = {}
    calls = 0

    # Act: a bounded number of generated requests per operation.
    for found in schema.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def fuzz(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(headers=headers, verify=str(federation["verify"]), checks=CHECKS, timeout=30)

        try:
            fuzz()
        except Exception as exc:  # one report per operation, then the next one
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"

    # Assert
    assert calls >= len(document["paths"]) * 2, calls
    assert not failures, "\n\n".join(f"{label}: {problem}" for label, problem in failures.items())
