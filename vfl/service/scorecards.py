"""A scorecard job at one party: its section of the job, its coded table, its own selection, its stored parts.

What each party keeps (``scorecard.json`` and ``card.json`` in its job folder,
checksummed and atomic like every job file):

* party B: its WOE coding, the binning report of every characteristic of every
  party (counts, WOE, IV: B's to know), the selection, and after training its
  base points and the score bands of its training scores;
* a feature party: its own bins, the characteristics it kept and their
  monotone directions. Never a label statistic: it holds no count of events,
  no WOE and no IV of its bins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from vfl.data.table import PartyTable
from vfl.errors import JobError
from vfl.ml.scorecard.card import PartyCard
from vfl.ml.scorecard.config import ScorecardConfig
from vfl.ml.scorecard.encoding import Encoding
from vfl.ml.scorecard.points import Scaling
from vfl.ml.scorecard.selection import correlation_drop, vif_drop
from vfl.service.record import JobRecord
from vfl.service.store import JobStore


def scorecard_of(record: JobRecord) -> ScorecardConfig | None:
    """The job's scorecard section (B's from its spec, the others' from B's registration), or None."""
    spec = record.job_spec if record.kind == "label" else record.registration
    section = (spec or {}).get("scorecard")
    return None if section is None else ScorecardConfig.model_validate(section)


def scaling_of(config: ScorecardConfig) -> Scaling:
    return Scaling(config.points0, config.odds0, config.pdo)


def columns(table: PartyTable, names: Sequence[str]) -> list[int]:
    index = {n: i for i, n in enumerate(table.feature_names)}
    return [index[n] for n in names]


def coded(table: PartyTable, encoding: Encoding) -> PartyTable:
    """The table the protocol trains on: the party's coded characteristics as its features."""
    design = encoding.design(table.features[:, columns(table, encoding.names)])
    return replace(table, features=design, feature_names=encoding.column_names)


def subset(encoding: Encoding, names: Sequence[str]) -> Encoding:
    at = [encoding.names.index(n) for n in names]
    return Encoding(encoding.kind, tuple(encoding.bins[i] for i in at), tuple(encoding.directions[i] for i in at),
                    tuple(encoding.woe[i] for i in at) if encoding.kind == "woe" else ())


def local_selection(encoding: Encoding, table: PartyTable, config: ScorecardConfig,
                    priority: Mapping[str, float]) -> Encoding:
    """A party's own selection among its characteristics: correlation, then VIF, on their coded values.

    B measures its WOE columns; a feature party its ordered bin numbers (it has no WOE).
    The same rule as ``vfl.local.scorecard``.
    """
    settings = config.selection
    names = encoding.names
    if len(names) < 2 or (settings.max_correlation is None and settings.max_vif is None):
        return encoding
    raw = table.features[:, columns(table, names)]
    values = encoding.design(raw) if encoding.kind == "woe" else encoding.bin_indices(raw).astype(np.float64)
    kept = names
    if settings.max_correlation is not None:
        kept = correlation_drop(values, names, max_abs_corr=settings.max_correlation, priority=priority)
    if settings.max_vif is not None and len(kept) > 1:
        kept = vif_drop(values[:, [names.index(n) for n in kept]], kept, max_vif=settings.max_vif, priority=priority)
    return subset(encoding, kept)


def load_encoding(store: JobStore, job_id: str) -> Encoding:
    data = store.load_scorecard(job_id)
    if data is None or "encoding" not in data:
        raise JobError(f"job {job_id} is a scorecard job, but this party has no binning for it (scorecard.json): "
                       "its binning did not finish here")
    return Encoding.from_dict(data["encoding"])


def load_card(store: JobStore, job_id: str) -> PartyCard:
    data = store.load_card(job_id)
    if data is None:
        raise JobError(f"job {job_id} has no scorecard part at this party (card.json)")
    return PartyCard.from_dict(data)


def reason_codes(card_names: Sequence[str], codes: Mapping[str, str]) -> dict[str, str]:
    """This party's published codes for the characteristics it kept."""
    return {n: codes[n] for n in card_names if n in codes}


__all__ = ["coded", "columns", "load_card", "load_encoding", "local_selection", "reason_codes",
           "scaling_of", "scorecard_of", "subset"]
