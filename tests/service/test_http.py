"""The HTTP layer against one real service whose peers are fakes: routes per role, errors, authentication."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import APIRouter

import vfl.errors as errors
from vfl.service.http.app import ROUTERS


def routes_of(app) -> set[tuple[str, str]]:
    def walk(routes):
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI keeps included routers as they are
                yield from walk(route.original_router.routes)
            for method in getattr(route, "methods", None) or ():
                yield method, route.path

    return set(walk(app.routes))


def test_each_role_serves_its_own_routes_and_no_other(service):
    bank, shop, arbiter = (service(name).app for name in ("party-b", "party-a", "arbiter"))

    b, a, c = routes_of(bank), routes_of(shop), routes_of(arbiter)

    assert ("POST", "/v1/jobs") in b and ("POST", "/v1/jobs") not in a | c  # only B submits
    assert ("POST", "/v1/peer/jobs") in a & c and ("POST", "/v1/peer/jobs") not in b  # B registers, is not registered
    assert ("POST", "/v1/peer/jobs/{job_id}/scores") in a and ("POST", "/v1/peer/jobs/{job_id}/scores") not in b | c
    assert ("POST", "/v1/peer/jobs/{job_id}/interrupted") in b - a - c
    assert not any(path.startswith(("/v1/models", "/v1/lending")) for _, path in c)  # the arbiter holds no data
    assert {("GET", "/v1/health"), ("GET", "/metrics"), ("GET", "/ui"), ("POST", "/v1/peer/ledger/sign")} <= a & b & c
    shared = {("POST", "/v1/peer/jobs/{job_id}/messages/{kind}"), ("GET", "/v1/peer/jobs/{job_id}/state")}
    assert shared <= a & b & c


def test_the_router_table_mounts_each_router_once_per_role():
    for kind, routers in ROUTERS.items():
        assert len(set(map(id, routers))) == len(routers), kind
        assert all(isinstance(router, APIRouter) for router in routers)


def error_classes() -> list[type[errors.VFLError]]:
    classes = [getattr(errors, name) for name in errors.__all__]
    return [c for c in classes if isinstance(c, type) and issubclass(c, errors.VFLError) and c is not errors.PeerRefused
            and c is not errors.PeerUnreachable]


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_every_error_answers_with_its_class_status_and_name(service, run, cls):
    bank = service("party-b")
    router = APIRouter()

    @router.get("/v1/raise")
    async def raise_it() -> None:
        raise cls("it went wrong in /home/bank/secret.csv")

    bank.app.include_router(router)

    async def call():
        async with bank.orchestrator() as client:
            return await client.get("/v1/raise")

    answer = run(call())

    assert answer.status_code == cls.http_status
    assert answer.json() == {"detail": "it went wrong in /home/bank/secret.csv", "error": cls.__name__}
    assert ("WWW-Authenticate" in answer.headers) == issubclass(cls, errors.Unauthorized)


def test_the_statuses_follow_the_tree():
    assert errors.UnknownIDError.http_status == 404 and errors.DataError.http_status == 422
    assert errors.RateLimited.http_status == 429 and errors.LimitExceeded.http_status == 422
    assert errors.NotReady.http_status == errors.OutOfOrderError.http_status == 409
    assert errors.PeerUnreachable.http_status == errors.TransportError.http_status == 502
    assert errors.BadToken.http_status == 401 and errors.NotAPeer.http_status == 403
    assert errors.VFLError.http_status == 500


def test_credentials_are_checked_before_any_work(service, run):
    bank = service("party-b")

    async def calls():
        async with bank.orchestrator() as client:
            return {
                "no token": await client.get("/v1/jobs", headers={"Authorization": ""}),
                "wrong token": await client.get("/v1/jobs", headers={"Authorization": "Bearer nope"}),
                "token": await client.get("/v1/jobs"),
                "stranger as peer": await client.get("/v1/peer/ledger/head", headers={"X-VFL-Party": "mallory"}),
                "no name as peer": await client.get("/v1/peer/ledger/head", headers={"Authorization": ""}),
            }

    seen = run(calls())

    assert seen["no token"].status_code == seen["wrong token"].status_code == 401
    assert seen["wrong token"].json()["error"] == "BadToken"
    assert seen["token"].status_code == 200 and seen["token"].json() == {"jobs": []}
    assert seen["stranger as peer"].status_code == 403 and seen["stranger as peer"].json()["error"] == "NotAPeer"
    assert seen["no name as peer"].status_code == 403


def test_many_concurrent_requests_do_not_depend_on_how_they_interleave(service, run):
    """The auth dependencies are async: nothing may rely on the thread hop sync ones used to take."""
    bank = service("party-b")

    async def many():
        async with bank.orchestrator() as client:
            return await asyncio.gather(*(client.get("/v1/jobs", headers={"Authorization": f"Bearer {t}"})
                                          for t in [bank.token, "wrong"] * 20))

    answers = run(many())

    assert [a.status_code for a in answers] == [200, 401] * 20
