"""The one error tree of vfl.

Every error vfl raises on purpose is a :class:`VFLError`. Exceptions from the
outside world (phe, gmpy2, cryptography, httpx, pandas, the filesystem) are
translated into this tree at the edge where they occur, so callers only ever
need to catch ``VFLError`` or one of its branches::

    VFLError
    ├── ConfigError               a job spec, CLI flag or service config is wrong
    ├── DataError                 a CSV / DataFrame cannot be used as given
    │   └── NoOverlapError        the two parties share no IDs
    ├── CryptoError
    │   ├── EncodingError         a value cannot be fixed-point encoded (NaN, inf)
    │   │   └── EncodingOverflow  a value or result left the safe plaintext range
    │   ├── KeyMismatch           a key is too small, mismatched or malformed
    │   └── CiphertextError       a ciphertext is out of range, not a unit, or garbled
    ├── ProtocolError             a message does not fit the protocol state
    │   ├── UnknownJobError       the message names a job this party does not run
    │   ├── OutOfOrderError       a message for a step that is not (yet) expected
    │   │   └── NotReady          it came too early: the sender retries it until the peer is ready
    │   ├── ReplayError           a second, different message for a step already done
    │   ├── ScheduleViolation     the arbiter refuses a decryption outside the schedule
    │   └── PeerNotAllowed        the caller is not the party this endpoint or message expects
    ├── LimitExceeded             a request is larger than this service accepts
    │   └── RateLimited           too many requests in a short time: retry later
    ├── PSIError                  private set intersection failed or was abused
    ├── TransportError            a peer could not be reached or answered badly
    │   └── PeerRefused           a peer answered with an error of its own
    ├── ComputeError              the party's compute engine (its Ray cluster) failed or cannot be reached
    ├── DivergedError             training diverged (the loss or the weights blew up): lower the learning rate
    ├── LedgerError               a ledger entry or copy does not verify, or a party will not sign an entry
    │   └── LedgerConflict        a party's copy of the ledger disagrees with the entry it is given
    └── JobError                  a job cannot run, or was cancelled
        └── JobCancelled

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

    def __init__(self, *args: object, public: str | None = None) -> None:
        super().__init__(*args)
        if public is not None:
            self.public = public


class ConfigError(VFLError):
    """A job spec, command-line flag or service config file is invalid."""


class DataError(VFLError):
    """An input table cannot be used as given (missing column, NaN, duplicate ID, ...)."""


class NoOverlapError(DataError):
    """Party A and party B have no ID in common, so there is nothing to train on."""


class CryptoError(VFLError):
    """Base of everything that goes wrong in the Paillier or RSA layer."""


class EncodingError(CryptoError):
    """A value cannot be fixed-point encoded, for example NaN or infinity."""


class EncodingOverflow(EncodingError):
    """A value, or the result of homomorphic arithmetic, left the safe plaintext range.

    Paillier arithmetic is modulo n: a result that grows past n/3 in magnitude
    would silently wrap around and decode to garbage. We refuse instead.
    """


class KeyMismatch(CryptoError):
    """A key is too small, does not match the job, or is malformed."""


class CiphertextError(CryptoError):
    """A ciphertext is outside (0, n²), shares a factor with n, or is truncated."""


class ProtocolError(VFLError):
    """A protocol message does not fit the receiving role's state."""


class UnknownJobError(ProtocolError):
    """The message names a job this party does not know."""


class OutOfOrderError(ProtocolError):
    """The message is for a step this role does not expect now."""



class NotReady(OutOfOrderError):
    """A message arrived before this party can take it (too far ahead, before its role exists,
    before this party has resumed). Nothing is wrong with it: the sender retries it with
    backoff until ``limits.peer_timeout``, so timing never fails a job."""

class ReplayError(ProtocolError):
    """A different message arrived for a step that was already handled."""


class ScheduleViolation(ProtocolError):
    """The arbiter refuses a decryption that the training schedule does not allow."""


class PeerNotAllowed(ProtocolError):
    """The caller is authenticated, but is not the party this endpoint or message expects."""


class LimitExceeded(VFLError):
    """A request carries more than the configured limits allow (vector length, ID count)."""


class RateLimited(LimitExceeded):
    """Too many requests of one kind in a short time (HTTP 429); the same request later may pass."""


class PSIError(VFLError):
    """Private set intersection failed, or a peer sent values the protocol forbids."""


class TransportError(VFLError):
    """A peer could not be reached, timed out, or answered with garbage."""


class PeerRefused(TransportError):
    """A peer answered with an error; its HTTP ``status`` and error class name (``error``) are kept."""

    def __init__(self, message: str, status: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


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


class LedgerConflict(LedgerError):
    """A party's copy of the ledger disagrees with the entry it is asked to sign or append (another head)."""


class JobError(VFLError):
    """A job cannot be started or continued."""


class JobCancelled(JobError):
    """The job was cancelled by an orchestration call."""


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
    "ConfigError",
    "DataError",
    "NoOverlapError",
    "CryptoError",
    "EncodingError",
    "EncodingOverflow",
    "KeyMismatch",
    "CiphertextError",
    "ProtocolError",
    "UnknownJobError",
    "OutOfOrderError",
    "ReplayError",
    "ScheduleViolation",
    "PeerNotAllowed",
    "LimitExceeded",
    "PSIError",
    "TransportError",
    "PeerRefused",
    "ComputeError",
    "DivergedError",
    "LedgerError",
    "LedgerConflict",
    "JobError",
    "JobCancelled",
    "error_detail",
]
