"""Who takes part in a job: party ids and the role each plays.

A party's *role* is what it does in the protocol: a **feature party** holds
features only, the **label party** B holds features and the label, the
**arbiter** C holds the private key. A party's *id* is its name in the
federation ("shop", "telco", "bank"). Messages, the arbiter's schedule,
checkpoints and audit logs address parties by id; the role only says which
messages an id may send and receive.

With one feature party the ids default to "A", "B" and "C", the names the
two-party literature uses. Those letters are also the roles' short names
(:data:`LETTERS`): a service config says ``role = "B"``, and messages say
"party B"; code speaks of kinds (feature, label, arbiter).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vfl.errors import ConfigError

RoleKind = Literal["feature", "label", "arbiter"]
#: The short names of the two-party literature, used in configs (``role = "A"``) and for display only.
RoleLetter = Literal["A", "B", "C"]
#: The one map between role kinds and their letters.
LETTERS: dict[RoleKind, RoleLetter] = {"feature": "A", "label": "B", "arbiter": "C"}
KINDS: dict[RoleLetter, RoleKind] = {letter: kind for kind, letter in LETTERS.items()}
PARTY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_PARTY_ID = re.compile(PARTY_ID_PATTERN)


@dataclass(frozen=True)
class Roster:
    """The parties of one job: the label party, the arbiter, and the feature parties in order."""

    features: tuple[str, ...] = ("A",)
    label: str = "B"
    arbiter: str = "C"

    def __post_init__(self) -> None:
        if not self.features:
            raise ConfigError("a job needs at least one feature party besides the label party")
        ids = self.all
        for party in ids:
            if not isinstance(party, str) or not _PARTY_ID.match(party):
                raise ConfigError(f"party id {party!r} is not a plain name (letters, digits, '.', '_', '-')")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"party ids must be distinct, got {list(ids)}")

    @classmethod
    def default(cls, k: int = 1) -> Roster:
        """"A", "B", "C" for one feature party; "A1" … "Ak" for more."""
        if k < 1:
            raise ConfigError(f"a job needs at least one feature party, got {k}")
        return cls(("A",) if k == 1 else tuple(f"A{i}" for i in range(1, k + 1)))

    @classmethod
    def of(cls, features: Sequence[str], label: str = "B", arbiter: str = "C") -> Roster:
        return cls(tuple(features), label, arbiter)

    @classmethod
    def pair(cls, feature: str, label: str) -> Roster:
        """Two parties without an arbiter (the PSI): the arbiter's id is only a placeholder."""
        arbiter = next(x for x in ("C", "C0", "C1") if x not in (feature, label))
        return cls((feature,), label, arbiter)

    @property
    def k(self) -> int:
        return len(self.features)

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.features, self.label, self.arbiter)

    @property
    def trainers(self) -> tuple[str, ...]:
        """The parties that hold data and send gradients: the feature parties, then B."""
        return (*self.features, self.label)

    def kind_of(self, party: str) -> RoleKind | None:
        if party == self.label:
            return "label"
        if party == self.arbiter:
            return "arbiter"
        if party in self.features:
            return "feature"
        return None

    def to_dict(self) -> dict[str, object]:
        return {"features": list(self.features), "label": self.label, "arbiter": self.arbiter}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Roster:
        return cls(tuple(data["features"]), str(data["label"]), str(data["arbiter"]))  # type: ignore[arg-type]
