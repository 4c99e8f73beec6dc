"""``vfl serve``: one service under uvicorn, its role chosen by its config file.

What uvicorn is told, and why:

* ``http``: :class:`~vfl.service.tls.PeerCertProtocol`, with and without TLS;
  it gives every connection ``[limits] header_timeout`` seconds to send a
  complete request head and lets it pause at most ``body_timeout`` seconds
  while sending a body, and answers a head above ``max_header_bytes`` with
  431 (``h11_max_incomplete_event_size``).
* ``limit_concurrency``: with ``max_connections`` connections open or
  requests running, further requests get 503 instead of piling up.
* ``timeout_graceful_shutdown``: on SIGTERM, requests still running get
  :data:`GRACEFUL_SHUTDOWN_SECONDS`, then they are cancelled and the service
  exits. Jobs are checkpointed every epoch and resume after a restart, so
  nothing is gained by waiting longer. Crypto worker processes end with the
  service (see :mod:`vfl.compute.pool`).
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.main import STARTUP_FAILURE

from vfl.compute.pool import shutdown_pools
from vfl.errors import ConfigError
from vfl.service.config import ServiceConfig, load_config
from vfl.service.http.app import create_app
from vfl.service.logs import LogFormat
from vfl.service.logs import configure as configure_logging
from vfl.service.startup import check_datasets
from vfl.service.tls import PeerCertProtocol, server_ssl_options

#: Seconds a stopping service lets running requests finish.
GRACEFUL_SHUTDOWN_SECONDS = 3


def create_app_for(config_path: str | Path, *, check_data: bool = False):  # noqa: ANN201 - a FastAPI app
    """The config and the app of one service; ``check_data`` loads every dataset first (vfl.service.startup)."""
    config = load_config(config_path)
    if check_data:
        check_datasets(config)
    return config, create_app(config)


def uvicorn_options(config: ServiceConfig) -> dict[str, Any]:
    """Everything uvicorn needs besides the app, host and port (see the module docstring)."""
    limits = config.limits
    options: dict[str, Any] = {
        "http": functools.partial(PeerCertProtocol, header_timeout=limits.header_timeout,
                                  body_timeout=limits.body_timeout),
        "limit_concurrency": limits.max_connections,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    if config.tls is not None:
        options.update(server_ssl_options(config.tls.ca, config.tls.cert, config.tls.key))
    return options


def bind_listen_socket(config: ServiceConfig, config_path: str | Path) -> socket.socket:
    """The service's listening socket, bound before anything starts.

    uvicorn binds only after the app's start-up, then logs a raw errno and exits 3; binding here first turns a
    port in use into a configuration error (exit 2) that names ``party.listen`` and the file, and no start-up
    work (datasets, worker processes) is done for a service that cannot listen.
    """
    host, port = config.party.host.strip("[]"), config.party.port
    where = f"{config.party.listen} (party.listen in {config_path})"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{where} is already in use, perhaps by another vfl serve; stop it or choose another "
                              "port") from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"{where}: {host} is not an address of this host; use one of its addresses, "
                              "127.0.0.1 or 0.0.0.0") from exc
        if exc.errno == errno.EACCES:
            raise ConfigError(f"{where}: port {port} needs privileges; choose a port above 1023") from exc
        raise ConfigError(f"{where}: cannot listen there ({exc.strerror or exc}); choose another address") from exc
    except socket.gaierror as exc:
        sock.close()
        raise ConfigError(f"{where}: unknown host {host!r} ({exc.strerror or exc}); give an IP address or a "
                          "name this host resolves") from exc
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server on a socket bound beforehand, still announcing where it listens once it has started.

    uvicorn prints "Uvicorn running on ..." only for sockets it binds itself; operators, ``vfl demo`` and the
    tests wait for that line.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            scheme = "https" if self.config.ssl else "http"
            shown = f"[{host}]" if ":" in host else host
            logging.getLogger("uvicorn.error").info("Uvicorn running on %s://%s:%d (Press CTRL+C to quit)",
                                                    scheme, shown, port)


def serve(config_path: str | Path, *, log_level: str = "info", log_format: LogFormat = "text") -> None:
    """Run the service of ``config_path`` until SIGTERM; log lines as text or JSON (:mod:`vfl.service.logs`)."""
    configure_logging(log_level, log_format)
    config = load_config(config_path)
    listening = bind_listen_socket(config, config_path)  # a port in use stops it here, before any start-up work
    try:
        check_datasets(config)  # a bad dataset stops it here, not at a submit
        # The crypto worker pools stop with the app (their semaphores released): see vfl.compute.pool.
        app = create_app(config, after_shutdown=functools.partial(shutdown_pools, wait=True))
        if config.tls is None:
            logging.getLogger("vfl.service").warning(
                "serving %s over PLAIN HTTP (insecure = true): peers are identified by a header anyone can forge; "
                "use [tls] outside tests", config.party.id,
            )
        # log_config=None: uvicorn's own lines go through the handler above (text or JSON), not its own.
        # Its access log (one line per request) only at debug level.
        server = _Server(uvicorn.Config(
            app, host=config.party.host, port=config.party.port, log_level=log_level, log_config=None,
            access_log=log_level == "debug", **uvicorn_options(config)))
        try:
            server.run(sockets=[listening])
        except KeyboardInterrupt:  # as uvicorn.run: Ctrl-C is a stop, not an error
            pass
        if not server.started:
            sys.exit(STARTUP_FAILURE)  # as uvicorn.run: the app's start-up failed (uvicorn logged why)
    finally:
        listening.close()
