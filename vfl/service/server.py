"""``vfl serve``: one service under uvicorn, its role chosen by its config file."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from vfl.service.config import load_config
from vfl.service.tls import PeerCertProtocol, server_ssl_options


def create_app_for(config_path: str | Path):  # noqa: ANN201 - a FastAPI app
    config = load_config(config_path)
    if config.role == "C":
        from arbiter.app import create_app
    else:
        from parties.app import create_app
    return config, create_app(config)


def serve(config_path: str | Path, *, log_level: str = "info") -> None:
    config, app = create_app_for(config_path)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options: dict = {}
    if config.tls is None:
        logging.getLogger("vfl.service").warning(
            "serving %s over PLAIN HTTP (insecure = true): peers are identified by a header anyone can forge; "
            "use [tls] outside tests", config.party.id,
        )
    else:
        options = {"http": PeerCertProtocol, **server_ssl_options(config.tls.ca, config.tls.cert, config.tls.key)}
    uvicorn.run(app, host=config.party.host, port=config.party.port, log_level=log_level, access_log=False,
                **options)
