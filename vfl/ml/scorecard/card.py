"""What one party keeps after a scorecard job: its characteristics' bins and coding, its points, its reference.

A feature party's card never leaves it: at scoring it releases only each
applicant's points total (and, if its config allows, its top reason codes with
their shortfalls). Party B's card holds B's own characteristics; B also keeps
the base points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vfl.errors import DataError
from vfl.ml.scaling import Standardizer
from vfl.ml.scorecard.encoding import Encoding
from vfl.ml.scorecard.points import PointsTable, Scaling, points_table
from vfl.ml.scorecard.stability import population_stability, stability_status


@dataclass(frozen=True)
class PartyCard:
    """One party's part of a scorecard."""

    party: str
    #: The raw feature columns of its kept characteristics, in the encoding's order.
    columns: tuple[int, ...]
    encoding: Encoding
    table: PointsTable
    #: Rows per bin of each characteristic on the job's aligned rows: the reference of its stability (CSI).
    reference: tuple[np.ndarray, ...]

    def bin_indices(self, features: np.ndarray) -> np.ndarray:
        """(rows, characteristics): the bin of each row, from the party's raw feature table."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or (self.columns and features.shape[1] <= max(self.columns)):
            raise DataError(f"party {self.party}'s scorecard reads columns {list(self.columns)} of its table, "
                            f"got {features.shape[-1] if features.ndim == 2 else 'no'} columns; use the table "
                            "it was trained on")
        return self.encoding.bin_indices(features[:, list(self.columns)])

    def totals(self, features: np.ndarray) -> np.ndarray:
        """Each row's points from this party's characteristics (what a feature party releases)."""
        return self.table.totals(self.bin_indices(features))

    def stability(self, counts: Sequence[np.ndarray] | None = None, *, party: str | None = None,
                  ) -> list[dict[str, Any]]:
        """Characteristic stability (CSI) of each characteristic: ``counts``, the served rows per bin of each
        (None or mismatched: none served yet), against the job's rows. ``party`` names who reports it."""
        if counts is None or len(counts) != len(self.encoding.bins):
            counts = [np.zeros(b.count, dtype=np.int64) for b in self.encoding.bins]
        out = []
        for bins, reference, actual in zip(self.encoding.bins, self.reference, counts):
            rows = int(np.sum(actual))
            value = population_stability(reference, np.asarray(actual)) if rows else 0.0
            out.append({"party": party or self.party, "characteristic": bins.name, "csi": value,
                        "status": stability_status(value), "rows": rows})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"party": self.party, "columns": list(self.columns), "encoding": self.encoding.to_dict(),
                "table": self.table.to_dict(), "reference": [r.tolist() for r in self.reference]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartyCard:
        return cls(data["party"], tuple(data["columns"]), Encoding.from_dict(data["encoding"]),
                   PointsTable.from_dict(data["table"]),
                   tuple(np.asarray(r, dtype=np.int64) for r in data["reference"]))


def card_for(party: str, features: np.ndarray, feature_names: Sequence[str], encoding: Encoding,
             scaler: Standardizer, weights: np.ndarray, scaling: Scaling,
             codes: Mapping[str, str] | None = None) -> PartyCard:
    """A party's card from its trained weights (on the coded, standardised columns) and its raw aligned table."""
    index = {n: i for i, n in enumerate(feature_names)}
    missing = [n for n in encoding.names if n not in index]
    if missing:
        raise DataError(f"party {party}'s table lacks the characteristics {missing} its scorecard was binned on")
    columns = tuple(index[n] for n in encoding.names)
    table = points_table(party, encoding.characteristics(scaler, weights), scaling, codes)
    indices = encoding.bin_indices(np.asarray(features, dtype=np.float64)[:, list(columns)])
    reference = tuple(np.bincount(indices[:, j], minlength=b.count) for j, b in enumerate(encoding.bins))
    return PartyCard(party, columns, encoding, table, reference)
