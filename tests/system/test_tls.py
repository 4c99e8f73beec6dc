"""Mutual TLS between real services: who may call what, and what is refused."""

from __future__ import annotations

import os
import ssl
import stat
import time

import httpx
import pytest

from vfl.demo.services import running_services, wait_healthy, write_demo_files
from vfl.errors import PeerRefused
from vfl.service.config import load_config
from vfl.service.peers import PeerClient
from vfl.service.store import JobStore
from vfl.service.tls import make_certificates


def context(ca, cert=None, key=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def registration(job_id: str) -> dict:
    return {"job_id": job_id, "parties": {"A": "party-a", "B": "party-b", "C": "arbiter"}, "dataset": "behaviour",
            "training": {"key_bits": 1024}, "psi": {"key_bits": 1024}, "gradient_lengths": {"B": 7}}


def test_peer_calls_need_the_right_certificate_and_orchestration_the_token(tmp_path):
    setup = write_demo_files(tmp_path, population=300, key_bits=1024, training={"epochs": 2})
    ca = tmp_path / "party-b" / "ca.pem"  # each party has its own copy of the CA certificate

    def own(name: str) -> tuple:  # a party's certificate and key, in that party's folder
        return tmp_path / name / f"{name}.pem", tmp_path / name / f"{name}.key"

    make_certificates(tmp_path / "other-ca", ["party-b"])  # same name, different authority
    shop = setup["urls"]["party-a"] + "/v1/peer/jobs"
    bank = setup["urls"]["party-b"]
    refusals: dict[str, tuple[int, str]] = {}

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])

        def call(name: str, **client_args) -> None:
            with httpx.Client(timeout=10, **client_args) as client:
                answer = client.post(shop, json=registration(name), headers=client_args.pop("headers", None))
            refusals[name] = (answer.status_code, answer.json()["detail"])

        call("no-certificate", verify=context(ca))
        call("arbiter-certificate", verify=context(ca, *own("arbiter")))
        call("own-certificate", verify=context(ca, *own("party-a")))
        with httpx.Client(timeout=10, verify=context(ca, *own("party-b"))) as spoof:
            answer = spoof.post(shop, json=registration("spoof"), headers={"X-VFL-Party": "arbiter"})
            refusals["header-contradicts-certificate"] = (answer.status_code, answer.json()["detail"])
        with httpx.Client(timeout=10, verify=context(ca)) as orchestrator:
            answer = orchestrator.get(bank + "/v1/jobs", headers={"Authorization": "Bearer " + "x" * 30})
            refusals["wrong-token"] = (answer.status_code, answer.json()["detail"])
            good_token = orchestrator.get(bank + "/v1/jobs", headers={"Authorization": f"Bearer {setup['token']}"})
        # Refused in the TLS layer: with TLS 1.3 the server checks the client certificate just
        # after the client thinks the handshake is done, so it shows as a hang-up, not a connect error.
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):
            httpx.post(shop, json=registration("x"), timeout=10,
                       verify=context(ca, tmp_path / "other-ca" / "party-b" / "party-b.pem",
                                      tmp_path / "other-ca" / "party-b" / "party-b.key"))
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on a TLS port
            httpx.get(setup["urls"]["party-a"].replace("https", "http") + "/v1/health", timeout=5)
        with httpx.Client(timeout=10, verify=context(ca, *own("party-b"))) as real_b:
            accepted = real_b.post(shop, json=registration("genuine"))

    assert refusals["no-certificate"] == (403, "peer endpoints need a client certificate signed by the federation's CA")
    assert refusals["arbiter-certificate"][0] == 403 and "only the job's party B" in refusals["arbiter-certificate"][1]
    assert refusals["own-certificate"][0] == 403 and "'party-a' is not a configured peer" in refusals["own-certificate"][1]
    assert refusals["header-contradicts-certificate"][0] == 403
    assert "the certificate 'party-b'" in refusals["header-contradicts-certificate"][1]
    assert refusals["wrong-token"] == (401, "missing or wrong bearer token")
    assert good_token.status_code == 200
    assert accepted.status_code == 201  # the same request with party B's certificate goes through


