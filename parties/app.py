"""The service of a feature party (party A) or the label party B: the app :mod:`vfl.service.http.app` builds."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from vfl.errors import ConfigError
from vfl.service.config import ServiceConfig
from vfl.service.http.app import create_app as create_service_app


def create_app(config: ServiceConfig, *, node: Any = None) -> FastAPI:
    """The app of a feature party or the label party (``node``: a Node the caller built and holds)."""
    if config.kind not in ("feature", "label"):
        raise ConfigError(f"parties.app serves party A or B, not {config.party.role}; the arbiter is arbiter.app")
    return create_service_app(config, node=node)


__all__ = ["create_app"]
