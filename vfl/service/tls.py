"""Mutual TLS between the three services.

``vfl certs --out DIR --parties party-a,party-b,arbiter`` makes a small CA and
one certificate per party (EC P-256, common name = party id, SANs for the
hosts it serves on, usable as TLS server and client), one folder per owner::

    DIR/ca/ca.pem, ca.key                      the CA: its key signs certificates, keep it offline
    DIR/<party>/<party>.pem, <party>.key,      what that party installs, and nothing of anyone else's
                ca.pem (a copy)

Private keys are written with mode 0600 and the folders with 0700, so each
folder can be handed to its owner as it is.

Every service serves TLS with its certificate. The TLS layer asks each caller
for a certificate signed by the CA (``CERT_OPTIONAL``: a certificate that is
presented must verify, or the handshake fails); then:

* peer endpoints (``/v1/peer/...``) require one, and its common name must be a
  configured peer, and the party the endpoint expects (checked per message);
* orchestration endpoints (``/v1/jobs...``) require the bearer token instead,
  so tools like curl only need the CA file to check the server.

Uvicorn does not hand the peer certificate to the app, so
:class:`PeerCertProtocol` (uvicorn's h11 protocol with a few additions) copies
it into the per-connection state, where a request finds it as
``request.state.peer_certificate``. The same class, used with and without
TLS, also gives every connection a deadline for its request head and refuses
oversized heads with 431 (``[limits]`` ``header_timeout``, ``max_header_bytes``).
"""

from __future__ import annotations

import functools

import asyncio
import datetime as dt
import ipaddress
import re
import ssl
from pathlib import Path
from typing import Any

import h11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from uvicorn.protocols.http.h11_impl import H11Protocol

from vfl.errors import ConfigError
from vfl.files import private_folder, write_private
from vfl.service.config import PARTY_ID_PATTERN

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
VALID_DAYS = 825


