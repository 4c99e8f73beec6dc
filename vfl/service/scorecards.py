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

from dataclasses import replace

from vfl.data.table import PartyTable
from vfl.errors import JobError
from vfl.ml.scorecard.card import PartyCard
from vfl.ml.scorecard.config import ScorecardConfig
from vfl.ml.scorecard.encoding import Encoding
from vfl.ml.scorecard.points import Scaling
from vfl.service.record import JobRecord
from vfl.service.store import JobStore


def scorecard_of(record: JobRecord) -> ScorecardConfig | None:
    """The job's scorecard section (B's from its spec, the others' from B's registration), or None."""
    spec = record.job_spec if record.kind == "label" else record.registration
    section = (spec or {}).get("scorecard")
    return None if section is None else ScorecardConfig.model_validate(section)


def require_scorecard(record: JobRecord) -> ScorecardConfig:
    """The job's scorecard section; a job without one reaching scorecard code is an error, not a crash."""
    config = scorecard_of(record)
    if config is None:
        raise JobError(f"job {record.job_id} is not a scorecard job: it has no scorecard section")
    return config


def scaling_of(config: ScorecardConfig) -> Scaling:
    return Scaling(config.points0, config.odds0, config.pdo)


def coded(table: PartyTable, encoding: Encoding) -> PartyTable:
    """The table the protocol trains on: the party's coded characteristics as its features."""
    return replace(table, features=encoding.design_from(table.features, table.feature_names),
                   feature_names=encoding.column_names)


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


__all__ = ["coded", "load_card", "load_encoding", "require_scorecard", "scaling_of", "scorecard_of"]
