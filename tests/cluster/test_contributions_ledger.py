"""Contributions and the co-signed ledger at the services: party B, two feature parties (shop, telco), the arbiter.

Four in-process services (plain HTTP through httpx's ASGI transport, as the other
in-process tests), each with a [ledger] certificate and key from one CA, so every
signature is real and chains to the federation's CA.
"""

from __future__ import annotations

import asyncio

import shutil

import httpx
import pytest

from tests.helpers import Router, wait_for
from arbiter.app import create_app as create_arbiter_app
from parties.app import create_app as create_party_app
from vfl.incentives import chain
from vfl.cli import main
from vfl.ml.config import TrainingConfig
from vfl.data.table import load_csv
from vfl.demo.services import write_demo_files
from vfl.service.lifecycle import Stage
from vfl.service.stages import ledger as ledger_stage
from vfl.service.stages.pipeline import LABEL_PARTY, Step
from vfl.service.config import load_config
from vfl.service.node import Node
from vfl.service.tls import make_certificates
from vfl.local.simulate import simulate

SERVICES = ("arbiter", "shop", "telco", "party-b")
URLS = {name: f"http://{name}.test" for name in SERVICES}
TRAINING = {"epochs": 4, "tol": 0, "validation_fraction": 0.3, "optimizer": "newton"}


def prepare(workdir, population=700):
    setup = write_demo_files(workdir, population=population, key_bits=1024, training=TRAINING, urls=URLS, tls=False,
                             feature_parties=2)
    made = make_certificates(workdir / "certs", list(SERVICES))
    for name in SERVICES:
        config = workdir / f"{name}.toml"
        files = made[name]
        config.write_text(config.read_text() + f'\n[ledger]\ncert = "{files["cert"]}"\nkey = "{files["key"]}"\n'
                                               f'ca = "{files["ca"]}"\n')
    return setup


class Four:
    def __init__(self, workdir, setup):
        self.workdir, self.setup, self.router, self.nodes = workdir, setup, Router(), {}

    async def open(self, bank_steps=LABEL_PARTY):
        """The four services; party B runs ``bank_steps`` (another table plays a party B that deviates)."""
        for name in SERVICES:
            config = load_config(self.workdir / f"{name}.toml")
            node = Node(config, transport=self.router, steps=bank_steps)
            app = create_arbiter_app(config, node=node) if name == "arbiter" else create_party_app(config, node=node)
            self.router.apps[f"{name}.test"] = app
            await node.startup()
            self.nodes[name] = node
        return self

    def client(self, name="party-b"):
        token = self.nodes[name].config.token()
        return httpx.AsyncClient(transport=self.router, base_url=URLS[name], timeout=120,
                                 headers={"Authorization": f"Bearer {token}"})

    async def stop(self):
        for node in self.nodes.values():
            await node.shutdown()

    def copy(self, name):
        return self.workdir / "data" / name / "ledger" / "party-b"


async def run_job(cluster, job, seen=None):
    """Submit ``job`` at B and wait for its end; ``seen`` collects every progress text its status showed."""
    async with cluster.client() as bank:
        answer = await bank.post("/v1/jobs", json=job)
        assert answer.status_code == 201, answer.text
        if seen is None:
            return await wait_for(bank, answer.json()["job_id"])
        for _ in range(4000):
            status = (await bank.get(f"/v1/jobs/{answer.json()['job_id']}")).json()
            if not seen or seen[-1] != status["progress"]["text"]:
                seen.append(status["progress"]["text"])
            if status["state"] in ("succeeded", "failed", "cancelled"):
                return status
            await asyncio.sleep(0.05)
        raise AssertionError(f"job still {status['state']}: {status}")


