"""Forty bad inputs against live services: CSVs, job specs, protocol messages, ciphertexts.

Each must end in a 4xx or a cleanly failed job whose message names the problem.
Afterwards every service still passes its health check and still runs a good job.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from tests.helpers import demo_job, start_cluster, wait_for
from vfl.crypto.vector import Encryptor
from vfl.protocol.messages import CipherVector, EncryptedForward, IntVector, MaskedGradient
from vfl.protocol.wire import MEDIA_TYPE, encode_message

BANK_CSVS = {
    # name: (file contents, what the refusal must say)
    "no_id_column": ("id,default,income\n1,0,3\n", "no ID column 'customer_id'"),
    "no_label_column": ("customer_id,income\nC1,3\n", "no label column 'default'"),
    "duplicate_ids": ("customer_id,default,income\nC1,0,3\nC1,1,4\n", "duplicated ID"),
    "empty_id": ("customer_id,default,income\nC1,0,3\n ,1,4\n", "is empty"),
    "nan_feature": ("customer_id,default,income\nC1,0,3\nC2,1,NaN\n", "missing or NaN"),
    "inf_feature": ("customer_id,default,income\nC1,0,3\nC2,1,inf\n", "infinite"),
    "text_feature": ("customer_id,default,income\nC1,0,3\nC2,1,lots\n", "not numeric"),
    "label_not_binary": ("customer_id,default,income\nC1,0,3\nC2,2,4\n", "labels 0 and 1"),
    "label_one_two": ("customer_id,default,income\nC1,1,3\nC2,2,4\n",
                      "1 → 0, 2 → 1, 1 for the class to predict); if this is the wrong column, check "
                      "datasets.label_one_two.label_column"),
    "label_numeric": ("customer_id,default,income\nC1,0.5,3\nC2,1.25,4\nC3,2.75,5\n",
                      "looks numeric (3 distinct values, e.g. 0.5, 1.25, 2.75)"),
    "label_numeric_fix": ("customer_id,default,income\nC1,0.5,3\nC2,1.25,4\nC3,2.75,5\n",
                          "in the job spec; if this is the wrong column, check "
                          "datasets.label_numeric_fix.label_column in the service config"),
    "one_class": ("customer_id,default,income\nC1,1,3\nC2,1,4\n", "only the class 1"),
    "empty_file": ("", "the file is empty"),
    "header_only": ("customer_id,default,income\n", "no data rows"),
    "broken_quotes": ('customer_id,default,income\n"C1,0,3\n', "not a valid CSV"),
    "repeated_column": ("customer_id,default,income,income\nC1,0,3,4\n", "appear more than once"),
    "no_features": ("customer_id,default\nC1,0\nC2,1\n", "no feature columns"),
    "too_big": ("customer_id,default,income\n" + "C1,0,3\n" * 10_000, "exceeds the limit"),
}


EXPECTED = {
    "csv:party-a-nan": "missing or NaN",
    "csv:no-overlap": "no ID in common",
    "spec:unknown-dataset": "no dataset named 'nope'",
    "spec:unknown-peer": "not a configured party A peer",
    "spec:unknown-model": "training.model",
    "spec:zero-epochs": "training.epochs",
    "spec:unknown-field": "colour",
    "spec:missing-party-a": "party_a",
    "spec:bad-job-id": "job_id",
    "spec:small-key": "key_bits",
    "spec:small-psi-key": "psi.key_bits",
    "spec:not-json": "invalid request",
    "spec:too-large": "exceeds the limit",
    "msg:unknown-job": "no job 'nope'",
    "msg:kind-mismatch": "received a encrypted_forward",
    "msg:garbage-frame": "bad magic",
    "msg:truncated-frame": "truncated",
    "msg:wrong-sender": "may not send",
    "msg:unknown-peer": "not a configured peer",
    "msg:replayed": "already received with other content",
    "msg:far-future": "too far ahead",
    "msg:beyond-last-epoch": "only 400 epochs",
    "msg:newer-generation": "has not resumed yet",
    "ct:zero": "outside",
    "ct:above-n-squared": "outside",
    "ct:multiple-of-n": "shares a factor",
    "ct:truncated": "not a whole number",
    "ct:wrong-length": "the schedule expects",
    "ct:too-many-elements": "at most 2000",
    "oracle:u_a-as-gradient": "registered a gradient of length",
}


def toml_datasets(folder, names, label: bool) -> str:
    text = ""
    for name in names:
        text += f'\n[datasets.{name}]\npath = "{folder}/{name}.csv"\nid_column = "customer_id"\n'
        if label:
            text += 'label_column = "default"\n'
    return text


def spec(job: dict, **changes: Any) -> dict:
    out = {key: (dict(value) if isinstance(value, dict) else value) for key, value in job.items()}
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = out
        for key in parents:
            target = target[key]
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return out


def test_forty_bad_inputs_are_refused_and_the_services_carry_on(tmp_path, run):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, (text, _) in BANK_CSVS.items():
        (bad / f"{name}.csv").write_text(text)
    (bad / "shop_nan.csv").write_text("customer_id,spend\nC0000001,1\nC0000002,NaN\n")
    (bad / "disjoint.csv").write_text("customer_id,default,income\nZ1,0,3\nZ2,1,4\nZ3,0,5\n")
    extra = {
        "party-b": toml_datasets("bad", list(BANK_CSVS) + ["disjoint"], label=True),
        "party-a": toml_datasets("bad", ["shop_nan"], label=False),
    }
    limits = {"party-b": {"max_csv_bytes": 60_000, "max_vector_length": 2000, "max_body_bytes": 2_000_000}}
    outcomes: list[tuple[str, int, str]] = []

    async def scenario():
        cluster = await start_cluster(tmp_path, extra=extra, limits=limits, **demo_job(epochs=400, tol=0))
        good = cluster.setup["job"]
        try:
            async with cluster.client() as bank, cluster.client("arbiter") as arb, cluster.client("party-a") as shop:
                # A live job, for the protocol messages to aim at.
                started = await bank.post("/v1/jobs", json=spec(good, job_id="live"))
                assert started.status_code == 201, started.text
                live = started.json()["job_id"]
                for _ in range(2000):
                    status = (await bank.get(f"/v1/jobs/{live}")).json()
                    # "pending" until B's pipeline has started (README: pending → aligning → training)
                    if status["epoch"] >= 1 or status["state"] not in ("pending", "aligning", "training"):
                        break
                    await asyncio.sleep(0.01)
                assert status["state"] == "training", status

                async def submit(label: str, body: Any, **kwargs: Any) -> None:
                    answer = await bank.post("/v1/jobs", json=body, **kwargs) if body is not None else \
                        await bank.post("/v1/jobs", **kwargs)
                    outcomes.append((label, answer.status_code, answer.text))

                # CSVs at party B, then at party A, then one with no overlap.
                for name in BANK_CSVS:
                    await submit(f"csv:{name}", spec(good, party_b__dataset=name))
                await submit("csv:party-a-nan", spec(good, party_a__dataset="shop_nan"))
                await bank.post("/v1/jobs", json=spec(good, job_id="disjoint", party_b__dataset="disjoint"))
                failed = await wait_for(bank, "disjoint")
                outcomes.append(("csv:no-overlap", 200 if failed["state"] == "failed" else 500, failed["error"] or ""))

                # Job specs.
                for label, body in [
                    ("spec:unknown-dataset", spec(good, party_b__dataset="nope")),
                    ("spec:unknown-peer", spec(good, party_a__peer="mallory")),
                    ("spec:unknown-model", spec(good, training__model="poisson")),
                    ("spec:zero-epochs", spec(good, training__epochs=0)),
                    ("spec:unknown-field", spec(good, training__colour="red")),
                    ("spec:missing-party-a", spec(good, party_a=None)),
                    ("spec:bad-job-id", spec(good, job_id="../../etc")),
                    ("spec:small-key", spec(good, training__key_bits=768)),
                    ("spec:small-psi-key", spec(good, psi__key_bits=768)),
                ]:
                    await submit(label, body)
                await submit("spec:not-json", None, content=b"{oops", headers={"Content-Type": "application/json"})
                await submit("spec:too-large", None, content=b"x" * 2_100_000, headers={"Content-Type": "application/json"})

                # Protocol messages to party B's live job, impersonating peers (insecure mode: by header).
                public_key = cluster.nodes["party-b"].jobs.get(live).runtime.roles["train"].public_key
                rows = cluster.nodes["party-b"].jobs.get(live).runtime.roles["train"].schedule.batch_length(0)
                enc = Encryptor(public_key)

                def forward(**changes: Any) -> bytes:
                    fields = dict(job_id=live, epoch=0, batch=0,
                                  party="A", enc_u=CipherVector.from_vector(enc.encrypt(np.zeros(rows), 32)))
                    return encode_message(EncryptedForward(**{**fields, **changes}))

                async def post(label: str, client, path: str, body: bytes, sender: str = "party-a") -> None:
                    answer = await client.post(path, content=body,
                                               headers={"X-VFL-Party": sender, "Content-Type": MEDIA_TYPE})
                    outcomes.append((label, answer.status_code, answer.text))

                base = f"/v1/peer/jobs/{live}/messages"
                width = public_key.ciphertext_bytes
                garbled = {
                    "zero": bytes(rows * width),
                    "above-n-squared": b"\xff" * (rows * width),
                    "multiple-of-n": int(public_key.n).to_bytes(width, "big") * rows,
                    "truncated": bytes(rows * width - 7),
                }
                await post("msg:unknown-job", bank, "/v1/peer/jobs/nope/messages/encrypted_forward", forward())
                await post("msg:kind-mismatch", bank, f"{base}/encrypted_residual", forward())
                await post("msg:garbage-frame", bank, f"{base}/encrypted_forward", b"hello world")
                await post("msg:truncated-frame", bank, f"{base}/encrypted_forward", forward()[:-100])
                await post("msg:wrong-sender", bank, f"{base}/encrypted_forward", forward(), sender="arbiter")
                await post("msg:unknown-peer", bank, f"{base}/encrypted_forward", forward(), sender="mallory")
                await post("msg:replayed", bank, f"{base}/encrypted_forward", forward())
                await post("msg:far-future", bank, f"{base}/encrypted_forward", forward(epoch=300))
                await post("msg:beyond-last-epoch", bank, f"{base}/encrypted_forward", forward(epoch=10_000))
                await post("msg:newer-generation", bank, f"{base}/encrypted_forward?generation=99", forward())
                # Ciphertexts in a step not yet seen (epoch 399 is never reached before the cancel below):
                # the payload is checked before anything else about the step.
                for name, data in garbled.items():
                    vector = CipherVector(count=rows, data=data, frac_bits=32)
                    await post(f"ct:{name}", bank, f"{base}/encrypted_forward", forward(epoch=399, enc_u=vector))
                wrong_length = CipherVector.from_vector(enc.encrypt(np.zeros(rows + 1), 32))
                await post("ct:wrong-length", bank, f"{base}/encrypted_forward", forward(epoch=399, enc_u=wrong_length))
                oversized = CipherVector(count=2001, data=b"", frac_bits=32)
                await post("ct:too-many-elements", bank, f"{base}/encrypted_forward", forward(epoch=399, enc_u=oversized))
                # Party B asks the arbiter to decrypt a [[u_A]]-sized vector in place of its gradient.
                oracle = MaskedGradient(job_id=live, epoch=399, batch=0, party="B",
                                        masked_enc_gradient=IntVector.pack(enc.encrypt(np.zeros(rows), 8).ciphertexts, width))
                await post("oracle:u_a-as-gradient", arb, f"{base}/masked_gradient", encode_message(oracle), sender="party-b")

                # Afterwards: the live job is untouched, every service is healthy, a good job runs.
                live_state = (await bank.get(f"/v1/jobs/{live}")).json()["state"]
                await bank.post(f"/v1/jobs/{live}/cancel")
                health = [(await c.get("/v1/health")).status_code for c in (bank, arb, shop)]
                fresh = (await bank.post("/v1/jobs", json=spec(good, job_id="after", training__epochs=3))).json()
                after = await wait_for(bank, fresh["job_id"])
            audit = (tmp_path / "data" / "arbiter" / "jobs" / live / "audit.log").read_text()
            return live_state, health, after, audit
        finally:
            await cluster.stop()

    live_state, health, after, audit = run(scenario())

    expected = {f"csv:{name}": text for name, (_, text) in BANK_CSVS.items()} | EXPECTED
    assert len(outcomes) >= 40
    assert {label for label, _, _ in outcomes} == set(expected)
    for label, status, text in outcomes:
        assert 400 <= status < 500 or label == "csv:no-overlap", (label, status, text)
        assert expected[label] in text, (label, status, text)
    assert live_state == "training"  # none of it disturbed the running job
    assert health == [200, 200, 200]
    assert after["state"] == "succeeded", after["error"]
    assert "refused masked_gradient from party-b" in audit and "registered a gradient of length" in audit
