"""Multi-lender queries over the full services (in one process, through httpx's ASGI transport).

A querier ``bank`` and three lenders, each a complete party app on its own
data_dir, talking over HTTP as they would over the network (plain HTTP: the
mTLS path is in test_lending_processes.py). Answers are checked against the
lenders' borrower files.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from gmpy2 import mpz

from parties.app import create_app
from psi.hashing import fdh
from tests.helpers import Router
from vfl.demo.lending import QUERIER, borrowers_of, lender_names, write_lending_files
from vfl.errors import ConfigError
from vfl.service.config import load_config
from vfl.service.node import Node

NAMES = [QUERIER, *lender_names(3)]
URLS = {name: f"http://{name}.test" for name in NAMES}
BITS = 1024


class Recorder(Router):
    """A router that keeps every request sent to a lender: the lender's whole transcript."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("lender-"):
            self.seen.append((request.url.host.split(".")[0], str(request.url), await request.aread()))
        return await super().handle_async_request(request)


class Federation:
    def __init__(self, workdir: Path, setup: dict[str, Any]) -> None:
        self.workdir, self.setup = workdir, setup
        self.router = Recorder()
        self.nodes: dict[str, Node] = {}

    async def open(self) -> Federation:
        for name in NAMES:
            config = load_config(self.workdir / f"{name}.toml")
            node = Node(config, transport=self.router)
            self.router.apps[f"{name}.test"] = create_app(config, node=node)
            await node.startup()
            self.nodes[name] = node
        for name in lender_names(3):
            for _ in range(600):
                if self.nodes[name].lending.lender.tag_set is not None:
                    break
                await asyncio.sleep(0.05)
            assert self.nodes[name].lending.lender.tag_set is not None, f"{name} published no tag set"
        return self

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.shutdown()

    def client(self, name: str = QUERIER) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.router, base_url=URLS[name], timeout=60,
                                 headers={"Authorization": f"Bearer {self.setup['tokens'][name]}"})

    def peer(self, name: str, caller: str = QUERIER) -> httpx.AsyncClient:
        """A peer call to ``name`` as ``caller`` (plain HTTP: the party header names the caller)."""
        return httpx.AsyncClient(transport=self.router, base_url=URLS[name], timeout=60,
                                 headers={"X-VFL-Party": caller})

    async def query(self, ids: list[str], answer: str = "lenders", **extra: Any) -> httpx.Response:
        async with self.client() as bank:
            return await bank.post("/v1/lending-query", json={"ids": ids, "answer": answer, **extra})


def files(tmp_path: Path, lenders: dict[str, dict[str, Any]] | None = None, **lending: Any) -> dict[str, Any]:
    """The demo's layout on plain HTTP; ``lenders`` adds [lending] keys to single lenders."""
    setup = write_lending_files(tmp_path, population=600, borrowers=200, key_bits=BITS, tls=False, urls=URLS,
                                lending=lending)
    for name, keys in (lenders or {}).items():
        path = tmp_path / f"{name}.toml"
        path.write_text(path.read_text().replace("[lending]\n", "[lending]\n" + "".join(
            f"{k} = {json.dumps(v)}\n" for k, v in keys.items()), 1))
    return setup


def expected(ids: list[str], held: dict[str, set[str]]) -> list[list[str]]:
    return [[name for name in lender_names(3) if x in held[name]] for x in ids]


def audit_lines(workdir: Path, name: str) -> str:
    return (workdir / "data" / name / "lending" / "audit.log").read_text()