def test_contributions_and_a_co_signed_ledger_entry_with_two_feature_parties(tmp_path, run, keypair, capsys):
    setup = prepare(tmp_path)
    progress: list[str] = []

    async def scenario():
        cluster = await Four(tmp_path, setup).open()
        try:
            status = await run_job(cluster, {**setup["job"], "job_id": "measured", "contributions": True}, progress)
            async with cluster.client() as bank:
                listed = [j["job_id"] for j in (await bank.get("/v1/jobs")).json()["jobs"]]
                report = (await bank.get("/v1/jobs/measured/report")).text
            async with cluster.client("shop") as shop:
                shop_jobs = {j["job_id"]: j for j in (await shop.get("/v1/jobs")).json()["jobs"]}
            return status, listed, report, shop_jobs
        finally:
            await cluster.stop()

    status, listed, report, shop_jobs = run(scenario())
    assert status["state"] == "succeeded", status["error"]
    # The status says which coalition trains, not a frozen bar at the job's last epoch.
    coalitions = [text for text in progress if text.startswith("contributions: coalition ")]
    assert any(t.startswith("contributions: coalition 1 of 2 (B + ") for t in coalitions), progress
    assert any(t.startswith("contributions: coalition 2 of 2 (B + ") for t in coalitions), progress
    assert status["activity"] is None and status["progress"]["fraction"] == 1.0
    c = status["contributions"]
    assert c["metric"] == "auc" and c["split"] == "validation" and c["method"] == "exact" and c["trainings"] == 2
    assert [(p["party"], p["source"]) for p in c["parties"]] == [("shop", "shop:behaviour"), ("telco", "telco:usage")]
    assert c["full"] == status["metrics"]["validation"]["auc"]
    assert c["label_party_alone"] == status["baseline"]["metrics"]["validation"]["auc"]
    assert sum(p["shapley"] for p in c["parties"]) == pytest.approx(c["full"] - c["label_party_alone"], abs=1e-12)
    coalition_jobs = sorted(x["job_id"] for x in c["coalitions"])
    assert coalition_jobs == ["measured", "measured.c1", "measured.c2"]
    assert {"measured.c1", "measured.c2"} <= set(listed)
    # shop took part in its own coalition training on the measured job's rows, without a new PSI
    assert shop_jobs["measured.c1"]["alignment"]["reused_from"] == "measured"
    assert shop_jobs["measured.c1"]["n_rows"] == status["n_rows"]
    assert "measured.c2" not in shop_jobs  # telco's alone: shop takes no part in it

    # the same values as vfl simulate on the same files (the protocol is exact up to rounding)
    tables = [load_csv(setup["data"][name], id_column="customer_id") for name in ("shop", "telco")]
    bank = load_csv(setup["data"]["party-b"], id_column="customer_id", label_column="default", model="logistic")
    expected = simulate(tables, bank, TrainingConfig(key_bits=1024, **TRAINING), keypair=keypair,
                        contributions=True)["contributions"]
    for ours, theirs in zip(c["parties"], expected["parties"]):
        assert ours["shapley"] == pytest.approx(theirs["shapley"], abs=1e-9)
        assert ours["leave_one_out"] == pytest.approx(theirs["leave_one_out"], abs=1e-9)

    ledger = status["ledger"]
    assert ledger["entry"] == 0 and ledger["signatures_verified"] is True and ledger["problems"] == []
    assert ledger["signed_by"] == ["shop", "telco", "party-b", "arbiter"]
    assert sorted(ledger["appended_at"]) == sorted(SERVICES)
    assert shop_jobs["measured"]["ledger"]["entry"] == 0 and shop_jobs["measured"]["ledger"]["signatures_verified"]
    copies = {name: (tmp_path / "data" / name / "ledger" / "party-b" / "ledger.jsonl").read_bytes() for name in SERVICES}
    assert len(set(copies.values())) == 1  # every party holds the same copy
    entry = chain.Ledger(tmp_path / "data" / "shop" / "ledger" / "party-b").entries()[0]
    parties = {p["party"]: p for p in entry["fields"]["parties"]}
    assert parties["shop"]["dataset"] == "behaviour" and parties["arbiter"]["model_digest"] is None
    model = tmp_path / "data" / "shop" / "jobs" / "measured" / "model.json"
    for name in SERVICES:
        assert main(["ledger", "verify", str(tmp_path / "data" / name / "ledger" / "party-b"),
                     "--ca", str(tmp_path / "certs" / name / "ca.pem"), "--model", f"shop={model}"]) == 0
    assert entry["fields"]["contributions"]["parties"] == c["parties"]
    assert "<h2>Contributions</h2>" in report and 'id="contributions"' in report and "<h2>Ledger</h2>" in report
    assert 'alt="contributions"' in report  # the bar chart
    assert "Entry 0 of the ledger" in report and "every signature verified" in report
    # where the time went, at each of the four parties
    assert "<h3>By party</h3>" in report and all(f"{p} (" in report for p in ("shop", "telco", "party-b", "arbiter"))


