"""Connections that never finish a request, oversized heads, too many connections.

The tests talk to a real ``vfl serve`` (party A) through raw sockets, as an
attacker would: TLS without a client certificate (anyone can get that far), or
plain TCP for a service configured with ``insecure = true``. The service runs
with small ``[limits]`` so that the tests are quick. Hostile frames at
in-process services: tests/cluster/test_hostile_frames.py.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from vfl.demo.services import wait_healthy, write_demo_files

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_HEADER_BYTES = 8192
MAX_CONNECTIONS = 4
LIMITS = (f"header_timeout = {HEADER_TIMEOUT}\nbody_timeout = {BODY_TIMEOUT}\n"
          f"max_header_bytes = {MAX_HEADER_BYTES}\nmax_connections = {MAX_CONNECTIONS}\n")
#: Slack for a busy 2-core machine on top of the configured timeout.
MARGIN = 2.0


@dataclass
class Service:
    host: str
    port: int
    ca: str | None  # None: plain HTTP

    def connect(self) -> socket.socket:
        """A raw connection; over TLS the handshake is done, without a client certificate."""
        raw = socket.create_connection((self.host, self.port), timeout=10)
        if self.ca is None:
            return raw
        return ssl.create_default_context(cafile=self.ca).wrap_socket(raw, server_hostname=self.host)


@contextmanager
def party_a_service(workdir: Path, *, tls: bool) -> Iterator[Service]:
    """Party A alone as a `vfl serve` process with :data:`LIMITS` (its peers need not run for this)."""
    setup = write_demo_files(workdir, population=100, key_bits=1024, tls=tls)
    config = workdir / "party-a.toml"
    config.write_text(config.read_text().replace("[limits]\n", "[limits]\n" + LIMITS, 1))
    log = open(workdir / "party-a.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "vfl.cli", "serve", "--config", str(config)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        url = setup["urls"]["party-a"]
        wait_healthy({"party-a": url}, setup["token"], {"party-a": process}, workdir, verify=setup["verify"])
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        yield Service(host, int(port), setup["verify"] if tls else None)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def tls_shop(tmp_path_factory) -> Iterator[Service]:
    with party_a_service(tmp_path_factory.mktemp("tls-shop"), tls=True) as service:
        yield service


@pytest.fixture(scope="module")
def plain_shop(tmp_path_factory) -> Iterator[Service]:
    with party_a_service(tmp_path_factory.mktemp("plain-shop"), tls=False) as service:
        yield service


def seconds_until_closed(sock: socket.socket, limit: float = HEADER_TIMEOUT + 10) -> float:
    """Read (and drop) whatever the server sends until it closes the connection; seconds that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {limit} s") from None
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        pass  # the server aborted the connection: a reset, or a TLS stream cut short
    return time.monotonic() - started


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(HEADER_TIMEOUT + 10)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, ssl.SSLError):
        pass
    return b"".join(chunks)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP response off a keep-alive connection: (status, body)."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), body


HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HALF_A_REQUEST = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: the head never ends


def test_half_a_request_is_dropped_after_the_header_timeout(tls_shop):
    with tls_shop.connect() as sock:
        sock.sendall(HALF_A_REQUEST)
        elapsed = seconds_until_closed(sock)

    assert HEADER_TIMEOUT - 0.3 <= elapsed <= HEADER_TIMEOUT + MARGIN


def test_a_connection_that_sends_nothing_is_dropped_too(tls_shop):
    with tls_shop.connect() as sock:
        elapsed = seconds_until_closed(sock)

    assert elapsed <= HEADER_TIMEOUT + MARGIN


def test_trickling_the_head_byte_by_byte_does_not_extend_the_deadline(tls_shop):
    # A slowloris client: every byte would restart an idle timer, but not a deadline for the head.
    trickle = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200  # 20 s at 10 bytes/s
    closed_after = None
    with tls_shop.connect() as sock:
        started = time.monotonic()
        for byte in trickle:
            try:
                sock.sendall(bytes([byte]))
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)

    assert closed_after is not None, "the server took the whole trickle"
    assert closed_after <= HEADER_TIMEOUT + MARGIN


def test_the_deadline_restarts_for_the_next_request_on_a_kept_alive_connection(tls_shop):
    with tls_shop.connect() as sock:
        sock.sendall(HEALTH)
        status, body = read_response(sock)
        sock.sendall(HALF_A_REQUEST)  # well inside uvicorn's 5 s keep-alive window
        elapsed = seconds_until_closed(sock)

    assert status == 200 and b'"status":"ok"' in body
    assert HEADER_TIMEOUT - 0.3 <= elapsed <= HEADER_TIMEOUT + MARGIN


def test_a_slow_but_timely_head_is_served(tls_shop):
    with tls_shop.connect() as sock:
        sock.sendall(HEALTH[:20])
        time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(HEALTH[20:])
        status, _ = read_response(sock)

    assert status == 200


def post_head(length: int) -> bytes:
    """The head of a JSON POST to a peer route: FastAPI reads its body before it looks for a certificate."""
    return (b"POST /v1/peer/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(length).encode() + b"\r\n\r\n")


def test_a_body_that_stops_coming_is_dropped_after_the_body_timeout(tls_shop):
    with tls_shop.connect() as sock:
        sock.sendall(post_head(1000) + b'{"job_id": ')  # then nothing more
        elapsed = seconds_until_closed(sock)

    assert BODY_TIMEOUT - 0.3 <= elapsed <= BODY_TIMEOUT + MARGIN


def test_a_body_sent_slowly_but_without_long_pauses_is_read_to_the_end(tls_shop):
    body = b'{"a": 1}'
    with tls_shop.connect() as sock:
        sock.sendall(post_head(len(body)))
        started = time.monotonic()
        for byte in body:  # each pause well under the body timeout, the whole body well over it
            time.sleep(BODY_TIMEOUT / 3)
            sock.sendall(bytes([byte]))
        took = time.monotonic() - started
        status, answer = read_response(sock)

    assert took > 2 * BODY_TIMEOUT
    assert status == 403 and b"client certificate" in answer  # the whole request reached the app


def test_an_oversized_head_gets_431_and_the_connection_closes(tls_shop):
    with tls_shop.connect() as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * (3 * MAX_HEADER_BYTES))
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_requests_beyond_max_connections_get_503_until_connections_free_up(tls_shop):
    idle = [tls_shop.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        with tls_shop.connect() as sock:
            sock.sendall(HEALTH)
            crowded, _ = read_response(sock)
        for sock in idle:  # the header timeout drops the idle ones and frees their places
            seconds_until_closed(sock)
    finally:
        for sock in idle:
            sock.close()
    with tls_shop.connect() as sock:
        sock.sendall(HEALTH)
        freed, _ = read_response(sock)

    assert crowded == 503
    assert freed == 200


def test_plain_http_services_get_the_same_deadline(plain_shop):
    with plain_shop.connect() as sock:
        sock.sendall(HALF_A_REQUEST)
        elapsed = seconds_until_closed(sock)

    assert HEADER_TIMEOUT - 0.3 <= elapsed <= HEADER_TIMEOUT + MARGIN
