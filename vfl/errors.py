"""The one error tree of vfl.

Every error vfl raises on purpose is a :class:`VFLError`. Exceptions from the
outside world (phe, gmpy2, cryptography, httpx, pandas, the filesystem) are
translated into this tree at the edge where they occur, so callers only ever
need to catch ``VFLError`` or one of its branches::

                                                                                     HTTP
    VFLError                                                                          500
    ├── ConfigError               a job spec, CLI flag or service config is wrong     422
    │   └── IdempotencyKeyReused  an Idempotency-Key sent again with another spec     422
    ├── DataError                 a CSV / DataFrame cannot be used as given           422
    │   ├── NoOverlapError        the two parties share no IDs                        422
    │   └── UnknownIDError        IDs asked for that the table does not hold          404
    ├── CryptoError                                                                   400
    │   ├── EncodingError         a value cannot be fixed-point encoded (NaN, inf)    400
    │   │   └── EncodingOverflow  a value or result left the safe plaintext range     400
    │   ├── KeyMismatch           a key is too small, mismatched or malformed         422
    │   └── CiphertextError       a ciphertext is out of range, not a unit, garbled   400
    ├── ProtocolError             a message does not fit the protocol state           400
    │   ├── UnknownJobError       the message names a job this party does not run     404
    │   ├── OutOfOrderError       a message for a step that is not (yet) expected     409
    │   │   ├── NotReady          it came too early: the sender retries it            409
    │   │   └── StaleKey          a lender's key rotated: fetch its tag set again     409
    │   ├── ReplayError           a second, different message for a step already done 409
    │   ├── ScheduleViolation     the arbiter refuses a decryption outside the schedule 409
    │   └── PeerNotAllowed        the caller is not the party this endpoint expects   403
    │       ├── NotAPeer          the caller is no configured peer of this service    403
    │       └── NoClientCertificate  a peer route called without a client certificate 403
    ├── Unauthorized              an orchestration call without its credential        401
    │   └── BadToken              a missing or wrong bearer token (or session)        401
    ├── Forbidden                 a known caller may not do this (a read-only session) 403
    ├── NotServedHere             this service does not offer what was asked          404
    ├── LimitExceeded             a request is larger than this service accepts       422
    │   └── RateLimited           too many requests in a short time: retry later      429
    ├── PSIError                  private set intersection failed or was abused       400
    ├── TransportError            a peer could not be reached or answered badly       502
    │   ├── PeerRefused           a peer answered with an error of its own            502
    │   ├── ContractMismatch      an answer does not fit the API's declared model     502
    │   └── PeerUnreachable       no attempt could connect: the request never arrived 502
    ├── ComputeError              the party's compute engine (its Ray cluster) failed 500
    ├── DivergedError             training diverged: lower the learning rate          500
    ├── LedgerError               a ledger entry or copy does not verify, or a party  422
    │   │                         will not sign an entry
    │   └── LedgerConflict        a party's copy disagrees with the entry it is given 409
    └── JobError                  a job cannot run, or was cancelled                  409
        ├── JobCancelled                                                              409
        └── ModelServed           a model name serves the version: it cannot be deleted 409

Each class carries the HTTP status a service answers it with (``http_status``,
the right-hand column). The one error handler of :mod:`vfl.service.http.errors`
reads it from the class, so a subclass answers like its parent unless it says
otherwise, and no status is ever chosen by reading a message.

Every message names the problem and, where one exists, the fix: the user reads
these in a terminal or a job status, not in a debugger.

Messages are written for the people who run the service that raised them, so
they may name local files. Another organisation never sees them as they are:
an error that carries local detail also gets a ``public`` message (the same
problem, without the detail), and :mod:`vfl.service.redact` turns any error
into what a peer may read before it leaves the service.
"""

from __future__ import annotations

from typing import Any


class VFLError(Exception):
    """Root of every error vfl raises on purpose.

    ``public``, when given, is the message for other organisations: the same
    problem without local detail such as file paths. Peers get it in place of
    ``str(exc)``; this service's own logs and job records keep the full message.
    """

    #: Class-level default, so subclasses with their own ``__init__`` still have one.
    public: str | None = None
    #: The status a service answers this error with (see the tree above).
    http_status: int = 500

    def __init__(self, *args: object, public: str | None = None) -> None:
        super().__init__(*args)
        if public is not None:
            self.public = public


class ConfigError(VFLError):
    """A job spec, command-line flag or service config file is invalid."""

    http_status = 422


class IdempotencyKeyReused(ConfigError):
    """The Idempotency-Key of an earlier submit, sent again with another spec."""


class DataError(VFLError):
    """An input table cannot be used as given (missing column, NaN, duplicate ID, ...)."""

    http_status = 422


class NoOverlapError(DataError):
    """Party A and party B have no ID in common, so there is nothing to train on."""


class UnknownIDError(DataError):
    """IDs were asked for that the table does not hold."""

    http_status = 404


class CryptoError(VFLError):
    """Base of everything that goes wrong in the Paillier or RSA layer."""

    http_status = 400


class EncodingError(CryptoError):
    """A value cannot be fixed-point encoded, for example NaN or infinity."""


class EncodingOverflow(EncodingError):
    """A value, or the result of homomorphic arithmetic, left the safe plaintext range.

    Paillier arithmetic is modulo n: a result that grows past n/3 in magnitude
    would silently wrap around and decode to garbage. We refuse instead.
    """


class KeyMismatch(CryptoError):
    """A key is too small, does not match the job, or is malformed."""

    http_status = 422


class CiphertextError(CryptoError):
    """A ciphertext is outside (0, n²), shares a factor with n, or is truncated."""


