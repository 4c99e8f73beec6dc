"""The service of the arbiter C: the app :mod:`vfl.service.http.app` builds, for role C only."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from vfl.errors import ConfigError
from vfl.service.config import ServiceConfig
from vfl.service.http.app import create_app as create_service_app


def create_app(config: ServiceConfig, *, node: Any = None) -> FastAPI:
    """The arbiter's app (``node``: a Node the caller built and holds)."""
    if config.kind != "arbiter":
        raise ConfigError(f"arbiter.app serves the arbiter (role C), not {config.party.role}; parties are parties.app")
    return create_service_app(config, node=node)


__all__ = ["create_app"]