def test_answers_match_the_borrower_files_and_logs_hold_no_ids(tmp_path, run):
    setup = files(tmp_path)
    held = borrowers_of(setup["borrowers"])
    ids = setup["population"][:60] + [setup["population"][0]]  # one asked twice: answered twice, paid once

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        try:
            listed = (await federation.query(ids)).json()
            counted = (await federation.query(ids[:20], "count")).json()
            async with federation.client("lender-1") as lender:
                status = (await lender.get("/v1/lending")).json()
            return listed, counted, status
        finally:
            await federation.close()

    listed, counted, status = run(scenario())

    truth = expected(ids, held)
    assert [r["found_at"] for r in listed["results"]] == truth
    assert [r["id"] for r in listed["results"]] == ids
    assert any(len(t) >= 2 for t in truth) and any(not t for t in truth)  # the sample is not trivial
    assert counted["results"] == [{"id": x, "count": len(t)} for x, t in zip(ids[:20], truth[:20])]
    assert "found_at" not in json.dumps(counted)
    assert status["lender"]["queriers"]["bank"]["used"] == 60 + 20
    assert status["lender"]["tag_set"]["size"] == 200
    for name in NAMES:
        text = audit_lines(tmp_path, name)
        assert not re.search(r"C\d{6}", text), f"an ID in {name}'s audit log"
    lender_log = audit_lines(tmp_path, "lender-1")
    assert re.search(r"^\S+Z signed 60 blinded values for bank under key \w+ \(epoch 1\); 60 of 1000", lender_log, re.M)
    assert "tag set" in lender_log and "sent to bank" in lender_log
    assert "lending query of 60 IDs asked of lender-1, lender-2, lender-3 (answer=lenders)" in audit_lines(tmp_path, QUERIER)


def test_a_lenders_transcript_shows_only_blinded_values(tmp_path, run):
    setup = files(tmp_path)
    asked = setup["population"][100:130]

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        try:
            answer = await federation.query(asked)
            return federation.router.seen, answer.json(), {n: federation.nodes[n].lending.lender.tag_set for n in lender_names(3)}
        finally:
            await federation.close()

    seen, answer, tag_sets = run(scenario())

    assert len(answer["results"]) == 30
    for lender in lender_names(3):
        transcript = [(url, body) for host, url, body in seen if host == lender]
        # What reached the lender: one tag-set fetch and one blind-sign request, nothing after (not the answer).
        assert [url.rsplit("/", 1)[1] for url, _ in transcript] == ["tag-set", "blind-sign"]
        text = " ".join(url + body.decode() for url, body in transcript)
        assert not any(x in text for x in asked)
        request = json.loads(transcript[1][1])
        assert set(request) == {"key_id", "values"} and len(request["values"]) == 30
        values = {mpz(int(v, 16)) for v in request["values"]}
        ts = tag_sets[lender]
        hashes = {fdh(x, ts.salt, ts.public.n) for x in asked}
        assert values.isdisjoint(hashes)  # blinded: not the hashes of the IDs
        # Spread over Z_n, not small values. A uniform value of Z_n has at most BITS - 64 bits with probability
        # below 2^-63, so the 90 values of this test miss it together with probability below 2^-56 (a bound of
        # BITS - 16 failed about 1 run in 400).
        assert min(v.bit_length() for v in values) > BITS - 64


def test_budgets_and_rate_limits_are_enforced_with_429(tmp_path, run):
    setup = files(tmp_path, lenders={"lender-1": {"budget_per_day": 5}, "lender-2": {"rate_per_minute": 2}})
    people = setup["population"]

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        try:
            first = await federation.query(people[:3], lenders=["lender-1"])
            over_budget = await federation.query(people[3:6], lenders=["lender-1"])
            within = await federation.query(people[3:5], lenders=["lender-1"])
            spent = await federation.query(people[5:6])
            rated = [await federation.query([people[i]], lenders=["lender-2"]) for i in range(10, 12)]
            return first, over_budget, within, spent, rated
        finally:
            await federation.close()

    first, over_budget, within, spent, rated = run(scenario())

    assert first.status_code == 200 and within.status_code == 200
    assert over_budget.status_code == 429
    body = over_budget.json()
    assert body["error"] == "RateLimited"
    assert "lender 'lender-1'" in body["detail"] and "3 of its 5 IDs" in body["detail"]
    assert "lending.budget_per_day" in body["detail"] and "renews at 00:00 UTC" in body["detail"]
    # Spent at lender-1: a query of every lender fails as a whole, naming the lender that refused.
    assert spent.status_code == 429 and "lender 'lender-1'" in spent.json()["detail"]
    assert "lender-2" not in spent.json()["detail"].split("lender 'lender-1'")[0]
    # lender-2 answered (and counted) its part of `spent`: with one more, that is its 2 requests a minute.
    assert [r.status_code for r in rated] == [200, 429]
    assert "lending.rate_per_minute = 2" in rated[1].json()["detail"] and "retry in" in rated[1].json()["detail"]
    assert "refused blind signatures to bank (3 values): RateLimited" in audit_lines(tmp_path, "lender-1")


