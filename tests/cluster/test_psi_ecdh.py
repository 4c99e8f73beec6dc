"""The job spec's ``"psi": {"protocol": "ecdh"}`` at the services: the same rows and model as RSA; ``[psi] protocols``."""

from __future__ import annotations

import re

import numpy as np
import pytest

from psi import ec
from tests.helpers import demo_job, start_cluster, wait_for
from vfl.errors import ConfigError

try:  # the group is the system's libsodium (>= 1.0.18); .ci/run installs it where apt can
    ec._sodium()
except ConfigError as exc:
    pytest.skip(f"no usable libsodium: {exc}", allow_module_level=True)


async def _run_job(workdir, protocol: str, extra: dict[str, str] | None = None):
    cluster = await start_cluster(workdir, extra=extra, **demo_job(epochs=4))
    try:
        async with cluster.client() as bank, cluster.client("party-a") as shop:
            job = {**cluster.setup["job"], "job_id": f"{protocol}-job",
                   "psi": {"protocol": protocol, "key_bits": 1024}}
            submitted = await bank.post("/v1/jobs", json=job)
            assert submitted.status_code == 201, submitted.text
            status = await wait_for(bank, job["job_id"])
            shop_status = (await shop.get(f"/v1/jobs/{job['job_id']}")).json()
            bank_ids = cluster.nodes["party-b"].store.load_alignment(job["job_id"])
            shop_ids = cluster.nodes["party-a"].store.load_alignment(job["job_id"])
        return status, shop_status, bank_ids, shop_ids
    finally:
        await cluster.stop()


def test_an_ecdh_job_aligns_and_trains_as_the_rsa_job(tmp_path, run):
    rsa, rsa_shop, rsa_b, rsa_a = run(_run_job(tmp_path / "rsa", "rsa"))
    # party A's reuse of its own signatures is RSA's: an ECDH job takes a fresh scalar and reuses nothing
    reuse = {"party-a": "[psi]\nreuse_own_signatures = true\n"}
    ecdh, ecdh_shop, ecdh_b, ecdh_a = run(_run_job(tmp_path / "ecdh", "ecdh", extra=reuse))

    assert rsa["state"] == "succeeded", rsa["error"]
    assert ecdh["state"] == "succeeded", ecdh["error"]
    assert ecdh_shop["state"] == "succeeded"
    assert rsa["alignment"]["method"] == "rsa-blind-signature-psi"
    assert ecdh["alignment"]["method"] == "ecdh-x25519-psi"
    assert ecdh_shop["alignment"]["method"] == "ecdh-x25519-psi"
    assert "reused_own_signatures" not in ecdh_shop["alignment"]
    assert ecdh["n_rows"] == rsa["n_rows"] > 0
    assert ecdh["alignment"]["intersection"] == rsa["alignment"]["intersection"]
    assert ecdh_b == rsa_b == ecdh_a == rsa_a  # the same IDs, in the same order, at both parties
    assert np.allclose(ecdh["loss_history"], rsa["loss_history"], atol=1e-9)
    for split in ("train", "validation"):
        for name, value in rsa["metrics"][split].items():
            if isinstance(value, float):
                assert abs(ecdh["metrics"][split][name] - value) < 1e-6, (split, name)


def test_a_feature_party_refuses_a_protocol_it_does_not_accept(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, extra={"party-a": '[psi]\nprotocols = ["rsa"]\n'},
                                      **demo_job(epochs=2))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "ecdh-job", "psi": {"protocol": "ecdh", "key_bits": 1024}}
                refused = await bank.post("/v1/jobs", json=job)
                accepted = await bank.post("/v1/jobs", json={**job, "job_id": "rsa-job",
                                                               "psi": {"protocol": "rsa", "key_bits": 1024}})
                return refused, accepted, cluster.nodes["party-a"].jobs.get("ecdh-job")
        finally:
            await cluster.stop()

    refused, accepted, at_a = run(scenario())

    assert 400 <= refused.status_code < 500, refused.text
    assert "[psi] protocols" in refused.text and "'ecdh'" in refused.text
    assert at_a is None  # nothing registered at party A
    assert accepted.status_code == 201, accepted.text


def test_party_b_refuses_a_protocol_it_does_not_accept(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, extra={"party-b": '[psi]\nprotocols = ["rsa"]\n'},
                                      **demo_job(epochs=2))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "ecdh-job", "psi": {"protocol": "ecdh", "key_bits": 1024}}
                return await bank.post("/v1/jobs", json=job)
        finally:
            await cluster.stop()

    refused = run(scenario())

    assert 400 <= refused.status_code < 500, refused.text
    assert "[psi] protocols" in refused.text