def test_a_party_refuses_a_wrong_model_digest_copies_catch_up_and_survive_a_restart(tmp_path, run):
    setup = prepare(tmp_path, population=500)
    two_party = {**setup["job"], "feature_parties": [{"peer": "shop", "dataset": "behaviour"}]}

    async def lying_fields(ctx):  # B records another model digest for shop than shop's own
        fields = await ledger_stage.entry_fields(ctx)
        if ctx.record.job_id == "lied":
            fields["parties"][0]["model_digest"] = "0" * 64
        return fields

    async def lying_ledger(ctx):
        await ledger_stage.record_entry(ctx, lying_fields)

    lying_bank = tuple(Step(s.stage, lying_ledger, s.when) if s.stage is Stage.LEDGER else s for s in LABEL_PARTY)

    async def scenario():
        cluster = await Four(tmp_path, setup).open(bank_steps=lying_bank)  # a changed party B, its own identity
        try:
            first = await run_job(cluster, {**setup["job"], "job_id": "first"})
            lied = await run_job(cluster, {**two_party, "job_id": "lied"})
        finally:
            await cluster.stop()
        shutil.rmtree(cluster.copy("telco"))  # telco lost its copy: B brings it up to date at the next entry
        cluster = await Four(tmp_path, setup).open()  # every service restarted
        try:
            second = await run_job(cluster, {**two_party, "job_id": "second"})
        finally:
            await cluster.stop()
        return cluster, first, lied, second

    cluster, first, lied, second = run(scenario())
    assert first["ledger"]["entry"] == 0 and first["ledger"]["signatures_verified"]
    assert lied["state"] == "succeeded"  # the model stands; the entry was not written
    assert lied["ledger"]["entry"] is None and lied["ledger"]["signatures_verified"] is False
    assert any("shop did not sign" in p and "model digest" in p for p in lied["ledger"]["problems"]), lied["ledger"]
    assert second["ledger"]["entry"] == 1 and second["ledger"]["signatures_verified"]  # after the restart, chained on
    assert second["ledger"]["signed_by"] == ["shop", "party-b", "arbiter"]  # telco took no part ...
    assert "telco" in second["ledger"]["appended_at"]  # ... but keeps its copy, caught up
    entries = {name: chain.Ledger(cluster.copy(name)).entries() for name in SERVICES}
    assert all([e["fields"]["job_id"] for e in copy] == ["first", "second"] for copy in entries.values())
    for name in SERVICES:
        assert chain.verify_folder(cluster.copy(name))[1] == []


