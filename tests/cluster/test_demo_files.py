"""`vfl demo --prepare-only` and `vfl certs` lay secrets out as three organisations would hold them.

Each service has its own token and its own folder with its own key only; the CA
key is in none of them; keys and tokens are 0600.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers import start_cluster
from vfl.errors import ConfigError
from vfl.service.config import load_config
from vfl.service.tls import make_certificates

SERVICES = ("party-a", "party-b", "arbiter")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfl.cli", *args], capture_output=True, text=True, timeout=120)


def public_key_pem(key_or_cert) -> bytes:
    return key_or_cert.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_prepare_only_gives_each_service_its_own_token_key_and_folder(tmp_path):
    work = tmp_path / "demo"

    done = cli("demo", "--workdir", str(work), "--prepare-only", "--customers", "200")

    assert done.returncode == 0, done.stderr
    configs = {name: load_config(work / f"{name}.toml") for name in SERVICES}
    tokens = {name: config.token() for name, config in configs.items()}
    assert len(set(tokens.values())) == 3  # three different tokens
    ca_key = (work / "ca" / "ca.key").read_bytes()
    for name, config in configs.items():
        folder = work / name
        files = [p for p in folder.rglob("*") if p.is_file()]
        # Everything the service's config points at is in its own folder.
        referenced = [config.party.api_token_file, config.tls.ca, config.tls.cert, config.tls.key]
        referenced += [dataset.path for dataset in config.datasets.values()]
        assert all(path.parent == folder for path in referenced), (name, referenced)
        # Its own key, and no other key: not a peer's, not the CA's (by name or by content).
        assert [p.name for p in files if p.suffix == ".key"] == [f"{name}.key"]
        assert all(ca_key not in p.read_bytes() for p in files)
        key = serialization.load_pem_private_key(config.tls.key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(config.tls.cert.read_bytes())
        assert public_key_pem(key) == public_key_pem(cert)  # the key belongs to the service's certificate
        assert config.tls.ca.read_bytes() == (work / "ca" / "ca.pem").read_bytes()
        assert mode(config.tls.key) == mode(config.party.api_token_file) == 0o600
        assert mode(folder) == 0o700
    assert mode(work / "ca" / "ca.key") == 0o600 and mode(work / "ca") == 0o700
    assert not (work / "token").exists() and not (work / "certs").exists()  # no shared secrets left about
    assert "party-b/token" in done.stderr  # it says which token the orchestrator uses


def test_vfl_certs_writes_one_folder_per_party_and_keeps_the_ca_key_apart(tmp_path):
    out = tmp_path / "certs"

    done = cli("certs", "--out", str(out), "--parties", "bank,shop")

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "bank").iterdir()) == ["bank.key", "bank.pem", "ca.pem"]
    assert sorted(p.name for p in (out / "shop").iterdir()) == ["ca.pem", "shop.key", "shop.pem"]
    assert sorted(p.name for p in (out / "ca").iterdir()) == ["ca.key", "ca.pem"]
    assert mode(out / "bank" / "bank.key") == mode(out / "ca" / "ca.key") == 0o600
    assert "keep it offline" in done.stdout


@pytest.mark.parametrize("party", ["../elsewhere", "ca", ""])
def test_vfl_certs_refuses_a_party_id_that_is_not_a_plain_folder_name(tmp_path, party):
    with pytest.raises(ConfigError):
        make_certificates(tmp_path / "certs", ["bank", party])

    assert not (tmp_path / "elsewhere").exists()


def test_a_service_refuses_another_services_token(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, population=50, key_bits=1024)
        tokens = cluster.setup["tokens"]
        try:
            async with cluster.client("party-b", token=tokens["party-a"]) as wrong, \
                       cluster.client("party-b") as right:
                return (await wrong.get("/v1/jobs")).status_code, (await right.get("/v1/jobs")).status_code
        finally:
            await cluster.stop()

    wrong, right = run(scenario())

    assert (wrong, right) == (401, 200)


def test_prepare_only_refuses_to_replace_a_prepared_folder_unless_forced(tmp_path, capsys):
    # Arrange: a prepared folder, with a service's job store in it.
    from vfl.cli import main

    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work), "--prepare-only", "--customers", "200"]) == 0
    (work / "data" / "party-b").mkdir(parents=True)
    ca_before, token_before = (work / "ca" / "ca.pem").read_bytes(), (work / "party-b" / "token").read_bytes()
    capsys.readouterr()

    # Act
    refused = main(["demo", "--workdir", str(work), "--prepare-only", "--customers", "200"])
    refusal = capsys.readouterr().err
    untouched = (work / "ca" / "ca.pem").read_bytes() == ca_before and (work / "party-b" / "token").read_bytes() == token_before
    forced = main(["demo", "--workdir", str(work), "--prepare-only", "--customers", "200", "--force"])

    # Assert: as `vfl certs` does: exit 2, the files named, --force offered; nothing replaced until forced.
    assert refused == 2 and untouched
    assert refusal.startswith(f"vfl demo: {work.resolve()} already holds demo files that this would replace: ")
    for name in ("arbiter.toml", "party-a.toml", "party-b.toml", "job.json", "ca/", "party-b/", "data/"):
        assert name in refusal
    assert "--force" in refusal
    assert forced == 0
    assert (work / "ca" / "ca.pem").read_bytes() != ca_before and (work / "party-b" / "token").read_bytes() != token_before
    assert not (work / "data" / "party-b").exists()  # the old CA's job stores went with it