def test_unbalanced_jobs_align_as_rsa_and_the_second_reuses_the_offline_set(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path / "unbalanced", **demo_job(epochs=2))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                statuses = []
                for n in (1, 2):
                    job = {**cluster.setup["job"], "job_id": f"unbalanced-{n}",
                           "psi": {"protocol": "ecdh", "unbalanced": True}}
                    submitted = await bank.post("/v1/jobs", json=job)
                    assert submitted.status_code == 201, submitted.text
                    statuses.append((await wait_for(bank, job["job_id"]),
                                     (await shop.get(f"/v1/jobs/{job['job_id']}")).json()))
                ids = [(cluster.nodes["party-b"].store.load_alignment(f"unbalanced-{n}"),
                        cluster.nodes["party-a"].store.load_alignment(f"unbalanced-{n}")) for n in (1, 2)]
                rsa_job = {**cluster.setup["job"], "job_id": "rsa-ref", "psi": {"key_bits": 1024}}
                assert (await bank.post("/v1/jobs", json=rsa_job)).status_code == 201
                await wait_for(bank, "rsa-ref")
                rsa_ids = cluster.nodes["party-b"].store.load_alignment("rsa-ref")
            return statuses, ids, rsa_ids
        finally:
            await cluster.stop()

    statuses, ids, rsa_ids = run(scenario())

    for (bank, shop), (bank_ids, shop_ids) in zip(statuses, ids):
        assert bank["state"] == "succeeded", bank["error"]
        assert bank["alignment"]["method"] == shop["alignment"]["method"] == "ecdh-x25519-unbalanced-psi"
        assert bank_ids == shop_ids == rsa_ids  # the same IDs in the same order as the RSA PSI
    assert [shop["alignment"]["offline_set"] for _, shop in statuses] == ["received", "reused"]
    assert statuses[1][0]["alignment"]["bytes"] < statuses[0][0]["alignment"]["bytes"]


def test_unbalanced_needs_ecdh():
    from vfl.service.spec import PsiSettings

    with pytest.raises(ValueError, match="psi.unbalanced needs"):
        PsiSettings(unbalanced=True)


#: The feature party agrees to be the large side (its customers linkable by B while its key is kept).
LARGE_A = {"party-a": "[psi]\naccept_large_side = true\n"}


