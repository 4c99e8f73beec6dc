"""Per-party timings of a job: how long each stage took at each party, and training's compute against waiting.

Every party measures its own job: the time it spent in each stage (from the
record's timeline: registered, psi, aligned, binning, training, evaluating, ...)
and, for training, the seconds its roles spent handling messages (computing, in
:class:`~vfl.service.runtime.JobRuntime`) against the rest of the stage (waiting
for its peers). Party B asks each feature party and the arbiter for theirs once
the job has run its stages (``GET /v1/peer/jobs/{id}/timings``,
:mod:`vfl.service.serving.timings`), keeps the
answers in its record (``peer_timings``) and shows them with its own on the
job's page (``party_timings`` of the job's status).

**What an answer reveals.** Durations only: one number per stage, rounded to
:data:`STEP` seconds, and the training's compute and waiting seconds, rounded
the same way. No row, ID, count or value of the party's data, no per-epoch or
per-message time. Durations still say something: a feature party's PSI and
training times grow with its number of IDs and of features, and with how fast
its machines are. Only the job's label party may ask, only for its own job, and
only once the job has finished at the party asked (so they cannot be polled to
time each epoch).

A peer that does not answer (down, too old to serve the route, or answering
something that is not timings) is recorded as ``{"available": false, "reason":
...}``: the job is unaffected and its page says "not available".
"""

from __future__ import annotations

import math
import time
from typing import Any

from vfl.protocol.roster import LETTERS
from vfl.service.record import JobRecord

#: Every duration a party reports, its own or to party B, is rounded to this many seconds.
STEP = 0.1
#: Stages that end a job: no time is spent in them.
ENDS = frozenset({"done", "stopped", "deleting", "deleted", "damaged"})
#: A peer's answer with more stages than this (there are about a dozen) is not timings.
MAX_STAGES = 32


def rounded(seconds: float) -> float:
    """A duration as it is reported: to :data:`STEP` seconds."""
    return round(round(seconds / STEP) * STEP, 1)


def stage_seconds(record: JobRecord, now: float | None = None) -> dict[str, float]:
    """Seconds this party spent in each stage of the job, summed over visits (a resumed stage counts twice)."""
    if not record.timeline:
        return {}  # a record written before stage times were kept
    moves = [{"at": record.created_at, "stage": "registered"}, *record.timeline]
    end = (record.stopped_at or record.updated_at) if record.finished else (now or time.time())
    spent: dict[str, float] = {}
    for n, move in enumerate(moves):
        stage = str(move["stage"])
        if stage in ENDS:
            continue
        until = moves[n + 1]["at"] if n + 1 < len(moves) else end
        spent[stage] = spent.get(stage, 0.0) + max(0.0, float(until) - float(move["at"]))
    return {stage: rounded(seconds) for stage, seconds in spent.items()}


def own_timings(record: JobRecord, me: str, live_compute: float | None = None) -> dict[str, Any]:
    """This party's timings of the job: its stages and, once it trained, training's compute and waiting.

    ``live_compute`` is the training compute measured so far by a running job's runtime; a finished
    training's is in the record (``timings["training_compute"]``).
    """
    stages = stage_seconds(record)
    entry: dict[str, Any] = {"party": me, "role": record.role, "available": True, "state": str(record.state),
                             "stages": stages}
    training = stages.get("training")
    compute = record.timings.get("training_compute", live_compute)
    if training is not None and compute is not None:
        compute = min(float(compute), training)
        entry["training"] = {"seconds": training, "compute": rounded(compute), "waiting": rounded(training - compute)}
    return entry


def not_available(record: JobRecord, peer: str, reason: str) -> dict[str, Any]:
    """A peer's entry when its timings could not be had (party B shows the reason)."""
    return {"party": peer, "role": letter(record, peer), "available": False, "reason": reason}


def letter(record: JobRecord, peer: str) -> str:
    pid = next((p for p, party in record.peers.items() if party == peer), None)
    kind = record.parties.kind_of(pid) if pid is not None else None
    return LETTERS[kind] if kind else "?"


def checked(record: JobRecord, peer: str, answer: Any) -> dict[str, Any]:
    """A peer's answer as party B keeps it: only durations, each a finite number ≥ 0, rounded again here."""
    def seconds(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(value)
        return rounded(float(value))

    try:
        stages = answer["stages"]
        if not isinstance(stages, dict) or len(stages) > MAX_STAGES:
            raise ValueError("stages")
        entry: dict[str, Any] = {
            "party": peer, "role": letter(record, peer), "available": True,
            "state": None if answer.get("state") is None else str(answer["state"])[:20],
            "stages": {str(stage)[:40]: seconds(value) for stage, value in stages.items()},
        }
        training = answer.get("training")
        if training is not None:
            entry["training"] = {k: seconds(training[k]) for k in ("seconds", "compute", "waiting")}
    except (TypeError, KeyError, ValueError, AttributeError):
        return not_available(record, peer, f"{peer} answered something that is not its timings")
    return entry


def party_timings(record: JobRecord, me: str, live_compute: float | None = None) -> list[dict[str, Any]]:
    """The timings a job's status shows: this party's own, and at party B each peer's (or why not)."""
    own = own_timings(record, me, live_compute)
    if record.kind != "label":
        return [own]
    kept = record.peer_timings or {}
    peers = []
    for peer in record.peer_ids(me):
        entry = kept.get(peer)
        if entry is None:
            reason = ("asked when the job has run its stages" if not record.finished
                      else "not available: this job ended before party B asked for it")
            entry = not_available(record, peer, reason)
        peers.append(entry)
    order = {"A": 0, "B": 1, "C": 2}
    return sorted([own, *peers], key=lambda e: order.get(str(e.get("role")), 3))


__all__ = ["STEP", "checked", "letter", "not_available", "own_timings", "party_timings", "rounded", "stage_seconds"]