def test_rotation_invalidates_old_tags(tmp_path, run):
    setup = files(tmp_path)
    held = borrowers_of(setup["borrowers"])
    ids = setup["population"][:40]

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        try:
            before = (await federation.query(ids)).json()
            old = federation.nodes[QUERIER].lending.queries.protocol.cached("lender-1")
            old_blinded = federation.nodes[QUERIER].lending.queries.protocol.blind("lender-1", ids[:2])
            async with federation.client("lender-1") as lender:
                rotated = (await lender.post("/v1/lending/rotate")).json()
            async with federation.peer("lender-1") as peer:
                stale = await peer.post("/v1/peer/lending/blind-sign",
                                        json={"key_id": old.key_id, "values": [format(int(v), "x") for v in old_blinded.values]})
            after = (await federation.query(ids)).json()
            new = federation.nodes[QUERIER].lending.queries.protocol.cached("lender-1")
            return before, rotated, stale, after, old, new
        finally:
            await federation.close()

    before, rotated, stale, after, old, new = run(scenario())

    assert rotated["key_id"] != old.key_id and rotated["epoch"] == old.epoch + 1
    assert stale.status_code == 409 and stale.json()["error"] == "StaleKey"
    assert old.key_id in stale.json()["detail"] and "rotated" in stale.json()["detail"]
    assert new.key_id == rotated["key_id"]  # the querier fetched the new set when the lender refused the old key
    assert set(old.tag_list()).isdisjoint(new.tag_list())  # no old tag answers under the new key
    truth = expected(ids, held)
    assert [r["found_at"] for r in before["results"]] == truth == [r["found_at"] for r in after["results"]]
    assert after["keys"]["lender-1"]["key_id"] == new.key_id
    assert list((tmp_path / "data" / "lender-1" / "lending").glob("tags-*.bin")) == [
        tmp_path / "data" / "lender-1" / "lending" / f"tags-{new.key_id}.bin"]  # the old tags are gone