def test_with_the_feature_party_large_jobs_align_as_rsa_and_the_second_reuses_its_offline_set(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path / "feature-large", extra=LARGE_A, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                statuses = []
                for n in (1, 2):
                    job = {**cluster.setup["job"], "job_id": f"large-a-{n}",
                           "psi": {"protocol": "ecdh", "unbalanced": True, "large_side": "feature"}}
                    submitted = await bank.post("/v1/jobs", json=job)
                    assert submitted.status_code == 201, submitted.text
                    statuses.append((await wait_for(bank, job["job_id"]),
                                     (await shop.get(f"/v1/jobs/{job['job_id']}")).json()))
                ids = [(cluster.nodes["party-b"].store.load_alignment(f"large-a-{n}"),
                        cluster.nodes["party-a"].store.load_alignment(f"large-a-{n}")) for n in (1, 2)]
                rsa_job = {**cluster.setup["job"], "job_id": "rsa-ref", "psi": {"key_bits": 1024}}
                assert (await bank.post("/v1/jobs", json=rsa_job)).status_code == 201
                await wait_for(bank, "rsa-ref")
                rsa_ids = cluster.nodes["party-b"].store.load_alignment("rsa-ref")
                data_a, data_b = cluster.nodes["party-a"].store.data_dir, cluster.nodes["party-b"].store.data_dir
                stored = (sorted(p.name for p in (data_a / "psi-offline").rglob("*")),
                          (data_b / "psi-offline").exists(), (data_b / "psi-offline-peer").exists())
            return statuses, ids, rsa_ids, stored
        finally:
            await cluster.stop()

    statuses, ids, rsa_ids, (kept_at_a, key_at_b, copy_at_b) = run(scenario())

    for (bank, shop), (bank_ids, shop_ids) in zip(statuses, ids):
        assert bank["state"] == "succeeded", bank["error"]
        assert shop["state"] == "succeeded", shop["error"]
        assert bank["alignment"]["method"] == shop["alignment"]["method"] == "ecdh-x25519-unbalanced-psi"
        assert bank_ids == shop_ids == rsa_ids  # the same IDs in the same order as the RSA PSI
    # the feature party keeps the key and the set, and sends it once; B keeps its copy and reuses it
    assert [shop["alignment"]["offline_set"] for _, shop in statuses] == ["sent", "current"]
    assert [bank["alignment"]["offline_set"] for bank, _ in statuses] == ["received", "reused"]
    assert "key.json" in kept_at_a and not key_at_b and copy_at_b
    assert statuses[1][0]["alignment"]["bytes"] < statuses[0][0]["alignment"]["bytes"]


def test_a_bad_large_side_is_refused_naming_the_key(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, extra=LARGE_A, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "bad-side"}
                unknown = await bank.post("/v1/jobs", json={
                    **job, "psi": {"protocol": "ecdh", "unbalanced": True, "large_side": "telecom"}})
                balanced = await bank.post("/v1/jobs", json={
                    **job, "psi": {"protocol": "ecdh", "large_side": "feature"}})
                return unknown, balanced, cluster.nodes["party-a"].jobs.get("bad-side")
        finally:
            await cluster.stop()

    unknown, balanced, at_a = run(scenario())

    assert 400 <= unknown.status_code < 500 and 400 <= balanced.status_code < 500
    assert "psi.large_side" in unknown.text and '\\"feature\\"' in unknown.text and "telecom" in unknown.text
    assert "psi.large_side applies to unbalanced jobs only" in balanced.text
    assert at_a is None  # nothing registered at the feature party


def test_a_feature_party_refuses_to_be_the_large_side_unless_its_config_accepts_it(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))  # [psi] accept_large_side left false
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "large-a",
                       "psi": {"protocol": "ecdh", "unbalanced": True, "large_side": "feature"}}
                refused = await bank.post("/v1/jobs", json=job)
                data_a = cluster.nodes["party-a"].store.data_dir
                return refused, cluster.nodes["party-a"].jobs.get("large-a"), (data_a / "psi-offline").exists()
        finally:
            await cluster.stop()

    refused, at_a, key_made_at_a = run(scenario())

    assert 400 <= refused.status_code < 500, refused.text
    assert "[psi] accept_large_side" in refused.text
    assert at_a is None and not key_made_at_a  # nothing registered, no key made


def test_the_registration_carries_large_side_only_when_it_is_not_the_default():
    from vfl.service.spec import PsiSettings, Registration

    def wired(psi: PsiSettings) -> dict:
        return Registration(job_id="j1", parties={"A": "a", "B": "b", "C": "c"}, training={}, psi=psi,
                            gradient_lengths={"A": 1, "B": 1}).wire()["psi"]

    assert "large_side" not in wired(PsiSettings(protocol="ecdh", unbalanced=True))
    assert wired(PsiSettings(protocol="ecdh", unbalanced=True, large_side="feature"))["large_side"] == "feature"


