"""A party's models as things people manage: list them, promote one under a name, roll back, delete, read.

Every succeeded job with a model part here is a *model version*. Party B serves
them under names: ``promote(name, job_id)`` makes a job the version a name
serves, ``rollback(name)`` returns to the version promoted before it, and
``POST /v1/models/{name}/predict`` scores with whatever the name serves now.
The names, and for each the stack of versions promoted before, live in
``<data_dir>/models.json`` (checksummed and written atomically, like every store
file), so a restarted service serves the same versions::

    {"served":   {"default-risk": {"job_id": "job-2", "history": ["job-1"]}},
     "deleting": {"job-0": {"deleted": ["shop"], "pending": {"arbiter": "cannot reach ..."}}}}

Deleting a job (party B, ``DELETE /v1/jobs/{id}``) removes it at every party:
B asks each peer of the job to delete its folder (``POST /v1/peer/jobs/{id}/delete``),
then removes its own. A job still running, or served under a name, is refused.
A peer that cannot be reached leaves the job *marked* at B (stage ``deleting``,
and under ``deleting`` in ``models.json``), never half-forgotten: the answer lists
which parties deleted and which did not, and the same DELETE again asks only
those left. Deleting a job a peer no longer has is success there.

:func:`scorecard` writes a party's own part as plain numbers a reviewer can check
by hand: coefficients in standardised and in raw feature units, the scaler and,
at B, the intercept, label scale, threshold and calibration.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re

from pathlib import Path
from typing import Any

import vfl
from vfl.errors import ConfigError, JobError, ModelServed, PeerNotAllowed, UnknownJobError, VFLError
from vfl.protocol.messages import JOB_ID_PATTERN
from vfl.protocol.roster import LETTERS
from vfl.service.context import ServiceContext
from vfl.service.lifecycle import Stage
from vfl.service.record import JobRecord
from vfl.service.serving.batch import list_batches
from vfl.service.serving.common import model_part
from vfl.files import DamagedFile, atomic_write_json, read_json

log = logging.getLogger("vfl.service")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)



# -- models.json -----------------------------------------------------------------------------------

def _file(service: ServiceContext) -> Path:
    return service.store.data_dir / "models.json"


def _load(service: ServiceContext) -> dict[str, Any]:
    file = _file(service)
    if not file.is_file():
        return {"served": {}, "deleting": {}}
    try:
        data = read_json(file)
    except DamagedFile as exc:
        raise JobError(f"the model registry {file} {exc}; restore it from a backup, or remove it and promote "
                       "the served models again") from None
    if not isinstance(data, dict):
        raise JobError(f"the model registry {file} holds no registry; restore it from a backup, or remove it "
                       "and promote the served models again")
    data.setdefault("served", {})
    data.setdefault("deleting", {})
    return data


def _save(service: ServiceContext, data: dict[str, Any]) -> None:
    atomic_write_json(_file(service), data)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"model name {name!r} is not a plain name: 1 to 64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")


def _require_b(service: ServiceContext, what: str) -> None:
    if service.kind != "label":
        raise ConfigError(f"{what} is party B's (the label party serves the models); this is party "
                          f"{LETTERS[service.kind]}")


# -- listing ---------------------------------------------------------------------------------------

def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(float(seconds), tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parties(record: JobRecord) -> dict[str, Any]:
    """The job's parties by role, as party ids."""
    roster = record.parties
    by_id = record.peers
    return {"features": [by_id.get(p, p) for p in roster.features], "label": by_id.get(roster.label, roster.label),
            "arbiter": by_id.get(roster.arbiter, roster.arbiter)}


def _entry(service: ServiceContext, record: JobRecord, model: dict[str, Any], names: list[str]) -> dict[str, Any]:
    trained = model.get("trained_at")
    return {
        "job_id": record.job_id,
        "names": names,
        "model": model.get("model"),
        "dataset": model.get("dataset", record.dataset),
        "feature_names": list(model.get("feature_names") or []),
        "metrics": record.metrics if service.kind == "label" else None,
        "trained_at": _iso(trained if trained is not None else (record.stopped_at or record.updated_at)),
        "vfl_version": model.get("vfl_version") or vfl.__version__,
        "roster": _parties(record),
        "peers": sorted(record.peer_ids(service.me)),
        "stage": record.stage,
        # A multi-class job serves every class's probability; a class training is one class of such a job.
        "multiclass": None if record.multiclass is None else {
            "strategy": record.multiclass.get("strategy"), "classes": record.multiclass.get("class_names")},
        "class_training_of": _class_training_of(record),
    }


def _class_training_of(record: JobRecord) -> str | None:
    """The multi-class job this job trains one class of (party B), or None."""
    if (record.job_spec or {}).get("one_vs_rest_class") is None:
        return None
    return record.coalition_of