CA_FOLDER = "ca"


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
                      *, days: int = VALID_DAYS, force: bool = False) -> dict[str, dict[str, Path]]:
    """A CA in ``out/ca`` and each party's certificate in ``out/<party>``; returns {party: {"cert", "key", "ca"}}.

    The CA key is written to ``out/ca/ca.key`` only: no party folder holds it or another
    party's key, so each party folder can be copied to its host as it is. ``"ca"`` in the
    answer is the party's own copy of the CA certificate.

    Files that exist already (a CA in use, the ones ``vfl demo --prepare-only`` wrote) are
    not replaced unless ``force``: a :class:`ConfigError` names them and nothing is written.
    """
    if not parties or len(set(parties)) != len(parties):
        raise ConfigError("give each party once: --parties party-a,party-b,arbiter")
    for party in parties:  # each id names a folder: no separators, nothing that climbs out of ``out``
        if not re.fullmatch(PARTY_ID_PATTERN, party):
            raise ConfigError(f"party id {party!r} must be letters, digits, '.', '_' or '-' (and start with one)")
    if CA_FOLDER in parties:
        raise ConfigError(f"{CA_FOLDER!r} is the CA's folder; give that party another id")
    planned = [out / CA_FOLDER / "ca.pem", out / CA_FOLDER / "ca.key"]
    planned += [out / p / name for p in parties for name in (f"{p}.pem", f"{p}.key", "ca.pem")]
    existing = [str(path) for path in planned if path.exists() or path.is_symlink()]
    if existing and not force:
        raise ConfigError(
            f"{out} already holds a CA, certificates or keys that this would replace: {', '.join(existing)}. "
            "Services and peers may be using them (a new CA invalidates every certificate it signed). "
            "Choose another --out, move them away, or give --force to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)
    ca_folder = private_folder(out / CA_FOLDER)
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
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    (ca_folder / "ca.pem").write_bytes(ca_pem)
    write_private(ca_folder / "ca.key", _key_pem(ca_key))
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
        folder = private_folder(out / party)
        cert_path, key_path, ca_path = folder / f"{party}.pem", folder / f"{party}.key", folder / "ca.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(key_path, _key_pem(key))
        ca_path.write_bytes(ca_pem)  # each party checks its peers against its own copy
        made[party] = {"cert": cert_path, "key": key_path, "ca": ca_path}
    return made


@functools.lru_cache(maxsize=256)
def common_name(der: bytes) -> str | None:
    """The common name of a DER certificate (the party id vfl certificates carry).

    Cached by the certificate's bytes: a peer presents the same one on every call, and
    parsing it per request would cost more than a partial score.
    """
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


def client_ssl_context(ca: Path, cert: Path, key: Path, peer: str | None = None) -> ssl.SSLContext:
    """For calls to peers: check their certificate against the CA, present ours.

    With ``peer``, the certificate must also name that party (its common name), checked inside
    the handshake, before a byte of the request is sent: the CA signs every party's certificate,
    and the host names in it may be shared ("localhost"), so a valid chain alone would let one
    party answer for another whose traffic it can reach.
    """
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    if peer is not None:
        context.sslobject_class = _naming(peer)
    return context


class WrongPeer(ssl.SSLCertVerificationError):
    """The peer's certificate is the CA's but names another party."""


def _naming(peer: str) -> type[ssl.SSLObject]:
    """An SSLObject class whose handshake fails unless the peer's certificate names ``peer``."""

    class PeerNamed(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # raises "want read/write" until the handshake is done
            der = self.getpeercert(binary_form=True)
            named = common_name(der) if der else None
            if named != peer:
                raise WrongPeer(f"the server's certificate names {named!r}, not the peer {peer!r} this call is for")

    return PeerNamed


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol with four additions, for TLS and plain HTTP alike.

    * The caller's verified certificate goes into the request state (uvicorn
      does not hand it to the app).
    * Deadlines for slow clients. A connection must deliver a complete request
      line and headers within ``header_timeout`` seconds of opening (or of the
      first byte of its next request), and may pause for at most
      ``body_timeout`` seconds while it sends a body; otherwise it is dropped.
      Without them a client that sends half a request holds a connection for
      ever: uvicorn's keep-alive timer only runs *between* requests, and
      FastAPI reads a JSON body before it checks the token or certificate.
    * A head larger than uvicorn's ``h11_max_incomplete_event_size`` gets 431
      (uvicorn answers every unparsable head with 400).
    * Idle connections close at once on shutdown (see :meth:`shutdown`).

    The timeouts reach the constructor through ``functools.partial``, which
    uvicorn accepts in place of a class.
    """

    def __init__(self, *args: Any, header_timeout: float = 10.0, body_timeout: float = 60.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: str | None = None  # "head" or "body"

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        # A fresh dict per connection: uvicorn copies it into every request's scope["state"].
        self.app_state = {**self.app_state, "peer_certificate": der}
        self._update_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _update_deadline(self) -> None:
        """Set the deadline that fits where the client is in its request, after each read.

        h11's view of the client: IDLE until a complete request head has been
        parsed, SEND_BODY while a body is arriving, DONE once the request is in.
        After a response the client is IDLE again for its next request; uvicorn's
        keep-alive timer covers that silence, and the head deadline starts again
        with the first byte of the next request. The head deadline is not moved
        by further bytes (trickling a head must not keep a connection), the body
        deadline is: it limits pauses, so that a large body may take its time.
        """
        state = self.conn.their_state
        if self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
            self._cancel_deadline()
        elif state is h11.IDLE:
            if self._deadline_for != "head" and (self.cycle is None or self.conn.trailing_data[0]):
                self._set_deadline("head", self.header_timeout)  # a new connection, or a next request begun
        else:
            self._set_deadline("body", self.body_timeout)

    def _set_deadline(self, phase: str, seconds: float) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._deadline_passed)
        self._deadline_for = phase

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._deadline_for = None, None

    def _deadline_passed(self) -> None:
        phase = self._deadline_for
        self._deadline, self._deadline_for = None, None
        if self.transport.is_closing():
            return
        if phase == "body" and self.flow.read_paused:
            self._set_deadline("body", self.body_timeout)  # the app is behind, not the client: wait on
            return
        expected = h11.IDLE if phase == "head" else h11.SEND_BODY
        if self.conn.their_state is not expected:
            return
        limit = self.header_timeout if phase == "head" else self.body_timeout
        what = "no complete request head within" if phase == "head" else "request body stalled for"
        self.logger.info("%s: %s %.3g s; connection dropped", _peer_name(self.client), what, limit)
        # abort, not close: a graceful TLS close would wait for this client's close_notify.
        self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        """h11 refuses a request head larger than its buffer limit; answer that with 431, not 400."""
        limit = self.config.h11_max_incomplete_event_size
        if limit is None or len(self.conn.trailing_data[0]) <= limit:
            super().send_400_response(msg)
            return
        self.logger.info("%s: request head above %d bytes refused", _peer_name(self.client), limit)
        body = b"request line and headers are too large"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()

    def shutdown(self) -> None:
        """Server shutdown: close an idle connection at once, let a busy one finish its response.

        uvicorn closes idle connections gracefully, and over TLS a graceful close
        waits for the client's close_notify, which an idle HTTP client (a peer's
        connection pool) never sends: the service then hung for asyncio's 30 s
        ssl_shutdown_timeout before it exited. Nothing is in flight on an idle
        connection, so it is aborted instead.
        """
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle:
            self.transport.abort()


def _peer_name(client: tuple[str, int] | None) -> str:
    return "%s:%d" % client if client else "a client"