def test_a_service_talks_only_to_the_party_its_config_names(tmp_path, run):
    # The arbiter's address is redirected to the shop (as DNS or a proxy could): both certificates are
    # the federation CA's and both name "localhost", so only the name in the certificate tells them apart.
    setup = write_demo_files(tmp_path, population=300, key_bits=1024, training={"epochs": 2})
    bank = load_config(tmp_path / "party-b.toml")
    peers = dict(bank.peers)
    peers["arbiter"] = peers["arbiter"].model_copy(update={"url": peers["party-a"].url})
    misled = PeerClient(bank.model_copy(update={"peers": peers}))

    async def ask() -> tuple[object, object]:
        try:
            genuine = await misled.call_json("party-a", "GET", "/v1/peer/ledger/head")
            try:
                await misled.call_json("arbiter", "GET", "/v1/peer/ledger/head")
            except PeerRefused as exc:
                return genuine, exc
            return genuine, None
        finally:
            await misled.aclose()

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        started = time.monotonic()
        genuine, refused = run(ask())
        seconds = time.monotonic() - started

    assert isinstance(genuine, dict)  # the real shop answers as itself
    assert isinstance(refused, PeerRefused) and refused.error == "WrongPeer"
    assert "names 'party-a', not the peer 'arbiter'" in str(refused)
    assert seconds < bank.limits.peer_timeout  # refused at once, not retried as if the peer were down


def peak_memory_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc to read a process's peak memory")
def test_a_caller_without_credentials_cannot_make_a_service_hold_its_body(tmp_path):
    # Issue 27, class 2: a 36 MiB body without a token or certificate once cost each service ~920 MB.
    setup = write_demo_files(tmp_path, population=300, key_bits=1024, training={"epochs": 2})
    ca = tmp_path / "party-b" / "ca.pem"
    size = 36 * 1024**2

    def body():
        for _ in range(size // (1024**2)):
            yield b"1," * (512 * 1024)  # 1 MiB of a JSON list's items: without a credential, never parsed

    with running_services(tmp_path, ["party-a", "party-b"]) as processes:
        urls = {name: setup["urls"][name] for name in processes}
        wait_healthy(urls, setup["token"], processes, tmp_path, verify=setup["verify"])
        before = {name: peak_memory_kib(p.pid) for name, p in processes.items()}
        with httpx.Client(timeout=30, verify=context(ca)) as stranger:
            as_peer = stranger.post(urls["party-a"] + "/v1/peer/jobs", content=body(),
                                      headers={"Content-Type": "application/json"})
            as_orchestrator = stranger.post(urls["party-b"] + "/v1/jobs", content=body(),
                                            headers={"Content-Type": "application/json"})
        grew = {name: peak_memory_kib(p.pid) - before[name] for name, p in processes.items()}

    assert as_peer.status_code == 403 and as_orchestrator.status_code == 401
    assert grew["party-a"] < 16 * 1024 and grew["party-b"] < 16 * 1024, grew  # KiB: far below the body's 36 MiB


def test_private_material_is_written_owner_only(tmp_path):
    made = make_certificates(tmp_path / "certs", ["party-a", "arbiter"])
    store = JobStore(tmp_path / "data")
    store.save_checkpoint("job", 0, {"private_key": "secret"})
    write_demo_files(tmp_path / "demo", population=50, key_bits=1024)

    def mode(path) -> int:
        return stat.S_IMODE(os.stat(path).st_mode)

    assert mode(tmp_path / "certs" / "ca" / "ca.key") == 0o600
    assert all(mode(files["key"]) == 0o600 for files in made.values())
    assert mode(store.job_dir("job") / "checkpoints" / "epoch-0.json") == 0o600
    assert mode(tmp_path / "demo" / "party-b" / "token") == 0o600