def test_a_copy_that_was_changed_is_reported_and_left_alone(tmp_path, run):
    setup = prepare(tmp_path, population=400)
    two_party = {**setup["job"], "feature_parties": [{"peer": "shop", "dataset": "behaviour"}]}

    async def scenario():
        cluster = await Four(tmp_path, setup).open()
        try:
            first = await run_job(cluster, {**two_party, "job_id": "first"})
            file = cluster.copy("telco") / "ledger.jsonl"
            file.write_text(file.read_text().replace('"first"', '"forged"'))  # telco's copy now says otherwise
            second = await run_job(cluster, {**two_party, "job_id": "second"})
        finally:
            await cluster.stop()
        return cluster, first, second

    cluster, first, second = run(scenario())
    assert first["ledger"]["entry"] == 0
    ledger = second["ledger"]
    assert ledger["entry"] == 1 and ledger["signatures_verified"]  # shop, B and the arbiter signed
    assert any(p.startswith("telco's copy does not verify there: entry 0 (job forged): field 'job_id'")
               for p in ledger["problems"]), ledger
    assert "telco" not in ledger["appended_at"]
    assert [e["fields"]["job_id"] for e in chain.Ledger(cluster.copy("shop")).entries()] == ["first", "second"]
    assert [e["fields"]["job_id"] for e in chain.Ledger(cluster.copy("telco")).entries()] == ["forged"]



def test_a_party_b_cannot_append_entries_nobody_co_signed_nor_have_a_job_signed_twice(tmp_path, run):
    """Party B, with its own identity and key, forges entries the others must refuse (issue 27, class 3)."""
    setup = prepare(tmp_path, population=400)
    two_party = {**setup["job"], "feature_parties": [{"peer": "shop", "dataset": "behaviour"}]}
    no_ledger = tuple(step for step in LABEL_PARTY if step.stage is not Stage.LEDGER)

    async def scenario():
        cluster = await Four(tmp_path, setup).open(bank_steps=no_ledger)  # B keeps the entries to itself
        seen = {}
        try:
            await run_job(cluster, {**two_party, "job_id": "unrecorded"})
            bank = cluster.nodes["party-b"]
            book = bank.ledgers.copy_for("party-b")
            sign = bank.ledgers.signer().sign
            honest = await ledger_stage.entry_fields(bank.job("unrecorded"))

            def entry(fields):
                drafted = book.draft(fields)
                drafted["signatures"] = [sign(drafted)]  # B's own signature only
                return drafted

            alone = entry({**honest, "job_id": "forged", "parties": [honest["parties"][1]]})  # names B alone
            nobody = entry({**honest, "job_id": "forged", "parties": []})
            first = book.draft(honest)
            better = book.draft({**honest, "metrics": {"validation": {"auc": 0.99}}})
            for name in ("shop", "arbiter"):
                async with httpx.AsyncClient(transport=cluster.router, base_url=URLS[name], timeout=60,
                                             headers={"X-VFL-Party": "party-b"}) as as_b:
                    for label, forged in (("alone", alone), ("nobody", nobody)):
                        seen[name, label] = await as_b.post("/v1/peer/ledger/append", json={"entries": [forged]})
                    seen[name, "sign"] = await as_b.post("/v1/peer/ledger/sign", json={"entry": first})
                    seen[name, "sign again"] = await as_b.post("/v1/peer/ledger/sign", json={"entry": better})
                    seen[name, "same again"] = await as_b.post("/v1/peer/ledger/sign", json={"entry": first})
            records = {name: cluster.nodes[name].job("unrecorded").record.ledger for name in ("shop", "arbiter")}
        finally:
            await cluster.stop()
        return seen, records, cluster

    seen, records, cluster = run(scenario())

    for name in ("shop", "arbiter"):
        for label in ("alone", "nobody"):
            answer = seen[name, label]
            assert answer.status_code == 422 and "whole roster" in answer.json()["detail"], (name, label, answer.text)
        assert seen[name, "sign"].status_code == 200  # the honest entry, once
        assert seen[name, "sign again"].status_code == 409
        assert "signs one entry per job" in seen[name, "sign again"].json()["detail"]
        assert seen[name, "same again"].status_code == 200  # a retried request for the same entry: same answer
        assert not (cluster.copy(name) / "ledger.jsonl").exists() or chain.verify_folder(cluster.copy(name))[0] == []
    assert records == {"shop": None, "arbiter": None}  # nothing B appended rewrote their records