def test_a_large_feature_party_that_cannot_make_its_offline_set_fails_the_job_everywhere(tmp_path, run, monkeypatch):
    from psi import unbalanced

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(unbalanced.LargeSet, "save", full_disk)  # made in the background, after the registration

    async def scenario():
        cluster = await start_cluster(tmp_path, extra=LARGE_A, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                job = {**cluster.setup["job"], "job_id": "no-room",
                       "psi": {"protocol": "ecdh", "unbalanced": True, "large_side": "feature"}}
                submitted = await bank.post("/v1/jobs", json=job)
                return submitted, await wait_for(bank, "no-room"), (await shop.get("/v1/jobs/no-room")).json()
        finally:
            await cluster.stop()

    submitted, bank, shop = run(scenario())

    assert submitted.status_code == 201, submitted.text  # the registration did not wait for the offline pass
    assert bank["state"] == shop["state"] == "failed"
    assert "could not make this party's offline set" in shop["error"] and "No space left" in shop["error"]


@pytest.mark.parametrize("marks_progress", [True, False], ids=["marks-progress", "silent"])
def test_a_long_first_offline_build_is_not_taken_for_a_party_that_stopped(tmp_path, run, monkeypatch, marks_progress):
    # Arrange: the feature party's first offline build takes about twice idle_timeout (as tens of millions of
    # IDs take minutes against the default 900 s); "silent" drops the per-chunk callback, as before the fix.
    import time

    from psi import unbalanced

    real_build = unbalanced.LargeSet.build.__func__

    def slow_build(cls, ids, key, engine, *, chunk_size=None, on_chunk=None):
        def each(done):
            time.sleep(0.3)
            if marks_progress and on_chunk is not None:
                on_chunk(done)
        return real_build(cls, ids, key, engine, chunk_size=max(1, len(ids) // 10), on_chunk=each)

    monkeypatch.setattr(unbalanced.LargeSet, "build", classmethod(slow_build))
    fast = {"heartbeat": 0.3, "idle_timeout": 1.5}

    async def scenario():
        cluster = await start_cluster(tmp_path, extra=LARGE_A, limits={n: fast for n in ("party-a", "party-b",
                                                                                        "arbiter")},
                                      **demo_job(epochs=1))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                job = {**cluster.setup["job"], "job_id": "slow-build",
                       "psi": {"protocol": "ecdh", "unbalanced": True, "large_side": "feature"}}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                return await wait_for(bank, "slow-build"), (await shop.get("/v1/jobs/slow-build")).json()
        finally:
            await cluster.stop()

    # Act
    bank, shop = run(scenario())

    # Assert: with the progress marks both parties wait; without them the silence fails the job, so the
    # marks (and B reading the feature party's "quiet") are what keeps it alive.
    if marks_progress:
        assert bank["state"] == shop["state"] == "succeeded", (bank["error"], shop["error"])
        assert shop["alignment"]["offline_set"] == "sent"
    else:
        assert bank["state"] == shop["state"] == "failed"
        assert "limits.idle_timeout" in (shop["error"] or "") + (bank["error"] or "")


#: Malformed points a deviating party puts at index 3 of a chunk, and the reason the receiver names.
MALFORMED = {
    "identity": (ec.IDENTITY, "is the identity element"),
    "small-order": ((1).to_bytes(32, "little"), "is a point of small order"),
    "non-canonical": ((ec.FIELD_PRIME + 9).to_bytes(32, "little"), "is not a canonical u-coordinate"),
    "twist": ((2).to_bytes(32, "little"), "is not on curve25519"),
    "short": (b"\x09" * 31, "has .* bytes for .* points of 32"),
}


def _corrupt(packed: bytes, bad: bytes) -> bytes:
    return packed[: 3 * ec.POINT_BYTES] + bad + packed[4 * ec.POINT_BYTES:]


@pytest.mark.parametrize("sender, bad", [("party-a", k) for k in MALFORMED] + [("party-b", "small-order"),
                                                                                ("party-b", "short")])
def test_a_party_sending_malformed_points_fails_the_job_at_every_party(tmp_path, run, monkeypatch, sender, bad):
    # Arrange: the deviating party's own copy corrupts one point of each chunk it sends (party A its remasked
    # chunks, party B its masked chunks); only it runs that class in this process.
    from psi import suites

    point, reason = MALFORMED[bad]
    if sender == "party-a":
        honest = suites.EcdhHolder.answer

        def answer(self, message, engine):
            out = honest(self, message, engine)
            return out.model_copy(update={"points": _corrupt(out.points, point)})

        monkeypatch.setattr(suites.EcdhHolder, "answer", answer)
        receiver, what = "party-b", "party A's remasked chunk 0: point 3"
    else:
        honest_mask = suites.EcdhRequester.mask

        def mask(self, *args, **kwargs):
            message, state = honest_mask(self, *args, **kwargs)
            return message.model_copy(update={"points": _corrupt(message.points, point)}), state

        monkeypatch.setattr(suites.EcdhRequester, "mask", mask)
        receiver, what = "party-a", "party B's masked chunk 0: point 3"
    if bad == "short":
        what = what.rsplit(": point", 1)[0]

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=1))
        try:
            job = {**cluster.setup["job"], "job_id": "bad-points", "psi": {"protocol": "ecdh"}}
            async with cluster.client() as bank:
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                await wait_for(bank, "bad-points")
            statuses = {}
            for name in ("party-b", "party-a", "arbiter"):
                async with cluster.client(name) as client:
                    statuses[name] = (await client.get("/v1/jobs/bad-points")).json()
            audit = cluster.nodes[receiver].store.job_dir("bad-points") / "audit.log"
            return statuses, audit.read_text() if audit.exists() else ""
        finally:
            await cluster.stop()

    # Act
    statuses, audit = run(scenario())

    # Assert: refused by the receiver before its scalar touched the point, named, and the job over everywhere
    assert {name: s["state"] for name, s in statuses.items()} == {
        "party-b": "failed", "party-a": "failed", "arbiter": "failed"}
    assert what in statuses[receiver]["error"]
    assert re.search(reason, statuses[receiver]["error"]), statuses[receiver]["error"]
    assert "refused" in audit and re.search(reason, audit)
    assert statuses["party-b"]["alignment"] is None  # nothing aligned, nothing trained
