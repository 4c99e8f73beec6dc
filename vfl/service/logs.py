"""How a service logs: each job's story at INFO, per-message detail at DEBUG, as text or JSON lines.

At INFO a service writes one line per step of a job's life, each starting with
``job <id>:`` and carrying the job id as ``job_id`` (:func:`job_event`):

* ``submitted and registered with ...`` (B), ``registered by party B (...)`` (A, C);
* ``aligned: N rows ...`` (B and A), ``training on N aligned rows`` (every party);
* ``epoch e/E: train loss ... validation loss ...`` once per epoch at every party;
* ``succeeded ...``, ``failed: <reason>`` (ERROR), ``cancelled: <reason>`` (WARNING);
* ``resuming (...)`` and ``resumed from epoch e ...``.

What happens per protocol message (httpx's ``HTTP Request:`` lines, httpcore's
connection chatter, uvicorn's access log, early messages answered "not ready")
stays below INFO: :func:`configure` sets ``httpx``, ``httpcore`` and
``uvicorn.access`` to WARNING unless the level is ``debug``.

``vfl serve --log-format json`` writes one JSON object per line with ``time``
(ISO 8601, UTC), ``level``, ``logger``, ``message``, ``job_id`` when the line
is about a job, and ``exception`` when there is a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Literal

from vfl.files import FILE_MODE, FOLDER_MODE

#: Loggers that speak once per HTTP request; WARNING unless the service runs at debug level.
NOISY = ("httpx", "httpcore", "uvicorn.access")

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("vfl.service")


def job_event(job_id: str, message: str, *args: Any, level: int = logging.INFO,
              logger: logging.Logger | None = None) -> None:
    """One line of a job's story: ``job <id>: <message>``, with ``job_id`` for the JSON format."""
    (logger or log).log(level, "job %s: " + message, job_id, *args, extra={"job_id": job_id})


def job_id_of(record: logging.LogRecord) -> str | None:
    """The job a log line is about: given as ``extra={"job_id": ...}``, or the first argument of a
    ``"job %s..."`` message (the service's older lines are written that way)."""
    given = getattr(record, "job_id", None)
    if isinstance(given, str):
        return given
    if isinstance(record.msg, str) and record.msg.startswith("job %s") and isinstance(record.args, tuple) \
            and record.args and isinstance(record.args[0], str):
        return record.args[0]
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id (when known), exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = job_id_of(record)
        if job_id is not None:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str = "info", fmt: LogFormat = "text", *, stream: IO[str] | None = None) -> logging.Handler:
    """Send the process's log lines to ``stream`` (stderr) at ``level``, as text or JSON lines.

    Replaces the handler an earlier call installed (and no other), and quiets the
    per-request loggers (:data:`NOISY`) unless ``level`` is ``debug``. Returns the handler.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r}: use text or json")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level {level!r}: use critical, error, warning, info or debug")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_vfl_service", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._vfl_service = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING)
    return handler


class AuditLog:
    """An append-only file of ``<UTC time> <line>`` lines, 0600, written through at once.

    Every refusal a party makes, every scoring request it serves and every query a
    lender answers goes into one. The file is opened on first use and kept open,
    because a scoring request appends a line and reopening the file each time would
    cost more than the scoring itself; :meth:`close` closes it (it reopens if written
    again). Safe to write from several threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None

    def write(self, line: str) -> None:
        with self._lock:
            if self._handle is None:
                self.path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
                os.fchmod(fd, FILE_MODE)  # a log made by an older version may be world-readable
                self._handle = os.fdopen(fd, "a", buffering=1)  # line-buffered
            self._handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
