"""vfl: vertical federated logistic and linear regression.

Party A and party B hold different columns about the same people; with an
arbiter C holding a Paillier key they train one model without pooling data.
See docs/ (docs/protocol.md, docs/deployment.md, docs/security.md) for the protocol, the services and the
threat model.

The public names below load on first use, so ``import vfl.errors`` (which
``psi`` needs) does not pull in the whole package.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "TrainingConfig": "vfl.ml.config",
    "PartyTable": "vfl.data.table",
    "from_dataframe": "vfl.data.table",
    "load_csv": "vfl.data.table",
    "VFLError": "vfl.errors",
    "simulate": "vfl.local.simulate",
    "simulate_csv": "vfl.local.simulate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vfl' has no attribute {name!r}")
    return getattr(import_module(module), name)