def test_bad_input_gets_a_4xx_naming_the_problem(tmp_path, run):
    setup = files(tmp_path)

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        out = {}
        try:
            ts = federation.nodes["lender-1"].lending.lender.tag_set
            n, key_id = int(ts.public.n), ts.key_id
            async with federation.peer("lender-1") as peer:
                for name, values in (("zero", ["0"]), ("n", [format(n, "x")]), ("above", [format(n + 1, "x")]),
                                     ("factor", [format(int(federation.nodes["lender-1"].lending.lender.key.private.p), "x")]),
                                     ("garbled", ["12", "not-hex"]), ("too long", ["f" * 1000]), ("empty", [])):
                    out[name] = await peer.post("/v1/peer/lending/blind-sign", json={"key_id": key_id, "values": values})
                out["not a list"] = await peer.post("/v1/peer/lending/blind-sign", json={"key_id": key_id, "values": 7})
                out["unknown key"] = await peer.post("/v1/peer/lending/blind-sign", json={"key_id": "feed", "values": ["5"]})
            async with federation.peer("lender-1", caller="stranger") as stranger:
                out["stranger"] = await stranger.get("/v1/peer/lending/tag-set")
            async with federation.peer(QUERIER, caller="lender-1") as peer:
                out["not a lender"] = await peer.get("/v1/peer/lending/tag-set")
            out["unknown lender"] = await federation.query(["C000001"], lenders=["lender-9"])
            out["no ids"] = await federation.query([])
            out["empty id"] = await federation.query(["C000001", " "])
            out["bad answer"] = await federation.query(["C000001"], "maybe")
            out["too many"] = await federation.query([f"X{i}" for i in range(1001)])
            async with federation.client("lender-1") as lender:
                out["lender has no lenders"] = await lender.post("/v1/lending-query", json={"ids": ["C000001"]})
                out["status"] = await lender.get("/v1/lending")
            return out
        finally:
            await federation.close()

    out = run(scenario())

    def check(name: str, status: int, *words: str) -> None:
        response = out[name]
        assert response.status_code == status, (name, response.status_code, response.text)
        for word in words:
            assert word in response.json()["detail"], (name, word, response.text)

    check("zero", 400, "values[0] is outside [1, n−1]")
    check("n", 400, "values[0] is outside [1, n−1]")
    check("above", 400, "values[0] is outside [1, n−1]")
    check("factor", 400, "values[0] shares a factor")
    check("garbled", 400, "values[1] is garbled")
    check("too long", 400, "values[0] is not a blinded value")
    check("empty", 400, "non-empty list")
    check("not a list", 422, "values")
    check("unknown key", 409, "'feed' is not lender 'lender-1'")
    check("stranger", 403, "not a configured peer")
    check("not a lender", 404, "is not a lender")
    check("unknown lender", 422, "unknown lender 'lender-9'", "lender-1, lender-2, lender-3")
    check("no ids", 422, "at least one ID")
    check("empty id", 422, "ID at row 1 is empty")
    check("bad answer", 422, "answer")
    check("too many", 422, "1001 IDs", "lending.max_ids_per_query")
    check("lender has no lenders", 422, "asks no lenders", "[lending] lenders")
    assert out["status"].json()["lender"]["queriers"] == {}  # nothing refused was charged
    log = audit_lines(tmp_path, "lender-1")
    assert log.count("refused blind signatures to bank") == 8  # each past the request's shape check


def test_restarts_keep_budgets_and_tag_sets(tmp_path, run):
    setup = files(tmp_path, budget_per_day=12)
    people = setup["population"]

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        try:
            assert (await federation.query(people[:10])).status_code == 200
            keys = {n: federation.nodes[n].lending.lender.tag_set.key_id for n in lender_names(3)}
        finally:
            await federation.close()
        again = await Federation(tmp_path, setup).open()  # every service restarted on its files
        try:
            await asyncio.sleep(0.5)  # time for a (wrong) republication to show
            after = {n: again.nodes[n].lending.lender.tag_set.key_id for n in lender_names(3)}
            over = await again.query(people[10:13])
            last = await again.query(people[10:12])
            return keys, after, over, last
        finally:
            await again.close()

    keys, after, over, last = run(scenario())

    assert after == keys
    assert over.status_code == 429 and "10 of its 12 IDs" in over.json()["detail"]
    assert last.status_code == 200
    for name in lender_names(3):
        folder = tmp_path / "data" / name / "lending"
        assert {p.name for p in folder.iterdir()} == {"key.json", f"tags-{keys[name]}.bin", "budgets.json", "audit.log"}
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.iterdir())
        assert folder.stat().st_mode & 0o777 == 0o700


def test_a_changed_borrower_list_is_published_under_a_new_key_at_restart(tmp_path, run):
    setup = files(tmp_path)
    newcomer = "Z999999"

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        try:
            old = federation.nodes["lender-2"].lending.lender.tag_set.key_id
            missing = (await federation.query([newcomer])).json()
        finally:
            await federation.close()
        path = setup["borrowers"]["lender-2"]
        path.write_text(path.read_text() + f"{newcomer},1000\n")
        again = await Federation(tmp_path, setup).open()
        try:
            for _ in range(400):
                if again.nodes["lender-2"].lending.lender.tag_set.key_id != old:
                    break
                await asyncio.sleep(0.05)
            found = (await again.query([newcomer])).json()
            return old, again.nodes["lender-2"].lending.lender.tag_set, missing, found
        finally:
            await again.close()

    old, new, missing, found = run(scenario())

    assert new.key_id != old and new.size == 201 and new.epoch == 2
    assert missing["results"][0]["found_at"] == [] and found["results"][0]["found_at"] == ["lender-2"]
    assert "the borrower list changed while the service was down" in audit_lines(tmp_path, "lender-2")


