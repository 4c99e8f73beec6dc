"""Mutual TLS between the three services.

``vfl certs --out DIR --parties party-a,party-b,arbiter`` makes a small CA and
one certificate per party (EC P-256, common name = party id, SANs for the
hosts it serves on, usable as TLS server and client). Private keys are written
with mode 0600.

Every service serves TLS with its certificate. The TLS layer asks each caller
for a certificate signed by the CA (``CERT_OPTIONAL``: a certificate that is
presented must verify, or the handshake fails); then:

* peer endpoints (``/v1/peer/...``) require one, and its common name must be a
  configured peer, and the party the endpoint expects (checked per message);
* orchestration endpoints (``/v1/jobs...``) require the bearer token instead,
  so tools like curl only need the CA file to check the server.

Uvicorn does not hand the peer certificate to the app, so
:class:`PeerCertProtocol` (uvicorn's h11 protocol with one addition) copies it
into the per-connection state, where a request finds it as
``request.state.peer_certificate``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from uvicorn.protocols.http.h11_impl import H11Protocol

from vfl.errors import ConfigError

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
VALID_DAYS = 825


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (mode 0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vfl"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def make_certificates(out: Path, parties: list[str], hosts: dict[str, list[str]] | None = None,
                      *, days: int = VALID_DAYS) -> dict[str, dict[str, Path]]:
    """A CA and one certificate per party in ``out``; returns {party: {"cert", "key", "ca"}}."""
    if not parties or len(set(parties)) != len(parties):
        raise ConfigError("give each party once: --parties party-a,party-b,arbiter")
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("vfl certificate authority")).issuer_name(_name("vfl certificate authority"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = out / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(out / "ca.key", _key_pem(ca_key))
    made: dict[str, dict[str, Path]] = {}
    for party in parties:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name(party)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(_san(list((hosts or {}).get(party) or DEFAULT_HOSTS)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = out / f"{party}.pem", out / f"{party}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _key_pem(key))
        made[party] = {"cert": cert_path, "key": key_path, "ca": ca_path}
    return made


def common_name(der: bytes) -> str | None:
    """The common name of a DER certificate (the party id vfl certificates carry)."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def server_ssl_options(ca: Path, cert: Path, key: Path) -> dict[str, Any]:
    """uvicorn's TLS settings: our certificate, and client certificates checked against the CA."""
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_ca_certs": str(ca),
            "ssl_cert_reqs": ssl.CERT_OPTIONAL}


def client_ssl_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """For calls to peers: check their certificate against the CA, present ours."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus the caller's verified certificate in the request state."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        # A fresh dict per connection: uvicorn copies it into every request's scope["state"].
        self.app_state = {**self.app_state, "peer_certificate": der}