class ProtocolError(VFLError):
    """A protocol message does not fit the receiving role's state."""

    http_status = 400


class UnknownJobError(ProtocolError):
    """The message names a job this party does not know."""

    http_status = 404


class OutOfOrderError(ProtocolError):
    """The message is for a step this role does not expect now."""

    http_status = 409



class NotReady(OutOfOrderError):
    """A message arrived before this party can take it (too far ahead, before its role exists,
    before this party has resumed). Nothing is wrong with it: the sender retries it with
    backoff until ``limits.peer_timeout``, so timing never fails a job."""

class StaleKey(OutOfOrderError):
    """A blind query names a key this lender no longer signs with (it rotated): fetch the tag set again."""


class ReplayError(ProtocolError):
    """A different message arrived for a step that was already handled."""

    http_status = 409


class ScheduleViolation(ProtocolError):
    """The arbiter refuses a decryption that the training schedule does not allow."""

    http_status = 409


class PeerNotAllowed(ProtocolError):
    """The caller is authenticated, but is not the party this endpoint or message expects."""

    http_status = 403


class NotAPeer(PeerNotAllowed):
    """The caller of a peer route is not a configured peer of this service (or claims another name)."""


class NoClientCertificate(PeerNotAllowed):
    """A peer route was called without a client certificate signed by the federation's CA."""


class Unauthorized(VFLError):
    """An orchestration call without the credential it needs."""

    http_status = 401


class BadToken(Unauthorized):
    """The bearer token (or the dashboard's session) is missing or wrong."""


class Forbidden(VFLError):
    """The caller is known, but may not do this here (a dashboard session that reads only, a cross-site call)."""

    http_status = 403


class NotServedHere(VFLError):
    """This service does not offer what was asked (a lending route at a party that is not a lender)."""

    http_status = 404


class LimitExceeded(VFLError):
    """A request carries more than the configured limits allow (vector length, ID count)."""

    http_status = 422


class BudgetSpent(LimitExceeded):
    """A budget a party keeps per partner over all jobs is spent (binning runs): the same request later is refused
    too, until the party's own config allows more (HTTP 403)."""

    http_status = 403


class RateLimited(LimitExceeded):
    """Too many requests of one kind in a short time (HTTP 429); the same request later may pass."""

    http_status = 429


class PSIError(VFLError):
    """Private set intersection failed, or a peer sent values the protocol forbids."""

    http_status = 400


class TransportError(VFLError):
    """A peer could not be reached, timed out, or answered with garbage."""

    http_status = 502


class PeerRefused(TransportError):
    """A peer answered with an error; its HTTP ``status`` and error class name (``error``) are kept."""

    def __init__(self, message: str, status: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class ContractMismatch(TransportError):
    """A service answered JSON that is not what the API declares: client and service speak different versions."""


class PeerUnreachable(TransportError):
    """No attempt of a call with ``connect_within`` could connect to the peer: the request never reached it."""

    def __init__(self, message: str, *, peer_id: str) -> None:
        super().__init__(message)
        self.peer_id = peer_id


class ComputeError(VFLError):
    """The party's compute engine failed: its Ray cluster cannot be reached, or lost a task or a node."""


class DivergedError(VFLError):
    """Training diverged: the loss or the weights blew up, so the job fails instead of reporting a useless model.

    Raised where it is seen: party B when the arbiter's epoch decision says the training
    loss rose far above where training started (or is not finite, see
    :mod:`vfl.ml.convergence`), and any party whose weights grew too large to encode
    or stopped being finite numbers. The message states the evidence and the learning
    rate in force; the fix is a smaller ``learning_rate`` (or a decay).
    """


class LedgerError(VFLError):
    """A ledger entry, signature or copy does not verify, or a party refuses to sign an entry (vfl.incentives.chain)."""

    http_status = 422


class LedgerConflict(LedgerError):
    """A party's copy of the ledger disagrees with the entry it is asked to sign or append (another head)."""

    http_status = 409


class JobError(VFLError):
    """A job cannot be started or continued."""

    http_status = 409


class JobCancelled(JobError):
    """The job was cancelled by an orchestration call."""


class ModelServed(JobError):
    """A job is the version a model name serves now, so it cannot be deleted (promote another or roll back first).

    A class of its own so that a client tells it from other refusals by the answer's ``error`` (the CLI then
    names the fix in vfl commands).
    """


def error_detail(response: Any) -> str:
    """The message of an error answer from a vfl service (an httpx response), whatever shape it came in.

    Every ``VFLError`` reaches HTTP callers as ``{"detail": message, "error": class name}``.
    """
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)[:500]
    return str(body)[:500]


__all__ = [
    "VFLError",
    "BudgetSpent",
    "ConfigError",
    "IdempotencyKeyReused",
    "DataError",
    "NoOverlapError",
    "UnknownIDError",
    "CryptoError",
    "EncodingError",
    "EncodingOverflow",
    "KeyMismatch",
    "CiphertextError",
    "ProtocolError",
    "UnknownJobError",
    "OutOfOrderError",
    "NotReady",
    "StaleKey",
    "ReplayError",
    "ScheduleViolation",
    "PeerNotAllowed",
    "NotAPeer",
    "NoClientCertificate",
    "Unauthorized",
    "BadToken",
    "Forbidden",
    "NotServedHere",
    "LimitExceeded",
    "RateLimited",
    "PSIError",
    "TransportError",
    "PeerRefused",
    "ContractMismatch",
    "PeerUnreachable",
    "ComputeError",
    "DivergedError",
    "LedgerError",
    "LedgerConflict",
    "JobError",
    "JobCancelled",
    "ModelServed",
    "error_detail",
]