def test_a_lender_may_name_a_dataset(tmp_path, run):
    setup = files(tmp_path)
    path = tmp_path / "lender-3.toml"
    text = path.read_text().replace('borrowers_file = "lender-3/borrowers.csv"\nid_column = "customer_id"\n',
                                    'borrowers = "loans"\n')
    text = text.replace("[lending]\n", '[datasets.loans]\npath = "lender-3/borrowers.csv"\nid_column = "customer_id"\n'
                                       'label_column = "amount"\n\n[lending]\n', 1)
    path.write_text(text)
    held = borrowers_of(setup["borrowers"])
    ids = setup["population"][:30]

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        try:
            return (await federation.query(ids, lenders=["lender-3"])).json()
        finally:
            await federation.close()

    answer = run(scenario())
    assert [r["found_at"] for r in answer["results"]] == [["lender-3"] if x in held["lender-3"] else [] for x in ids]


def test_the_key_rotates_on_schedule_and_queries_follow(tmp_path, run):
    setup = files(tmp_path, lenders={"lender-2": {"rotate_every": 1}})
    held = borrowers_of(setup["borrowers"])
    ids = setup["population"][:20]

    async def scenario():
        federation = await Federation(tmp_path, setup).open()
        try:
            first = federation.nodes["lender-2"].lending.lender.tag_set
            before = (await federation.query(ids)).json()
            for _ in range(100):
                if federation.nodes["lender-2"].lending.lender.tag_set.epoch >= first.epoch + 2:
                    break
                await asyncio.sleep(0.05)
            after = (await federation.query(ids)).json()
            return first, federation.nodes["lender-2"].lending.lender.tag_set, before, after
        finally:
            await federation.close()

    first, later, before, after = run(scenario())

    assert later.epoch >= first.epoch + 2 and later.rotates_at > first.rotates_at
    assert [r["found_at"] for r in before["results"]] == expected(ids, held) == [r["found_at"] for r in after["results"]]
    assert "scheduled rotation (lending.rotate_every = 1 s)" in audit_lines(tmp_path, "lender-2")


def test_a_lender_that_cannot_publish_says_why(tmp_path, run):
    setup = files(tmp_path)
    broken = setup["borrowers"]["lender-3"]
    broken.write_text(broken.read_text() + ",5000\n")  # a borrower without an ID
    missing = tmp_path / "lender-2.toml"
    missing.write_text(missing.read_text().replace("lender-2/borrowers.csv", "lender-2/gone.csv"))

    async def scenario():
        node = Node(load_config(missing))
        with pytest.raises(ConfigError, match=r"lending.borrowers_file .*gone.csv does not exist"):
            await node.startup()
        await node.shutdown()
        missing.write_text(missing.read_text().replace("lender-2/gone.csv", "lender-2/borrowers.csv"))
        federation = Federation(tmp_path, setup)
        router = federation.router
        for name in NAMES:
            node = Node(load_config(tmp_path / f"{name}.toml"), transport=router)
            router.apps[f"{name}.test"] = create_app(node.config, node=node)
            await node.startup()
            federation.nodes[name] = node
        try:
            for _ in range(200):
                if federation.nodes["lender-3"].lending.lender.publish_error:
                    break
                await asyncio.sleep(0.05)
            return await federation.query(["C000001"])
        finally:
            await federation.close()

    answer = run(scenario())

    assert answer.status_code == 502
    detail = answer.json()["detail"]
    assert "lender 'lender-3'" in detail and "publishing it failed (DataError" in detail and "is empty" in detail
    assert "borrowers.csv" not in detail  # the lender's file names stay at the lender
