"""The orchestration API's answers as typed models: one description of the JSON for the service, its clients and CLI.

:mod:`vfl.api.models` holds pydantic models of what every orchestration route
answers. The service declares them as its routes' response models (so the
OpenAPI document at ``/openapi.json`` describes them and FastAPI checks every
answer against them); :mod:`vfl.orchestrate` and so the ``vfl`` CLI parse every
answer through the same models. Neither side can drift from the other without a
test failing. The module needs only pydantic: it sits below the service and the
client (see the import-linter contracts in ``pyproject.toml``).

The versions of the two documents, and the rule for moving them, are here too
(``docs/api-contract.md``).
"""

from __future__ import annotations

#: The orchestration API's version (``/openapi.json``): MAJOR.MINOR.PATCH. MINOR moves for additions (a route,
#: an optional request field, a response field), MAJOR for anything a generated client of the old document
#: could trip on (see docs/api-contract.md).
ORCHESTRATION_API_VERSION = "1.3.0"
#: The peer protocol's version (``/peer/openapi.json``): the routes other parties' services call.
PEER_PROTOCOL_VERSION = "2.0.0"

__all__ = ["ORCHESTRATION_API_VERSION", "PEER_PROTOCOL_VERSION"]