def _names_by_job(service: ServiceContext) -> dict[str, list[str]]:
    if service.kind != "label":
        return {}
    names: dict[str, list[str]] = {}
    for name, entry in sorted(_load(service)["served"].items()):
        names.setdefault(entry["job_id"], []).append(name)
    return names


def list_models(service: ServiceContext) -> list[dict[str, Any]]:
    """Every succeeded job with a model part at this party, oldest first.

    A model file that fails its check is listed with ``error`` (and nothing else
    read from it), so one bad file does not hide the others.
    """
    names = _names_by_job(service)
    out = []
    for record in sorted(service.jobs.records(), key=lambda r: (r.created_at, r.job_id)):
        if record.state != "succeeded" or record.stage is Stage.DELETED:
            continue
        try:
            model = service.store.load_model(record.job_id)
        except JobError as exc:
            out.append({"job_id": record.job_id, "names": names.get(record.job_id, []), "error": str(exc)})
            continue
        if model is None:
            continue
        out.append(_entry(service, record, model, names.get(record.job_id, [])))
    return out


def describe(service: ServiceContext, job_id: str) -> dict[str, Any]:
    """One model version as :func:`list_models` lists it."""
    ctx = service.job(job_id)
    return _entry(service, ctx.record, model_part(ctx), _names_by_job(service).get(job_id, []))


# -- promotion (party B) ---------------------------------------------------------------------------

def served(service: ServiceContext) -> dict[str, dict[str, Any]]:
    """Every name and the version it serves: ``{name: {job_id, history}}`` (history: oldest first)."""
    _require_b(service, "serving models by name")
    return {name: {"job_id": e["job_id"], "history": list(e["history"])}
            for name, e in sorted(_load(service)["served"].items())}


def resolve(service: ServiceContext, name: str) -> str:
    """The job id ``name`` serves now."""
    _require_b(service, "serving models by name")
    _check_name(name)
    entry = _load(service)["served"].get(name)
    if entry is None:
        known = ", ".join(sorted(_load(service)["served"])) or "none yet"
        raise UnknownJobError(f"no model named {name!r} at party {service.me!r} (known names: {known}); "
                              f"promote a job under it with POST /v1/models/{name}/promote")
    return entry["job_id"]


def promote(service: ServiceContext, name: str, job_id: str) -> dict[str, Any]:
    """Make ``job_id`` the version ``name`` serves; the version it served goes on the name's history."""
    _require_b(service, "promoting a model")
    _check_name(name)
    ctx = service.job(job_id)
    record = ctx.record
    if record.state != "succeeded":
        raise JobError(f"job {job_id} is {record.state}; only a succeeded job with a model can be promoted")
    if record.stage == Stage.DELETING:
        raise JobError(f"job {job_id} is being deleted; promote another job")
    model_part(ctx)  # JobError when the model is missing or damaged
    part_of = _class_training_of(record)
    if part_of is not None:
        raise JobError(f"job {job_id} trains one class of the multi-class job {part_of} against the rest; it is "
                       f"not a model of its own: promote {part_of}, which serves every class's probability")
    data = _load(service)
    entry = data["served"].setdefault(name, {"job_id": job_id, "history": []})
    if entry["job_id"] != job_id:  # promoting the version already served changes nothing
        entry["history"].append(entry["job_id"])
        entry["job_id"] = job_id
    _save(service, data)
    log.info("model %s now serves job %s (history %s)", name, job_id, entry["history"])
    return {"name": name, "job_id": entry["job_id"], "history": list(entry["history"])}


def rollback(service: ServiceContext, name: str) -> dict[str, Any]:
    """Serve the version promoted before the current one under ``name`` again."""
    _require_b(service, "rolling back a model")
    resolve(service, name)  # 404 with the known names
    data = _load(service)
    entry = data["served"][name]
    if not entry["history"]:
        raise JobError(f"model {name!r} serves job {entry['job_id']} and has no earlier version to roll back to; "
                       f"promote the job you want with POST /v1/models/{name}/promote")
    entry["job_id"] = entry["history"].pop()
    _save(service, data)
    log.info("model %s rolled back to job %s", name, entry["job_id"])
    return {"name": name, "job_id": entry["job_id"], "history": list(entry["history"])}


def model_info(service: ServiceContext, name: str) -> dict[str, Any]:
    """What ``GET /v1/models/{name}`` answers: the version served, its history, and that version's entry."""
    job_id = resolve(service, name)
    entry = served(service)[name]
    return {"name": name, "job_id": job_id, "history": entry["history"], "model": describe(service, job_id)}


# -- deletion ---------------------------------------------------------------------------------------

async def delete_job(service: ServiceContext, job_id: str) -> dict[str, Any]:
    """Party B: delete a finished, unserved job at every party, then here.

    Answers ``{"job_id", "status": "deleted" | "partial", "deleted": [party ids], "pending": {party id: reason}}``.
    ``partial``: some peer could not delete it yet; the job stays here, marked, and
    the same call again retries only the parties in ``pending``.
    """
    _require_b(service, "deleting a job at every party")
    ctx = service.job(job_id)
    record = ctx.record
    if not record.finished:
        raise JobError(f"job {job_id} is {record.state}; cancel it first (POST /v1/jobs/{job_id}/cancel), "
                       "then delete it")
    part_of = _class_training_of(record)
    parent = None if part_of is None else service.jobs.get(part_of)
    if parent is not None and parent.record.stage is not Stage.DELETED:
        raise JobError(f"job {job_id} trains one class of the multi-class job {part_of}, which scores with it; "
                       f"delete {part_of} first")
    live = [b["batch_id"] for b in list_batches(ctx) if b["state"] in ("queued", "running")]
    if live:
        raise JobError(f"job {job_id} is scoring batch {live[0]} right now; wait for it or cancel it "
                       f"(POST /v1/jobs/{job_id}/score-batch/{live[0]}/cancel), then delete the job")
    data = _load(service)
    names = sorted(name for name, e in data["served"].items() if e["job_id"] == job_id)
    if names:
        shown = ", ".join(repr(n) for n in names)
        raise ModelServed(f"job {job_id} is the version model {shown} serves; promote another version "
                          f"(POST /v1/models/{names[0]}/promote) or roll back (POST /v1/models/{names[0]}/rollback) "
                          "first, then delete it")
    # Mark first: from here on the job is being deleted, and a version no rollback may return to.
    progress = data["deleting"].setdefault(job_id, {"deleted": [], "pending": {}})
    for entry in data["served"].values():
        entry["history"] = [j for j in entry["history"] if j != job_id]
    _save(service, data)
    if record.state != "damaged":  # a damaged record cannot change
        ctx.advance(Stage.DELETING)

    left = [peer for peer in record.peer_ids(service.me) if peer not in progress["deleted"]]
    path = f"/v1/peer/jobs/{job_id}/delete"
    answers = await asyncio.gather(*(service.client.call_json(peer, "POST", path, {}) for peer in left),
                                   return_exceptions=True)
    pending: dict[str, str] = {}
    for peer, answer in zip(left, answers):
        if isinstance(answer, VFLError):
            pending[peer] = str(answer)
            log.warning("job %s: %s did not delete it: %s", job_id, peer, answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            progress["deleted"].append(peer)
    progress["pending"] = pending
    data = _load(service)
    if pending:
        data["deleting"][job_id] = progress
        _save(service, data)
        return {"job_id": job_id, "status": "partial", "deleted": list(progress["deleted"]), "pending": pending,
                "detail": f"job {job_id} is deleted at {', '.join(progress['deleted']) or 'no peer'} but not at "
                          f"{', '.join(pending)}; it stays here marked '{Stage.DELETING}'. Delete it again once "
                          f"{'that party is' if len(pending) == 1 else 'those parties are'} reachable"}
    await service.forget(job_id)
    data["deleting"].pop(job_id, None)
    _save(service, data)
    log.info("job %s deleted at %s and here", job_id, ", ".join(progress["deleted"]) or "no peer")
    answer: dict[str, Any] = {"job_id": job_id, "status": "deleted", "deleted": [*progress["deleted"], service.me],
                              "pending": {}}
    trainings = [j for j in (record.multiclass or {}).get("jobs", [])[1:] if service.jobs.get(j) is not None]
    if trainings:  # a multi-class job's class trainings go with it (each answers as a delete of its own)
        answer["class_trainings"] = [await _delete_class_training(service, j) for j in trainings]
    return answer


async def _delete_class_training(service: ServiceContext, job_id: str) -> dict[str, Any]:
    """Delete one class training of a deleted multi-class job; a refusal is reported, not raised."""
    try:
        return await delete_job(service, job_id)
    except VFLError as exc:
        return {"job_id": job_id, "status": "refused", "detail": str(exc)}


async def peer_delete(service: ServiceContext, job_id: str, caller: str) -> dict[str, Any]:
    """A feature party or the arbiter: the job's party B asks to delete the job; this party's own policy decides.

    B's delete is a request. This party keeps the job's record (stage ``deleted``) and its
    audit log, which records what B did here, and removes the job's data files or keeps
    them as its ``[retention] peer_delete`` says; the job no longer scores. A job this
    party does not know (any more), or deleted already, is deleted: success, so B's
    retries are idempotent. A job still running here is refused.
    """
    if service.kind == "label":
        raise ConfigError("party B deletes its own jobs; it takes no delete request from a peer")
    if not _JOB_ID.match(job_id):
        raise ConfigError(f"{job_id!r} is not a job id")
    job = service.jobs.get(job_id)
    if job is None:
        if service.config.kind_of(caller) != "label":
            raise PeerNotAllowed(f"only a party B may delete jobs here; {caller!r} is not one")
        return {"job_id": job_id, "status": "deleted"}
    record = job.record
    record.require_caller(caller, "label")
    if not record.finished:
        raise JobError(f"job {job_id} is still {record.state} at party {record.role} ({service.me}); "
                       "cancel it first")
    policy = service.config.retention.peer_delete
    if record.stage is Stage.DELETED:
        return {"job_id": job_id, "status": "deleted", "policy": policy}
    removed = service.store.drop_job_data(job_id) if policy == "drop-data" else []
    if record.state != "damaged":  # a damaged record cannot change: its data files went all the same
        service.job(job_id).advance(Stage.DELETED)
    service.store.audit(job_id, f"party B ({caller}) deleted the job; by this party's [retention] peer_delete = "
                                f"{policy!r}, {'removed ' + ', '.join(removed) if removed else 'nothing was removed'}; "
                                "the record and this audit log stay")
    log.info("job %s deleted at the request of %s (%s)", job_id, caller, policy)
    return {"job_id": job_id, "status": "deleted", "policy": policy}


# -- scorecard --------------------------------------------------------------------------------------

def scorecard(service: ServiceContext, job_id: str) -> dict[str, Any]:
    """This party's own part as plain numbers.

    With standardised x̃_j = (x_j − mean_j) / scale_j, this party's partial score is
    ``u = Σ_j w_j·x̃_j`` (party B adds its intercept), which in raw feature units is
    ``u = offset + Σ_j (w_j / scale_j)·x_j`` with ``offset = −Σ_j w_j·mean_j / scale_j``
    (+ intercept at B). With ``row_clip`` set (a private job) the standardised rows
    are clipped to that L2 norm first, so the raw form holds only for rows inside it.
    """
    ctx = service.job(job_id)
    record = ctx.record
    if service.kind == "arbiter":
        raise ConfigError("the arbiter holds no model part")
    model = model_part(ctx)
    weights = [float(w) for w in model["weights"]]
    mean = [float(m) for m in model["scaler"]["mean"]]
    scale = [float(s) for s in model["scaler"]["scale"]]
    names = list(model["feature_names"])
    raw = [w / s for w, s in zip(weights, scale)]
    offset = -sum(w * m / s for w, m, s in zip(weights, mean, scale))
    label = service.kind == "label"
    intercept = float(model["intercept"]) if label else None
    trained = model.get("trained_at")
    card: dict[str, Any] = {
        "job_id": job_id,
        "party": service.me,
        "role": record.role,
        "model": model["model"],
        "dataset": model.get("dataset", record.dataset),
        "trained_at": _iso(trained if trained is not None else (record.stopped_at or record.updated_at)),
        "vfl_version": model.get("vfl_version") or vfl.__version__,
        "features": [
            {"name": n, "coefficient": w, "raw_coefficient": r, "mean": m, "scale": s}
            for n, w, r, m, s in zip(names, weights, raw, mean, scale)
        ],
        "scaler": {"mean": mean, "scale": scale},
        "row_clip": model.get("row_clip"),
        "raw_offset": offset + (intercept or 0.0),
        "formula": ("u = Σ coefficient·(x − mean)/scale" + (" + intercept" if intercept is not None else "")
                    + " = raw_offset + Σ raw_coefficient·x"
                    + ("" if model.get("row_clip") is None else
                       "; the standardised row is first clipped to L2 norm row_clip, so the raw form "
                       "holds only for rows inside it")),
    }
    if label:
        logistic = model["model"] == "logistic"
        card |= {
            "intercept": intercept,
            "label_mean": float(model.get("label_mean", 0.0)),
            "label_scale": float(model.get("label_scale", 1.0)),
            "threshold": model.get("threshold", 0.5 if logistic else None),
            "calibration": model.get("calibration"),
            "link": (("score = sigmoid(calibration.a·u + calibration.b)" if model.get("calibration")
                      else "score = sigmoid(u)") + ", u = u_features + u_B; label = 1 where score ≥ threshold"
                     if logistic else "prediction = label_mean + label_scale·u, u = u_features + u_B"),
        }
    return card


__all__ = ["NAME_PATTERN", "delete_job", "describe", "list_models", "model_info", "peer_delete", "promote",
           "resolve", "rollback", "scorecard", "served"]
